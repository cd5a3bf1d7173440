//! The delivery loop. One task reads `<prefix>.transitions.v1`, stores one job per subscribed
//! endpoint (and only then lets the offset be committed), attempts due jobs over HTTP within
//! the concurrency limits and circuit breakers, writes each attempt's outcome together with
//! the job's next state, and publishes the outcome records.
//!
//! Requests run as tasks on a tracker and report back on a bounded channel; every change to
//! the store happens on the loop, so the store needs no lock. On shutdown the loop stops
//! starting attempts and waits (at most the request timeout) for those in flight — an attempt
//! whose answer never arrived is simply due again after the restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod commands;
mod outbox;

use super::breaker::Breaker;
use super::client::{self, Answer, Client};
use super::handle::{Command, Handle};
use super::policy::{self, Attempt, Decision, End, Progress, Schedule, Supersession};
use super::records::{dead_letter, outcome_record, webhook_body, Recorded};
use super::redrive::Source;
use super::store::{self, Change, Job, OutboxRecord, Store};
use super::{sign, Config};
use crate::clock::{self, Clock};
use crate::kafka;
use crate::telemetry::{error_chain, metrics};
use crate::tenants::{Endpoint, Registry};
use crate::topics::dead_letter::Reason;
use crate::topics::transition::Transition;

/// Outbox records published per round.
const PUBLISH_BATCH: usize = 1_000;
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

/// A delivery worker, ready to run.
pub struct Delivery {
    commands: mpsc::Receiver<Command>,
    handle: Handle,
    config: Config,
    kafka: kafka::Config,
    registry: Arc<Registry>,
    producer: kafka::Producer,
    clock: Clock,
}

impl Delivery {
    pub fn new(
        config: Config,
        kafka: kafka::Config,
        registry: Arc<Registry>,
        producer: kafka::Producer,
        clock: Clock,
    ) -> Self {
        let (sender, commands) = mpsc::channel(16);
        let dead_letters = Source {
            kafka: kafka.clone(),
            topic: kafka.topics().dead_letters,
            group: format!("{}.redrive", config.group_id),
            consumer: config.consumer.clone(),
        };
        Delivery {
            commands,
            handle: Handle {
                commands: sender,
                dead_letters: Arc::new(dead_letters),
            },
            config,
            kafka,
            registry,
            producer,
            clock,
        }
    }

