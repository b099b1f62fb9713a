#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]
//! Real SSH on 127.0.0.1 with ephemeral ports: both directions, key pinning
//! both ways, bad frames from an authenticated fake peer, killed and stalled
//! connections, version mismatch.

use ed25519_dalek::{SigningKey, VerifyingKey};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use warren_plan::{Plan, SignedPlan};
use warren_wire::{
    dial_with, listen_with, Connection, Listener, Message, Options, Outcome, Report, Side, WireError,
};

const T: Duration = Duration::from_secs(5);

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn opts() -> Options {
    Options {
        keepalive: Duration::from_secs(2),
        keepalive_max: 3,
        handshake_timeout: Duration::from_secs(3),
        auth_rejection_time: Duration::from_millis(10),
        ..Options::default()
    }
}

fn only(k: VerifyingKey, name: &str) -> impl Fn(&VerifyingKey) -> Option<String> + Send + Sync + 'static {
    let name = name.to_string();
    move |v: &VerifyingKey| (*v == k).then(|| name.clone())
}

async fn listen_as(id: &SigningKey, peer: VerifyingKey, peer_name: &str, o: Options) -> Listener {
    listen_with("127.0.0.1:0", id.clone(), only(peer, peer_name), o)
        .await
        .unwrap()
}

fn signed_plan(controller: &SigningKey) -> SignedPlan {
    let plan = Plan {
        sysctls: BTreeMap::from([("net.ipv4.ip_forward".to_string(), "1".to_string())]),
        notes: vec!["test".into()],
        ..Plan::empty("router")
    };
    warren_plan::sign(plan, 7, "abc123", 60, 1_700_000_000, controller)
}

/// The agent's half of a session: hello, keys, plan (verified), confirm, report.
async fn agent_side(mut c: Connection, controller: VerifyingKey) -> Vec<String> {
    let mut log = vec![];
    let peer = c.hello("router").await.unwrap();
    log.push(format!("hello {peer}"));
    c.send(Message::Keys {
        identity: "ssh-ed25519 AAAA".into(),
        wireguard: BTreeMap::new(),
    })
    .await
    .unwrap();
    match c.recv().await.unwrap() {
        Some(Message::Plan(sp)) => {
            warren_plan::verify(&sp, &[controller], "router", None).unwrap();
            log.push(format!("plan {}", sp.envelope.serial));
        }
        other => panic!("expected a plan, got {other:?}"),
    }
    match c.recv().await.unwrap() {
        Some(Message::Confirm { serial }) => log.push(format!("confirm {serial}")),
        other => panic!("expected confirm, got {other:?}"),
    }
    c.send(report(Outcome::Applied, "1 change")).await.unwrap();
    // The controller says bye and closes: a clean end.
    match c.recv().await.unwrap() {
        Some(Message::Bye { reason }) => log.push(format!("bye {reason}")),
        other => panic!("expected bye, got {other:?}"),
    }
    assert!(c.recv().await.unwrap().is_none());
    log
}

async fn controller_side(mut c: Connection, plan: SignedPlan) -> Vec<String> {
    let mut log = vec![];
    let peer = c.hello("controller").await.unwrap();
    log.push(format!("hello {peer}"));
    assert_eq!(c.peer(), "router");
    match c.recv().await.unwrap() {
        Some(Message::Keys { identity, .. }) => log.push(format!("keys {identity}")),
        other => panic!("expected keys, got {other:?}"),
    }
    c.send(Message::Plan(Box::new(plan))).await.unwrap();
    c.send(Message::Confirm { serial: 7 }).await.unwrap();
    match c.recv().await.unwrap() {
        Some(Message::Report(r)) => log.push(format!("report {}", r.outcome)),
        other => panic!("expected a report, got {other:?}"),
    }
    c.close("done").await;
    log
}

