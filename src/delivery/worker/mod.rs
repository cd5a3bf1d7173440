//! The delivery loop. One task reads `<prefix>.transitions.v1`, stores one job per subscribed
//! endpoint (and only then lets the offset be committed), attempts due jobs over HTTP within
//! the concurrency limits and circuit breakers, writes each attempt's outcome together with
//! the job's next state, and publishes the outcome records.
//!
//! Requests run as tasks on a tracker and report back on a bounded channel; every change to
//! the store happens on the loop, so the store needs no lock. On shutdown the loop stops
//! starting attempts and waits (at most the request timeout) for those in flight — an attempt
//! whose answer never arrived is simply due again after the restart.
//!
//! This file holds the loop and the worker's state; the worker's work is in its parts:
//! `intake` (transitions → jobs), `attempts` (due jobs → requests → decisions performed),
//! `outbox` (outcome records → Kafka), `commands` (operator actions), and `consumer` (the
//! transitions consumer and the offsets it may commit).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use foldhash::fast::RandomState;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod attempts;
mod commands;
mod consumer;
mod intake;
mod outbox;

use attempts::Attempted;
use consumer::{join, Lag, Unsynced};

use super::breaker::Breaker;
use super::client::Client;
use super::handle::{Command, Handle};
use super::policy::{self, End};
use super::records::{dead_letter, outcome_record, Recorded};
use super::redrive::Source;
use super::remote::Relay;
use super::store::{self, Change, Job, OutboxRecord, Store};
use super::Config;
use crate::clock::Clock;
use crate::health::Stalls;
use crate::kafka;
use crate::telemetry::{error_chain, metrics, Settled};
use crate::tenants::{Endpoint, Live, Registry};

/// Outbox records published per round.
const PUBLISH_BATCH: usize = 1_000;
/// Attempts' answers recorded in one write at most.
const MAX_ANSWERS_PER_WRITE: usize = 256;
/// Outbox records above which the worker stops reading transitions (Kafka is away).
const MAX_OUTBOX: u64 = 100_000;
/// How long `seen` markers are kept: a transition read again within it is not delivered again.
const SEEN_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why the delivery worker stopped.
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
    #[error("the delivery store failed")]
    Store(#[from] store::Error),
    #[error("cannot create the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("{0}")]
    FencedTooOften(String),
}

/// How this role names itself in readiness and metrics.
const ROLE: &str = "delivery";
/// What `/readyz` answers while the state volume cannot be written.
const STALLED: &str = "delivery state volume cannot be written";

/// A delivery worker, ready to run.
pub struct Delivery {
    /// Taken by the running worker; given back when it stops for its state volume.
    commands: Option<mpsc::Receiver<Command>>,
    stalls: Stalls,
    settled: Settled,
    handle: Handle,
    config: Config,
    kafka: kafka::Config,
    registry: Live,
    producer: kafka::Producer,
    clock: Clock,
}

impl Delivery {
    pub fn new(
        config: Config,
        kafka: kafka::Config,
        registry: Live,
        producer: kafka::Producer,
        clock: Clock,
    ) -> Self {
        let (sender, commands) = mpsc::channel(16);
        let dead_letters = Source {
            kafka: kafka.clone(),
            topic: kafka.topics().dead_letters,
            group: format!("{}.redrive", config.group_id),
            consumer: config.consumer.clone(),
            registry: registry.clone(),
        };
        Delivery {
            commands: Some(commands),
            stalls: Stalls::default(),
            settled: Settled::default(),
            handle: Handle {
                commands: sender,
                dead_letters: Arc::new(dead_letters),
                clock: clock.clone(),
            },
            config,
            kafka,
            registry,
            producer,
            clock,
        }
    }

    /// Where the worker reports that its state volume cannot be written (readiness).
    pub fn with_stalls(mut self, stalls: Stalls) -> Self {
        self.stalls = stalls;
        self
    }

    /// Where the worker reports how far it has settled (its gauge says it too).
    pub fn with_settled(mut self, settled: Settled) -> Self {
        self.settled = settled;
        self
    }

