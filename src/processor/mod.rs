//! The processor role: a consumer group on `<prefix>.inbound.v1` that normalizes each delivery
//! with its provider, keeps every partition's carts in its own RocksDB ([`crate::state`]), and
//! publishes normalized events to `<prefix>.events.v1` and cart transitions to
//! `<prefix>.transitions.v1`.
//!
//! The consumer runs on one blocking thread: poll a batch → stage each record in its partition's
//! store → write each partition's staged records with their offset in one atomic batch → fire
//! due timers on caught-up partitions → publish the outbox and drop what Kafka acknowledged →
//! report progress, and the clock time settled up to when nothing due by then is left undone
//! ([`crate::telemetry::Settled`]). Offsets live in RocksDB; those committed
//! to the group only report progress. On assignment the consumer seeks to the stored offsets (a
//! partition with no local state is rebuilt from the beginning of the topic); on revocation it
//! publishes the partition's outbox and closes its store (see [`consumer`]).

mod budget;
mod consumer;
mod partition;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::problems::Problems;
use crate::telemetry::{error_chain, metrics, Settled};
use crate::tenants::Live;
use crate::{kafka, state};

use consumer::Context;
pub use partition::Inspected;
use partition::Partitions;

/// The `[processor]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// One RocksDB database per partition lives below this folder.
    pub state_dir: PathBuf,
    pub group_id: String,
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    #[serde(with = "humantime_serde")]
    pub contact_lookback: Duration,
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    #[serde(with = "humantime_serde")]
    pub gc_interval: Duration,
    pub max_timers_per_second: u32,
    pub max_batch_records: usize,
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// librdkafka consumer properties passed through unchanged.
    pub consumer: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from("data/processor"),
            group_id: "cartstream-processor".to_string(),
            dedup_window: Duration::from_secs(24 * 3600),
            contact_lookback: Duration::from_secs(7 * 24 * 3600),
            retention: Duration::from_secs(7 * 24 * 3600),
            tick: Duration::from_millis(250),
            gc_interval: Duration::from_secs(60),
            max_timers_per_second: 10_000,
            max_batch_records: 1_000,
            publish_timeout: Duration::from_secs(10),
            consumer: BTreeMap::new(),
        }
    }
}

/// How this role names itself in readiness and metrics.
const ROLE: &str = "processor";
/// What `/readyz` answers while the state volume cannot be written.
const STALLED: &str = "processor state volume cannot be written";

/// The consumer settings the processor forces, beyond those of every group member
/// (`kafka::group`): the pass-through (`processor.consumer`) cannot change them.
const FORCED_CONSUMER_SETTINGS: &[(&str, &str)] = &[
    ("enable.partition.eof", "true"),
    // A rebalance moves only the partitions that change owner: the others go on being
    // consumed, their stores stay open.
    ("partition.assignment.strategy", "cooperative-sticky"),
];

impl Config {
    pub fn validate(&self, problems: &mut Problems) {
        if self.group_id.trim().is_empty() {
            problems.push("processor.group_id: must not be empty");
        }
        if self.state_dir.as_os_str().is_empty() {
            problems.push("processor.state_dir: must name a folder");
        }
        for (key, value) in [
            ("tick", self.tick),
            ("gc_interval", self.gc_interval),
            ("publish_timeout", self.publish_timeout),
            ("dedup_window", self.dedup_window),
        ] {
            if value.is_zero() {
                problems.push(format!("processor.{key}: must be longer than 0s"));
            }
        }
        if self.max_timers_per_second == 0 {
            problems.push("processor.max_timers_per_second: must be at least 1");
        }
        if self.max_batch_records == 0 {
            problems.push("processor.max_batch_records: must be at least 1");
        }
        crate::kafka::group::refuse_forced(
            "processor.consumer",
            &self.consumer,
            FORCED_CONSUMER_SETTINGS,
            "the processor",
            problems,
        );
    }

    fn windows(&self) -> state::Windows {
        state::Windows {
            dedup: self.dedup_window,
            contact_lookback: self.contact_lookback,
        }
    }
}

/// Why the processor stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the Kafka consumer")]
    Consumer(#[source] KafkaError),
    #[error("cannot create the state folder {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state of partition {partition} failed")]
    State {
        partition: i32,
        #[source]
        source: state::Error,
    },
    #[error("the processor thread panicked")]
    Panicked,
    /// The group fenced this member out (see [`kafka::fencing`]): it rejoins.
    #[error("fenced out of the consumer group: {0}")]
    Fenced(String),
    #[error("{0}")]
    FencedTooOften(String),
}

