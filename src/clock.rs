//! Time, injected. Every reading of the wall clock or of a monotonic timer in Sésame goes through
//! this module so that tests can move time by hand and no rule depends on the machine's clock.
//! clippy's `disallowed-methods` (see `clippy.toml`) forbids the direct calls everywhere else.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant, in UTC.
    fn now(&self) -> OffsetDateTime;

    /// The current instant as whole seconds since the Unix epoch (the storage representation).
    fn unix_now(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to: for tests and simulations.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// A manual clock set to a fixed, arbitrary instant (2026-09-01 08:00:00 UTC, a rentrée).
    pub fn at_rentree() -> Self {
        Self::new(time::macros::datetime!(2026-09-01 08:00:00 UTC))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }

    pub fn set(&self, to: OffsetDateTime) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Measures elapsed time for latency metrics and start-up reports. Monotonic, so it is not
/// affected by wall-clock changes; never used for expiry rules (those use [`Clock`]).
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    started: Instant,
}

impl Stopwatch {
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Formats an instant as RFC 3339 (`2026-09-01T08:00:00Z`), for CLI output and audit records.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Converts stored Unix seconds back into an instant (out-of-range values clamp to the epoch).
pub fn from_unix(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::at_rentree();
        let before = clock.now();
        assert_eq!(clock.now(), before);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now() - before, time::Duration::seconds(90));
        assert_eq!(clock.unix_now(), before.unix_timestamp() + 90);
    }

    #[test]
    fn rfc3339_is_utc_with_seconds() {
        let clock = ManualClock::at_rentree();
        assert_eq!(rfc3339(clock.now()), "2026-09-01T08:00:00Z");
        assert_eq!(from_unix(clock.unix_now()), clock.now());
    }
}