fn expected_logs() -> (Vec<String>, Vec<String>) {
    (
        vec![
            "hello controller".into(),
            "plan 7".into(),
            "confirm 7".into(),
            "bye done".into(),
        ],
        vec![
            "hello router".into(),
            "keys ssh-ed25519 AAAA".into(),
            "report applied".into(),
        ],
    )
}

#[tokio::test]
async fn controller_dials_agent() {
    let (ctl, agent) = (key(1), key(2));
    let l = listen_as(&agent, ctl.verifying_key(), "controller", opts()).await;
    let addr = l.local_addr();
    let a = tokio::spawn(async move {
        let c = l.accept().await.unwrap();
        assert_eq!((c.peer(), c.side()), ("controller", Side::Accepted));
        agent_side(c, key(1).verifying_key()).await
    });
    let c = dial_with(addr, ctl.clone(), agent.verifying_key(), &opts())
        .await
        .unwrap();
    assert_eq!(c.side(), Side::Dialed);
    assert_eq!(c.peer_key(), &agent.verifying_key());
    let clog = timeout(T, controller_side(c, signed_plan(&ctl))).await.unwrap();
    let alog = timeout(T, a).await.unwrap().unwrap();
    assert_eq!((alog, clog), expected_logs());
}

#[tokio::test]
async fn agent_dials_controller() {
    let (ctl, agent) = (key(3), key(4));
    let l = listen_as(&ctl, agent.verifying_key(), "router", opts()).await;
    let addr = l.local_addr();
    let plan = signed_plan(&ctl);
    let c = tokio::spawn(async move {
        let conn = l.accept().await.unwrap();
        assert_eq!(conn.peer(), "router");
        controller_side(conn, plan).await
    });
    let conn = dial_with(addr, agent, ctl.verifying_key(), &opts())
        .await
        .unwrap();
    let alog = timeout(T, agent_side(conn, ctl.verifying_key())).await.unwrap();
    let clog = timeout(T, c).await.unwrap().unwrap();
    assert_eq!((alog, clog), expected_logs());
}

#[tokio::test]
async fn unknown_client_key_is_refused() {
    let (server, good, stranger) = (key(5), key(6), key(7));
    let l = listen_as(&server, good.verifying_key(), "router", opts()).await;
    let r = dial_with(l.local_addr(), stranger, server.verifying_key(), &opts()).await;
    assert!(matches!(r, Err(WireError::AuthRefused)), "{r:?}");
    assert!(
        timeout(Duration::from_millis(100), l.accept()).await.is_err(),
        "nothing was accepted"
    );
    // The listener still serves the right key.
    let c = dial_with(l.local_addr(), good, server.verifying_key(), &opts())
        .await
        .unwrap();
    drop(c);
    assert_eq!(timeout(T, l.accept()).await.unwrap().unwrap().peer(), "router");
}

#[tokio::test]
async fn server_with_another_host_key_is_refused() {
    let (server, impostor, client) = (key(8), key(9), key(10));
    let l = listen_as(&impostor, client.verifying_key(), "router", opts()).await;
    let r = dial_with(l.local_addr(), client, server.verifying_key(), &opts()).await;
    assert!(matches!(r, Err(WireError::HostKeyMismatch { .. })), "{r:?}");
    assert!(timeout(Duration::from_millis(100), l.accept()).await.is_err());
}

#[tokio::test]
async fn version_mismatch_is_refused_with_a_reason() {
    let (server, client) = (key(11), key(12));
    let l = listen_as(&server, client.verifying_key(), "router", opts()).await;
    let addr = l.local_addr();
    let s = tokio::spawn(async move {
        let mut c = l.accept().await.unwrap();
        c.hello("controller").await
    });
    // A peer from the future: speaks version 99.
    let mut c = dial_with(addr, client, server.verifying_key(), &opts())
        .await
        .unwrap();
    c.send(Message::Hello {
        version: 99,
        host: "router".into(),
    })
    .await
    .unwrap();
    let theirs = timeout(T, c.recv()).await.unwrap().unwrap();
    assert_eq!(theirs, Some(Message::hello("controller")));
    match timeout(T, c.recv()).await.unwrap().unwrap() {
        Some(Message::Bye { reason }) => assert!(reason.contains("version 99"), "{reason}"),
        other => panic!("expected bye, got {other:?}"),
    }
    assert!(timeout(T, c.recv()).await.unwrap().unwrap().is_none());
    let r = timeout(T, s).await.unwrap().unwrap();
    assert!(
        matches!(r, Err(WireError::VersionMismatch { ours: 2, theirs: 99 })),
        "{r:?}"
    );
}

