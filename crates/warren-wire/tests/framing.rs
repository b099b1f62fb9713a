#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]
//! Framing over an in-memory pipe: every message round-trips, every kind of
//! bad input is its own typed error.

use std::collections::BTreeMap;
use tokio::io::AsyncWriteExt;
use warren_wire::{
    decode_payload, encode_frame, read_message, write_message, AgentStatus, Message, Outcome, Report,
    Running, WireError, MAX_FRAME, MESSAGE_TYPES, PROTOCOL_VERSION,
};

fn samples() -> Vec<Message> {
    vec![
        Message::hello("router"),
        Message::Keys {
            identity: "ssh-ed25519 AAAA".into(),
            wireguard: BTreeMap::from([("wg0".to_string(), "k".to_string())]),
        },
        report("3 changes"),
        Message::Status(AgentStatus {
            max_serial: Some(9),
            running: Some(Running {
                serial: 9,
                commit: "c0ffee".into(),
                plan_sha256: "ab".repeat(32),
                confirmed: false,
            }),
            findings: vec![warren_plan::Finding {
                check: "ip-forward".into(),
                severity: warren_plan::Severity::Breaks,
                what: "net.ipv4.ip_forward = 0".into(),
                why: "no forwarding".into(),
                fix: "sysctl -w net.ipv4.ip_forward=1".into(),
            }],
        }),
        Message::Ack { seq: 3 },
        Message::Confirm { serial: 9 },
        Message::Ping { n: 1 },
        Message::Pong { n: 1 },
        Message::Bye {
            reason: "done".into(),
        },
    ]
}

#[tokio::test]
async fn every_message_round_trips() {
    let (mut a, mut b) = tokio::io::duplex(1 << 16);
    for m in samples() {
        write_message(&mut a, &m).await.unwrap();
        assert_eq!(read_message(&mut b).await.unwrap(), Some(m));
    }
    drop(a);
    assert_eq!(
        read_message(&mut b).await.unwrap(),
        None,
        "EOF at a boundary is a clean end"
    );
}

#[test]
fn wire_form_is_tagged_json_and_types_are_listed() {
    let f = encode_frame(&Message::Confirm { serial: 7 }).unwrap();
    let body = br#"{"type":"confirm","body":{"serial":7}}"#;
    assert_eq!(&f[..4], &(body.len() as u32).to_be_bytes());
    assert_eq!(&f[4..], body);
    for m in samples() {
        assert!(
            MESSAGE_TYPES.contains(&m.kind()),
            "{} missing from MESSAGE_TYPES",
            m.kind()
        );
    }
    // Version 2 added `status` and `ack` (at-least-once delivery).
    assert_eq!(PROTOCOL_VERSION, 2);
    let ack = encode_frame(&Message::Ack { seq: 4 }).unwrap();
    assert_eq!(&ack[4..], br#"{"type":"ack","body":{"seq":4}}"#);
    // Extra fields are tolerated (compatible additions).
    let m = decode_payload(br#"{"type":"ping","body":{"n":2,"later":true}}"#).unwrap();
    assert_eq!(m, Message::Ping { n: 2 });
}

async fn read_raw(bytes: &[u8]) -> Result<Option<Message>, WireError> {
    let (mut a, mut b) = tokio::io::duplex(1 << 16);
    a.write_all(bytes).await.unwrap();
    drop(a);
    read_message(&mut b).await
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

#[tokio::test]
async fn bad_input_is_a_typed_error() {
    // Oversized length: refused before reading (or allocating) the payload.
    let over = ((MAX_FRAME + 1) as u32).to_be_bytes();
    assert!(matches!(
        read_raw(&over).await,
        Err(WireError::FrameTooLarge { .. })
    ));
    // Garbage that happens to look like a huge length.
    assert!(matches!(
        read_raw(b"GET / HTTP/1.1\r\n").await,
        Err(WireError::FrameTooLarge { .. })
    ));
    // Truncated header and truncated payload.
    assert!(matches!(
        read_raw(&[0, 0]).await,
        Err(WireError::Truncated { expected: 4, got: 2 })
    ));
    let mut cut = frame(br#"{"type":"ping","body":{"n":1}}"#);
    cut.truncate(10);
    assert!(matches!(read_raw(&cut).await, Err(WireError::Truncated { .. })));
    // Not JSON, binary garbage, empty payload.
    assert!(matches!(
        read_raw(&frame(b"{not json")).await,
        Err(WireError::InvalidJson(_))
    ));
    assert!(matches!(
        read_raw(&frame(&[0xff, 0xfe, 0, 1])).await,
        Err(WireError::InvalidJson(_))
    ));
    assert!(matches!(
        read_raw(&frame(b"")).await,
        Err(WireError::InvalidJson(_))
    ));
    // JSON, but not a message we know.
    let unknown = read_raw(&frame(br#"{"type":"launch","body":{}}"#)).await;
    assert!(
        matches!(unknown, Err(WireError::UnknownMessage(ref t)) if t == "launch"),
        "{unknown:?}"
    );
    assert!(matches!(
        read_raw(&frame(b"[1,2]")).await,
        Err(WireError::MalformedMessage { .. })
    ));
    let bad = read_raw(&frame(br#"{"type":"confirm","body":{"serial":"x"}}"#)).await;
    assert!(
        matches!(bad, Err(WireError::MalformedMessage { ref kind, .. }) if kind == "confirm"),
        "{bad:?}"
    );
    let bad_plan = read_raw(&frame(br#"{"type":"plan","body":{"envelope":1}}"#)).await;
    assert!(matches!(bad_plan, Err(WireError::MalformedMessage { .. })));
}

#[tokio::test]
async fn oversized_message_is_refused_on_send() {
    let big = report(&"x".repeat(MAX_FRAME));
    let (mut a, _b) = tokio::io::duplex(64);
    assert!(matches!(
        write_message(&mut a, &big).await,
        Err(WireError::FrameTooLarge { .. })
    ));
}

fn report(message: &str) -> Message {
    Message::Report(Box::new(Report {
        seq: 1,
        host: "router".into(),
        serial: Some(3),
        commit: None,
        outcome: Outcome::Applied,
        message: message.into(),
        changes: vec![],
        at: 0,
    }))
}
