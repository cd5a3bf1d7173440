//! The partitions this processor owns: each one's store, its place in the topic, and whether it
//! has consumed everything there is. Shared by the consumer loop and the rebalance callback,
//! which both run on the consumer's thread (the lock is never contended, only required).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Config, Error};
use crate::clock::{parse_rfc3339, unix_millis};
use crate::kafka::{self, inbound, outbox, Topics};
use crate::providers::{self, Inspection};
use crate::state::{self, Counts, OutboxKind, Store};
use crate::telemetry::{error_chain, metrics};
use crate::tenants::{Registry, DEFAULT_INACTIVITY_WINDOW};
use crate::topics;
use crate::topics::event::Event;
use crate::topics::transition::{Phase, Transition};

/// Outbox records handed to the producer at once.
const PUBLISH_BATCH: usize = 1_000;
/// Garbage removed per partition and pass.
const GC_LIMIT: usize = 10_000;

/// One owned partition.
struct Partition {
    store: Store,
    /// The next offset to apply (what the store says, cached, with the records staged).
    next_offset: Option<i64>,
    /// Consumed up to the end of the partition, as last reported by the consumer.
    caught_up: bool,
    /// Outbox records handed to librdkafka and not acknowledged yet, by sequence, in order.
    /// A publication that times out waits for these the next time instead of producing them
    /// again: librdkafka keeps retrying them (up to `message.timeout.ms`), so a second copy
    /// would reach the topic when the broker comes back.
    in_flight: outbox::InFlight,
    /// Time spent staging the records not committed yet, if any.
    staging: Option<Duration>,
}

impl Partition {
    /// Normalizes `delivery` and stages it at `offset`: its effects on the cart and the offset,
    /// written with the rest of the polled batch at [`Partition::commit`].
    fn apply(
        &mut self,
        offset: i64,
        delivery: &Delivery<'_>,
        registry: &Registry,
    ) -> Result<(), state::Error> {
        let event = delivery.normalize();
        let at_ms = delivery.activity_ms(&event);
        let window = registry
            .tenant(delivery.tenant)
            .map_or(DEFAULT_INACTIVITY_WINDOW, |t| t.inactivity_window);

        let started = Instant::now();
        let applied = self.store.stage(state::Input {
            offset,
            tenant: delivery.tenant,
            delivery_id: delivery.delivery_id,
            event: &event,
            at_ms,
            received_ms: delivery.received_ms,
            window_ms: window.as_millis() as i64,
        })?;
        *self.staging.get_or_insert_default() += started.elapsed();
        self.next_offset = Some(offset + 1);
        count_applied(&event, &applied);
        Ok(())
    }

    /// Stages `offset` as passed without effect (an unreadable record, a platform's test).
    fn skip(&mut self, offset: i64) -> Result<(), state::Error> {
        self.store.stage_skip(offset)?;
        self.next_offset = Some(offset + 1);
        Ok(())
    }

    /// Writes the records staged since the last commit, with their offset, in one batch.
    fn commit(&mut self) -> Result<(), state::Error> {
        let started = Instant::now();
        self.store.commit()?;
        if let Some(staging) = self.staging.take() {
            metrics::state_write(staging + started.elapsed());
        }
        Ok(())
    }
}

struct Inner {
    owned: BTreeMap<i32, Partition>,
    /// A partition whose store could not be opened at assignment.
    failed: Option<(i32, state::Error)>,
    /// Outbox records of partitions closed here (revoked, or dropped by a fenced consumer)
    /// while still in librdkafka's hands. They reach the topic once the broker answers; should
    /// the partition come back to this processor, it waits for them instead of producing them
    /// a second time.
    unacknowledged: BTreeMap<i32, outbox::InFlight>,
    paused: bool,
    /// The high watermark of each partition, from the consumer's statistics.
    high_watermarks: BTreeMap<i32, i64>,
    /// Set at shutdown: publishing waits for Kafka until then at most.
    deadline: Option<Instant>,
}

/// What a processor holds of a cart, as the admin API asks for it.
pub enum Inspected {
    /// This instance's processor does not have the partition now (or none runs here).
    NotHere,
    /// The partition is this processor's: where it is in the inbound topic (the next offset to
    /// apply, `None` before the first), and the cart, if there is one.
    Owned {
        next_offset: Option<i64>,
        found: Result<Option<Box<state::Kept>>, state::Error>,
    },
}

