//! Signed envelopes: every way a plan can be wrong is refused, with its reason.

// Test code: a panic is a failed test with its reason.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use warren_plan::{sign, verify, Plan, SignedPlan, VerifyError};

fn plan(host: &str) -> Plan {
    Plan {
        sysctls: BTreeMap::from([("net.ipv4.ip_forward".into(), "1".into())]),
        notes: vec!["n".into()],
        ..Plan::empty(host)
    }
}

fn key(b: u8) -> SigningKey {
    SigningKey::from_bytes(&[b; 32])
}

fn signed(host: &str, serial: u64) -> SignedPlan {
    sign(plan(host), serial, "abc123", 60, 1_700_000_000, &key(1))
}

#[test]
fn good_plan_verifies() {
    let sp = signed("router", 5);
    assert_eq!(verify(&sp, &[key(1).verifying_key()], "router", Some(4)), Ok(()));
    assert_eq!(verify(&sp, &[key(1).verifying_key()], "router", None), Ok(()));
    // Any of several trusted keys (key rotation).
    assert_eq!(
        verify(
            &sp,
            &[key(9).verifying_key(), key(1).verifying_key()],
            "router",
            None
        ),
        Ok(())
    );
}

#[test]
fn tampered_plan_is_refused() {
    let mut sp = signed("router", 5);
    sp.plan.sysctls.insert("net.ipv4.ip_forward".into(), "0".into());
    assert_eq!(
        verify(&sp, &[key(1).verifying_key()], "router", None),
        Err(VerifyError::HashMismatch)
    );
}

#[test]
fn tampered_envelope_is_refused() {
    let mut sp = signed("router", 5);
    sp.envelope.serial = 99;
    assert_eq!(
        verify(&sp, &[key(1).verifying_key()], "router", None),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn untrusted_signer_is_refused() {
    let sp = signed("router", 5);
    assert_eq!(
        verify(&sp, &[key(2).verifying_key()], "router", None),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(verify(&sp, &[], "router", None), Err(VerifyError::BadSignature));
}

#[test]
fn unsigned_or_garbled_signature_is_refused() {
    let mut sp = signed("router", 5);
    sp.signature = String::new();
    assert_eq!(
        verify(&sp, &[key(1).verifying_key()], "router", None),
        Err(VerifyError::MalformedSignature)
    );
    sp.signature = "!!!".into();
    assert_eq!(
        verify(&sp, &[key(1).verifying_key()], "router", None),
        Err(VerifyError::MalformedSignature)
    );
}

#[test]
fn wrong_host_is_refused() {
    let sp = signed("gateway", 5);
    assert_eq!(
        verify(&sp, &[key(1).verifying_key()], "router", None),
        Err(VerifyError::WrongHost {
            plan: "gateway".into(),
            me: "router".into()
        })
    );
}

#[test]
fn replayed_and_old_serials_are_refused() {
    let sp = signed("router", 5);
    assert_eq!(
        verify(&sp, &[key(1).verifying_key()], "router", Some(5)),
        Err(VerifyError::OldSerial { got: 5, last: 5 })
    );
    assert_eq!(
        verify(&sp, &[key(1).verifying_key()], "router", Some(7)),
        Err(VerifyError::OldSerial { got: 5, last: 7 })
    );
}

#[test]
fn unknown_format_is_refused() {
    let mut sp = signed("router", 5);
    sp.envelope.format = 2;
    assert_eq!(
        verify(&sp, &[key(1).verifying_key()], "router", None),
        Err(VerifyError::Format(2))
    );
}

#[test]
fn wire_form_round_trips_and_garbage_is_an_error() {
    let sp = signed("router", 5);
    let bytes = warren_plan::canonical(&sp);
    let back: SignedPlan = serde_json::from_slice(&bytes).expect("round trip");
    assert_eq!(back, sp);
    assert_eq!(
        verify(&back, &[key(1).verifying_key()], "router", Some(4)),
        Ok(())
    );
    // Unknown fields, truncation and wrong types are errors, never panics.
    let text = String::from_utf8(bytes).expect("utf8");
    let extra = text.replacen("{\"envelope\":{", "{\"envelope\":{\"evil\":1,", 1);
    assert!(serde_json::from_str::<SignedPlan>(&extra).is_err());
    for cut in [0, 1, text.len() / 2, text.len() - 1] {
        assert!(serde_json::from_str::<SignedPlan>(&text[..cut]).is_err());
    }
    assert!(serde_json::from_str::<SignedPlan>("{\"envelope\":1}").is_err());
}

#[test]
fn encoding_is_deterministic() {
    let a = signed("router", 5);
    let b = signed("router", 5);
    assert_eq!(warren_plan::canonical(&a), warren_plan::canonical(&b));
    assert_eq!(a.signature, b.signature, "ed25519 signatures are deterministic");
    assert_eq!(warren_plan::hash_hex(&a.plan).len(), 64);
}
