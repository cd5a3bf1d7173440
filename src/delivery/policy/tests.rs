//! Every delivery rule, with time given explicitly and the jitter's draw fixed: no broker, no
//! HTTP, no sleeping.

use std::time::{Duration, UNIX_EPOCH};

use super::*;

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
/// 2026-10-21T07:26:40Z.
const NOW: i64 = 1_792_567_600_000;
/// The jitter's draw that moves nothing.
const MIDDLE: f64 = 0.5;

const DELAYS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(60),
    Duration::from_secs(300),
];

fn schedule() -> Schedule<'static> {
    Schedule {
        delays: &DELAYS,
        jitter: 0.1,
        max_retry_after: Duration::from_secs(3600),
    }
}

fn deadlines() -> Deadlines {
    Deadlines {
        abandoned_candidate: Duration::from_secs(24 * 3600),
        order_completed: Duration::from_secs(72 * 3600),
    }
}

fn job(event: &str, occurred_ms: i64) -> Job {
    Job {
        transition_id: "0".repeat(32),
        tenant: "acme".to_string(),
        endpoint: "crm".to_string(),
        event: event.to_string(),
        cart: "cart-1".to_string(),
        body: "{}".to_string(),
        occurred_ms,
        created_ms: occurred_ms,
        attempts: 0,
        next_ms: occurred_ms,
        last_status: None,
        last_error: None,
        superseded: false,
    }
}

/// After the `attempts`-th attempt, no order having come meanwhile.
fn after(attempts: u32) -> Progress {
    Progress {
        attempts,
        superseded: false,
    }
}

fn answered(status: u16) -> Attempt {
    Attempt::Answered {
        status,
        retry_after: None,
    }
}

fn asking_to_wait(status: u16, wait: RetryAfter) -> Attempt {
    Attempt::Answered {
        status,
        retry_after: Some(wait),
    }
}

const SERVING: Endpoint = Endpoint {
    configured: true,
    disabled: false,
};

fn decide(progress: Progress, attempt: Attempt) -> Decision {
    after_attempt(progress, attempt, schedule(), NOW, MIDDLE)
}

// After an attempt.

#[test]
fn any_2xx_is_delivered() {
    for status in [200, 201, 204, 299] {
        assert_eq!(decide(after(1), answered(status)), Decision::Delivered);
    }
    assert_eq!(decide(after(3), answered(200)), Decision::Delivered);
}

#[test]
fn a_2xx_is_delivered_even_when_an_order_came_during_the_attempt() {
    let superseded = Progress {
        attempts: 1,
        superseded: true,
    };
    assert_eq!(decide(superseded, answered(200)), Decision::Delivered);
}

#[test]
fn gone_disables_the_endpoint_on_any_attempt() {
    assert_eq!(decide(after(1), answered(410)), Decision::Disable);
    assert_eq!(decide(after(3), answered(410)), Decision::Disable);
    let superseded = Progress {
        attempts: 1,
        superseded: true,
    };
    assert_eq!(decide(superseded, answered(410)), Decision::Disable);
}

#[test]
fn a_failure_is_retried_after_the_schedules_next_delay() {
    for attempt in [
        answered(500),
        answered(404),
        answered(301),
        answered(100),
        Attempt::NoAnswer,
    ] {
        assert_eq!(
            decide(after(1), attempt),
            Decision::RetryAt(NOW + MINUTE),
            "{attempt:?}"
        );
        assert_eq!(
            decide(after(2), attempt),
            Decision::RetryAt(NOW + 5 * MINUTE),
            "{attempt:?}"
        );
    }
}

#[test]
fn a_failure_of_the_last_attempt_of_the_schedule_is_dead_lettered_as_exhausted() {
    for attempt in [answered(500), answered(429), Attempt::NoAnswer] {
        assert_eq!(
            decide(after(3), attempt),
            Decision::DeadLetter(Reason::Exhausted),
            "{attempt:?}"
        );
    }
}

#[test]
fn a_refused_destination_is_dead_lettered_at_once_not_retried() {
    assert_eq!(
        decide(after(1), Attempt::Refused),
        Decision::DeadLetter(Reason::Refused)
    );
    // A timeout on the same attempt is retried: the refusal alone ends it.
    assert_eq!(
        decide(after(1), Attempt::NoAnswer),
        Decision::RetryAt(NOW + MINUTE)
    );
}

#[test]
fn a_failure_after_an_order_came_during_the_attempt_is_superseded() {
    let superseded = Progress {
        attempts: 1,
        superseded: true,
    };
    for attempt in [answered(500), Attempt::NoAnswer, Attempt::Refused] {
        assert_eq!(
            decide(superseded, attempt),
            Decision::Superseded,
            "{attempt:?}"
        );
    }
    let last = Progress {
        attempts: 3,
        superseded: true,
    };
    assert_eq!(decide(last, answered(500)), Decision::Superseded);
}