    /// Operator actions on this worker, for the admin port.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// What carries out this worker's share of the operator actions asked through any
    /// instance (`super::remote`); run it beside the worker.
    pub fn relay(&self) -> Relay {
        Relay::new(
            self.handle.clone(),
            self.kafka.clone(),
            self.producer.clone(),
            self.clock.clone(),
        )
    }

    /// Delivers until `shutdown`, then lets in-flight requests finish (at most the request
    /// timeout), publishes recorded outcomes and commits the consumed transitions.
    ///
    /// When the state volume cannot be written (full, or failing), the worker stops the same
    /// way — nothing it could not write is committed — waits until the volume takes writes
    /// again (`/readyz` says why meanwhile), and starts afresh from its store and the committed
    /// offsets.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Error> {
        self.stalls.recovered(ROLE);
        loop {
            let stopped = match self.start() {
                Ok((worker, inbox, consumer)) => {
                    self.deliver_until_stopped(worker, inbox, consumer, &shutdown)
                        .await
                }
                Err(e) => Err(e),
            };
            match stopped {
                Err(Error::Store(e)) if e.is_volume() && !shutdown.is_cancelled() => {
                    tracing::error!(state_dir = %self.config.state_dir.display(), error = %error_chain(&e), "the state volume cannot be written; delivering paused until it can");
                    self.wait_for_volume(&shutdown).await;
                }
                stopped => return stopped,
            }
        }
    }

    /// Reports the stall and probes the state folder every second until it takes writes again
    /// (or `shutdown`).
    async fn wait_for_volume(&self, shutdown: &CancellationToken) {
        self.stalls.stalled(ROLE, STALLED);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(crate::volume::PROBE_INTERVAL) => {}
            }
            let dir = self.config.state_dir.clone();
            match tokio::task::spawn_blocking(move || crate::volume::probe(&dir)).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "the state volume still cannot be written")
                }
                Err(e) => tracing::debug!(error = %e, "probing the state volume failed"),
            }
        }
        tracing::info!("the state volume can be written again; the delivery worker starts afresh");
        self.stalls.recovered(ROLE);
    }

    /// One run of the worker, from its store and the committed offsets, until `shutdown` or a
    /// failure. The operator actions' channel is given back for the next run.
    async fn deliver_until_stopped(
        &mut self,
        mut worker: Worker,
        mut inbox: Inbox,
        consumer: StreamConsumer<Lag>,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        let kafka = self.kafka.clone();
        let mut reading = Reading::new(consumer, &worker);
        let result = loop {
            let round = match reading.deliver(&mut worker, &mut inbox, shutdown).await {
                Ok(round) => round,
                // The volume: stop as at shutdown (nothing unwritten gets committed), then wait.
                Err(Error::Store(e)) if e.is_volume() => Round::Ended(Err(Error::Store(e))),
                // Anything else that fails between rounds ends the worker at once.
                Err(e) => return Err(e),
            };
            match round {
                Round::Ended(result) => break result,
                Round::Fenced(reason) => {
                    if !reading.rejoins.allow(tokio::time::Instant::now()) {
                        break Err(Error::FencedTooOften(kafka::fencing::too_often(
                            "delivery", &reason,
                        )));
                    }
                    tracing::warn!(%reason, "fenced out of the consumer group; rejoining");
                    reading = reading.rejoin(&worker, &kafka).await?;
                }
            }
        };
        worker.park(&mut inbox.answers).await;
        worker.stop(&mut inbox.acks, reading, &kafka).await;
        self.commands = Some(inbox.commands);
        result
    }

    /// Opens the store, the HTTP client and the consumer; the worker and what reports to it.
    fn start(&mut self) -> Result<(Worker, Inbox, StreamConsumer<Lag>), Error> {
        std::fs::create_dir_all(&self.config.state_dir).map_err(|source| Error::StateDir {
            path: self.config.state_dir.clone(),
            source,
        })?;
        let store = Store::open(&self.config.state_dir)?;
        let client = Client::from_config(&self.config).map_err(Error::Client)?;
        let topics = self.kafka.topics();
        let consumer = join(&self.config, &self.kafka, &topics.transitions)?;
        let (results, answers) = mpsc::channel(self.config.max_in_flight_requests);
        let (published, acks) = mpsc::channel(64);
        let disabled: HashSet<(String, String), RandomState> =
            store.disabled()?.into_iter().collect();
        tracing::info!(
            topic = %topics.transitions,
            group = %self.config.group_id,
            state_dir = %self.config.state_dir.display(),
            pending = store.pending(),
            "delivery worker started"
        );
        let worker = Worker {
            config: Arc::new(self.config.clone()),
            topics,
            registry: self.registry.current(),
            live: self.registry.clone(),
            producer: self.producer.clone(),
            clock: self.clock.clone(),
            settled: self.settled.clone(),
            store,
            client,
            results,
            tracker: TaskTracker::new(),
            in_flight: HashSet::default(),
            per_endpoint: HashMap::default(),
            breakers: HashMap::default(),
            disabled,
            published,
            publishing: HashSet::default(),
        };
        let inbox = Inbox {
            answers,
            acks,
            commands: self.commands.take().expect("given back by the last run"),
        };
        Ok((worker, inbox, consumer))
    }
}

