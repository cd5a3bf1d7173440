//! Attempts: due jobs start within the global and per-endpoint limits and the circuits, each
//! as a task that reports its answer to the loop; the delivery rules ([`policy`]) decide what
//! an answer means, and the loop performs it — the job's next state and its outcome records in
//! one write.

use std::collections::HashMap;
use std::time::Duration;

use super::{Batch, EndpointKey, Error, Worker};
use crate::delivery::client::{self, Answer};
use crate::delivery::policy::{self, Attempt, Decision, Progress, Schedule};
use crate::delivery::records::{dead_letter, outcome_record, Recorded};
use crate::delivery::sign;
use crate::delivery::store::{self, Change, Job, OutboxRecord};
use crate::telemetry::{error_chain, metrics};
use crate::topics::dead_letter::Reason;

/// What came back from one attempt.
pub(super) struct Attempted {
    job: Job,
    result: Result<Answer, client::Error>,
    took: Duration,
}

impl Worker {
    /// Starts attempts for due jobs, within the global and per-endpoint limits and the
    /// circuits; ends jobs that expired or whose endpoint is gone or disabled.
    pub(super) fn dispatch(&mut self) -> Result<(), Error> {
        let room_total = self
            .config
            .max_in_flight_requests
            .saturating_sub(self.in_flight.len());
        if room_total == 0 {
            return Ok(());
        }
        let now = self.clock.now_millis();
        // Endpoints that cannot take a request now, and what each other one has room for: the
        // scan passes over their jobs instead of letting them fill the batch.
        let limit = self.config.max_in_flight_per_endpoint;
        let mut room: HashMap<Vec<u8>, usize> = HashMap::new();
        for ((tenant, endpoint), breaker) in &self.breakers {
            if breaker.is_open(now) {
                room.insert(endpoint_prefix(tenant, endpoint), 0);
            }
        }
        for ((tenant, endpoint), busy) in &self.per_endpoint {
            let prefix = endpoint_prefix(tenant, endpoint);
            let left = limit.saturating_sub(*busy);
            room.entry(prefix)
                .and_modify(|r| *r = (*r).min(left))
                .or_insert(left);
        }
        let in_flight = &self.in_flight;
        // Look past what is in flight and a few batches more, no further.
        let scan = self.in_flight.len() + 4 * room_total;
        let due = self.store.due(now, room_total, scan, |key| {
            if in_flight.contains(key) {
                return true;
            }
            let left = room
                .entry(store::endpoint_of(key).to_vec())
                .or_insert(limit);
            if *left == 0 {
                return true;
            }
            *left -= 1;
            false
        })?;
        let mut batch = Batch::default();
        for job in due {
            let standing = self.standing(&job);
            if let Some(end) = policy::before_attempt(&job, standing, &self.config.deadlines, now) {
                self.end(job, end, &mut batch, now);
                continue;
            }
            let endpoint_key = (job.tenant.clone(), job.endpoint.clone());
            if self.endpoint_admits(&endpoint_key, now) {
                self.start(job, endpoint_key);
            }
        }
        if !batch.is_empty() {
            batch.write(&mut self.store, now)?;
        }
        Ok(())
    }

    /// Starts the first attempts of jobs just stored, where their endpoint has room now —
    /// without scanning the schedule; the others wait for the next dispatch.
    pub(super) fn start_ready(&mut self, jobs: Vec<Job>) {
        let now = self.clock.now_millis();
        for job in jobs {
            if self.in_flight.len() >= self.config.max_in_flight_requests {
                return;
            }
            let endpoint_key = (job.tenant.clone(), job.endpoint.clone());
            if self.endpoint_admits(&endpoint_key, now) {
                self.start(job, endpoint_key);
            }
        }
    }

    /// Whether the endpoint may take one more request now: it is below its in-flight limit and
    /// its circuit admits it (a half-open circuit lets its one probe through).
    fn endpoint_admits(&mut self, endpoint_key: &EndpointKey, now: i64) -> bool {
        let busy = self.per_endpoint.get(endpoint_key).copied().unwrap_or(0);
        busy < self.config.max_in_flight_per_endpoint
            && self
                .breakers
                .entry(endpoint_key.clone())
                .or_default()
                .admits(now)
    }

    fn start(&mut self, job: Job, endpoint_key: EndpointKey) {
        let Some(endpoint) = self.endpoint(&job.tenant, &job.endpoint) else {
            return;
        };
        let url = endpoint.url.clone();
        let timestamp = (self.clock.now_millis() / 1000).max(0) as u64;
        let signature = sign(
            &self.config.header_prefix,
            &job.event,
            &job.transition_id,
            timestamp,
            job.body.as_bytes(),
            &endpoint.secrets,
        );
        self.in_flight.insert(job.key());
        *self.per_endpoint.entry(endpoint_key).or_default() += 1;
        metrics::delivery_in_flight(self.in_flight.len());
        let client = self.client.clone();
        let results = self.results.clone();
        self.tracker.spawn(async move {
            let started = tokio::time::Instant::now();
            let body = job.body.clone().into_bytes();
            let result = client.post(&url, &signature.headers, body).await;
            let took = started.elapsed();
            // The receiver is the loop, which outlives every attempt it waits for.
            let _ = results.send(Attempted { job, result, took }).await;
        });
    }

