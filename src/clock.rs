//! Wall-clock time enters the daemon here and nowhere else.
//!
//! Signature windows (Standard Webhooks, ShopiMind) and the `received-at` header need the
//! wall clock; tests need to move it. Everything that reads the time takes a [`Clock`].
//! Times the daemon writes into its records are [`rfc3339`] of Unix milliseconds, and read back
//! with [`parse_rfc3339`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, cheap to clone.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The operating system's clock.
    System,
    /// A clock that only moves when told to (tests, benches).
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// A manual clock set to `unix_seconds` after the epoch.
    pub fn manual(unix_seconds: u64) -> Self {
        Clock::Manual(Arc::new(AtomicU64::new(unix_seconds * 1_000)))
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        match self {
            #[allow(clippy::disallowed_methods)] // the one place the wall clock is read
            Clock::System => SystemTime::now(),
            Clock::Manual(millis) => {
                UNIX_EPOCH + Duration::from_millis(millis.load(Ordering::Relaxed))
            }
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> i64 {
        unix_millis(self.now())
    }

    /// Moves a manual clock forward; does nothing to the system clock.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(millis) = self {
            millis.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
        }
    }
}

/// Milliseconds between the Unix epoch and `at` (negative before it).
pub fn unix_millis(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// `ms` since the Unix epoch as RFC 3339 in UTC with milliseconds (`2026-11-02T10:00:00.250Z`);
/// a time chrono cannot represent is written as the epoch.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An RFC 3339 time, at any offset, as milliseconds since the Unix epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, chrono::ParseError> {
    chrono::DateTime::parse_from_rfc3339(text).map(|at| at.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_utc_with_milliseconds_and_read_back() {
        assert_eq!(rfc3339(1_793_613_600_250), "2026-11-02T10:00:00.250Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(i64::MAX), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_rfc3339("2026-11-02T10:00:00.250Z"),
            Ok(1_793_613_600_250)
        );
        assert_eq!(
            parse_rfc3339("2026-11-02T12:00:00.250+02:00"),
            Ok(1_793_613_600_250)
        );
        assert!(parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = Clock::manual(1_700_000_000);
        assert_eq!(clock.now_millis(), 1_700_000_000_000);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now_millis(), 1_700_000_005_000);
    }
}
