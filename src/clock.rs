//! Wall-clock time enters the daemon here and nowhere else.
//!
//! Signature windows (Standard Webhooks, ShopiMind) and the `received-at` header need the
//! wall clock; tests need to move it. Everything that reads the time takes a [`Clock`].

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = Clock::manual(1_700_000_000);
        assert_eq!(clock.now_millis(), 1_700_000_000_000);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now_millis(), 1_700_000_005_000);
    }
}
