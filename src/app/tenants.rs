//! The registry read from the tenants topic (`tenants.source = "topic"`): read to its end
//! before the roles start, then followed on a thread of its own. Each change is put in force
//! once the registry it leaves passes the checks a registry passes at start; until then the
//! registry in force stays, and the log and `cartstream_tenants_stale` say why.

use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{problems, Roles};
use crate::clock::Clock;
use crate::config::Config;
use crate::credentials::Keyring;
use crate::kafka::registry::{Reader, Writer};
use crate::problems::Problems;
use crate::telemetry::{metrics, LogLimit};
use crate::tenants::{Live, Reading, Registry};

/// How long the first read of the topic may take before the start fails.
const CATCH_UP: Duration = Duration::from_secs(60);

/// How long the follower waits for a change before it looks at `shutdown` again.
const FOLLOW_WAIT: Duration = Duration::from_millis(100);

/// Reads the topic to its end and returns the registry it holds, in force, with a thread that
/// follows the topic until `shutdown`. Fails when the topic cannot be read, holds a record that
/// is not a registry record, or holds a registry the roles cannot serve.
pub(super) async fn follow(
    config: &Config,
    roles: Roles,
    clock: &Clock,
    shutdown: &CancellationToken,
) -> anyhow::Result<Live> {
    let keys = config.tenants.keyring().context(
        "tenants.sealing_key is not set: the tenants topic's secrets are sealed with it",
    )?;
    let topic = config.kafka.topics().tenants;
    if config.kafka.create_topics {
        crate::kafka::registry::ensure_topic(&config.kafka)
            .await
            .with_context(|| format!("creating {topic}"))?;
        let status = config.kafka.topics().status;
        crate::kafka::status::ensure_topic(&config.kafka)
            .await
            .with_context(|| format!("creating {status}"))?;
    }
    let (kafka, clock) = (config.kafka.clone(), clock.clone());
    let follower = tokio::task::spawn_blocking(move || {
        let reader = Reader::open(&kafka)?;
        let mut follower = Follower {
            reader,
            reading: Reading::default(),
            clock,
        };
        let reading = &mut follower.reading;
        let read = follower
            .reader
            .catch_up(CATCH_UP, |key, value| reading.apply(key, value))?;
        Ok::<_, crate::kafka::registry::Error>((follower, read))
    })
    .await
    .context("reading the tenants topic panicked")?
    .map(|(follower, read)| {
        tracing::info!(%topic, records = read, "tenants topic read to its end");
        follower
    })
    .with_context(|| format!("reading {topic}"))?;
    let registry = follower
        .registry(config, roles, &keys)
        .map_err(|problems| {
            anyhow::anyhow!(
                "{topic}: {}",
                problems.iter().collect::<Vec<_>>().join("; ")
            )
        })?;
    for warning in registry.warnings() {
        tracing::warn!("{topic}: {warning}");
    }
    let read_to = follower.reader.position().unwrap_or(0);
    let live = Live::following(registry, follower.reading.records().clone(), read_to);
    let (in_force, config, stop) = (live.clone(), config.clone(), shutdown.clone());
    std::thread::Builder::new()
        .name("cartstream-tenants".into())
        .spawn(move || follower.run(&config, roles, &keys, &in_force, &stop))
        .context("starting the tenants topic's follower")?;
    Ok(live)
}

/// The keys and the producer the admin API writes the topic with.
pub(super) fn writer(config: &Config) -> anyhow::Result<(Keyring, Writer)> {
    let keys = config
        .tenants
        .keyring()
        .context("tenants.sealing_key is not set")?;
    let writer = Writer::new(&config.kafka, config.admin.write_timeout)
        .context("creating the tenants topic's producer")?;
    Ok((keys, writer))
}

/// What the topic has said so far.
struct Follower {
    reader: Reader,
    reading: Reading,
    /// The time a rotated-out secret's grace period is judged by.
    clock: Clock,
}

impl Follower {
    /// The registry the records make, checked as at start; every problem otherwise.
    fn registry(
        &self,
        config: &Config,
        roles: Roles,
        keys: &Keyring,
    ) -> Result<Registry, Problems> {
        let mut found = Problems::default();
        for why in self.reading.unreadable() {
            found.push(format!("not a registry record: {why}"));
        }
        if !found.is_empty() {
            return Err(found);
        }
        let registry = self
            .reading
            .records()
            .registry(keys, self.clock.now_millis())?;
        problems(config, &registry, roles).into_result(registry)
    }

    /// Follows the topic until `stop`, putting each change in force when it may be, and the
    /// registry again when a rotated-out secret's grace period ends.
    fn run(
        mut self,
        config: &Config,
        roles: Roles,
        keys: &Keyring,
        live: &Live,
        stop: &CancellationToken,
    ) {
        let topic = config.kafka.topics().tenants;
        let failures = LogLimit::new(Duration::from_secs(10));
        let mut next_expiry = self.next_expiry();
        while !stop.is_cancelled() {
            let reading = &mut self.reading;
            let read = self
                .reader
                .follow(FOLLOW_WAIT, |key, value| reading.apply(key, value));
            let expired = next_expiry.is_some_and(|at| self.clock.now_millis() >= at);
            match read {
                Ok(0) if !expired => continue,
                Ok(_) => {}
                Err(e) => {
                    if let Some(suppressed) = failures.allow(tokio::time::Instant::now()) {
                        tracing::warn!(%topic, suppressed, error = %anyhow::Error::from(e), "reading the tenants topic failed; trying again");
                    }
                    continue;
                }
            }
            match self.registry(config, roles, keys) {
                Ok(registry) => {
                    tracing::info!(
                        %topic,
                        tenants = registry.tenants().len(),
                        integrations = registry.integrations().len(),
                        endpoints = registry.endpoints().len(),
                        "tenants registry updated from the topic"
                    );
                    for warning in registry.warnings() {
                        tracing::warn!(%topic, "{warning}");
                    }
                    live.replace(registry);
                    metrics::tenants_update(true);
                }
                Err(problems) => {
                    let list: Vec<&str> = problems.iter().collect();
                    tracing::error!(
                        %topic,
                        problems = list.join("; "),
                        "the tenants topic's latest change is refused; the registry in force stays until a change fixes it"
                    );
                    metrics::tenants_update(false);
                }
            }
            next_expiry = self.next_expiry();
            // Read, and in force or refused: what waits for a write to be read may go on.
            if let Some(read_to) = self.reader.position() {
                live.read(self.reading.records().clone(), read_to);
            }
        }
    }

    /// When the next rotated-out secret's grace period ends, if one does.
    fn next_expiry(&self) -> Option<i64> {
        self.reading.records().next_expiry(self.clock.now_millis())
    }
}
