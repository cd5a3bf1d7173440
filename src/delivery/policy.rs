//! The delivery rules, pure: what becomes of a job before an attempt (superseded, endpoint
//! removed, endpoint disabled, expired) and after one (delivered, endpoint disabled by a 410,
//! superseded, dead-lettered, or tried again at a given time), given the job, the attempt's
//! result, the retry schedule and `now`. The worker performs the decisions; nothing here does
//! I/O, reads a clock or draws a random number (the jitter's draw is passed in).

use std::time::Duration;

use super::client::{self, Answer, RetryAfter};
use super::store::Job;
use super::Deadlines;
use crate::topics::dead_letter::Reason;
use crate::topics::event::Bucket;
use crate::topics::outcome::Outcome;

/// What one attempt came back with, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempt {
    /// The endpoint answered with an HTTP status (and perhaps a `Retry-After`).
    Answered {
        status: u16,
        retry_after: Option<RetryAfter>,
    },
    /// The destination is a private, loopback or link-local address that is not allow-listed:
    /// no request went out, and none later would either.
    Refused,
    /// No answer: a timeout, a failed connection or an unusable URL.
    NoAnswer,
}

impl Attempt {
    pub(super) fn of(result: &Result<Answer, client::Error>) -> Self {
        match result {
            Ok(answer) => Attempt::Answered {
                status: answer.status,
                retry_after: answer.retry_after,
            },
            Err(client::Error::Refused(_)) => Attempt::Refused,
            Err(_) => Attempt::NoAnswer,
        }
    }

    fn status(self) -> Option<u16> {
        match self {
            Attempt::Answered { status, .. } => Some(status),
            Attempt::Refused | Attempt::NoAnswer => None,
        }
    }
}

/// When to try again: the delays before each attempt and how they are moved.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule<'a> {
    /// The endpoint's own schedule, or `delivery.retry_schedule`; `delays[n]` comes before
    /// attempt `n + 1`.
    pub(super) delays: &'a [Duration],
    /// `delivery.jitter`: each delay moves by up to this fraction, either way.
    pub(super) jitter: f64,
    /// `delivery.max_retry_after`: the longest `Retry-After` honoured.
    pub(super) max_retry_after: Duration,
}

/// How a job ends without an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// An order for its cart came while its attempt was in the air, and the answer was lost.
    Superseded,
    /// Its endpoint is no longer configured (dead-lettered).
    EndpointRemoved,
    /// Its endpoint was disabled, by the operator or by a 410.
    SkippedDisabled,
    /// Older than its event's deadline (dead-lettered).
    Expired,
}

impl End {
    /// The `outcome` recorded.
    pub(super) fn outcome(self) -> Outcome {
        match self {
            End::Superseded => Outcome::Superseded,
            End::EndpointRemoved => Outcome::DeadLettered,
            End::SkippedDisabled => Outcome::SkippedDisabled,
            End::Expired => Outcome::Expired,
        }
    }

    /// Why it goes to the dead-letter topic, when it does.
    pub(super) fn dead_letter(self) -> Option<Reason> {
        match self {
            End::Superseded | End::SkippedDisabled => None,
            End::EndpointRemoved => Some(Reason::EndpointRemoved),
            End::Expired => Some(Reason::Expired),
        }
    }
}

/// What the worker knows of a job's endpoint when the job comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// It is still in the registry.
    pub(super) configured: bool,
    /// The operator disabled it, or it answered 410 and has not been enabled again.
    pub(super) disabled: bool,
}

/// Whether `job` ends now instead of being attempted: superseded, its endpoint removed or
/// disabled, or expired — in that order.
pub(super) fn before_attempt(
    job: &Job,
    endpoint: Endpoint,
    deadlines: &Deadlines,
    now_ms: i64,
) -> Option<End> {
    if job.superseded {
        Some(End::Superseded)
    } else if !endpoint.configured {
        Some(End::EndpointRemoved)
    } else if endpoint.disabled {
        Some(End::SkippedDisabled)
    } else if expired(job, deadlines, now_ms) {
        Some(End::Expired)
    } else {
        None
    }
}

