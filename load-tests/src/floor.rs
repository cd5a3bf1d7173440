//! The floor under the completeness check: how the ingress must answer. The topics alone cannot
//! tell a healthy daemon from one that refuses work — a valid request answered 401 leaves no
//! record and so expects none — so every answer is held to what the request deserved: a valid
//! request is acknowledged (2xx), a forged one refused with 401.
//!
//! The one exception is a disruption the run states (`--disruption FROM..TO`, seconds from the
//! start of the first phase, e.g. a broker killed and restarted): a request that overlaps that
//! window may instead be answered 503 or 504, or not within the driver's timeout, for at most
//! `--max-disrupted-share` of the requests overlapping it. Outside the window nothing is excused.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a stated disruption may disturb the answers, from the start of the first phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    #[serde(with = "seconds")]
    pub from: Duration,
    #[serde(with = "seconds")]
    pub to: Duration,
}

impl FromStr for Window {
    type Err = String;

    /// `FROM..TO` in humantime, e.g. `4s..45s`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (from, to) = text
            .split_once("..")
            .ok_or_else(|| format!("{text:?} is not FROM..TO, e.g. 4s..45s"))?;
        let parse = |part: &str| {
            humantime::parse_duration(part.trim()).map_err(|e| format!("{part:?}: {e}"))
        };
        let window = Window {
            from: parse(from)?,
            to: parse(to)?,
        };
        if window.from >= window.to {
            return Err(format!("{text:?}: the window must end after it starts"));
        }
        Ok(window)
    }
}

/// What the run excuses: nothing, or some answers within a stated disruption.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Allowance {
    pub window: Option<Window>,
    /// The largest share of the requests overlapping `window` that may be excused.
    pub max_share: f64,
}

impl Allowance {
    /// No disruption: every request is answered as it deserves.
    pub const NONE: Allowance = Allowance {
        window: None,
        max_share: 0.0,
    };
}

/// How one request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// No answer within the driver's timeout.
    TimedOut,
    /// The connection failed or broke.
    Failed(String),
}

impl Answer {
    /// The label the report counts answers by.
    pub fn label(&self) -> String {
        match self {
            Answer::Status(status) => status.to_string(),
            Answer::TimedOut => "timed out".to_string(),
            Answer::Failed(error) => format!("error: {error}"),
        }
    }

    pub fn acknowledged(&self) -> bool {
        matches!(self, Answer::Status(200..=299))
    }

    /// What a disruption of the broker may cause: the ingress gave up waiting for Kafka (504),
    /// refused because Kafka failed (503), or did not answer in time.
    fn disruption_may_cause(&self) -> bool {
        matches!(self, Answer::Status(503 | 504) | Answer::TimedOut)
    }
}

/// One request's place in time, from the start of the first phase.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub sent: Duration,
    pub answered: Duration,
}

impl Span {
    fn overlaps(self, window: Window) -> bool {
        self.sent <= window.to && self.answered >= window.from
    }
}

/// The answers of a run, counted against the floor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Requests signed with the tenant's secret (each deserves a 2xx).
    pub valid: u64,
    pub acknowledged: u64,
    /// Requests signed with a wrong secret (each deserves a 401).
    pub forged: u64,
    pub forged_refused: u64,
    /// Requests (valid or forged) whose time overlaps the disruption window.
    pub in_window: u64,
    /// Requests in the window answered 503, 504 or not in time instead of as they deserved.
    pub excused: u64,
    /// When the first and the last excused request were sent (seconds into the run): where the
    /// disruption was felt, for setting the window.
    pub excused_from_s: Option<f64>,
    pub excused_to_s: Option<f64>,
    /// Answers below the floor, by `valid`/`forged` and the answer, e.g. `valid: 401`.
    pub broken: BTreeMap<String, u64>,
}

impl Tally {
    pub fn note(&mut self, allowance: &Allowance, valid: bool, span: Span, answer: &Answer) {
        let in_window = allowance.window.is_some_and(|w| span.overlaps(w));
        self.in_window += u64::from(in_window);
        let deserved = if valid {
            self.valid += 1;
            answer.acknowledged()
        } else {
            self.forged += 1;
            *answer == Answer::Status(401)
        };
        match (valid, deserved) {
            (true, true) => self.acknowledged += 1,
            (false, true) => self.forged_refused += 1,
            _ if in_window && answer.disruption_may_cause() => {
                self.excused += 1;
                let at = span.sent.as_secs_f64();
                self.excused_from_s = Some(self.excused_from_s.map_or(at, |s| s.min(at)));
                self.excused_to_s = Some(self.excused_to_s.map_or(at, |s| s.max(at)));
            }
            _ => {
                let kind = if valid { "valid" } else { "forged" };
                *self
                    .broken
                    .entry(format!("{kind}: {}", answer.label()))
                    .or_default() += 1;
            }
        }
    }

    /// Why the answers fall below the floor; empty when they do not.
    pub fn problems(&self, allowance: &Allowance) -> Vec<String> {
        let mut problems = Vec::new();
        if self.acknowledged == 0 {
            problems.push("no valid request was acknowledged".to_string());
        }
        if !self.broken.is_empty() {
            let answers: Vec<String> = self
                .broken
                .iter()
                .map(|(answer, n)| format!("{answer} × {n}"))
                .collect();
            problems.push(format!(
                "{} requests not answered as they deserve (valid: 2xx, forged: 401){}: {}",
                self.broken.values().sum::<u64>(),
                if allowance.window.is_some() {
                    " outside what the disruption window excuses"
                } else {
                    ""
                },
                answers.join(", ")
            ));
        }
        let allowed = (allowance.max_share * self.in_window as f64).floor() as u64;
        if self.excused > allowed {
            problems.push(format!(
                "{} of the {} requests overlapping the disruption window answered 503, 504 or \
                 not in time: more than the stated share {} allows ({allowed})",
                self.excused, self.in_window, allowance.max_share
            ));
        }
        problems
    }
}

