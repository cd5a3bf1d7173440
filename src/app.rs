//! Wiring: builds the roles a process runs from the configuration, runs them under one task
//! tracker, and shuts them down in order. At once, the ingress stops accepting and drains its
//! in-flight requests (`ingress.shutdown_grace`), while the processor and the delivery worker
//! stop reading — they meet the ingress only through Kafka, so nothing they would still read
//! is lost — finish the record or attempts in hand, and give Kafka `kafka.shutdown_timeout` for
//! their outboxes, progress and leaving their groups. Then the producer flushes what is still
//! queued (until `kafka.shutdown_timeout` after the ingress drained), and the admin port
//! closes. However slow the broker, a stop takes at most `ingress.shutdown_grace` +
//! `kafka.shutdown_timeout`, or, when longer, the work in hand (the processor's batch,
//! `processor.publish_timeout`; the delivery worker's requests, `delivery.timeout`) +
//! `kafka.shutdown_timeout`.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::FutureExt;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Admin;
use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::Delivery;
use crate::health::{Health, Stalls, Stores};
use crate::ingress::Ingress;
use crate::problems::Problems;
use crate::processor::Processor;
use crate::telemetry::Settled;
use crate::tenants::{Live, Registry};
use crate::{kafka, server, telemetry};

mod status;
mod tenants;

/// Which roles one process runs. They meet only through Kafka topics, so any split works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub ingress: bool,
    pub processor: bool,
    pub delivery: bool,
}

impl Roles {
    pub const INGRESS: Roles = Roles {
        ingress: true,
        processor: false,
        delivery: false,
    };
    pub const PROCESSOR: Roles = Roles {
        ingress: false,
        processor: true,
        delivery: false,
    };
    pub const DELIVERY: Roles = Roles {
        ingress: false,
        processor: false,
        delivery: true,
    };
    /// Every role there is: the single-machine default.
    pub const ALL: Roles = Roles {
        ingress: true,
        processor: true,
        delivery: true,
    };
}

/// A started daemon.
pub struct Running {
    /// Where the ingress listens, when this process runs it.
    pub ingress_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    /// How far the processor has settled (never, when this process does not run it): its
    /// gauge, for this daemon alone.
    pub processor_settled: Settled,
    /// How far the delivery worker has settled (never, when this process does not run it).
    pub delivery_settled: Settled,
    shutdown: CancellationToken,
    done: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Running {
    /// A daemon dropped without [`Running::wait`] shuts down in the background rather than run
    /// on unobserved (its processor thread would otherwise keep the runtime from stopping).
    fn drop(&mut self) {
        if self.done.is_some() {
            self.shutdown.cancel();
        }
    }
}

impl Running {
    /// Begins the ordered shutdown; [`Running::wait`] returns when it is complete.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the daemon has stopped.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let done = self.done.take().expect("only wait takes the task");
        done.await.context("the daemon task panicked")?
    }
}

/// Where a daemon's tenants come from.
pub enum Tenants {
    /// A registry read from a file (`tenants.source = "file"`), in force until the process
    /// ends.
    Loaded(Box<Registry>),
    /// The tenants topic (`tenants.source = "topic"`), read before the roles start and
    /// followed while they run.
    Topic,
}

impl From<Registry> for Tenants {
    fn from(registry: Registry) -> Tenants {
        Tenants::Loaded(Box::new(registry))
    }
}

/// Starts the ingress role alone.
pub async fn start_ingress(
    config: Config,
    tenants: impl Into<Tenants>,
    clock: Clock,
) -> anyhow::Result<Running> {
    start(config, tenants, clock, Roles::INGRESS).await
}