/// Whether `job` is older than its event's deadline (counted from when the transition
/// happened, not from when it was read).
fn expired(job: &Job, deadlines: &Deadlines, now_ms: i64) -> bool {
    let deadline = if job.event == Bucket::OrderCompleted.as_str() {
        deadlines.order_completed
    } else {
        deadlines.abandoned_candidate
    };
    now_ms - job.occurred_ms > deadline.as_millis() as i64
}

/// Whether a transition of `bucket` supersedes its cart's pending abandonments.
pub(super) fn supersedes_abandonments(bucket: Bucket) -> bool {
    bucket == Bucket::OrderCompleted
}

/// What becomes of a pending abandonment superseded by an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Supersession {
    /// Its attempt is in the air: it is marked, and its answer (or its next due time) ends it.
    Mark,
    /// It ends now, `superseded`.
    End,
}

pub(super) fn supersede(in_flight: bool) -> Supersession {
    if in_flight {
        Supersession::Mark
    } else {
        Supersession::End
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// A 2xx: done.
    Delivered,
    /// A 410: disable the endpoint and dead-letter the job as `gone`.
    Disable,
    /// It failed, and an order for the cart came while it was in the air: done.
    Superseded,
    /// It failed, and no attempt is left worth making.
    DeadLetter(Reason),
    /// It failed: attempt again at this time (Unix ms).
    RetryAt(i64),
}

impl Decision {
    /// Whether the attempt counts for the endpoint's circuit (a 2xx or a deliberate 410) rather
    /// than against it.
    pub(super) fn endpoint_answered(self) -> bool {
        matches!(self, Decision::Delivered | Decision::Disable)
    }

    /// The `outcome` label of the attempt's metric: an attempt that failed counts as failed
    /// even when an order then ends its delivery as superseded.
    pub(super) fn attempt_label(self) -> Outcome {
        match self {
            Decision::Delivered => Outcome::Delivered,
            Decision::Disable | Decision::DeadLetter(_) => Outcome::DeadLettered,
            Decision::Superseded | Decision::RetryAt(_) => Outcome::Failed,
        }
    }

    /// The `outcome` recorded.
    pub(super) fn outcome(self) -> Outcome {
        match self {
            Decision::Delivered => Outcome::Delivered,
            Decision::Disable | Decision::DeadLetter(_) => Outcome::DeadLettered,
            Decision::Superseded => Outcome::Superseded,
            Decision::RetryAt(_) => Outcome::Failed,
        }
    }
}

/// Where a job stands once an attempt came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Progress {
    /// Attempts made, this one included.
    pub(super) attempts: u32,
    /// An order for its cart came while this attempt was in the air.
    pub(super) superseded: bool,
}

/// What to do after `attempt` for a job at `progress`, at `now_ms`; `unit` is a draw in
/// `[0, 1]` that places the jitter.
pub(super) fn after_attempt(
    job: Progress,
    attempt: Attempt,
    schedule: Schedule<'_>,
    now_ms: i64,
    unit: f64,
) -> Decision {
    match attempt.status() {
        Some(200..=299) => return Decision::Delivered,
        Some(410) => return Decision::Disable,
        _ => {}
    }
    if job.superseded {
        return Decision::Superseded;
    }
    // A refusal is the destination's address against our allow-list: retrying cannot change it
    // (a change of configuration and a redrive can).
    if attempt == Attempt::Refused {
        return Decision::DeadLetter(Reason::Refused);
    }
    if job.attempts as usize >= schedule.delays.len() {
        return Decision::DeadLetter(Reason::Exhausted);
    }
    let mut delay = jittered(
        schedule.delays[job.attempts as usize],
        schedule.jitter,
        unit,
    );
    if let Attempt::Answered {
        status: 429 | 503,
        retry_after: Some(wait),
    } = attempt
    {
        let wait = wait.delay_from(now_ms);
        delay = delay.max(wait.min(schedule.max_retry_after));
    }
    Decision::RetryAt(now_ms + delay.as_millis() as i64)
}

/// `delay` moved by up to `fraction` either way: `unit` 0 moves it the most down, 1 the most
/// up, 0.5 not at all.
pub(super) fn jittered(delay: Duration, fraction: f64, unit: f64) -> Duration {
    if delay.is_zero() || fraction <= 0.0 {
        return delay;
    }
    delay.mul_f64(1.0 + fraction * (2.0 * unit - 1.0))
}

#[cfg(test)]
mod tests;
