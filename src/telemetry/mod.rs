//! Logs and metrics. `metrics.rs` is the only place metric names exist; everyone else calls its
//! functions. Logs go through `tracing`, pretty for people or JSON for collectors. [`Settled`]
//! is how far a role has caught up with the clock, for its gauge and its owner.

pub mod metrics;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::problems::Problems;

/// The `[telemetry]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub log_format: LogFormat,
    pub log_filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_format: LogFormat::Pretty,
            log_filter: "info".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Config {
    pub fn validate(&self, problems: &mut Problems) {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_filter) {
            problems.push(format!("telemetry.log_filter: {e}"));
        }
    }
}

/// Installs the global log subscriber. `RUST_LOG`, when set, overrides `log_filter`.
pub fn init_logs(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in a file or a log collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A subscriber may already be installed (tests); keep it.
    drop(result);
}

/// An error and its causes on one line (`outer: cause: root cause`), for logs and records that
/// carry an error as text. Errors here never hold a URL or a secret.
/// At most one log line per period for a kind of event that may come in floods; the next line
/// says how many were left out. Time is passed in.
pub struct LogLimit {
    period: std::time::Duration,
    state: std::sync::Mutex<(Option<tokio::time::Instant>, u64)>,
}

impl LogLimit {
    pub fn new(period: std::time::Duration) -> Self {
        LogLimit {
            period,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// `Some(left out since the last line)` when a line may be logged at `now`.
    pub fn allow(&self, now: tokio::time::Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (last, suppressed) = &mut *state;
        match last {
            Some(at) if now < *at + self.period => {
                *suppressed += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(suppressed))
            }
        }
    }
}

/// The clock time (Unix ms) up to which a role has settled: the `now` of its last round in which
/// everything due by then was done and acknowledged by Kafka — for the processor every timer
/// fired on partitions consumed to their end, for the delivery worker every due attempt made and
/// its outcome recorded. Each role also exports it as a gauge; this copy belongs to one role
/// instance, for code that runs the daemon in its own process and cannot tell one daemon's
/// gauge from another's (the integration tests, whose daemons share one metrics registry).
/// Cheap to clone; every clone is the same watermark.
#[derive(Clone, Debug)]
pub struct Settled(Arc<AtomicI64>);

impl Default for Settled {
    fn default() -> Self {
        Settled(Arc::new(AtomicI64::new(i64::MIN)))
    }
}

impl Settled {
    /// The clock time settled up to; `None` before the role's first settled round.
    pub fn up_to(&self) -> Option<i64> {
        match self.0.load(Ordering::Acquire) {
            i64::MIN => None,
            now_ms => Some(now_ms),
        }
    }

    pub(crate) fn record(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::Release);
    }
}

/// What a caught panic said, for the log.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant;

    #[test]
    fn a_flood_is_logged_once_a_period_with_the_count_left_out() {
        let limit = LogLimit::new(Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(limit.allow(t), Some(0));
        for i in 1..=99 {
            assert_eq!(limit.allow(t + Duration::from_millis(i * 5)), None);
        }
        assert_eq!(limit.allow(t + Duration::from_secs(1)), Some(99));
        assert_eq!(limit.allow(t + Duration::from_millis(1500)), None);
        assert_eq!(limit.allow(t + Duration::from_secs(3)), Some(1));
    }
}