/// What reports to the loop: attempts' answers, Kafka's verdicts on the outbox, operator
/// actions.
struct Inbox {
    answers: mpsc::Receiver<Attempted>,
    acks: mpsc::Receiver<(Vec<u64>, Vec<u64>)>,
    commands: mpsc::Receiver<Command>,
}

/// The transitions consumer and what the loop keeps between rounds.
struct Reading {
    consumer: StreamConsumer<Lag>,
    rejoins: kafka::fencing::Rejoins,
    unsynced: Unsynced,
    tick: tokio::time::Interval,
    last_forget: tokio::time::Instant,
    /// Whether the outbox leaves room to read more transitions: an estimate, taken per tick
    /// rather than per record.
    open: bool,
}

impl Reading {
    fn new(consumer: StreamConsumer<Lag>, worker: &Worker) -> Self {
        let mut tick = tokio::time::interval(worker.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Reading {
            consumer,
            rejoins: kafka::fencing::Rejoins::default(),
            unsynced: Unsynced::default(),
            tick,
            last_forget: tokio::time::Instant::now(),
            open: worker.store.outbox_len() < MAX_OUTBOX,
        }
    }

    /// The loop, until `shutdown`, a failure or being fenced out: answers, Kafka's verdicts,
    /// operator actions, transitions (while the outbox has room) and the tick. `Err` is a
    /// failure that ends the worker at once, without parking.
    async fn deliver(
        &mut self,
        worker: &mut Worker,
        inbox: &mut Inbox,
        shutdown: &CancellationToken,
    ) -> Result<Round, Error> {
        loop {
            let mut fenced = None;
            worker.refresh();
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(Round::Ended(Ok(()))),
                Some(answer) = inbox.answers.recv() => {
                    // With what else has arrived meanwhile: one write, one scan of the schedule.
                    let mut answers = vec![answer];
                    while answers.len() < MAX_ANSWERS_PER_WRITE {
                        match inbox.answers.try_recv() {
                            Ok(answer) => answers.push(answer),
                            Err(_) => break,
                        }
                    }
                    worker.finish_all(answers).and_then(|()| worker.dispatch())
                }
                Some(report) = inbox.acks.recv() => {
                    worker.acknowledged(report);
                    Ok(())
                }
                Some(command) = inbox.commands.recv() => {
                    worker.command(command);
                    worker.dispatch()
                }
                message = self.consumer.recv(), if self.open => match message {
                    Ok(message) => {
                        let taken = worker.take(message.payload().unwrap_or_default());
                        if taken.is_ok() {
                            self.unsynced.taken(message.partition(), message.offset());
                        }
                        taken.map(|ready| worker.start_ready(ready))
                    }
                    Err(e) => {
                        fenced = kafka::fencing::fenced(self.consumer.client());
                        if fenced.is_none() {
                            tracing::warn!(error = %e, "consumer error");
                        }
                        Ok(())
                    }
                },
                _ = self.tick.tick() => self.on_tick(worker)?,
            };
            if let Err(e) = step {
                return Ok(Round::Ended(Err(e)));
            }
            if let Some(reason) = fenced {
                return Ok(Round::Fenced(reason));
            }
        }
    }

