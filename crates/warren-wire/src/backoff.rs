//! Reconnect delays: exponential, capped, jittered.

use crate::{dial_with, Connection, Options};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;
use tokio::net::ToSocketAddrs;

/// Exponential backoff: the base delay starts at `min` and doubles after each
/// [`next_delay`](Backoff::next_delay) up to `max`; each delay is drawn
/// uniformly from `[base/2, base]` so peers that lost the same link do not
/// retry in step. [`reset`](Backoff::reset) after a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    base: Duration,
    rng: u64,
}

impl Backoff {
    /// `min` is raised to at least 1 ms and `max` to at least `min`.
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        let max = max.max(min);
        // Seed from the process's random hasher keys and the clock.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        Backoff {
            min,
            max,
            base: min,
            rng: h.finish() | 1,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The delay before the next attempt; grows the base for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base;
        self.base = base.checked_mul(2).unwrap_or(self.max).min(self.max);
        let half = base / 2;
        let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = match span.checked_add(1) {
            Some(m) => self.next_random() % m,
            None => self.next_random(),
        };
        (base - half) + Duration::from_nanos(jitter)
    }

    /// Back to `min` (call after a successful connection).
    pub fn reset(&mut self) {
        self.base = self.min;
    }
}

/// [`dial_with`] until it succeeds, sleeping [`Backoff::next_delay`] between
/// attempts (each failure is logged); resets `backoff` on success. Never
/// gives up: bound it with `tokio::time::timeout` or `select!` if needed.
pub async fn dial_with_backoff<A>(
    addr: A,
    identity: &SigningKey,
    expected_server_key: VerifyingKey,
    opts: &Options,
    backoff: &mut Backoff,
) -> Connection
where
    A: ToSocketAddrs + Clone + std::fmt::Debug,
{
    loop {
        match dial_with(addr.clone(), identity.clone(), expected_server_key, opts).await {
            Ok(c) => {
                backoff.reset();
                return c;
            }
            Err(e) => {
                let d = backoff.next_delay();
                tracing::info!(addr = ?addr, "dial failed: {e}; retrying in {d:?}");
                tokio::time::sleep(d).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_jitters_and_resets() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut b = Backoff::new(min, max);
        let mut base = min;
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(
                d >= base / 2 && d <= base,
                "{d:?} not in [{:?}, {base:?}]",
                base / 2
            );
            assert!(d <= max);
            base = (base * 2).min(max);
        }
        b.reset();
        assert!(b.next_delay() <= min);
        // Degenerate inputs do not panic.
        let mut z = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert!(z.next_delay() <= Duration::from_millis(1));
        let mut huge = Backoff::new(Duration::MAX, Duration::MAX);
        let _ = huge.next_delay();
        let _ = huge.next_delay();
    }
}