/// Durations as fractional seconds in the report.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let seconds = f64::deserialize(d)?;
        Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(sent: u64, answered: u64) -> Span {
        Span {
            sent: Duration::from_secs(sent),
            answered: Duration::from_secs(answered),
        }
    }

    fn failover(max_share: f64) -> Allowance {
        Allowance {
            window: Some("5s..20s".parse().unwrap()),
            max_share,
        }
    }

    #[test]
    fn acknowledged_valid_and_refused_forged_requests_pass() {
        let mut tally = Tally::default();
        tally.note(&Allowance::NONE, true, span(1, 1), &Answer::Status(200));
        tally.note(&Allowance::NONE, false, span(1, 1), &Answer::Status(401));
        assert!(tally.problems(&Allowance::NONE).is_empty(), "{tally:?}");
        assert_eq!((tally.acknowledged, tally.forged_refused), (1, 1));
    }

    #[test]
    fn a_valid_request_refused_with_401_breaks_the_floor() {
        let mut tally = Tally::default();
        for _ in 0..19 {
            tally.note(&Allowance::NONE, true, span(1, 1), &Answer::Status(200));
        }
        tally.note(&Allowance::NONE, true, span(1, 1), &Answer::Status(401));
        let problems = tally.problems(&Allowance::NONE);
        assert_eq!(tally.broken.get("valid: 401"), Some(&1));
        assert!(problems[0].contains("valid: 401 × 1"), "{problems:?}");
    }

    #[test]
    fn a_forged_request_must_be_refused_with_401() {
        let mut tally = Tally::default();
        tally.note(&Allowance::NONE, true, span(1, 1), &Answer::Status(200));
        tally.note(&Allowance::NONE, false, span(1, 1), &Answer::Status(200));
        tally.note(&Allowance::NONE, false, span(1, 1), &Answer::Status(400));
        assert_eq!(tally.broken.len(), 2, "{tally:?}");
        assert_eq!(tally.problems(&Allowance::NONE).len(), 1);
    }

    #[test]
    fn without_a_window_a_503_or_a_timeout_breaks_the_floor() {
        let mut tally = Tally::default();
        tally.note(&Allowance::NONE, true, span(1, 1), &Answer::Status(200));
        tally.note(&Allowance::NONE, true, span(1, 1), &Answer::Status(503));
        tally.note(&Allowance::NONE, true, span(1, 31), &Answer::TimedOut);
        assert_eq!(tally.excused, 0);
        assert_eq!(tally.broken.values().sum::<u64>(), 2);
        assert!(!tally.problems(&Allowance::NONE).is_empty());
    }

    #[test]
    fn a_504_overlapping_the_window_is_excused_and_one_outside_it_is_not() {
        let allowance = failover(0.7);
        let mut tally = Tally::default();
        tally.note(&allowance, true, span(1, 2), &Answer::Status(200));
        // Sent before the window, answered within it: it overlaps.
        tally.note(&allowance, true, span(3, 6), &Answer::Status(504));
        tally.note(&allowance, true, span(10, 10), &Answer::Status(200));
        tally.note(&allowance, true, span(11, 41), &Answer::TimedOut);
        assert_eq!((tally.in_window, tally.excused), (3, 2));
        assert_eq!(
            (tally.excused_from_s, tally.excused_to_s),
            (Some(3.0), Some(11.0))
        );
        assert!(tally.problems(&allowance).is_empty(), "{tally:?}");

        tally.note(&allowance, true, span(25, 26), &Answer::Status(504));
        assert_eq!(tally.broken.get("valid: 504"), Some(&1));
        assert!(!tally.problems(&allowance).is_empty());
    }

    #[test]
    fn within_the_window_only_what_a_disruption_causes_is_excused() {
        let allowance = failover(1.0);
        let mut tally = Tally::default();
        tally.note(&allowance, true, span(6, 6), &Answer::Status(200));
        tally.note(&allowance, true, span(6, 6), &Answer::Status(401));
        tally.note(&allowance, true, span(6, 6), &Answer::Status(500));
        tally.note(
            &allowance,
            true,
            span(6, 6),
            &Answer::Failed("reset".into()),
        );
        assert_eq!(tally.excused, 0);
        assert_eq!(tally.broken.len(), 3, "{tally:?}");
    }

    #[test]
    fn excused_answers_past_the_stated_share_break_the_floor() {
        let allowance = failover(0.25);
        let mut tally = Tally::default();
        for _ in 0..3 {
            tally.note(&allowance, true, span(8, 8), &Answer::Status(200));
        }
        tally.note(&allowance, true, span(8, 9), &Answer::Status(503));
        assert!(
            tally.problems(&allowance).is_empty(),
            "one of four is the share"
        );
        tally.note(&allowance, true, span(8, 9), &Answer::Status(503));
        let problems = tally.problems(&allowance);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("2 of the 5"), "{problems:?}");
    }

    #[test]
    fn a_run_with_nothing_acknowledged_fails() {
        let mut tally = Tally::default();
        tally.note(&Allowance::NONE, false, span(1, 1), &Answer::Status(401));
        assert_eq!(tally.problems(&Allowance::NONE).len(), 1);
    }

    #[test]
    fn windows_are_read_as_from_dot_dot_to() {
        let window: Window = "4s..1m".parse().unwrap();
        assert_eq!(
            (window.from, window.to),
            (Duration::from_secs(4), Duration::from_secs(60))
        );
        assert!("30s..4s".parse::<Window>().is_err());
        assert!("4s".parse::<Window>().is_err());
    }
}