/// Cheap to clone; every clone is the same set of partitions.
#[derive(Clone)]
pub struct Partitions {
    inner: Arc<Mutex<Inner>>,
    config: Arc<Config>,
    topics: Arc<Topics>,
    producer: kafka::Producer,
    runtime: tokio::runtime::Handle,
    /// Once cancelled, a publication in progress stops after its current batch.
    shutdown: CancellationToken,
}

impl Partitions {
    pub fn new(
        config: Config,
        topics: Topics,
        producer: kafka::Producer,
        runtime: tokio::runtime::Handle,
        shutdown: CancellationToken,
    ) -> Self {
        Partitions {
            inner: Arc::new(Mutex::new(Inner {
                owned: BTreeMap::new(),
                failed: None,
                unacknowledged: BTreeMap::new(),
                paused: false,
                high_watermarks: BTreeMap::new(),
                deadline: None,
            })),
            config: Arc::new(config),
            topics: Arc::new(topics),
            producer,
            runtime,
            shutdown,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock ends the processor anyway; the data stays usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn topic(&self) -> &str {
        &self.topics.inbound
    }

    fn path(&self, partition: i32) -> PathBuf {
        self.config
            .state_dir
            .join(format!("{}-{partition}", self.topics.inbound))
    }

    /// Opens the stores of newly assigned partitions; returns where to start consuming each:
    /// the offset its store holds, or the beginning of the partition when there is no local
    /// state (the partition's state is then rebuilt by replaying it).
    pub fn assign(&self, partitions: &[i32]) -> Vec<(i32, Offset)> {
        let mut inner = self.lock();
        let mut starts = Vec::new();
        for &partition in partitions {
            if let Some(owned) = inner.owned.get(&partition) {
                starts.push((partition, start(owned.next_offset)));
                continue;
            }
            let opened = Store::open(&self.path(partition), self.config.windows())
                .and_then(|store| Ok((store.next_offset()?, store)));
            match opened {
                Ok((next_offset, store)) => {
                    tracing::info!(
                        partition,
                        ?next_offset,
                        outbox = store.outbox_len(),
                        "partition assigned"
                    );
                    starts.push((partition, start(next_offset)));
                    let in_flight = inner.unacknowledged.remove(&partition).unwrap_or_default();
                    inner.owned.insert(
                        partition,
                        Partition {
                            store,
                            next_offset,
                            caught_up: false,
                            in_flight,
                            staging: None,
                        },
                    );
                }
                Err(source) => {
                    tracing::error!(partition, error = %error_chain(&source), "cannot open the partition's state");
                    inner.failed.get_or_insert((partition, source));
                }
            }
        }
        starts
    }

    /// What `partition`'s store holds of the cart of `tenant` that `lookup` leads to.
    pub fn inspect(&self, partition: i32, tenant: &str, lookup: state::Lookup<'_>) -> Inspected {
        let inner = self.lock();
        match inner.owned.get(&partition) {
            None => Inspected::NotHere,
            Some(owned) => Inspected::Owned {
                next_offset: owned.next_offset,
                found: owned.store.find(tenant, lookup).map(|f| f.map(Box::new)),
            },
        }
    }

    /// Publishes the outboxes of revoked partitions and closes their stores. Returns their
    /// stored offsets, to commit before giving them up.
    pub fn revoke(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let mut inner = self.lock();
        let deadline = inner.deadline;
        let mut offsets = Vec::new();
        for partition in partitions {
            if let Some(mut owned) = inner.owned.remove(partition) {
                commit_before_closing(*partition, &mut owned);
                if let Err(e) = self.publish(&mut owned, deadline) {
                    tracing::warn!(partition, error = %error_chain(&e), "outbox not fully published at revocation; what is in flight still reaches Kafka, and the next owner publishes the rest");
                }
                if let Some(next) = owned.next_offset {
                    offsets.push((*partition, next));
                }
                if !owned.in_flight.is_empty() {
                    inner.unacknowledged.insert(*partition, owned.in_flight);
                }
                tracing::info!(partition, "partition revoked");
            }
        }
        offsets
    }

    pub fn close_all(&self) {
        let mut inner = self.lock();
        let owned = std::mem::take(&mut inner.owned);
        for (partition, mut owned) in owned {
            commit_before_closing(partition, &mut owned);
            if !owned.in_flight.is_empty() {
                inner.unacknowledged.insert(partition, owned.in_flight);
            }
        }
    }

    /// Writes every partition's staged records (see [`Partition::commit`]).
    pub fn commit_all(&self) -> Result<(), Error> {
        let mut inner = self.lock();
        for (&partition, owned) in inner.owned.iter_mut() {
            owned
                .commit()
                .map_err(|source| Error::State { partition, source })?;
        }
        Ok(())
    }

    /// Stages one inbound record in its partition's store; [`Partitions::commit_all`] writes
    /// it.
    pub fn apply(&self, message: &BorrowedMessage<'_>, registry: &Registry) -> Result<(), Error> {
        let mut inner = self.lock();
        let partition = message.partition();
        let Some(owned) = inner.owned.get_mut(&partition) else {
            tracing::warn!(partition, "record of a partition without state; skipped");
            return Ok(());
        };
        owned.caught_up = false;
        let offset = message.offset();
        if owned.next_offset.is_some_and(|next| offset < next) {
            return Ok(()); // applied before
        }
        let applied = match to_apply(message, partition, offset) {
            Some(delivery) => owned.apply(offset, &delivery, registry),
            None => owned.skip(offset),
        };
        applied.map_err(|source| Error::State { partition, source })
    }

    /// Each owned partition's store: where it is and how far behind, for `/readyz`.
    pub fn states(&self) -> Vec<crate::health::StoreState> {
        let inner = self.lock();
        inner
            .owned
            .iter()
            .map(|(&partition, owned)| crate::health::StoreState {
                partition,
                next_offset: owned.next_offset,
                lag: inner
                    .high_watermarks
                    .get(&partition)
                    .zip(owned.next_offset)
                    .map(|(high, next)| (high - next).max(0)),
                caught_up: owned.caught_up,
            })
            .collect()
    }

    /// Marks a partition as consumed to its end.
    pub fn mark_caught_up(&self, partition: i32) {
        if let Some(owned) = self.lock().owned.get_mut(&partition) {
            owned.caught_up = true;
        }
    }

    /// Fires wall-clock timers due by `now_ms` on caught-up partitions, at most `budget` in
    /// all; returns how many fired. A partition still behind fires its timers as the records'
    /// arrival times pass them.
    pub fn fire_due(&self, now_ms: i64, budget: usize) -> Result<usize, Error> {
        let mut inner = self.lock();
        let mut left = budget;
        for (&partition, owned) in inner.owned.iter_mut() {
            if !owned.caught_up || left == 0 {
                continue;
            }
            let fired = owned
                .store
                .fire_due(now_ms, left)
                .map_err(|source| Error::State { partition, source })?;
            left -= fired.len();
            count_transitions(&fired);
        }
        Ok(budget - left)
    }

    /// Whether the processor has settled up to `now_ms`: it owns partitions, and each one is
    /// consumed to its end (no record read since the consumer last reported the end), has no
    /// timer due by `now_ms` left to fire, and has its outbox acknowledged by Kafka.
    ///
    /// "Its end" is the end the consumer knew of: a record produced a moment ago may not have
    /// been fetched yet. Whoever waits for the processor to settle after producing records
    /// first waits for some effect of theirs (their events) to be published.
    pub fn settled(&self, now_ms: i64) -> bool {
        let inner = self.lock();
        !inner.owned.is_empty()
            && inner.owned.values().all(|owned| {
                owned.caught_up
                    && !owned.store.may_have_due_timers(now_ms)
                    && owned.store.outbox_len() == 0
            })
    }

    /// From now on, publishing waits for Kafka until `deadline` at most (shutdown).
    pub fn stop_by(&self, deadline: Instant) {
        self.lock().deadline = Some(deadline);
    }

    /// Publishes every partition's outbox; `false` when Kafka did not take all of it.
    pub fn publish_all(&self) -> bool {
        let mut inner = self.lock();
        let deadline = inner.deadline;
        let mut complete = true;
        for (partition, owned) in inner.owned.iter_mut() {
            if let Err(e) = self.publish(owned, deadline) {
                match (deadline, &e) {
                    (Some(_), _) => {
                        tracing::warn!(partition, records = owned.store.outbox_len(), error = %error_chain(&e), "outbox not fully published at shutdown; it is published when this processor owns the partition again")
                    }
                    // The shutdown that follows publishes the rest.
                    (None, PublishError::Stopping) => {}
                    (None, _) => {
                        tracing::warn!(partition, error = %error_chain(&e), "publishing the outbox failed; retrying")
                    }
                }
                complete = false;
            }
        }
        complete
    }

    /// Produces the partition's outbox in order and removes what Kafka acknowledged, waiting
    /// for Kafka until `deadline` at most when there is one.
    fn publish(
        &self,
        owned: &mut Partition,
        deadline: Option<Instant>,
    ) -> Result<(), PublishError> {
        let time_left = || match deadline {
            Some(deadline) => match deadline.saturating_duration_since(Instant::now()) {
                left if left.is_zero() => None,
                left => Some(left.min(self.config.publish_timeout)),
            },
            None if self.shutdown.is_cancelled() => None,
            None => Some(self.config.publish_timeout),
        };
        let enqueue = |record: &state::OutboxRecord| {
            let (topic, schema) = match record.kind {
                OutboxKind::Event => (&self.topics.events, topics::event::SCHEMA),
                OutboxKind::Transition => (&self.topics.transitions, topics::transition::SCHEMA),
            };
            self.producer
                .enqueue(topic, &record.key, &record.value, schema, &record.id)
        };
        let published = outbox::publish(
            &mut owned.store,
            &mut owned.in_flight,
            PUBLISH_BATCH,
            enqueue,
            time_left,
        );
        self.runtime.block_on(published).map_err(|e| match e {
            outbox::Error::Kafka(e) => PublishError::Kafka(e),
            outbox::Error::Read(e) | outbox::Error::Acknowledge(e) => PublishError::State(e),
            outbox::Error::Stopping => PublishError::Stopping,
        })
    }

    pub fn set_paused(&self, paused: bool) {
        self.lock().paused = paused;
    }

    pub fn paused(&self) -> bool {
        self.lock().paused
    }

    /// The stored next offset of every owned partition.
    pub fn offsets(&self) -> Vec<(i32, i64)> {
        self.lock()
            .owned
            .iter()
            .filter_map(|(&p, owned)| Some((p, owned.next_offset?)))
            .collect()
    }

    /// Deletes closed carts past the retention and expired de-duplication markers.
    pub fn collect_garbage(&self, now_ms: i64) -> Result<(), Error> {
        let mut inner = self.lock();
        for (&partition, owned) in inner.owned.iter_mut() {
            let collected = owned
                .store
                .collect_garbage(now_ms, self.config.retention, GC_LIMIT)
                .map_err(|source| Error::State { partition, source })?;
            if collected.carts + collected.dedup_markers > 0 {
                tracing::debug!(
                    partition,
                    carts = collected.carts,
                    markers = collected.dedup_markers,
                    "garbage collected"
                );
            }
        }
        Ok(())
    }

    /// A store that failed to open at assignment stops the processor.
    pub fn check(&self) -> Result<(), Error> {
        match self.lock().failed.take() {
            Some((partition, source)) => Err(Error::State { partition, source }),
            None => Ok(()),
        }
    }

    pub fn set_high_watermarks(&self, high: impl Iterator<Item = (i32, i64)>) {
        self.lock().high_watermarks.extend(high);
    }

    /// Updates the gauges: carts by phase, pending timers, outbox depth, lag, partitions.
    pub fn report(&self) {
        let inner = self.lock();
        let mut counts = Counts::default();
        let mut outbox = 0;
        let mut lag = 0;
        for (&partition, owned) in &inner.owned {
            let c = owned.store.counts();
            counts.active += c.active;
            counts.abandoned += c.abandoned;
            counts.completed += c.completed;
            counts.recovered += c.recovered;
            outbox += owned.store.outbox_len();
            if let Some(&high) = inner.high_watermarks.get(&partition) {
                lag += (high - owned.next_offset.unwrap_or(0)).max(0);
            }
        }
        for phase in [
            Phase::Active,
            Phase::Abandoned,
            Phase::Completed,
            Phase::Recovered,
        ] {
            metrics::state_carts(phase.as_str(), counts.get(phase));
        }
        metrics::processor_timers_pending(counts.active);
        metrics::processor_outbox(outbox);
        metrics::processor_lag(lag);
        metrics::processor_partitions(inner.owned.len());
    }
}

/// A partition's store publishes its outbox through the one outbox loop.
impl outbox::Outbox for Store {
    type Record = state::OutboxRecord;
    type Error = state::Error;

    fn unpublished(&mut self, limit: usize) -> Result<Vec<(u64, Self::Record)>, state::Error> {
        self.outbox(limit)
    }

    fn acknowledge(&mut self, sequences: &[u64]) -> Result<(), state::Error> {
        Store::acknowledge(self, sequences)
    }
}

/// Why an outbox was not (fully) published; either way it is tried again later.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("Kafka did not take the outbox")]
    Kafka(#[from] kafka::Error),
    #[error("the state store failed")]
    State(#[from] state::Error),
    /// Shutting down: no more batches (past the deadline, or before the shutdown's own pass).
    #[error("the processor is stopping")]
    Stopping,
}

/// Writes what a partition about to close has staged. When that fails, nothing of it was
/// written: its store's offset is still before those records, and they are consumed again.
fn commit_before_closing(partition: i32, owned: &mut Partition) {
    if let Err(e) = owned.commit() {
        tracing::warn!(partition, error = %error_chain(&e), "records staged but not written at closing; they are consumed again");
    }
}

fn start(next_offset: Option<i64>) -> Offset {
    next_offset.map_or(Offset::Beginning, Offset::Offset)
}

/// The delivery in `message`, unless it is skipped — unreadable, or a platform's test — which
/// is logged and counted.
fn to_apply<'m>(
    message: &'m BorrowedMessage<'_>,
    partition: i32,
    offset: i64,
) -> Option<Delivery<'m>> {
    match Delivery::read(message) {
        Ok(delivery) if !delivery.test => Some(delivery),
        Ok(test) => {
            tracing::debug!(
                partition,
                offset,
                "a platform test delivery; no cart tracked"
            );
            metrics::processor_test_delivery(test.provider.slug());
            None
        }
        Err(reason) => {
            tracing::warn!(partition, offset, reason, "inbound record skipped");
            metrics::processor_invalid_record(reason);
            None
        }
    }
}

fn count_applied(event: &Event, applied: &state::Applied) {
    if applied.duplicate {
        metrics::processor_duplicate();
    } else {
        metrics::processor_event(event.event_bucket.as_str());
    }
    count_transitions(&applied.fired);
    count_transitions(&applied.transitions);
}

fn count_transitions(transitions: &[Transition]) {
    for transition in transitions {
        metrics::processor_transition(transition.to.as_str());
    }
}

/// An inbound record's metadata and body, read from its Kafka headers.
struct Delivery<'m> {
    provider: &'static dyn providers::Provider,
    tenant: &'m str,
    delivery_id: &'m str,
    event_type: Option<&'m str>,
    payload_version: Option<&'m str>,
    received_ms: i64,
    body: &'m [u8],
    /// A platform's test delivery (`cartstream-test`): skipped, no cart tracked.
    test: bool,
}