    /// Records the answers in `answers` in one write.
    pub(super) fn finish_all(
        &mut self,
        answers: impl IntoIterator<Item = Attempted>,
    ) -> Result<(), Error> {
        let mut batch = Batch::default();
        for answer in answers {
            self.finish(answer, &mut batch)?;
        }
        batch.write(&mut self.store, self.clock.now_millis())?;
        Ok(())
    }

    /// Adds an attempt's outcome and the job's next state to `batch`.
    fn finish(&mut self, attempted: Attempted, batch: &mut Batch) -> Result<(), Error> {
        let Attempted {
            mut job,
            result,
            took,
        } = attempted;
        let key = job.key();
        let endpoint_key = (job.tenant.clone(), job.endpoint.clone());
        self.release(&key, &endpoint_key);
        // An order for the cart came while the request was in the air.
        let superseded = self
            .store
            .job(&key)?
            .is_some_and(|stored| stored.superseded);
        let now = self.clock.now_millis();
        job.attempts += 1;
        let (status, class, error) = match &result {
            Ok(answer) => (
                Some(answer.status),
                metrics::status_class(answer.status),
                None,
            ),
            Err(e) => (None, e.class(), Some(error_chain(e))),
        };
        job.last_status = status;
        job.last_error = error.clone();
        let decision = self.decide(&job, &result, superseded, now);
        self.tell_breaker(&endpoint_key, &decision, now);
        metrics::delivery_attempt(decision.attempt_label().as_str(), class, took);
        let next_ms = match decision {
            Decision::RetryAt(next_ms) => Some(next_ms),
            _ => None,
        };
        let outcome = outcome_record(
            Recorded {
                job: &job,
                outcome: decision.outcome(),
                status,
                class: Some(class),
                took: Some(took),
                error,
                next_ms,
            },
            now,
        );
        self.perform(job, decision, outcome, endpoint_key, batch, now)
    }

    /// Frees the attempt's place among those in flight, overall and at its endpoint.
    fn release(&mut self, key: &[u8], endpoint_key: &EndpointKey) {
        self.in_flight.remove(key);
        if let Some(busy) = self.per_endpoint.get_mut(endpoint_key) {
            *busy = busy.saturating_sub(1);
        }
        metrics::delivery_in_flight(self.in_flight.len());
    }

    /// What the delivery rules make of an attempt's `result`, under the endpoint's schedule
    /// (or the configured one).
    fn decide(
        &self,
        job: &Job,
        result: &Result<Answer, client::Error>,
        superseded: bool,
        now: i64,
    ) -> Decision {
        let schedule = self
            .endpoint(&job.tenant, &job.endpoint)
            .and_then(|e| e.retry_schedule.clone())
            .unwrap_or_else(|| self.config.retry_schedule.clone());
        let schedule = Schedule {
            delays: &schedule,
            jitter: self.config.jitter,
            max_retry_after: self.config.max_retry_after,
        };
        let progress = Progress {
            attempts: job.attempts,
            superseded,
        };
        policy::after_attempt(progress, Attempt::of(result), schedule, now, random_unit())
    }

    /// Counts the attempt on the endpoint's circuit breaker: whether the endpoint answered.
    fn tell_breaker(&mut self, endpoint_key: &EndpointKey, decision: &Decision, now: i64) {
        let breaker = self.breakers.entry(endpoint_key.clone()).or_default();
        if decision.endpoint_answered() {
            breaker.succeeded();
        } else {
            breaker.failed(
                now,
                self.config.circuit_failures,
                self.config.circuit_open_for,
            );
        }
    }

    /// Performs `decision` on `job`: finishes it (dead-lettered or not, disabling a gone
    /// endpoint) or schedules its retry, with its outcome record in `batch`.
    fn perform(
        &mut self,
        mut job: Job,
        decision: Decision,
        outcome: OutboxRecord,
        endpoint_key: EndpointKey,
        batch: &mut Batch,
        now: i64,
    ) -> Result<(), Error> {
        let records = &mut batch.records;
        records.push(outcome);
        let change = match decision {
            Decision::Delivered | Decision::Superseded => Change::Finish { job, dead: false },
            Decision::Disable => {
                tracing::warn!(
                    tenant = %job.tenant,
                    endpoint = %job.endpoint,
                    "the endpoint answered 410 Gone: disabled"
                );
                self.store.disable(&job.tenant, &job.endpoint, now)?;
                self.disabled.insert(endpoint_key);
                records.push(dead_letter(&job, Reason::Gone, now));
                Change::Finish { job, dead: true }
            }
            Decision::DeadLetter(reason) => {
                records.push(dead_letter(&job, reason, now));
                Change::Finish { job, dead: true }
            }
            Decision::RetryAt(next_ms) => {
                job.next_ms = next_ms;
                Change::Schedule(job)
            }
        };
        batch.changes.push(change);
        Ok(())
    }
}

fn endpoint_prefix(tenant: &str, endpoint: &str) -> Vec<u8> {
    [tenant.as_bytes(), endpoint.as_bytes()].join(&0u8)
}

/// A uniform draw in `[0, 1]` that places a retry's jitter (the middle, when the system has no
/// randomness to give).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u32::from_le_bytes(bytes) as f64 / u32::MAX as f64,
        Err(_) => 0.5,
    }
}