/// Starts `roles`: topics, the producer, the tenants, the ingress port and the processor as
/// asked, and the admin port.
pub async fn start(
    config: Config,
    tenants: impl Into<Tenants>,
    clock: Clock,
    roles: Roles,
) -> anyhow::Result<Running> {
    let metrics = telemetry::metrics::install();
    let producer = connect_kafka(&config).await?;
    let shutdown = CancellationToken::new();
    let (registry, tenants_topic) = match tenants.into() {
        Tenants::Loaded(registry) => (check_tenants(&config, *registry, roles)?, None),
        Tenants::Topic => {
            let live = tenants::follow(&config, roles, &clock, &shutdown).await?;
            let (keys, writer) = tenants::writer(&config)?;
            let check = {
                let config = config.clone();
                Box::new(move |registry: &Registry| problems(&config, registry, Roles::ALL))
            };
            let registrar =
                crate::tenants::Registrar::new(live.clone(), keys, writer, check, clock.clone());
            (live, Some(registrar))
        }
    };
    // A start that fails from here on stops the tenants topic's follower.
    let stop_on_failure = shutdown.clone().drop_guard();
    let listeners = bind(&config, roles).await?;
    let ingress_addr = listeners
        .ingress
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let admin_addr = listeners.admin.local_addr()?;

    let (processor_settled, delivery_settled) = (Settled::default(), Settled::default());
    let tester = crate::delivery::Tester::from_config(&config.delivery)
        .context("creating the admin API's HTTP client for test sends")?;
    let apps = Arc::new(config.platforms.apps());
    let claims = config.ingress.vault().map(|vault| {
        let (kafka, timeout) = (config.kafka.clone(), config.admin.write_timeout);
        crate::tenants::Claims::new(vault, producer.clone(), kafka, timeout)
    });
    let connect = match &tenants_topic {
        Some(registrar) => Some(
            crate::platforms::Connect::new(
                &config.platforms,
                apps.clone(),
                crate::platforms::Shopimind {
                    webhook_secret: config.ingress.shopimind_app_secret(),
                    claims: claims.clone(),
                },
                config.ingress.public_url.clone(),
                registrar.clone(),
                clock.clone(),
            )
            .context("creating OAuth connect's HTTP client")?,
        ),
        None => None,
    };
    let wiring = Wiring {
        config: &config,
        registry,
        tenants_topic,
        tester,
        apps,
        connect,
        claims,
        producer,
        clock,
        shutdown,
        tracker: TaskTracker::new(),
        processor_settled: processor_settled.clone(),
        delivery_settled: delivery_settled.clone(),
    };
    let tasks = wiring.spawn(roles, listeners, metrics);
    tracing::info!(
        ingress_addr = ?ingress_addr,
        %admin_addr,
        processor = roles.processor,
        delivery = roles.delivery,
        brokers = %config.kafka.brokers,
        "cartstream started"
    );
    stop_on_failure.disarm();
    let shutdown = tasks.shutdown.clone();
    let done = tokio::spawn(stop_in_order(tasks));
    Ok(Running {
        ingress_addr,
        admin_addr,
        processor_settled,
        delivery_settled,
        shutdown,
        done: Some(done),
    })
}

/// What the roles are built from and run under.
struct Wiring<'c> {
    config: &'c Config,
    registry: Live,
    /// With tenants from the topic: what the admin API writes it with.
    tenants_topic: Option<Arc<crate::tenants::Registrar>>,
    /// What the admin API sends an endpoint's test event with.
    tester: crate::delivery::Tester,
    /// The keys of the deployment's platform apps.
    apps: Arc<crate::platforms::Apps>,
    /// OAuth connect, with tenants from the topic.
    connect: Option<Arc<crate::platforms::Connect>>,
    /// What moves an unclaimed installation's held credentials to the tenant claiming it.
    claims: Option<crate::tenants::Claims>,
    producer: kafka::Producer,
    clock: Clock,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    processor_settled: Settled,
    delivery_settled: Settled,
}