impl<'m> Delivery<'m> {
    /// The provider's normalized event: the body, and what the ingress's inspection saw of the
    /// request (event type, delivery id, payload version), which came along in the metadata.
    fn normalize(&self) -> Event {
        let seen = Inspection {
            clue: None,
            other_clue: None,
            event_type: self.event_type.map(Into::into),
            delivery_id: Some(self.delivery_id.into()),
            payload_version: self.payload_version.map(Into::into),
            test: false,
        };
        self.provider.normalize(self.body, &seen)
    }

    /// When the cart was last active by this delivery: the event's time, but never after the
    /// record arrived — a platform clock ahead of ours must not push activity into the future.
    fn activity_ms(&self, event: &Event) -> i64 {
        event
            .occurred_at
            .as_deref()
            .and_then(|at| parse_rfc3339(at).ok())
            .map_or(self.received_ms, |at| at.min(self.received_ms))
    }

    /// The metadata the ingress wrote; an unusable record yields the reason it is skipped.
    fn read(message: &'m BorrowedMessage<'_>) -> Result<Self, &'static str> {
        let metadata = inbound::Metadata::read(message).map_err(inbound::Invalid::as_str)?;
        Ok(Delivery {
            provider: providers::recorded(metadata.provider).ok_or("unknown_provider")?,
            tenant: metadata.tenant,
            delivery_id: metadata.delivery_id,
            event_type: metadata.event_type,
            payload_version: metadata.payload_version,
            received_ms: unix_millis(metadata.received_at),
            body: message.payload().unwrap_or_default(),
            test: metadata.test,
        })
    }
}
