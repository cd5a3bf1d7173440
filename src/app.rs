//! Wiring: builds every component from the configuration, runs them under one task tracker, and
//! shuts them down in order — the ingress stops accepting and drains, the producer flushes, then
//! the admin port closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Admin;
use crate::clock::Clock;
use crate::config::Config;
use crate::health::Health;
use crate::ingress::Ingress;
use crate::tenants::Registry;
use crate::{kafka, server, telemetry};

/// How long the producer may take to deliver what is still queued at shutdown.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A started daemon.
pub struct Running {
    pub ingress_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: CancellationToken,
    done: JoinHandle<anyhow::Result<()>>,
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
    pub async fn wait(self) -> anyhow::Result<()> {
        self.done.await.context("the daemon task panicked")?
    }
}

/// Starts the ingress role: topics, producer, the ingress and admin ports.
pub async fn start_ingress(
    config: Config,
    registry: Registry,
    clock: Clock,
) -> anyhow::Result<Running> {
    let metrics = telemetry::metrics::install();
    let topics = config.kafka.topics();
    if config.kafka.create_topics {
        kafka::admin::ensure_topics(&config.kafka, &topics.all())
            .await
            .with_context(|| format!("creating topics on {}", config.kafka.brokers))?;
    }
    let producer = kafka::Producer::from_config(
        &config.kafka,
        config.ingress.ack_timeout,
        config.ingress.max_body_bytes,
    )
    .context("creating the Kafka producer")?;

    let ingress_listener = TcpListener::bind(config.ingress.listen)
        .await
        .with_context(|| format!("binding the ingress to {}", config.ingress.listen))?;
    let admin_listener = TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("binding the admin port to {}", config.admin.listen))?;
    let ingress_addr = ingress_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let shutdown = CancellationToken::new();
    let admin_shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let health = Health::new(shutdown.clone(), producer.clone());
    let ingress = Ingress::new(
        config.ingress.clone(),
        Arc::new(registry),
        producer.clone(),
        clock,
        health.clone(),
    );
    let admin = Admin::new(metrics, health, producer.clone());

    let options = server::Options {
        header_read_timeout: config.ingress.header_read_timeout,
        http2_max_concurrent_streams: config.ingress.http2_max_concurrent_streams,
        grace: config.ingress.shutdown_grace,
    };
    let ingress_server = tracker.spawn(server::serve(
        ingress_listener,
        move |request| ingress.clone().handle(request),
        options.clone(),
        shutdown.clone(),
        tracker.clone(),
    ));
    let admin_server = tracker.spawn(server::serve(
        admin_listener,
        move |request| admin.clone().handle(request),
        server::Options {
            grace: Duration::from_secs(1),
            ..options
        },
        admin_shutdown.clone(),
        tracker.clone(),
    ));
    tracing::info!(%ingress_addr, %admin_addr, brokers = %config.kafka.brokers, "ingress started");

    let done = tokio::spawn(async move {
        ingress_server
            .await
            .context("the ingress server panicked")?;
        tracing::info!("ingress drained; flushing the producer");
        let flushed = producer.flush(FLUSH_TIMEOUT).await;
        admin_shutdown.cancel();
        admin_server.await.context("the admin server panicked")?;
        tracker.close();
        tracker.wait().await;
        flushed.context("flushing the producer at shutdown")?;
        tracing::info!("stopped");
        Ok(())
    });
    Ok(Running {
        ingress_addr,
        admin_addr,
        shutdown,
        done,
    })
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