    /// Forgets old `seen` markers (once a minute), lets synced offsets be committed,
    /// publishes the outbox, reports, dispatches what came due, and notes how far the worker
    /// has settled. `Err`: the store failed.
    fn on_tick(&mut self, worker: &mut Worker) -> Result<Result<(), Error>, Error> {
        if self.last_forget.elapsed() >= Duration::from_secs(60) {
            self.last_forget = tokio::time::Instant::now();
            let before = worker.clock.now_millis() - SEEN_RETENTION.as_millis() as i64;
            worker.store.forget_seen(before, 10_000)?;
        }
        self.unsynced
            .release(&worker.store, &self.consumer, &worker.topics.transitions)?;
        worker.publish_start();
        worker.report();
        self.open = worker.store.outbox_len() < MAX_OUTBOX;
        // Read before dispatching, which reads the clock again: it sees at least this much.
        let now = worker.clock.now_millis();
        Ok(worker.dispatch().and_then(|()| worker.note_settled(now)))
    }

    /// Leaves the group after being fenced out and joins it with a new consumer. The jobs of
    /// what was read are in the store; what was not is read again by the new member (a
    /// transition already taken is recognised as seen).
    async fn rejoin(self, worker: &Worker, kafka: &kafka::Config) -> Result<Self, Error> {
        let deadline = tokio::time::Instant::now() + kafka.shutdown_timeout;
        kafka::close_consumer(self.consumer, deadline).await;
        Ok(Reading {
            consumer: join(&worker.config, kafka, &worker.topics.transitions)?,
            ..self
        })
    }
}

/// How a stretch of the loop ended.
enum Round {
    /// At shutdown (`Ok`) or on a failure, after which the worker parks.
    Ended(Result<(), Error>),
    /// Fenced out of the group, for this reason.
    Fenced(String),
}

impl Worker {
    /// Starts no new attempts and waits for those in flight, at most one request timeout.
    async fn park(&mut self, answers: &mut mpsc::Receiver<Attempted>) {
        self.tracker.close();
        let parked = tokio::time::timeout(self.config.timeout + Duration::from_secs(1), async {
            while !self.in_flight.is_empty() {
                match answers.recv().await {
                    Some(answer) => self.finish_all([answer])?,
                    None => break,
                }
            }
            Ok::<(), Error>(())
        })
        .await;
        if let Ok(Err(e)) = parked {
            tracing::error!(error = %e, "recording the last outcomes failed");
        }
    }

    /// Gives Kafka until the deadline for the rest: the publications under way report, the
    /// outbox is published, the consumed transitions are committed and the group is left.
    /// What is left in the outbox stays there and is published after the restart.
    async fn stop(
        &mut self,
        acks: &mut mpsc::Receiver<(Vec<u64>, Vec<u64>)>,
        mut reading: Reading,
        kafka: &kafka::Config,
    ) {
        let deadline = tokio::time::Instant::now() + kafka.shutdown_timeout;
        let _ = tokio::time::timeout_at(deadline, async {
            while !self.publishing.is_empty() {
                match acks.recv().await {
                    Some(report) => self.acknowledged(report),
                    None => break,
                }
            }
        })
        .await;
        self.publishing.clear();
        self.publish(deadline).await;
        let consumer = reading.consumer;
        if let Err(e) = reading
            .unsynced
            .release(&self.store, &consumer, &self.topics.transitions)
        {
            tracing::error!(error = %e, "syncing the store failed; its last transitions are read again");
        }
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
            tracing::debug!(error = %e, "committing the consumed transitions failed");
        }
        kafka::close_consumer(consumer, deadline).await;
        tracing::info!(pending = self.store.pending(), "delivery worker stopped");
    }
}

type EndpointKey = (String, String);