/// A processor, ready to run.
pub struct Processor {
    config: Config,
    kafka: kafka::Config,
    registry: Live,
    producer: kafka::Producer,
    clock: Clock,
    stores: crate::health::Stores,
    stalls: crate::health::Stalls,
    settled: Settled,
    inspector: Inspector,
}

/// Where the admin API looks at the carts this instance processes: its processor's partitions,
/// while it runs. Cheap to clone; every clone sees the same processor.
#[derive(Clone, Default)]
pub struct Inspector(Arc<std::sync::Mutex<Option<Partitions>>>);

impl Inspector {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Partitions>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What this instance's processor holds of the cart of `tenant` that `lookup` leads to in
    /// `partition` of the inbound topic.
    pub fn inspect(&self, partition: i32, tenant: &str, lookup: state::Lookup<'_>) -> Inspected {
        match &*self.slot() {
            None => Inspected::NotHere,
            Some(partitions) => partitions.inspect(partition, tenant, lookup),
        }
    }
}

impl Processor {
    pub fn new(
        config: Config,
        kafka: kafka::Config,
        registry: Live,
        producer: kafka::Producer,
        clock: Clock,
        stores: crate::health::Stores,
        stalls: crate::health::Stalls,
    ) -> Self {
        Processor {
            config,
            kafka,
            registry,
            producer,
            clock,
            stores,
            stalls,
            settled: Settled::default(),
            inspector: Inspector::default(),
        }
    }

    /// Where the admin API looks at the carts of its partitions.
    pub fn with_inspector(mut self, inspector: Inspector) -> Self {
        self.inspector = inspector;
        self
    }

    /// Where the processor reports how far it has settled (its gauge says it too).
    pub fn with_settled(mut self, settled: Settled) -> Self {
        self.settled = settled;
        self
    }