#[tokio::test]
async fn hello_under_another_hosts_name_is_refused() {
    let (server, client) = (key(13), key(14));
    let l = listen_as(&server, client.verifying_key(), "router", opts()).await;
    let addr = l.local_addr();
    let s = tokio::spawn(async move { l.accept().await.unwrap().hello("controller").await });
    let mut c = dial_with(addr, client, server.verifying_key(), &opts())
        .await
        .unwrap();
    let _ = c.hello("gateway").await;
    let r = timeout(T, s).await.unwrap().unwrap();
    assert!(matches!(r, Err(WireError::WrongHost { .. })), "{r:?}");
}

// ---- a fake peer: a plain russh client that writes raw bytes after auth ----

struct AnyServer;
impl russh::client::Handler for AnyServer {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, russh::Error> {
        Ok(true)
    }
}

type RawSession = (
    russh::Channel<russh::client::Msg>,
    russh::client::Handle<AnyServer>,
);

async fn raw_session(addr: SocketAddr, id: &SigningKey) -> RawSession {
    let cfg = Arc::new(russh::client::Config::default());
    let mut h = russh::client::connect(cfg, addr, AnyServer).await.unwrap();
    let pk = russh::keys::PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
        &id.to_bytes(),
    ));
    let auth = h
        .authenticate_publickey("x", russh::keys::PrivateKeyWithHashAlg::new(Arc::new(pk), None))
        .await
        .unwrap();
    assert!(auth.success());
    let ch = h.channel_open_session().await.unwrap();
    (ch, h)
}

