//! Attempts: due jobs start within the global and per-endpoint limits and the circuits, each
//! as a task that reports its answer to the loop; the delivery rules ([`policy`]) decide what
//! an answer means, and the loop performs it — the job's next state and its outcome records in
//! one write.

use std::collections::HashMap;
use std::time::Duration;

use foldhash::fast::RandomState;

use super::{Batch, EndpointKey, Error, Worker};
use crate::delivery::client::{self, Answer};
use crate::delivery::policy::{self, Attempt, Decision, Progress, Schedule};
use crate::delivery::records::{outcome_record, Recorded};
use crate::delivery::sign;
use crate::delivery::store::{self, Change, Job, OutboxRecord, Visit};
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
        let mut room: HashMap<Vec<u8>, usize, RandomState> = HashMap::default();
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
        let mut scan = Scan::new(room, limit, self.store.pending(), |endpoint| {
            self.store.pending_at(endpoint)
        });
        let in_flight = &self.in_flight;
        // Look past what is in flight and a few batches more, no further.
        let bound = self.in_flight.len() + 4 * room_total;
        let due = self
            .store
            .due_scan(now, room_total, bound, |key, pending_at| {
                scan.visit(key, pending_at, in_flight.contains(key))
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
        let superseded = self.store.superseded(&key)?;
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
        let delays = self
            .endpoint(&job.tenant, &job.endpoint)
            .and_then(|e| e.retry_schedule.as_deref())
            .unwrap_or(&self.config.retry_schedule);
        let schedule = Schedule {
            delays,
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
                records.push(self.dead_letter(&job, Reason::Gone, now));
                Change::Finish { job, dead: true }
            }
            Decision::DeadLetter(reason) => {
                records.push(self.dead_letter(&job, reason, now));
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

/// One dispatch's walk over the schedule: which due jobs start, within each endpoint's room,
/// and when nothing further on could start any more.
///
/// An endpoint's room is what it has left under its in-flight limit (none while its circuit is
/// open); an endpoint this dispatch has not met yet has the whole limit. The walk ends once
/// every pending job it has not looked at belongs to an endpoint without room: those entries
/// would all be passed over, so ending there starts exactly the jobs that walking on would.
struct Scan {
    /// Room per endpoint (`tenant \0 endpoint`), and how many of its pending jobs the walk
    /// has not looked at yet.
    endpoints: HashMap<Vec<u8>, Endpoint, RandomState>,
    /// The room of an endpoint met for the first time.
    limit: usize,
    /// Pending jobs not looked at yet whose endpoint has room: while there are none left,
    /// nothing further on can start.
    startable: u64,
}

/// An endpoint as one [`Scan`] sees it.
struct Endpoint {
    room: usize,
    unseen: u64,
}

impl Scan {
    /// A walk where the endpoints in `room` have that much room and every other one has
    /// `limit`; `pending` jobs are pending in all, `pending_at` of them at an endpoint.
    fn new(
        room: HashMap<Vec<u8>, usize, RandomState>,
        limit: usize,
        pending: u64,
        pending_at: impl Fn(&[u8]) -> u64,
    ) -> Self {
        let mut startable = pending;
        let endpoints = room
            .into_iter()
            .map(|(endpoint, room)| {
                let unseen = pending_at(&endpoint);
                if room == 0 {
                    startable = startable.saturating_sub(unseen);
                }
                (endpoint, Endpoint { room, unseen })
            })
            .collect();
        // With no room anywhere, only the endpoints listed could start anything.
        if limit == 0 {
            startable = 0;
        }
        Scan {
            endpoints,
            limit,
            startable,
        }
    }

    /// What to do with the due entry of `key`, whose endpoint has `pending_at` pending jobs
    /// and which is in flight already or not.
    fn visit(&mut self, key: &[u8], pending_at: u64, in_flight: bool) -> Visit {
        if self.startable == 0 {
            return Visit::Stop;
        }
        let name = store::endpoint_of(key);
        let endpoint = match self.endpoints.get_mut(name) {
            Some(endpoint) => endpoint,
            None => self.endpoints.entry(name.to_vec()).or_insert(Endpoint {
                room: self.limit,
                unseen: pending_at,
            }),
        };
        endpoint.unseen = endpoint.unseen.saturating_sub(1);
        if endpoint.room == 0 {
            return Visit::Pass;
        }
        self.startable = self.startable.saturating_sub(1);
        if in_flight {
            return Visit::Pass;
        }
        endpoint.room -= 1;
        if endpoint.room == 0 {
            self.startable = self.startable.saturating_sub(endpoint.unseen);
        }
        Visit::Take
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Walks `entries` (endpoint, in flight) in order the way `Store::due_scan` does, with
    /// `pending_at` counting every entry of an endpoint; which entries were taken, and how many
    /// were looked at.
    fn walk(
        entries: &[(&str, bool)],
        room: &[(&str, usize)],
        limit: usize,
        extra_pending: u64,
    ) -> (Vec<usize>, usize) {
        let key = |endpoint: &str, i: usize| store::key("acme", endpoint, &i.to_string());
        let pending_at = |endpoint: &[u8]| {
            entries
                .iter()
                .filter(|(e, _)| endpoint_prefix("acme", e) == endpoint)
                .count() as u64
        };
        let room = room
            .iter()
            .map(|(e, r)| (endpoint_prefix("acme", e), *r))
            .collect();
        let mut scan = Scan::new(
            room,
            limit,
            entries.len() as u64 + extra_pending,
            pending_at,
        );
        let mut taken = Vec::new();
        let mut looked = 0;
        for (i, (endpoint, in_flight)) in entries.iter().enumerate() {
            let key = key(endpoint, i);
            looked += 1;
            match scan.visit(&key, pending_at(store::endpoint_of(&key)), *in_flight) {
                Visit::Take => taken.push(i),
                Visit::Pass => {}
                Visit::Stop => break,
            }
        }
        (taken, looked)
    }

    /// What a walk to the end of `entries` takes: every entry not in flight whose endpoint
    /// still has room.
    fn taken_by_a_full_walk(
        entries: &[(&str, bool)],
        room: &[(&str, usize)],
        limit: usize,
    ) -> Vec<usize> {
        let mut left: HashMap<&str, usize> = room.iter().copied().collect();
        let mut taken = Vec::new();
        for (i, (endpoint, in_flight)) in entries.iter().enumerate() {
            let left = left.entry(endpoint).or_insert(limit);
            if !in_flight && *left > 0 {
                *left -= 1;
                taken.push(i);
            }
        }
        taken
    }

    #[test]
    fn the_walk_ends_once_the_only_endpoint_with_due_jobs_is_full() {
        // Seven in flight, one slot free, a thousand more waiting behind.
        let mut entries = vec![("crm", true); 7];
        entries.extend(vec![("crm", false); 1_000]);
        let (taken, looked) = walk(&entries, &[("crm", 1)], 8, 0);
        assert_eq!(taken, [7]);
        assert_eq!(looked, 9);
    }

    #[test]
    fn a_full_endpoint_does_not_hold_back_another_endpoints_due_jobs() {
        let mut entries = vec![("full", false); 50];
        entries.push(("other", false));
        let (taken, _) = walk(&entries, &[("full", 0)], 8, 0);
        assert_eq!(taken, [50]);
    }

    #[test]
    fn an_endpoint_with_an_open_circuit_does_not_hold_back_one_not_met_before() {
        let mut entries = vec![("open", false); 20];
        entries.extend([("later", false), ("later", false)]);
        let (taken, looked) = walk(&entries, &[("open", 0)], 1, 0);
        assert_eq!(taken, [20]);
        // `later` is full after one: its second entry ends the walk.
        assert_eq!(looked, 22);
    }

    #[test]
    fn jobs_in_flight_are_passed_over_without_using_room() {
        let entries = [("crm", true), ("crm", true), ("crm", false), ("crm", false)];
        let (taken, _) = walk(&entries, &[("crm", 1)], 8, 0);
        assert_eq!(taken, [2]);
    }

    #[test]
    fn pending_jobs_not_due_yet_keep_the_walk_going() {
        // The walk cannot know the two pending jobs it has not met are not due: it goes on.
        let entries = [("crm", false), ("crm", false), ("crm", false)];
        let (taken, looked) = walk(&entries, &[("crm", 1)], 8, 2);
        assert_eq!(taken, [0]);
        assert_eq!(looked, 3);
    }

    #[test]
    fn no_room_anywhere_ends_the_walk_at_once() {
        let entries = [("a", false), ("b", false)];
        let (taken, looked) = walk(&entries, &[], 0, 0);
        assert!(taken.is_empty());
        assert_eq!(looked, 1);
    }

    proptest! {
        #[test]
        fn ending_the_walk_early_takes_what_walking_to_the_end_would(
            picks in proptest::collection::vec((0usize..4, any::<bool>()), 0..60),
            rooms in proptest::collection::vec((0usize..4, 0usize..4), 0..4),
            limit in 0usize..4,
            extra_pending in 0u64..3,
        ) {
            const NAMES: [&str; 4] = ["a", "b", "c", "d"];
            let entries: Vec<(&str, bool)> =
                picks.iter().map(|(e, f)| (NAMES[*e], *f)).collect();
            let room: Vec<(&str, usize)> = rooms
                .iter()
                .map(|(e, r)| (NAMES[*e], (*r).min(limit)))
                .collect::<HashMap<_, _>>()
                .into_iter()
                .collect();
            let (taken, _) = walk(&entries, &room, limit, extra_pending);
            prop_assert_eq!(taken, taken_by_a_full_walk(&entries, &room, limit));
        }
    }
}