    /// Operator actions on this worker, for the admin port.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Delivers until `shutdown`, then lets in-flight requests finish (at most the request
    /// timeout), publishes recorded outcomes and commits the consumed transitions.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let kafka = self.kafka.clone();
        let (mut worker, mut inbox, consumer) = self.start()?;
        let mut reading = Reading::new(consumer, &worker);
        // `?`: a store or a consumer that fails between rounds ends the worker at once.
        let result = loop {
            match reading.deliver(&mut worker, &mut inbox, &shutdown).await? {
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
        result
    }

    /// Opens the store, the HTTP client and the consumer; the worker and what reports to it.
    fn start(self) -> Result<(Worker, Inbox, StreamConsumer<Lag>), Error> {
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
        let disabled: HashSet<(String, String)> = store.disabled()?.into_iter().collect();
        tracing::info!(
            topic = %topics.transitions,
            group = %self.config.group_id,
            state_dir = %self.config.state_dir.display(),
            pending = store.pending(),
            "delivery worker started"
        );
        let worker = Worker {
            config: Arc::new(self.config),
            topics,
            registry: self.registry,
            producer: self.producer,
            clock: self.clock,
            store,
            client,
            results,
            tracker: TaskTracker::new(),
            in_flight: HashSet::new(),
            per_endpoint: HashMap::new(),
            breakers: HashMap::new(),
            disabled,
            published,
            publishing: HashSet::new(),
        };
        let inbox = Inbox {
            answers,
            acks,
            commands: self.commands,
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
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(Round::Ended(Ok(()))),
                Some(answer) = inbox.answers.recv() => {
                    worker.finish(answer).and_then(|()| worker.dispatch())
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
    /// publishes the outbox, reports, and dispatches what came due. `Err`: the store failed.
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
        Ok(worker.dispatch())
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
                    Some(answer) => self.finish(answer)?,
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

/// The offsets of transitions whose jobs are written to the store but not yet synced to disk.
/// They are handed to the consumer for its next commit only after the store's log is synced, so
/// that a commit never covers jobs a power cut could still take away (a process crash cannot:
/// RocksDB's log is written before each write returns).
#[derive(Default)]
struct Unsynced(BTreeMap<i32, i64>);

impl Unsynced {
    fn taken(&mut self, partition: i32, offset: i64) {
        self.0.insert(partition, offset);
    }

    /// Syncs the store, then stores the offsets for the consumer's next commit.
    fn release<C: Consumer<Lag>>(
        &mut self,
        store: &Store,
        consumer: &C,
        topic: &str,
    ) -> Result<(), Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        store.sync()?;
        for (partition, offset) in std::mem::take(&mut self.0) {
            // A partition revoked meanwhile refuses it: its new owner reads the record again
            // (at least once, as after any move of a partition).
            if let Err(e) = consumer.store_offset(topic, partition, offset) {
                tracing::debug!(error = %e, partition, "storing the offset failed");
            }
        }
        Ok(())
    }
}

/// A consumer of `topic` in the delivery group.
fn join(
    config: &Config,
    kafka_config: &kafka::Config,
    topic: &str,
) -> Result<StreamConsumer<Lag>, Error> {
    let consumer = consumer(config, kafka_config, topic)?;
    consumer.subscribe(&[topic]).map_err(Error::Consumer)?;
    Ok(consumer)
}

fn consumer(
    config: &Config,
    kafka_config: &kafka::Config,
    topic: &str,
) -> Result<StreamConsumer<Lag>, Error> {
    let member = kafka::group::Member {
        role: "delivery",
        group_id: &config.group_id,
        state_dir: &config.state_dir,
        properties: &config.consumer,
        // Offsets are stored only after the transition's jobs are in RocksDB, and committed
        // from there in the background.
        auto_commit: true,
    };
    let client = member.client_config(
        kafka_config,
        &[("partition.assignment.strategy", "cooperative-sticky")],
        &[],
    );
    client
        .create_with_context(Lag {
            topic: topic.to_string(),
        })
        .map_err(Error::Consumer)
}

/// Reports the consumer's lag from librdkafka's statistics.
struct Lag {
    topic: String,
}

impl ClientContext for Lag {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            let lag: i64 = topic
                .partitions
                .values()
                .filter(|p| p.partition >= 0)
                .map(|p| p.consumer_lag.max(0))
                .sum();
            metrics::delivery_lag(lag);
        }
    }
}

impl ConsumerContext for Lag {}

/// What came back from one attempt.
struct Attempted {
    job: Job,
    result: Result<Answer, client::Error>,
    took: Duration,
}

type EndpointKey = (String, String);

struct Worker {
    config: Arc<Config>,
    topics: kafka::Topics,
    registry: Arc<Registry>,
    producer: kafka::Producer,
    clock: Clock,
    store: Store,
    client: Client,
    results: mpsc::Sender<Attempted>,
    tracker: TaskTracker,
    in_flight: HashSet<Vec<u8>>,
    per_endpoint: HashMap<EndpointKey, usize>,
    breakers: HashMap<EndpointKey, Breaker>,
    disabled: HashSet<EndpointKey>,
    /// Where publishing tasks report `(acknowledged, not acknowledged)` outbox sequences.
    published: mpsc::Sender<(Vec<u64>, Vec<u64>)>,
    /// Outbox sequences handed to the producer and not yet reported.
    publishing: HashSet<u64>,
}

impl Worker {
    fn endpoint(&self, tenant: &str, id: &str) -> Option<&Endpoint> {
        self.registry
            .endpoints()
            .iter()
            .find(|e| &*e.tenant.id == tenant && e.id == id)
    }

    /// What the rules need to know of `job`'s endpoint now.
    fn standing(&self, job: &Job) -> policy::Endpoint {
        policy::Endpoint {
            configured: self.endpoint(&job.tenant, &job.endpoint).is_some(),
            disabled: self
                .disabled
                .contains(&(job.tenant.clone(), job.endpoint.clone())),
        }
    }

    /// Stores one job per subscribed endpoint of the transition in `payload`; an order ends
    /// the pending abandonments of its cart (`superseded`).
    /// Returns the jobs stored due now, for [`Worker::start_ready`].
    fn take(&mut self, payload: &[u8]) -> Result<Vec<Job>, Error> {
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
        let occurred_ms = clock::parse_rfc3339(&transition.at).unwrap_or(now);
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
            jobs.push(Job {
                transition_id: transition.id.clone(),
                tenant: transition.tenant_id.clone(),
                endpoint: endpoint.id.clone(),
                event: transition.bucket.as_str().to_string(),
                cart: transition.cart.clone(),
                body: body.clone(),
                occurred_ms,
                created_ms: now,
                attempts: 0,
                next_ms: now,
                last_status: None,
                last_error: None,
                superseded: false,
            });
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

    /// Ends `job` without an attempt, as the policy decided.
    fn end(&self, job: Job, end: End, batch: &mut Batch, now: i64) {
        let mut recorded = Recorded::of(&job, end.outcome());
        if end == End::EndpointRemoved {
            recorded.error = Some("the endpoint is no longer configured".to_string());
        }
        batch.records.push(outcome_record(recorded, now));
        let reason = end.dead_letter();
        if let Some(reason) = reason {
            batch.records.push(dead_letter(&job, reason, now));
        }
        batch.changes.push(Change::Finish {
            job,
            dead: reason.is_some(),
        });
    }

    /// Starts attempts for due jobs, within the global and per-endpoint limits and the
    /// circuits; ends jobs that expired or whose endpoint is gone or disabled.
    fn dispatch(&mut self) -> Result<(), Error> {
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
    fn start_ready(&mut self, jobs: Vec<Job>) {
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

    /// Records an attempt's outcome and the job's next state.
    fn finish(&mut self, attempted: Attempted) -> Result<(), Error> {
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
        self.perform(job, decision, outcome, endpoint_key, now)
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
    /// endpoint) or schedules its retry, written with its outcome record in one batch.
    fn perform(
        &mut self,
        mut job: Job,
        decision: Decision,
        outcome: OutboxRecord,
        endpoint_key: EndpointKey,
        now: i64,
    ) -> Result<(), Error> {
        let mut records = vec![outcome];
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
        self.store.write(vec![change], &[], records, now)?;
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