#[test]
fn retry_after_on_429_or_503_holds_the_next_attempt_back() {
    let wait = RetryAfter::Delay(Duration::from_secs(120));
    for status in [429, 503] {
        assert_eq!(
            decide(after(1), asking_to_wait(status, wait)),
            Decision::RetryAt(NOW + 2 * MINUTE),
            "{status}"
        );
    }
}

#[test]
fn retry_after_shorter_than_the_schedule_changes_nothing() {
    let wait = RetryAfter::Delay(Duration::from_secs(10));
    assert_eq!(
        decide(after(1), asking_to_wait(429, wait)),
        Decision::RetryAt(NOW + MINUTE)
    );
}

#[test]
fn retry_after_on_other_statuses_is_ignored() {
    let wait = RetryAfter::Delay(Duration::from_secs(600));
    for status in [500, 502, 400] {
        assert_eq!(
            decide(after(1), asking_to_wait(status, wait)),
            Decision::RetryAt(NOW + MINUTE),
            "{status}"
        );
    }
}

#[test]
fn retry_after_as_a_date_counts_from_now() {
    // 2026-10-21T07:28:00Z, 80 s after NOW.
    let at = RetryAfter::At(UNIX_EPOCH + Duration::from_millis((NOW + 80 * SECOND) as u64));
    assert_eq!(
        decide(after(1), asking_to_wait(503, at)),
        Decision::RetryAt(NOW + 80 * SECOND)
    );
    let later = RetryAfter::At(UNIX_EPOCH + Duration::from_millis((NOW + 4 * MINUTE) as u64));
    assert_eq!(
        decide(after(1), asking_to_wait(429, later)),
        Decision::RetryAt(NOW + 4 * MINUTE)
    );
    let past = RetryAfter::At(UNIX_EPOCH + Duration::from_millis((NOW - HOUR) as u64));
    assert_eq!(
        decide(after(1), asking_to_wait(429, past)),
        Decision::RetryAt(NOW + MINUTE)
    );
}

#[test]
fn retry_after_is_capped_by_max_retry_after() {
    let wait = RetryAfter::Delay(Duration::from_secs(24 * 3600));
    assert_eq!(
        decide(after(1), asking_to_wait(429, wait)),
        Decision::RetryAt(NOW + HOUR)
    );
}

#[test]
fn retry_after_does_not_extend_the_schedule() {
    let wait = RetryAfter::Delay(Duration::from_secs(120));
    assert_eq!(
        decide(after(3), asking_to_wait(429, wait)),
        Decision::DeadLetter(Reason::Exhausted)
    );
}

#[test]
fn the_jitter_draw_moves_the_delay_within_its_fraction() {
    let at = |unit| after_attempt(after(1), answered(500), schedule(), NOW, unit);
    assert_eq!(at(0.0), Decision::RetryAt(NOW + 54 * SECOND));
    assert_eq!(at(1.0), Decision::RetryAt(NOW + 66 * SECOND));
}

#[test]
fn jitter_stays_within_its_fraction() {
    for step in 0..=100 {
        let d = jittered(Duration::from_secs(60), 0.1, f64::from(step) / 100.0);
        assert!(
            d >= Duration::from_secs(54) && d <= Duration::from_secs(66),
            "{d:?}"
        );
    }
    assert_eq!(jittered(Duration::ZERO, 0.1, 0.0), Duration::ZERO);
    assert_eq!(
        jittered(Duration::from_secs(60), 0.0, 1.0),
        Duration::from_secs(60)
    );
}

#[test]
fn only_a_2xx_or_a_410_counts_for_the_endpoints_circuit() {
    assert!(Decision::Delivered.endpoint_answered());
    assert!(Decision::Disable.endpoint_answered());
    assert!(!Decision::Superseded.endpoint_answered());
    assert!(!Decision::DeadLetter(Reason::Exhausted).endpoint_answered());
    assert!(!Decision::RetryAt(NOW).endpoint_answered());
}

#[test]
fn each_decision_records_its_outcome_and_counts_its_attempt() {
    for (decision, outcome, label) in [
        (Decision::Delivered, "delivered", "delivered"),
        (Decision::Disable, "dead_lettered", "dead_lettered"),
        (Decision::Superseded, "superseded", "failed"),
        (
            Decision::DeadLetter(Reason::Exhausted),
            "dead_lettered",
            "dead_lettered",
        ),
        (Decision::RetryAt(NOW), "failed", "failed"),
    ] {
        assert_eq!(decision.outcome(), outcome, "{decision:?}");
        assert_eq!(decision.attempt_label(), label, "{decision:?}");
    }
}