    /// Consumes until `shutdown`, then publishes what is left in the outboxes, commits
    /// progress, leaves the group and closes every partition's store — waiting for Kafka no
    /// longer than `kafka.shutdown_timeout`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || self.run_blocking(runtime, shutdown))
            .await
            .map_err(|_| Error::Panicked)?
    }

    fn run_blocking(
        self,
        runtime: tokio::runtime::Handle,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let partitions = self.start(&runtime, &shutdown)?;
        let consumer = self.join(&partitions)?;
        tracing::info!(
            topic = %partitions.topic(),
            group = %self.config.group_id,
            state_dir = %self.config.state_dir.display(),
            "processor started"
        );
        // `?`: a new member that cannot join ends the processor at once.
        let (consumer, result) = self.consume(consumer, &partitions, &runtime, &shutdown)?;
        self.stop(consumer, &partitions, &runtime);
        result
    }

    /// Creates the state folder and the partitions' shared view, whose stores the readiness
    /// answer reports on.
    fn start(
        &self,
        runtime: &tokio::runtime::Handle,
        shutdown: &CancellationToken,
    ) -> Result<Partitions, Error> {
        std::fs::create_dir_all(&self.config.state_dir).map_err(|source| Error::StateDir {
            path: self.config.state_dir.clone(),
            source,
        })?;
        let partitions = Partitions::new(
            self.config.clone(),
            self.kafka.topics(),
            self.producer.clone(),
            runtime.clone(),
            shutdown.clone(),
        );
        let view = partitions.clone();
        self.stores.attach(move || view.states());
        *self.inspector.slot() = Some(partitions.clone());
        Ok(partitions)
    }

    /// Rounds until `shutdown` or a failure; a fenced consumer is replaced by a new member,
    /// unless that happens too often. Returns the consumer in use and how the rounds ended;
    /// `Err` when a new member cannot join.
    fn consume(
        &self,
        mut consumer: BaseConsumer<Context>,
        partitions: &Partitions,
        runtime: &tokio::runtime::Handle,
        shutdown: &CancellationToken,
    ) -> Result<(BaseConsumer<Context>, Result<(), Error>), Error> {
        let mut timers =
            budget::TimerBudget::new(self.config.max_timers_per_second, Instant::now());
        let mut last_gc = Instant::now();
        let mut rejoins = kafka::fencing::Rejoins::default();
        self.stalls.recovered(ROLE);
        let result = loop {
            if shutdown.is_cancelled() {
                break Ok(());
            }
            match self.step(&consumer, partitions, &mut timers, &mut last_gc) {
                Ok(()) => {}
                Err(Error::Fenced(reason)) if rejoins.allow(Instant::now()) => {
                    tracing::warn!(%reason, "fenced out of the consumer group; rejoining");
                    consumer = self.rejoin(consumer, partitions, runtime)?;
                }
                Err(Error::Fenced(reason)) => {
                    break Err(Error::FencedTooOften(kafka::fencing::too_often(
                        "processor",
                        &reason,
                    )))
                }
                Err(Error::State { partition, source }) if source.is_volume() => {
                    tracing::error!(partition, state_dir = %self.config.state_dir.display(), error = %error_chain(&source), "the state volume cannot be written; consuming paused until it can");
                    consumer = self.stall(consumer, partitions, runtime, shutdown)?;
                }
                Err(e) => break Err(e),
            }
        };
        Ok((consumer, result))
    }

    /// Waits out a state volume that cannot be written (full, or failing). Nothing past the
    /// stores' offsets was applied: the write that failed held the record's effects and its
    /// offset together. Consuming is paused — polling goes on, to keep the group membership —
    /// and `/readyz` says why, until a probe write to the state folder succeeds; then the
    /// processor rejoins, so every store reopens at its own offset and reads the held records
    /// again. Returns the consumer to go on with.
    fn stall(
        &self,
        consumer: BaseConsumer<Context>,
        partitions: &Partitions,
        runtime: &tokio::runtime::Handle,
        shutdown: &CancellationToken,
    ) -> Result<BaseConsumer<Context>, Error> {
        self.stalls.stalled(ROLE, STALLED);
        pause(&consumer, partitions, true);
        let mut probed = Instant::now();
        loop {
            if shutdown.is_cancelled() {
                return Ok(consumer);
            }
            // Records of partitions assigned meanwhile are read again after the rejoin.
            let _ = consumer.poll(self.config.tick);
            if probed.elapsed() < crate::volume::PROBE_INTERVAL {
                continue;
            }
            probed = Instant::now();
            match crate::volume::probe(&self.config.state_dir) {
                Ok(()) => break,
                Err(e) => tracing::debug!(error = %e, "the state volume still cannot be written"),
            }
        }
        tracing::info!("the state volume can be written again; rejoining to resume");
        let consumer = self.rejoin(consumer, partitions, runtime)?;
        partitions.set_paused(false);
        self.stalls.recovered(ROLE);
        Ok(consumer)
    }

    /// Stops reading; gives Kafka until the deadline for what is left in the outboxes, the
    /// progress commit and leaving the group (whose revocation publishes and closes every
    /// store). What Kafka has not acknowledged by then stays in the outboxes, to be
    /// published when this processor owns the partitions again.
    fn stop(
        &self,
        consumer: BaseConsumer<Context>,
        partitions: &Partitions,
        runtime: &tokio::runtime::Handle,
    ) {
        let deadline = Instant::now() + self.kafka.shutdown_timeout;
        partitions.stop_by(deadline);
        partitions.publish_all();
        commit(
            &consumer,
            partitions.topic(),
            &partitions.offsets(),
            CommitMode::Async,
        );
        runtime.block_on(kafka::close_consumer(consumer, deadline));
        self.stores.detach();
        self.inspector.slot().take();
        partitions.close_all();
        tracing::info!("processor stopped");
    }

    /// A consumer of the inbound topic in the processor's group.
    fn join(&self, partitions: &Partitions) -> Result<BaseConsumer<Context>, Error> {
        let consumer = self.consumer(Context::new(partitions.clone()))?;
        consumer
            .subscribe(&[partitions.topic()])
            .map_err(Error::Consumer)?;
        Ok(consumer)
    }

    /// Replaces `old` (fenced out, or paused through a stall) with a new member of the group.
    /// The stores are closed here, before `old` closes, and their outboxes stay in them, to be
    /// published once the partitions are assigned again. `old` is retired first: its revocation,
    /// which librdkafka runs while closing it — on the closing thread, possibly after the
    /// deadline, when the new member may own the partitions again — leaves the stores alone.
    fn rejoin(
        &self,
        old: BaseConsumer<Context>,
        partitions: &Partitions,
        runtime: &tokio::runtime::Handle,
    ) -> Result<BaseConsumer<Context>, Error> {
        old.context().retire();
        partitions.close_all();
        let deadline = Instant::now() + self.kafka.shutdown_timeout;
        runtime.block_on(kafka::close_consumer(old, deadline));
        self.join(partitions)
    }

    fn consumer(&self, context: Context) -> Result<BaseConsumer<Context>, Error> {
        let topic = self.kafka.topics().inbound;
        let member = kafka::group::Member {
            role: "processor",
            group_id: &self.config.group_id,
            state_dir: &self.config.state_dir,
            topic: &topic,
            properties: &self.config.consumer,
            auto_commit: false,
        };
        let client = member.client_config(&self.kafka, &[], FORCED_CONSUMER_SETTINGS);
        client.create_with_context(context).map_err(Error::Consumer)
    }

    /// One round: a batch of records, wall-clock timers, the outbox, progress, garbage. A round
    /// that leaves every partition consumed to its end with every timer due by its `now` fired
    /// and published settles the processor up to that `now`.
    fn step(
        &self,
        consumer: &BaseConsumer<Context>,
        partitions: &Partitions,
        timers: &mut budget::TimerBudget,
        last_gc: &mut Instant,
    ) -> Result<(), Error> {
        partitions.check()?;
        let consumed = self.consume_batch(consumer, partitions)?;
        let now = self.clock.now_millis();
        let allowed = timers.available(Instant::now());
        if allowed > 0 {
            timers.spend(partitions.fire_due(now, allowed)?);
        }
        publish_or_pause(consumer, partitions);
        if consumed > 0 {
            commit(
                consumer,
                partitions.topic(),
                &partitions.offsets(),
                CommitMode::Async,
            );
        }
        if last_gc.elapsed() >= self.config.gc_interval {
            *last_gc = Instant::now();
            partitions.collect_garbage(now)?;
        }
        partitions.report();
        if partitions.settled(now) {
            self.settled.record(now);
            metrics::processor_settled(now);
        }
        Ok(())
    }

    /// Applies up to `max_batch_records` records, waiting one tick at most for the first, and
    /// writes them to the stores; returns how many. Being fenced out of the group is an error.
    fn consume_batch(
        &self,
        consumer: &BaseConsumer<Context>,
        partitions: &Partitions,
    ) -> Result<usize, Error> {
        let mut timeout = self.config.tick;
        let mut consumed = 0;
        // One registry for the batch, though the tenants topic may change meanwhile.
        let registry = self.registry.current();
        while consumed < self.config.max_batch_records {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(message)) => {
                    partitions.apply(&message, &registry)?;
                    consumed += 1;
                    timeout = Duration::ZERO;
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    partitions.mark_caught_up(partition);
                    timeout = Duration::ZERO;
                }
                Some(Err(e)) => {
                    if let Some(reason) = kafka::fencing::fenced(consumer.client()) {
                        return Err(Error::Fenced(reason));
                    }
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
            }
        }
        partitions.commit_all()?;
        Ok(consumed)
    }
}