/// Everything the server sends until it closes the channel.
async fn drain(mut ch: russh::Channel<russh::client::Msg>) -> String {
    let mut got = vec![];
    while let Some(m) = ch.wait().await {
        match m {
            russh::ChannelMsg::Data { data } => got.extend_from_slice(&data),
            russh::ChannelMsg::Close => break,
            _ => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn malformed_frames_close_only_their_session() {
    let (server, client) = (key(15), key(16));
    let l = listen_as(&server, client.verifying_key(), "router", opts()).await;
    let addr = l.local_addr();

    let mut cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage", b"\x00\x00\x00\x05\xff\xfe\x00\x01\x02".to_vec(), false),
        ("oversized length", vec![0x7f, 0xff, 0xff, 0xff, 1, 2, 3], false),
        ("invalid json", [&[0, 0, 0, 9][..], b"{not json"].concat(), false),
        (
            "unknown message",
            [&[0, 0, 0, 27][..], br#"{"type":"launch","body":{}}"#].concat(),
            false,
        ),
        (
            "truncated",
            [&[0, 0, 0, 100][..], b"{\"type\":".as_slice()].concat(),
            true,
        ),
    ];
    for (name, bytes, then_eof) in cases.drain(..) {
        let (ch, _session) = raw_session(addr, &client).await;
        let mut conn = timeout(T, l.accept()).await.unwrap().unwrap();
        ch.data_bytes(bytes).await.unwrap();
        if then_eof {
            ch.eof().await.unwrap();
        }
        let r = timeout(T, conn.recv())
            .await
            .unwrap_or_else(|_| panic!("{name}: hang"));
        let e = r.expect_err(name);
        assert!(e.is_protocol_violation(), "{name}: {e}");
        match name {
            "garbage" | "invalid json" => assert!(matches!(e, WireError::InvalidJson(_)), "{e}"),
            "oversized length" => assert!(matches!(e, WireError::FrameTooLarge { .. }), "{e}"),
            "unknown message" => assert!(matches!(e, WireError::UnknownMessage(_)), "{e}"),
            _ => assert!(matches!(e, WireError::Truncated { .. }), "{e}"),
        }
        assert!(
            conn.recv().await.unwrap().is_none(),
            "{name}: ended after the error"
        );
        assert!(
            conn.send(Message::Ping { n: 1 }).await.is_err(),
            "{name}: closed for sending"
        );
        // The fake peer is told why and its channel is closed.
        let said = timeout(T, drain(ch))
            .await
            .unwrap_or_else(|_| panic!("{name}: peer not closed"));
        assert!(said.contains("\"bye\""), "{name}: {said:?}");
    }

    // The listener is unaffected: a good client gets through.
    let s = tokio::spawn(async move {
        let mut c = l.accept().await.unwrap();
        let h = c.hello("controller").await.unwrap();
        c.send(Message::Confirm { serial: 1 }).await.unwrap();
        h
    });
    let mut c = dial_with(addr, client, server.verifying_key(), &opts())
        .await
        .unwrap();
    assert_eq!(
        timeout(T, c.hello("router")).await.unwrap().unwrap(),
        "controller"
    );
    assert_eq!(c.recv().await.unwrap(), Some(Message::Confirm { serial: 1 }));
    assert_eq!(timeout(T, s).await.unwrap().unwrap(), "router");
}

// ---- a TCP proxy we can cut or freeze ----

struct Proxy {
    addr: SocketAddr,
    frozen: Arc<AtomicBool>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn to(target: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (f, t) = (frozen.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((a, _)) = l.accept().await {
                let b = TcpStream::connect(target).await.unwrap();
                let (ar, aw) = a.into_split();
                let (br, bw) = b.into_split();
                let mut g = t.lock().unwrap();
                g.push(tokio::spawn(pipe(ar, bw, f.clone())));
                g.push(tokio::spawn(pipe(br, aw, f.clone())));
            }
        });
        tasks.lock().unwrap().push(accept);
        Proxy { addr, frozen, tasks }
    }

    /// Both sockets vanish, as when a process dies.
    fn kill(&self) {
        for t in self.tasks.lock().unwrap().iter() {
            t.abort();
        }
    }

    /// Bytes stop flowing but the sockets stay open, as when a link dies.
    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn pair_through_proxy(o: Options, seed: u8) -> (Proxy, Connection, Connection) {
    let (server, client) = (key(seed), key(seed + 1));
    let l = listen_as(&server, client.verifying_key(), "router", o.clone()).await;
    let p = Proxy::to(l.local_addr()).await;
    let s = tokio::spawn(async move {
        let mut c = l.accept().await.unwrap();
        c.hello("controller").await.unwrap();
        c
    });
    let mut c = dial_with(p.addr, client, server.verifying_key(), &o)
        .await
        .unwrap();
    c.hello("router").await.unwrap();
    let s = timeout(T, s).await.unwrap().unwrap();
    (p, s, c)
}

#[tokio::test]
async fn killed_connection_is_an_error_not_a_hang() {
    let (p, mut s, mut c) = pair_through_proxy(opts(), 17).await;
    c.send(Message::Confirm { serial: 1 }).await.unwrap();
    assert_eq!(
        timeout(T, s.recv()).await.unwrap().unwrap(),
        Some(Message::Confirm { serial: 1 })
    );
    p.kill();
    let rs = timeout(T, s.recv()).await.expect("server side hangs");
    let rc = timeout(T, c.recv()).await.expect("client side hangs");
    assert!(matches!(rs, Err(WireError::ConnectionLost)), "{rs:?}");
    assert!(matches!(rc, Err(WireError::ConnectionLost)), "{rc:?}");
    assert!(c.send(Message::Confirm { serial: 2 }).await.is_err());
}

#[tokio::test]
async fn silent_peer_is_detected_by_keepalive() {
    let o = Options {
        keepalive: Duration::from_millis(100),
        ..opts()
    };
    let (p, mut s, mut c) = pair_through_proxy(o, 19).await;
    // Idle but alive: pings keep it up past the dead-peer window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.send(Message::Confirm { serial: 1 }).await.unwrap();
    assert_eq!(
        timeout(T, s.recv()).await.unwrap().unwrap(),
        Some(Message::Confirm { serial: 1 })
    );
    p.freeze();
    let t0 = Instant::now();
    let rs = timeout(T, s.recv()).await.expect("server side hangs");
    let rc = timeout(T, c.recv()).await.expect("client side hangs");
    assert!(rs.is_err() && rc.is_err(), "{rs:?} {rc:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(1000),
        "took {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn large_messages_pass_and_oversized_ones_are_refused_without_closing() {
    let (server, client) = (key(21), key(22));
    let l = listen_as(&server, client.verifying_key(), "router", opts()).await;
    let addr = l.local_addr();
    let big = "p".repeat(7 * 1024 * 1024);
    let expect = big.clone();
    let s = tokio::spawn(async move {
        let mut c = l.accept().await.unwrap();
        c.hello("controller").await.unwrap();
        let (tx, mut rx) = c.split();
        let got = rx.recv().await.unwrap();
        assert_eq!(got, Some(report(Outcome::Drift, &expect)));
        tx.send(Message::Confirm { serial: 2 }).await.unwrap();
        // Dropping both halves closes the session cleanly.
    });
    let mut c = dial_with(addr, client, server.verifying_key(), &opts())
        .await
        .unwrap();
    c.hello("router").await.unwrap();
    let too_big = report(Outcome::Drift, &"x".repeat(warren_wire::MAX_FRAME));
    assert!(matches!(
        c.send(too_big).await,
        Err(WireError::FrameTooLarge { .. })
    ));
    timeout(T, c.send(report(Outcome::Drift, &big)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        timeout(T, c.recv()).await.unwrap().unwrap(),
        Some(Message::Confirm { serial: 2 })
    );
    match timeout(T, c.recv()).await.unwrap().unwrap() {
        Some(Message::Bye { reason }) => assert_eq!(reason, "connection dropped"),
        other => panic!("expected bye, got {other:?}"),
    }
    assert_eq!(timeout(T, c.recv()).await.unwrap().unwrap(), None);
    timeout(T, s).await.unwrap().unwrap();
}

fn report(outcome: Outcome, message: &str) -> Message {
    Message::Report(Box::new(Report {
        seq: 1,
        host: "router".into(),
        serial: Some(7),
        commit: Some("c0ffee".into()),
        outcome,
        message: message.into(),
        changes: vec![],
        at: 1_700_000_000,
    }))
}

/// Connections that never authenticate are capped per source address (and
/// in total): the excess is closed at once, and a slot comes back as soon as
/// a holder goes, so the legitimate peer gets in.
#[tokio::test]
async fn unauthenticated_connections_are_capped_and_the_excess_closed_at_once() {
    let (srv, cli) = (key(1), key(2));
    let o = Options {
        max_preauth_per_ip: 2,
        ..opts()
    };
    let l = listen_as(&srv, cli.verifying_key(), "agent", o.clone()).await;
    let addr = l.local_addr();
    let mut held = vec![];
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"SSH-2.0-x\r\n").await.unwrap();
        held.push(s);
    }
    // Give the accept loop time to count both.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra.write_all(b"SSH-2.0-x\r\n").await;
    let mut buf = [0u8; 64];
    let n = timeout(Duration::from_secs(1), extra.read(&mut buf))
        .await
        .expect("the excess connection is closed at once, not held")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an SSH banner");
    assert!(dial_with(addr, cli.clone(), srv.verifying_key(), &o)
        .await
        .is_err());
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = dial_with(addr, cli, srv.verifying_key(), &o).await.unwrap();
    let _s = timeout(T, l.accept()).await.unwrap().unwrap();
    drop(c);
}