impl Wiring<'_> {
    /// Starts the roles asked for and the admin port on the tracker; returns what
    /// [`stop_in_order`] stops.
    fn spawn(self, roles: Roles, listeners: Listeners, metrics: PrometheusHandle) -> Tasks {
        let stores = Stores::default();
        let inspector = crate::processor::Inspector::default();
        let health = self.health(roles, &stores);
        let delivery_worker = roles
            .delivery
            .then(|| self.delivery().with_stalls(health.stalls()));
        let admin = Admin::new(
            metrics,
            health.clone(),
            self.producer.clone(),
            self.config.admin.token.clone(),
            delivery_worker.as_ref().map(Delivery::handle),
            crate::admin::Registry {
                live: self.registry.clone(),
                registrar: self.tenants_topic.clone(),
                public_url: self.config.ingress.public_url.clone(),
                apps: self.apps.clone(),
                connect: self.connect.clone(),
                credentials: self.claims.clone(),
                writes_per_minute: self.config.admin.writes_per_minute,
                clock: self.clock.clone(),
                tester: self.tester.clone(),
                kafka: self.config.kafka.clone(),
                kafka_timeout: self.config.admin.write_timeout,
                producer: self.producer.clone(),
                delivery_group: self.config.delivery.group_id.clone(),
                inspector: inspector.clone(),
                processor_group: self.config.processor.group_id.clone(),
            },
        );

        let options = ingress_options(self.config, roles);
        let ingress = listeners
            .ingress
            .map(|listener| self.serve_ingress(listener, &health, options.clone()));
        if ingress.is_some() && self.tenants_topic.is_some() {
            // Ends with the shutdown; nothing waits on it.
            self.tracker.spawn(status::publish(
                self.registry.clone(),
                self.producer.clone(),
                self.shutdown.clone(),
            ));
        }
        let processor = roles
            .processor
            .then(|| self.run_processor(stores, health.stalls(), inspector));
        let delivery = delivery_worker.map(|delivery| self.run_delivery(delivery));
        let admin_shutdown = CancellationToken::new();
        let admin = self.serve_admin(listeners.admin, admin, options, &admin_shutdown);
        Tasks {
            shutdown: self.shutdown,
            ingress,
            roles: [processor, delivery].into_iter().flatten().collect(),
            admin_shutdown,
            admin,
            tracker: self.tracker,
            producer: self.producer,
            flush_timeout: self.config.kafka.shutdown_timeout,
        }
    }

    /// The health answers of both ports; with the processor here, readiness also waits for
    /// its state stores.
    fn health(&self, roles: Roles, stores: &Stores) -> Health {
        let health = Health::new(self.shutdown.clone(), self.producer.clone());
        match roles.processor {
            true => health.with_stores(stores.clone()),
            false => health,
        }
    }

    fn delivery(&self) -> Delivery {
        Delivery::new(
            self.config.delivery.clone(),
            self.config.kafka.clone(),
            self.registry.clone(),
            self.producer.clone(),
            self.clock.clone(),
        )
        .with_settled(self.delivery_settled.clone())
    }

    /// Serves the ingress on `listener` until shutdown, then drains it.
    fn serve_ingress(
        &self,
        listener: TcpListener,
        health: &Health,
        options: server::Options,
    ) -> JoinHandle<()> {
        let ingress = Ingress::new(
            self.config.ingress.clone(),
            self.registry.clone(),
            self.producer.clone(),
            self.clock.clone(),
            health.clone(),
            self.apps.clone(),
            self.connect.clone(),
        );
        self.tracker.spawn(server::serve(
            listener,
            move |request| ingress.clone().handle(request),
            options,
            self.shutdown.clone(),
            self.tracker.clone(),
        ))
    }

    fn run_processor(
        &self,
        stores: Stores,
        stalls: Stalls,
        inspector: crate::processor::Inspector,
    ) -> JoinHandle<anyhow::Result<()>> {
        let processor = Processor::new(
            self.config.processor.clone(),
            self.config.kafka.clone(),
            self.registry.clone(),
            self.producer.clone(),
            self.clock.clone(),
            stores,
            stalls,
        )
        .with_settled(self.processor_settled.clone())
        .with_inspector(inspector);
        self.run_role("the processor", |stop| processor.run(stop))
    }

    fn run_delivery(&self, delivery: Delivery) -> JoinHandle<anyhow::Result<()>> {
        // Ends with the shutdown; nothing waits on it.
        self.tracker
            .spawn(delivery.relay().run(self.shutdown.clone()));
        self.run_role("the delivery worker", |stop| delivery.run(stop))
    }

    /// Runs a role on the tracker until shutdown (see [`run_role`]).
    fn run_role<F, E>(
        &self,
        name: &'static str,
        run: impl FnOnce(CancellationToken) -> F,
    ) -> JoinHandle<anyhow::Result<()>>
    where
        F: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let role = run(self.shutdown.clone());
        self.tracker
            .spawn(run_role(name, role, self.shutdown.clone()))
    }

    /// Serves the admin port until `admin_shutdown`, which comes last in a stop.
    fn serve_admin(
        &self,
        listener: TcpListener,
        admin: Arc<Admin>,
        options: server::Options,
        admin_shutdown: &CancellationToken,
    ) -> JoinHandle<()> {
        self.tracker.spawn(server::serve(
            listener,
            move |request| admin.clone().handle(request),
            server::Options {
                name: "admin",
                max_connections: server::ADMIN_CONNECTIONS,
                max_connections_per_peer: server::ADMIN_CONNECTIONS_PER_PEER,
                unlimited_peers: Vec::new(),
                grace: Duration::from_secs(1),
                ..options
            },
            admin_shutdown.clone(),
            self.tracker.clone(),
        ))
    }
}