struct Worker {
    config: Arc<Config>,
    topics: kafka::Topics,
    /// The registry in force for this step ([`Worker::refresh`]).
    registry: Arc<Registry>,
    live: Live,
    producer: kafka::Producer,
    clock: Clock,
    /// How far the worker has settled: see [`Worker::note_settled`].
    settled: Settled,
    store: Store,
    client: Client,
    results: mpsc::Sender<Attempted>,
    tracker: TaskTracker,
    in_flight: HashSet<Vec<u8>, RandomState>,
    per_endpoint: HashMap<EndpointKey, usize, RandomState>,
    breakers: HashMap<EndpointKey, Breaker, RandomState>,
    disabled: HashSet<EndpointKey, RandomState>,
    /// Where publishing tasks report `(acknowledged, not acknowledged)` outbox sequences.
    published: mpsc::Sender<(Vec<u64>, Vec<u64>)>,
    /// Outbox sequences handed to the producer and not yet reported.
    publishing: HashSet<u64, RandomState>,
}

impl Worker {
    /// Takes the registry in force now: each step of the worker sees one registry, though the
    /// tenants topic may change it between steps.
    fn refresh(&mut self) {
        self.registry = self.live.current();
    }

    fn endpoint(&self, tenant: &str, id: &str) -> Option<&Endpoint> {
        self.registry.endpoint(tenant, id)
    }

    /// The dead-letter record of `job`, tagged with its endpoint's current secret.
    fn dead_letter(
        &self,
        job: &Job,
        reason: crate::topics::dead_letter::Reason,
        now: i64,
    ) -> OutboxRecord {
        dead_letter(job, reason, now, self.endpoint(&job.tenant, &job.endpoint))
    }

    /// What the rules need to know of `job`'s endpoint now.
    fn standing(&self, job: &Job) -> policy::Endpoint {
        let endpoint = self.endpoint(&job.tenant, &job.endpoint);
        policy::Endpoint {
            configured: endpoint.is_some(),
            // By the operator (the registry says so, of the endpoint or its tenant), or by the
            // receiver's 410.
            disabled: endpoint.is_some_and(|e| e.disabled || e.tenant.disabled)
                || self
                    .disabled
                    .contains(&(job.tenant.clone(), job.endpoint.clone())),
        }
    }

    /// Ends `job` without an attempt, as the policy decided.
    fn end(&self, job: Job, end: End, batch: &mut Batch, now: i64) {
        let mut recorded = Recorded::of(&job, end.outcome());
        if end == End::EndpointRemoved {
            recorded.error = Some("the endpoint is no longer configured".to_string());
        }
        batch.records.push(outcome_record(recorded, now));
        let reason = end.dead_letter();
        if let Some(reason) = reason {
            batch.records.push(self.dead_letter(&job, reason, now));
        }
        batch.changes.push(Change::Finish {
            job,
            dead: reason.is_some(),
        });
    }

    /// Settles the worker up to `now_ms`, read before a dispatch, when that dispatch left
    /// nothing to do by then: no attempt in flight (so it started none, and every answer is
    /// recorded), no job due (none held back by a full endpoint or an open circuit, none
    /// ended and not yet written), and every outcome record acknowledged by Kafka.
    ///
    /// Jobs are those of the transitions read so far: one produced a moment ago may not have
    /// been fetched yet.
    fn note_settled(&mut self, now_ms: i64) -> Result<(), Error> {
        let settled = self.in_flight.is_empty()
            && self.store.next_due()?.is_none_or(|due| due > now_ms)
            && self.store.outbox(1)?.is_empty();
        if settled {
            self.settled.record(now_ms);
            metrics::delivery_settled(now_ms);
        }
        Ok(())
    }

    fn report(&self) {
        let now = self.clock.now_millis();
        let open = self.breakers.values().filter(|b| b.is_open(now)).count();
        metrics::delivery_gauges(
            self.store.pending(),
            open,
            self.disabled.len(),
            self.store.outbox_len(),
        );
    }
}

/// What one turn of the loop writes to the store, in one batch.
#[derive(Default)]
struct Batch {
    changes: Vec<Change>,
    /// The keys of the transitions handled, marked seen.
    seen: Vec<Vec<u8>>,
    records: Vec<OutboxRecord>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.seen.is_empty() && self.records.is_empty()
    }

    fn write(self, store: &mut Store, now: i64) -> Result<(), store::Error> {
        store.write(self.changes, &self.seen, self.records, now)
    }
}
