//! Time and budgets for the forge client: an injectable clock (so tests wait
//! in zero time), the retry policy, and the write budget (token buckets).

use std::fmt::Debug;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the client reads the time and how it waits. Tests use a clock whose
/// `sleep` only advances its own time.
pub trait Clock: Send + Sync + Debug {
    /// Monotonic time since an arbitrary origin.
    fn now(&self) -> Duration;
    /// Wall-clock Unix seconds (for `x-ratelimit-reset`).
    fn unix_secs(&self) -> u64;
    /// Wait this long.
    fn sleep(&self, d: Duration);
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn unix_secs(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Retries, waits and the write budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Retries after the first attempt (rate limits, 5xx, transport errors).
    pub max_retries: u32,
    /// The longest single wait the client accepts; a forge asking for more
    /// (`retry-after`, `x-ratelimit-reset`) is an error instead of a stall.
    pub max_wait: Duration,
    /// First backoff after a 5xx or a transport error (doubles each time).
    pub backoff: Duration,
    /// Wait when a 429 (or a 403 that says "rate limit") gives no hint.
    pub default_rate_wait: Duration,
    /// Writes (comment create/edit, status, commit comment) per minute.
    pub writes_per_minute: u32,
    /// Writes per hour.
    pub writes_per_hour: u32,
    /// Timeout of one HTTP exchange.
    pub timeout: Duration,
}

impl Default for Limits {
    /// Well under GitHub's secondary limits (80 content-creating requests a
    /// minute, 500 an hour): 30 a minute and 300 an hour.
    fn default() -> Self {
        Limits {
            max_retries: 4,
            max_wait: Duration::from_secs(120),
            backoff: Duration::from_secs(1),
            default_rate_wait: Duration::from_secs(60),
            writes_per_minute: 30,
            writes_per_hour: 300,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A token bucket: `capacity` tokens, refilled evenly over `period`.
#[derive(Debug)]
pub(crate) struct Bucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Duration,
}

impl Bucket {
    pub(crate) fn new(capacity: u32, period: Duration, now: Duration) -> Bucket {
        let capacity = f64::from(capacity.max(1));
        Bucket {
            capacity,
            per_sec: capacity / period.as_secs_f64().max(1e-9),
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Duration) {
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_sec).min(self.capacity);
        self.last = now;
    }

    /// How long until one token is there (zero: now).
    pub(crate) fn wait(&mut self, now: Duration) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec)
        }
    }

    pub(crate) fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

/// The write budget: a per-minute and a per-hour bucket, both must have a
/// token.
#[derive(Debug)]
pub(crate) struct WriteBudget {
    minute: Bucket,
    hour: Bucket,
}

impl WriteBudget {
    pub(crate) fn new(limits: &Limits, now: Duration) -> WriteBudget {
        WriteBudget {
            minute: Bucket::new(limits.writes_per_minute, Duration::from_secs(60), now),
            hour: Bucket::new(limits.writes_per_hour, Duration::from_secs(3600), now),
        }
    }

    /// Take a token now, or say how long to wait for one.
    pub(crate) fn try_take(&mut self, now: Duration) -> Result<(), Duration> {
        let wait = self.minute.wait(now).max(self.hour.wait(now));
        if wait.is_zero() {
            self.minute.take();
            self.hour.take();
            Ok(())
        } else {
            // Round up so the next try finds the token there.
            Err(wait + Duration::from_millis(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_refills_at_its_rate() {
        let limits = Limits {
            writes_per_minute: 3,
            writes_per_hour: 100,
            ..Limits::default()
        };
        let mut b = WriteBudget::new(&limits, Duration::ZERO);
        for _ in 0..3 {
            assert_eq!(b.try_take(Duration::ZERO), Ok(()));
        }
        let wait = b.try_take(Duration::ZERO).unwrap_err();
        assert!(
            wait >= Duration::from_secs(20) && wait < Duration::from_secs(21),
            "{wait:?}"
        );
        assert!(b.try_take(Duration::from_secs(19)).is_err());
        assert_eq!(b.try_take(Duration::from_secs(21)), Ok(()));
    }

    #[test]
    fn the_hourly_bucket_binds_too() {
        let limits = Limits {
            writes_per_minute: 100,
            writes_per_hour: 2,
            ..Limits::default()
        };
        let mut b = WriteBudget::new(&limits, Duration::ZERO);
        assert!(b.try_take(Duration::ZERO).is_ok());
        assert!(b.try_take(Duration::ZERO).is_ok());
        let wait = b.try_take(Duration::ZERO).unwrap_err();
        assert!(wait >= Duration::from_secs(1800), "{wait:?}");
    }
}
