//! The circuit breaker of one endpoint: open after consecutive failed attempts, then one probe
//! once the open period is over; the probe's success closes it. Times are the wall clock's Unix
//! milliseconds, so tests move them with the manual clock.

use std::time::Duration;

/// The circuit of one endpoint.
#[derive(Debug, Default)]
pub(super) struct Breaker {
    failures: u32,
    /// Until when (Unix ms) the circuit is open, once it opened.
    open_until: Option<i64>,
    /// Whether the one probe request is under way.
    probing: bool,
}

impl Breaker {
    /// Whether no request may go now: open, or its one probe under way. (Past the open period
    /// with no probe yet, the next request is the probe.)
    pub(super) fn is_open(&self, now_ms: i64) -> bool {
        self.open_until
            .is_some_and(|until| now_ms < until || self.probing)
    }

    /// Whether a request may go now; lets one probe through once the open period is over.
    pub(super) fn admits(&mut self, now_ms: i64) -> bool {
        match self.open_until {
            None => true,
            Some(until) if now_ms >= until && !self.probing => {
                self.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    pub(super) fn succeeded(&mut self) {
        *self = Breaker::default();
    }

    pub(super) fn failed(&mut self, now_ms: i64, threshold: u32, open_for: Duration) {
        self.failures += 1;
        self.probing = false;
        if self.failures >= threshold {
            self.open_until = Some(now_ms + open_for.as_millis() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_consecutive_failures_and_lets_one_probe_through() {
        let mut breaker = Breaker::default();
        let open_for = Duration::from_secs(30);
        for _ in 0..2 {
            assert!(breaker.admits(0));
            breaker.failed(0, 3, open_for);
        }
        assert!(breaker.admits(0));
        breaker.failed(0, 3, open_for);
        assert!(breaker.is_open(1_000));
        assert!(!breaker.admits(1_000));
        assert!(
            !breaker.is_open(30_000),
            "past the open period, a probe may go"
        );
        assert!(breaker.admits(30_000), "a probe after the open period");
        assert!(!breaker.admits(30_001), "only one probe at a time");
        breaker.failed(30_002, 3, open_for);
        assert!(!breaker.admits(40_000));
        assert!(breaker.admits(60_002));
        breaker.succeeded();
        assert!(breaker.admits(60_003) && breaker.admits(60_004));
    }
}
