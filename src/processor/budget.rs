//! How many wall-clock timers the processor may fire: `processor.max_timers_per_second` is a
//! rate over real time, so a backlog that came due at once (the processor was down, or the
//! clock jumped) drains at that rate instead of in one round. A token bucket: credit accrues
//! at the rate, up to one second's worth, and each timer fired spends one. Fractions carry over
//! from round to round, so short rounds neither round the rate up nor starve it. Time is passed
//! in.

use std::time::Duration;

use tokio::time::Instant;

/// At most this long of unused rate is kept: the largest burst is one second's worth.
const BURST: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(super) struct TimerBudget {
    per_second: f64,
    credit: f64,
    at: Instant,
}

impl TimerBudget {
    /// A budget of `per_second` timers a second, full at `now`.
    pub(super) fn new(per_second: u32, now: Instant) -> Self {
        let per_second = f64::from(per_second);
        TimerBudget {
            per_second,
            credit: per_second * BURST.as_secs_f64(),
            at: now,
        }
    }

    /// How many timers may fire at `now`.
    pub(super) fn available(&mut self, now: Instant) -> usize {
        let accrued = self.per_second * now.saturating_duration_since(self.at).as_secs_f64();
        self.credit = (self.credit + accrued).min(self.per_second * BURST.as_secs_f64());
        self.at = self.at.max(now);
        self.credit.floor() as usize
    }

    /// `fired` timers were fired (at most what [`TimerBudget::available`] allowed).
    pub(super) fn spend(&mut self, fired: usize) {
        self.credit = (self.credit - fired as f64).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fires as many as allowed at each of `rounds` (offsets from `start`), returns the total.
    fn drain(
        budget: &mut TimerBudget,
        start: Instant,
        rounds: impl Iterator<Item = Duration>,
    ) -> usize {
        rounds
            .map(|offset| {
                let fired = budget.available(start + offset);
                budget.spend(fired);
                fired
            })
            .sum()
    }

    #[test]
    fn a_full_budget_allows_one_seconds_worth_at_once() {
        let start = Instant::now();
        let mut budget = TimerBudget::new(10, start);
        assert_eq!(budget.available(start), 10);
        budget.spend(10);
        assert_eq!(budget.available(start), 0);
    }

    #[test]
    fn short_rounds_fire_the_rate_and_not_more() {
        let start = Instant::now();
        let mut budget = TimerBudget::new(10, start);
        let full = budget.available(start);
        budget.spend(full);
        // Two rounds a second for ten seconds: 100, where rounding each round up gave 120.
        let rounds = (1..=20).map(|i| Duration::from_millis(500 * i));
        assert_eq!(drain(&mut budget, start, rounds), 100);
    }

    #[test]
    fn a_rate_below_one_per_round_still_fires_at_that_rate() {
        let start = Instant::now();
        let mut budget = TimerBudget::new(1, start);
        let full = budget.available(start);
        budget.spend(full);
        // Four rounds a second for eight seconds: 8, where "at least one a round" gave 32.
        let rounds = (1..=32).map(|i| Duration::from_millis(250 * i));
        assert_eq!(drain(&mut budget, start, rounds), 8);
    }

    #[test]
    fn unused_rate_is_kept_for_one_second_at_most() {
        let start = Instant::now();
        let mut budget = TimerBudget::new(10, start);
        budget.spend(10);
        assert_eq!(budget.available(start + Duration::from_secs(60)), 10);
    }

    #[test]
    fn a_clock_read_out_of_order_adds_nothing() {
        let start = Instant::now() + Duration::from_secs(5);
        let mut budget = TimerBudget::new(10, start);
        budget.spend(10);
        assert_eq!(budget.available(start - Duration::from_secs(1)), 0);
        assert_eq!(budget.available(start + Duration::from_millis(300)), 3);
    }
}