/// Creates the topics when configured to, and the producer every role shares.
async fn connect_kafka(config: &Config) -> anyhow::Result<kafka::Producer> {
    if config.kafka.create_topics {
        let topics = config.kafka.topics();
        let max_message = kafka::max_message_bytes(config.ingress.max_body_bytes);
        kafka::admin::ensure_topics(
            &config.kafka,
            &topics.all(),
            &topics.compacted(),
            max_message,
        )
        .await
        .with_context(|| format!("creating topics on {}", config.kafka.brokers))?;
        kafka::commands::ensure_topic(&config.kafka)
            .await
            .with_context(|| format!("creating the commands topic on {}", config.kafka.brokers))?;
    }
    kafka::Producer::from_config(&config.kafka, config.ingress.max_body_bytes)
        .context("creating the Kafka producer")
}

/// Refuses a tenants file the configured roles cannot serve; logs its warnings.
fn check_tenants(config: &Config, registry: Registry, roles: Roles) -> anyhow::Result<Live> {
    let found = problems(config, &registry, roles);
    if !found.is_empty() {
        let list: Vec<&str> = found.iter().collect();
        anyhow::bail!("the tenants file: {}", list.join("; "));
    }
    for warning in registry.warnings() {
        tracing::warn!("tenants file: {warning}");
    }
    Ok(Live::new(registry))
}

/// What makes `registry` one the configured roles cannot serve.
fn problems(config: &Config, registry: &Registry, roles: Roles) -> Problems {
    let mut problems = Problems::default();
    if roles.delivery {
        config.delivery.check_endpoints(registry, &mut problems);
    }
    if roles.ingress {
        config.ingress.check_credentials(registry, &mut problems);
        crate::platforms::check_apps(&config.platforms.apps(), registry, &mut problems);
    }
    problems
}

/// The ports a process listens on.
struct Listeners {
    /// When this process runs the ingress.
    ingress: Option<TcpListener>,
    admin: TcpListener,
}

/// Binds the ingress port (when this process runs the ingress) and the admin port.
async fn bind(config: &Config, roles: Roles) -> anyhow::Result<Listeners> {
    let ingress = match roles.ingress {
        true => Some(
            TcpListener::bind(config.ingress.listen)
                .await
                .with_context(|| format!("binding the ingress to {}", config.ingress.listen))?,
        ),
        false => None,
    };
    let admin = TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("binding the admin port to {}", config.admin.listen))?;
    Ok(Listeners { ingress, admin })
}