#[test]
fn client_errors_are_read_as_refused_or_no_answer() {
    let refused = client::Error::Refused("127.0.0.1".to_string());
    assert_eq!(Attempt::of(&Err(refused)), Attempt::Refused);
    assert_eq!(Attempt::of(&Err(client::Error::Timeout)), Attempt::NoAnswer);
    assert_eq!(
        Attempt::of(&Err(client::Error::Unparsable)),
        Attempt::NoAnswer
    );
    let answer = Answer {
        status: 429,
        retry_after: Some(RetryAfter::Delay(Duration::from_secs(5))),
    };
    assert_eq!(
        Attempt::of(&Ok(answer)),
        asking_to_wait(429, RetryAfter::Delay(Duration::from_secs(5)))
    );
}

// Before an attempt.

#[test]
fn a_due_job_of_a_serving_endpoint_within_its_deadline_is_attempted() {
    let job = job("abandoned_candidate", NOW - HOUR);
    assert_eq!(before_attempt(&job, SERVING, &deadlines(), NOW), None);
}

#[test]
fn an_abandonment_older_than_its_deadline_expires_and_is_dead_lettered() {
    let job = job("abandoned_candidate", NOW - 24 * HOUR - 1);
    let end = before_attempt(&job, SERVING, &deadlines(), NOW);
    assert_eq!(end, Some(End::Expired));
    assert_eq!(End::Expired.outcome(), "expired");
    assert_eq!(End::Expired.dead_letter(), Some(Reason::Expired));
}

#[test]
fn an_abandonment_exactly_at_its_deadline_is_still_attempted() {
    let job = job("abandoned_candidate", NOW - 24 * HOUR);
    assert_eq!(before_attempt(&job, SERVING, &deadlines(), NOW), None);
}

#[test]
fn an_order_has_its_own_longer_deadline() {
    let day_and_more = job("order_completed", NOW - 25 * HOUR);
    assert_eq!(
        before_attempt(&day_and_more, SERVING, &deadlines(), NOW),
        None
    );
    let too_old = job("order_completed", NOW - 72 * HOUR - 1);
    assert_eq!(
        before_attempt(&too_old, SERVING, &deadlines(), NOW),
        Some(End::Expired)
    );
}

#[test]
fn a_job_of_a_disabled_endpoint_is_skipped_without_a_dead_letter() {
    let job = job("abandoned_candidate", NOW);
    let disabled = Endpoint {
        configured: true,
        disabled: true,
    };
    assert_eq!(
        before_attempt(&job, disabled, &deadlines(), NOW),
        Some(End::SkippedDisabled)
    );
    assert_eq!(End::SkippedDisabled.outcome(), "skipped_disabled");
    assert_eq!(End::SkippedDisabled.dead_letter(), None);
}

#[test]
fn a_job_whose_endpoint_left_the_registry_is_dead_lettered() {
    let job = job("abandoned_candidate", NOW);
    let removed = Endpoint {
        configured: false,
        disabled: true,
    };
    assert_eq!(
        before_attempt(&job, removed, &deadlines(), NOW),
        Some(End::EndpointRemoved)
    );
    assert_eq!(End::EndpointRemoved.outcome(), "dead_lettered");
    assert_eq!(
        End::EndpointRemoved.dead_letter(),
        Some(Reason::EndpointRemoved)
    );
}

#[test]
fn a_job_marked_superseded_ends_superseded_before_anything_else() {
    let mut job = job("abandoned_candidate", NOW - 30 * 24 * HOUR);
    job.superseded = true;
    let removed = Endpoint {
        configured: false,
        disabled: true,
    };
    assert_eq!(
        before_attempt(&job, removed, &deadlines(), NOW),
        Some(End::Superseded)
    );
    assert_eq!(End::Superseded.outcome(), "superseded");
    assert_eq!(End::Superseded.dead_letter(), None);
}

#[test]
fn a_disabled_endpoint_is_skipped_before_expiry_is_considered() {
    let job = job("abandoned_candidate", NOW - 30 * 24 * HOUR);
    let disabled = Endpoint {
        configured: true,
        disabled: true,
    };
    assert_eq!(
        before_attempt(&job, disabled, &deadlines(), NOW),
        Some(End::SkippedDisabled)
    );
}

// Supersession.

#[test]
fn only_an_order_supersedes_pending_abandonments() {
    assert!(supersedes_abandonments(Bucket::OrderCompleted));
    assert!(!supersedes_abandonments(Bucket::AbandonedCandidate));
    assert!(!supersedes_abandonments(Bucket::Other));
}

#[test]
fn a_pending_abandonment_is_ended_at_once_or_marked_while_in_the_air() {
    assert_eq!(supersede(false), Supersession::End);
    assert_eq!(supersede(true), Supersession::Mark);
}

#[test]
fn dead_letter_reasons_are_the_schemas_words() {
    let words: Vec<&str> = [
        Reason::Exhausted,
        Reason::Refused,
        Reason::Expired,
        Reason::Gone,
        Reason::EndpointRemoved,
    ]
    .iter()
    .map(|r| r.as_str())
    .collect();
    assert_eq!(
        words,
        [
            "exhausted",
            "refused",
            "expired",
            "gone",
            "endpoint_removed"
        ]
    );
}