/// Publishes the outboxes. While Kafka does not take them, consuming stops, so the outboxes
/// stay bounded; polling goes on to keep the group membership.
fn publish_or_pause(consumer: &BaseConsumer<Context>, partitions: &Partitions) {
    if !partitions.publish_all() {
        pause(consumer, partitions, true);
    } else if partitions.paused() {
        pause(consumer, partitions, false);
    }
}

/// Pauses (or resumes) consuming every assigned partition. The assignment list is dropped before
/// this returns: its entries hold the consumer's partitions, and a consumer cannot finish closing
/// while any is held (see [`kafka::close_consumer`]).
fn pause(consumer: &BaseConsumer<Context>, partitions: &Partitions, paused: bool) {
    if let Ok(assignment) = consumer.assignment() {
        let _ = if paused {
            consumer.pause(&assignment)
        } else {
            consumer.resume(&assignment)
        };
    }
    partitions.set_paused(paused);
}

/// Commits stored offsets of `topic` to the group, for progress reporting (lag) only: the
/// offsets that count are in each partition's store.
fn commit(consumer: &BaseConsumer<Context>, topic: &str, offsets: &[(i32, i64)], mode: CommitMode) {
    if offsets.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for &(partition, offset) in offsets {
        let _ = list.add_partition_offset(topic, partition, Offset::Offset(offset));
    }
    if let Err(e) = consumer.commit(&list, mode) {
        tracing::debug!(error = %e, "committing progress failed");
    }
}