/// The ingress server's options, its connections capped by the open files limit (raised to
/// the hard limit here first); the admin server starts from them too.
fn ingress_options(config: &Config, roles: Roles) -> server::Options {
    let open_files = server::raise_open_files_limit();
    let max_connections = server::connection_cap(config.ingress.max_connections, open_files);
    if max_connections < config.ingress.max_connections && roles.ingress {
        tracing::warn!(
            open_files,
            max_connections,
            "the open files limit caps the ingress's connections below ingress.max_connections"
        );
    }
    server::Options {
        name: "ingress",
        header_read_timeout: config.ingress.header_read_timeout,
        idle_timeout: config.ingress.idle_timeout,
        max_connections,
        max_connections_per_peer: config.ingress.max_connections_per_peer,
        unlimited_peers: config.ingress.trusted_proxy_nets(),
        max_header_bytes: config.ingress.max_header_bytes,
        http2_max_concurrent_streams: config.ingress.http2_max_concurrent_streams,
        grace: config.ingress.shutdown_grace,
    }
}

/// What a started daemon stops, in order.
struct Tasks {
    shutdown: CancellationToken,
    ingress: Option<JoinHandle<()>>,
    /// The processor and the delivery worker, as this process runs them.
    roles: Vec<JoinHandle<anyhow::Result<()>>>,
    admin_shutdown: CancellationToken,
    admin: JoinHandle<()>,
    tracker: TaskTracker,
    producer: kafka::Producer,
    flush_timeout: Duration,
}

/// Waits for `shutdown`, then stops the daemon in order: the ingress drains, the roles stop
/// (they see the same token), the producer flushes, the admin port closes. The first role's
/// failure, or else a flush that did not finish, is the daemon's error.
async fn stop_in_order(tasks: Tasks) -> anyhow::Result<()> {
    let Tasks {
        shutdown,
        ingress,
        roles,
        admin_shutdown,
        admin,
        tracker,
        producer,
        flush_timeout,
    } = tasks;
    // The processor and the delivery worker see the same token and stop meanwhile.
    shutdown.cancelled().await;
    if let Some(server) = ingress {
        server.await.context("the ingress server panicked")?;
        tracing::info!("ingress drained");
    }
    let flush_by = Instant::now() + flush_timeout;
    let mut failure = None;
    for role in roles {
        let result = role
            .await
            .unwrap_or_else(|e| Err(anyhow::Error::new(e).context("a role's task was lost")));
        if let Err(e) = result {
            failure.get_or_insert(e);
        }
    }
    // Whatever the roles left queued: the ingress's records of requests already answered
    // (acknowledged ones are delivered by now), the last outbox records.
    let flushed = producer
        .flush(flush_by.saturating_duration_since(Instant::now()))
        .await
        .map_err(|e| match e {
            // Its share of the time may be all gone; the budget is what was exceeded.
            kafka::Error::Timeout(_) => kafka::Error::Timeout(flush_timeout),
            e => e,
        });
    admin_shutdown.cancel();
    admin.await.context("the admin server panicked")?;
    tracker.close();
    tracker.wait().await;
    if let Some(failure) = failure {
        return Err(failure);
    }
    flushed.with_context(|| {
        format!(
            "flushing the producer at shutdown ({} records not delivered)",
            producer.queue_len()
        )
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// Runs until SIGINT or SIGTERM, then shuts down in order.
pub async fn run_until_signal(running: Running) -> anyhow::Result<()> {
    let token = running.shutdown_token();
    tokio::select! {
        _ = signal() => {
            tracing::info!("shutdown requested");
            running.shutdown();
        }
        _ = token.cancelled() => {}
    }
    running.wait().await
}

async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs one role of the process. When it fails or panics, the whole process stops: `/readyz`
/// answers 503 at once (draining), the ingress drains, and the process exits with the error,
/// for its supervisor to restart it — never an ingress that looks ready beside a dead role.
async fn run_role<E>(
    name: &'static str,
    role: impl std::future::Future<Output = Result<(), E>>,
    stop: CancellationToken,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let result = match AssertUnwindSafe(role).catch_unwind().await {
        Ok(result) => result.map_err(|e| anyhow::Error::new(e).context(format!("{name} failed"))),
        Err(panic) => Err(anyhow::anyhow!(
            "{name} panicked: {}",
            crate::telemetry::panic_message(panic.as_ref())
        )),
    };
    if let Err(e) = &result {
        tracing::error!(
            error = format!("{e:#}"),
            "{name} stopped; the process stops"
        );
        stop.cancel();
    }
    result
}
