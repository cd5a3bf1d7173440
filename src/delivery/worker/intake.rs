//! Taking transitions in: one job per endpoint subscribed to the transition, stored before its
//! offset may be committed, unless it ends at once; an order ends the pending abandonments of
//! its cart.

use super::{Batch, Error, Worker};
use crate::delivery::policy::{self, End, Supersession};
use crate::delivery::records::{job, webhook_body};
use crate::delivery::store::{self, Change, Job};
use crate::topics::transition::Transition;

impl Worker {
    /// Stores one job per subscribed endpoint of the transition in `payload`; an order ends
    /// the pending abandonments of its cart (`superseded`).
    /// Returns the jobs stored due now, for [`Worker::start_ready`].
    pub(super) fn take(&mut self, payload: &[u8]) -> Result<Vec<Job>, Error> {
        let Some(transition) = read(payload) else {
            return Ok(Vec::new());
        };
        let now = self.clock.now_millis();
        let mut batch = Batch::default();
        let mut ready = Vec::new();
        for job in self.unseen_jobs(&transition, now, &mut batch.seen)? {
            if policy::supersedes_abandonments(transition.bucket) {
                self.supersede_abandonments(&job, &mut batch, now)?;
            }
            if let Some(job) = self.admit(job, &mut batch, now) {
                ready.push(job);
            }
        }
        batch.write(&mut self.store, now)?;
        Ok(ready)
    }

    /// A job for each endpoint subscribed to the transition's bucket that has not seen the
    /// transition yet; their keys go to `seen`.
    fn unseen_jobs(
        &self,
        transition: &Transition,
        now: i64,
        seen: &mut Vec<Vec<u8>>,
    ) -> Result<Vec<Job>, Error> {
        let body = webhook_body(transition);
        let mut jobs = Vec::new();
        for endpoint in self
            .registry
            .endpoints_for(&transition.tenant_id, transition.bucket)
        {
            let key = store::key(&transition.tenant_id, &endpoint.id, &transition.id);
            if self.store.seen(&key)? {
                continue;
            }
            seen.push(key);
            jobs.push(job(transition, &endpoint.id, &body, now));
        }
        Ok(jobs)
    }

    /// Ends the pending abandonments of `order`'s cart at its endpoint; one whose
    /// attempt is in the air is marked instead, and its answer ends it.
    fn supersede_abandonments(
        &self,
        order: &Job,
        batch: &mut Batch,
        now: i64,
    ) -> Result<(), Error> {
        let pending =
            self.store
                .pending_abandonments(&order.tenant, &order.endpoint, &order.cart)?;
        for pending in pending {
            match policy::supersede(self.in_flight.contains(&pending.key())) {
                // Marked in the store: its answer, when it comes, ends it.
                Supersession::Mark => batch.changes.push(Change::Schedule(Job {
                    superseded: true,
                    ..pending
                })),
                Supersession::End => self.end(pending, End::Superseded, batch, now),
            }
        }
        Ok(())
    }

    /// Schedules a new job and returns it to be started, unless the rules end it at once.
    fn admit(&self, job: Job, batch: &mut Batch, now: i64) -> Option<Job> {
        let standing = self.standing(&job);
        match policy::before_attempt(&job, standing, &self.config.deadlines, now) {
            Some(end) => {
                self.end(job, end, batch, now);
                None
            }
            None => {
                batch.changes.push(Change::Schedule(job.clone()));
                Some(job)
            }
        }
    }
}

/// The transition in a record's payload; one that cannot be read is skipped, with a warning.
fn read(payload: &[u8]) -> Option<Transition> {
    let transition = match Transition::decode(payload) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "skipping a transition record that cannot be read");
            return None;
        }
    };
    #[cfg(feature = "fault-injection")]
    if transition.cart == "cartstream-inject-panic" {
        panic!("fault injected by the test build (cart cartstream-inject-panic)");
    }
    Some(transition)
}
