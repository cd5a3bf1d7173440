//! The webhook receiver: route, bound, read the body once, let the provider find the tenant clue,
//! resolve the integration, verify with its keys only, and produce the untouched body to Kafka —
//! untouched but for secrets a platform carries in it, which are sealed into the credentials
//! topic and redacted ([`crate::credentials`]). A request is answered 200 only after the broker
//! acknowledged its records.

mod error;
pub mod route;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{header, HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use error::{Class, Error};
pub use route::Route;

use crate::clock::Clock;
use crate::credentials::{self, Vault};
use crate::health::Health;
use crate::kafka::{self, inbound};
use crate::problems::Problems;
use crate::providers::{self, Keys, Provider};
use crate::telemetry::metrics;
use crate::tenants::{Integration, Registry};
use crate::topics::credentials::{self as credential, Credential};

/// The `[ingress]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections open at once (never more than half the process's open files limit).
    pub max_connections: usize,
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    pub max_in_flight_requests: usize,
    /// Bytes of request bodies held in memory at once, across all requests.
    pub max_buffered_bytes: usize,
    pub http2_max_concurrent_streams: u32,
    pub maintenance: bool,
    pub retry_after_seconds: u64,
    pub tenant_rate_limit_per_second: u32,
    pub tenant_rate_limit_burst: u32,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The key secrets carried in payloads are sealed with (32 bytes, base64): the text, or
    /// `{ env = "VARIABLE" }`, or `{ file = "path" }`. Needed when an integration's platform
    /// sends such secrets (ShopiMind); see [`crate::credentials`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_key: Option<kafka::Property>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_body_bytes: 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            ack_timeout: Duration::from_secs(5),
            max_in_flight_requests: 8192,
            max_buffered_bytes: 256 * 1024 * 1024,
            http2_max_concurrent_streams: 256,
            maintenance: false,
            retry_after_seconds: 5,
            tenant_rate_limit_per_second: 0,
            tenant_rate_limit_burst: 0,
            shutdown_grace: Duration::from_secs(30),
            credentials_key: None,
        }
    }
}

impl Config {
    /// Reads `credentials_key` from where it is kept and checks it is a key.
    pub fn resolve_credentials_key(
        &mut self,
        env: &HashMap<String, String>,
        base: &Path,
        problems: &mut Problems,
    ) {
        let Some(key) = &mut self.credentials_key else {
            return;
        };
        let checked = key.resolve(env, base).and_then(|()| {
            let text = key.text().unwrap_or_default();
            Vault::from_base64(text)
                .map(drop)
                .map_err(|e| e.to_string())
        });
        if let Err(why) = checked {
            problems.push(format!("ingress.credentials_key: {why}"));
        }
    }

    /// The vault of `credentials_key`, once resolved and checked.
    pub fn vault(&self) -> Option<Vault> {
        let text = self.credentials_key.as_ref()?.text()?;
        Vault::from_base64(text).ok()
    }

    /// Every integration whose platform sends secrets in its payloads needs a key to keep
    /// them: without one they would be lost (ShopiMind sends its access token once).
    pub fn check_credentials(&self, registry: &Registry, problems: &mut Problems) {
        if self.credentials_key.is_some() {
            return;
        }
        let mut needing: Vec<String> = registry
            .integrations()
            .iter()
            .filter(|i| !i.provider.secret_fields().is_empty())
            .map(|i| format!("{} ({})", i.tenant.id, i.provider.slug()))
            .collect();
        needing.dedup();
        if !needing.is_empty() {
            problems.push(format!(
                "ingress.credentials_key: not set, but these integrations receive secrets in their payloads (an access token sent once), which are kept only sealed with it: {}",
                needing.join(", ")
            ));
        }
    }

    pub fn validate(&self, problems: &mut Problems) {
        let positive = [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_in_flight_requests", self.max_in_flight_requests as u64),
            (
                "http2_max_concurrent_streams",
                self.http2_max_concurrent_streams as u64,
            ),
            (
                "header_read_timeout",
                self.header_read_timeout.as_millis() as u64,
            ),
            (
                "body_read_timeout",
                self.body_read_timeout.as_millis() as u64,
            ),
            ("ack_timeout", self.ack_timeout.as_millis() as u64),
            ("idle_timeout", self.idle_timeout.as_millis() as u64),
            ("max_connections", self.max_connections as u64),
            ("max_buffered_bytes", self.max_buffered_bytes as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                problems.push(format!("ingress.{key}: must be greater than zero"));
            }
        }
        if self.max_in_flight_requests > Semaphore::MAX_PERMITS {
            problems.push("ingress.max_in_flight_requests: too large");
        }
        if self.max_buffered_bytes > Semaphore::MAX_PERMITS {
            problems.push("ingress.max_buffered_bytes: too large");
        }
        if self.max_buffered_bytes < self.max_body_bytes {
            problems.push("ingress.max_buffered_bytes: must be at least ingress.max_body_bytes");
        }
        if self.tenant_rate_limit_burst > 0 && self.tenant_rate_limit_per_second == 0 {
            problems.push("ingress.tenant_rate_limit_burst: needs tenant_rate_limit_per_second");
        }
    }
}

/// The ingress request handler, shared by every connection.
pub struct Ingress {
    config: Config,
    registry: Arc<Registry>,
    producer: kafka::Producer,
    clock: Clock,
    health: Health,
    permits: Arc<Semaphore>,
    /// Bytes of request bodies that may be held in memory at once.
    buffered: Arc<Semaphore>,
    rate_limit: Option<DefaultKeyedRateLimiter<Arc<str>>>,
    not_accepted_log: crate::telemetry::LogLimit,
    vault: Option<Vault>,
}

impl Ingress {
    pub fn new(
        config: Config,
        registry: Arc<Registry>,
        producer: kafka::Producer,
        clock: Clock,
        health: Health,
    ) -> Arc<Self> {
        let rate_limit = NonZeroU32::new(config.tenant_rate_limit_per_second).map(|rate| {
            let burst = NonZeroU32::new(config.tenant_rate_limit_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let vault = config.vault();
        Arc::new(Ingress {
            vault,
            permits: Arc::new(Semaphore::new(config.max_in_flight_requests)),
            buffered: Arc::new(Semaphore::new(config.max_buffered_bytes)),
            config,
            registry,
            producer,
            clock,
            health,
            rate_limit,
            not_accepted_log: crate::telemetry::LogLimit::new(Duration::from_secs(1)),
        })
    }

    /// Answers one request. Never fails: every error becomes its HTTP answer here, and a panic
    /// while answering becomes a 500 (logged with its cause) instead of a reset connection.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        match AssertUnwindSafe(self.clone().respond(request, started))
            .catch_unwind()
            .await
        {
            Ok(response) => response,
            Err(panic) => {
                let cause = crate::telemetry::panic_message(panic.as_ref());
                self.answer("unknown", Err(Error::Internal(cause)), started)
            }
        }
    }

    async fn respond(
        self: Arc<Self>,
        request: Request<Incoming>,
        started: Instant,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let (provider, key) = match route::parse(parts.uri.path()) {
            Route::Healthz => return crate::health::healthz(),
            Route::Readyz => return crate::health::readyz(&self.health, false).await,
            Route::NotFound => return self.answer("unknown", Err(Error::NotFound), started),
            Route::Webhook { provider, key } => (provider, key),
        };
        let Some(provider) = providers::find(provider) else {
            return self.answer("unknown", Err(Error::UnknownProvider), started);
        };
        if parts.method != Method::POST {
            return self.answer(provider.slug(), Err(Error::MethodNotAllowed), started);
        }
        let result = self.webhook(provider, key, &parts.headers, body).await;
        self.answer(provider.slug(), result, started)
    }

    fn answer(
        &self,
        provider: &'static str,
        result: Result<&'static [u8], Error>,
        started: Instant,
    ) -> Response<Full<Bytes>> {
        let response = match result {
            Ok(body) => Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from_static(body)))
                .expect("static response parts are valid"),
            Err(error) => {
                match error.class() {
                    Class::Internal => tracing::error!(
                        provider,
                        cause = %error.cause(),
                        "webhook answered 500: internal error"
                    ),
                    // A flood of them (an outage, a burst past the limits) would flood the log:
                    // one line a second, with how many were not logged.
                    Class::Retryable => {
                        if let Some(suppressed) = self.not_accepted_log.allow(Instant::now()) {
                            tracing::warn!(
                                provider,
                                error = &error as &dyn std::error::Error,
                                suppressed,
                                "webhook not accepted"
                            )
                        }
                    }
                    Class::Client => tracing::debug!(
                        provider,
                        error = &error as &dyn std::error::Error,
                        "webhook refused"
                    ),
                }
                error.into_response(self.config.retry_after_seconds)
            }
        };
        metrics::ingress_request(provider, response.status().as_u16(), started.elapsed());
        response
    }

    /// Takes one webhook in: admitted within the limits, its body read, its sender
    /// authenticated and within its rate, produced to Kafka — the provider's 200 body once
    /// Kafka acknowledged it.
    async fn webhook(
        &self,
        provider: &'static dyn Provider,
        key: Option<&str>,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Result<&'static [u8], Error> {
        let _admitted = self.admit(headers)?;
        let body = read_body(
            body,
            headers,
            self.config.max_body_bytes,
            self.config.body_read_timeout,
        )
        .await?;
        #[cfg(feature = "fault-injection")]
        if headers.contains_key("x-cartstream-inject-panic") {
            panic!("fault injected by the test build (x-cartstream-inject-panic)");
        }
        let request = providers::Request::new(headers, &body);
        let sender = self.authenticate(provider, key, &request)?;
        self.check_rate_limit(&sender.integration.tenant.id)?;
        self.produce(provider, sender, &request).await?;
        metrics::ingress_body_size(provider.slug(), body.len());
        Ok(provider.accepted_body())
    }

    /// Admits a request unless in maintenance or past the limits: one of the in-flight
    /// permits, and room for its body in the buffer — bodies being read are held in memory,
    /// so their total is bounded too, not only each one.
    fn admit(&self, headers: &HeaderMap) -> Result<Admitted, Error> {
        if self.config.maintenance {
            return Err(Error::Maintenance);
        }
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded)?;
        let in_flight = InFlight::enter();
        let buffer = self
            .buffered
            .clone()
            .try_acquire_many_owned(buffer_needed(headers, self.config.max_body_bytes))
            .map_err(|_| Error::Overloaded)?;
        Ok(Admitted {
            _buffer: buffer,
            _in_flight: in_flight,
            _permit: permit,
        })
    }

    /// Finds the integration the request's clue or URL key names and verifies the request
    /// with its keys only (or its own scheme's).
    fn authenticate<'s, 'a>(
        &'s self,
        provider: &'static dyn Provider,
        key: Option<&str>,
        request: &providers::Request<'a>,
    ) -> Result<Authenticated<'s, 'a>, Error> {
        let seen = provider.inspect(request)?;
        if seen.clue.is_none() && key.is_none() {
            return Err(Error::MissingClue);
        }
        let mut integration = self
            .registry
            .resolve(provider.slug(), key, seen.clue.as_deref());
        // A sample store behind an integration key: a platform's test, if the secret verifies.
        let mut sample = false;
        if integration.is_none() {
            integration = self
                .registry
                .resolve_sample(provider.slug(), key, seen.clue.as_deref());
            sample = integration.is_some();
        }
        // Unknown tenants are verified against keys nobody has, so the answer (and its timing)
        // is the one a wrong signature gets.
        let keys = integration.map_or(Keys::unknown_tenant(), |i| &i.keys);
        // An integration's own scheme replaces its provider's conventions (Vendera).
        let scheme = integration.and_then(|i| i.scheme.as_ref());
        let verdict = match scheme {
            Some(scheme) => scheme.verify(request, keys),
            None => provider.verify(request, keys, self.clock.now()),
        };
        if let Err(providers::Error::Unauthorized(_)) = verdict {
            metrics::ingress_signature_failure(provider.slug());
        }
        verdict?;
        let Some(integration) = integration else {
            metrics::ingress_signature_failure(provider.slug());
            return Err(providers::Error::Unauthorized("unauthorized").into());
        };
        let seen = match scheme {
            Some(scheme) => scheme.inspect(request)?,
            None => seen,
        };
        Ok(Authenticated {
            integration,
            seen,
            sample,
        })
    }

    /// Refuses the request while its tenant is past the configured rate.
    fn check_rate_limit(&self, tenant: &Arc<str>) -> Result<(), Error> {
        if let Some(limiter) = &self.rate_limit {
            if let Err(not_until) = limiter.check_key(tenant) {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(limiter.clock()));
                return Err(Error::RateLimited {
                    retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
                });
            }
        }
        Ok(())
    }

    /// Produces the delivery to the inbound topic, its metadata in headers, and waits for
    /// Kafka's acknowledgement; secrets it carries are sealed into the credentials topic first
    /// and produced only redacted.
    async fn produce(
        &self,
        provider: &'static dyn Provider,
        sender: Authenticated<'_, '_>,
        request: &providers::Request<'_>,
    ) -> Result<(), Error> {
        let Authenticated {
            integration,
            seen,
            sample,
        } = sender;
        let tenant = &integration.tenant.id;
        // Refused (400) before anything is produced when its secrets cannot be told apart.
        let redacted = credentials::redact(request.body, provider.secret_fields())?;
        let vault = || {
            self.vault
                .as_ref()
                .ok_or_else(|| Error::Internal("ingress.credentials_key is not set".into()))
        };
        let delivery_id = match seen.delivery_id {
            Some(id) => id,
            // The plain digest of a body whose secrets are redacted would confirm a guess of
            // them: the ids of such a platform's bodies are keyed.
            None if !provider.secret_fields().is_empty() => {
                Cow::Owned(vault()?.delivery_id(request.body))
            }
            None => Cow::Owned(providers::body_hash_id(request.body)),
        };
        let received_at = self.clock.now();
        let metadata = inbound::Metadata {
            provider: provider.slug(),
            tenant,
            event_type: seen.event_type.as_deref().or(integration.event.as_deref()),
            delivery_id: &delivery_id,
            received_at,
            content_type: request
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            payload_version: seen.payload_version.as_deref(),
            test: sample || seen.test,
        };
        if metadata.test {
            tracing::info!(
                provider = provider.slug(),
                tenant = %tenant,
                "a platform test delivery: answered 200 and marked cartstream-test"
            );
        }
        let ack_timeout = ack_timeout(provider, self.config.ack_timeout);
        if let Some(redacted) = &redacted {
            let installation = seen.clue.as_deref().unwrap_or_default();
            self.keep_secrets(&metadata, installation, redacted, ack_timeout)
                .await?;
        }
        self.producer
            .send_inbound(
                tenant,
                redacted.as_ref().map_or(request.body, |r| &r.body),
                metadata.headers(),
                crate::clock::unix_millis(received_at),
                ack_timeout,
            )
            .await
            .map_err(Error::Kafka)
    }
}

/// What an admitted request holds until it is answered (released in this order).
struct Admitted {
    _buffer: tokio::sync::OwnedSemaphorePermit,
    _in_flight: InFlight,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// A request whose sender is known.
struct Authenticated<'s, 'a> {
    integration: &'s Integration,
    /// What the provider, or the integration's scheme, read of the request.
    seen: providers::Inspection<'a>,
    /// A sample store's delivery behind an integration key: a platform's test.
    sample: bool,
}

impl Ingress {
    /// Seals each secret of a delivery into the credentials topic and waits for them all to be
    /// acknowledged, before its redacted body is produced: once the platform has its 200 the
    /// secret is kept (a retried delivery only writes the same record again).
    async fn keep_secrets(
        &self,
        metadata: &inbound::Metadata<'_>,
        installation: &str,
        redacted: &credentials::Redacted<'_>,
        ack_timeout: Duration,
    ) -> Result<(), Error> {
        let vault = self
            .vault
            .as_ref()
            .ok_or(Error::Internal("ingress.credentials_key is not set".into()))?;
        let timestamp_ms = crate::clock::unix_millis(metadata.received_at);
        let sends = redacted.secrets.iter().map(|(field, value)| {
            let mut record = Credential {
                schema: credential::SCHEMA.to_string(),
                tenant: metadata.tenant.to_string(),
                provider: metadata.provider.to_string(),
                installation: installation.to_string(),
                field: field.to_string(),
                event_type: metadata.event_type.map(str::to_string),
                delivery_id: metadata.delivery_id.to_string(),
                received_at: crate::clock::rfc3339(timestamp_ms),
                key_id: String::new(),
                sealed: String::new(),
            };
            // Bound to the record's tenant, provider, installation and field, its Kafka key.
            vault.seal_record(&mut record, value.get().as_bytes());
            let key = record.context();
            let value = serde_json::to_vec(&record).expect("a credential always serializes");
            async move {
                self.producer
                    .send_credential(&key, &value, timestamp_ms, ack_timeout)
                    .await
            }
        });
        for result in futures_util::future::join_all(sends).await {
            result.map_err(Error::Kafka)?;
        }
        Ok(())
    }
}

/// How long a request of `provider` waits for Kafka's acknowledgement: `configured`, but never
/// past four fifths of the platform's own deadline, so that a slow broker is answered 504 (and
/// retried) before the platform gives up on the delivery rather than after.
pub fn ack_timeout(provider: &dyn Provider, configured: Duration) -> Duration {
    provider
        .answer_deadline()
        .map_or(configured, |deadline| configured.min(deadline * 4 / 5))
}

/// The bytes of the buffer budget a request takes while its body is read: its declared length,
/// or the largest body allowed when it declares none (one larger is refused before reading).
fn buffer_needed(headers: &HeaderMap, max_body_bytes: usize) -> u32 {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = declared.map_or(max_body_bytes as u64, |len| len.min(max_body_bytes as u64));
    u32::try_from(bytes.max(1)).unwrap_or(u32::MAX)
}

/// Collects the body into one buffer, refusing it as soon as it is known to exceed `limit`.
async fn read_body(
    body: Incoming,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Error> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Error::BodyTooLarge { limit });
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(Error::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(Error::BodyTooLarge { limit }),
        Ok(Err(e)) => Err(Error::BodyRead(e)),
    }
}

/// Counts a request in the in-flight gauge for as long as it lives.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::ingress_in_flight(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::ingress_in_flight(-1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOPIMIND_TENANT: &str = "[[tenant]]\nid = \"acme\"\n[[tenant.integration]]\nprovider = \"shopimind\"\ninstallation_id = \"pg-1\"\nsecret = \"acme-shopimind-secret\"\n";

    #[test]
    fn an_integration_that_receives_secrets_needs_a_credentials_key() {
        let registry =
            Registry::from_toml(SHOPIMIND_TENANT, Path::new("."), &HashMap::new()).unwrap();
        let mut problems = Problems::default();
        Config::default().check_credentials(&registry, &mut problems);
        let listed: Vec<&str> = problems.iter().collect();
        assert!(
            listed.len() == 1 && listed[0].contains("acme (shopimind)"),
            "{listed:?}"
        );

        let mut config = Config {
            credentials_key: Some(kafka::Property::Env {
                env: "KEY".to_string(),
            }),
            ..Config::default()
        };
        let env = HashMap::from([(
            "KEY".to_string(),
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_string(),
        )]);
        let mut problems = Problems::default();
        config.resolve_credentials_key(&env, Path::new("."), &mut problems);
        config.check_credentials(&registry, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(config.vault().is_some());
    }

    #[test]
    fn a_credentials_key_that_is_not_one_is_a_problem_without_showing_it() {
        for (text, why) in [("c2hvcnQ=", "not 5 bytes"), ("secret words", "not base64")] {
            let mut config = Config {
                credentials_key: Some(kafka::Property::Text(text.to_string())),
                ..Config::default()
            };
            let mut problems = Problems::default();
            config.resolve_credentials_key(&HashMap::new(), Path::new("."), &mut problems);
            let listed: Vec<&str> = problems.iter().collect();
            assert!(
                listed.len() == 1 && listed[0].contains(why) && !listed[0].contains(text),
                "{listed:?}"
            );
        }
        let mut config = Config {
            credentials_key: Some(kafka::Property::Env {
                env: "UNSET".to_string(),
            }),
            ..Config::default()
        };
        let mut problems = Problems::default();
        config.resolve_credentials_key(&HashMap::new(), Path::new("."), &mut problems);
        assert!(problems.iter().any(|p| p.contains("UNSET is not set")));
    }

    #[test]
    fn the_ack_timeout_ends_before_the_platform_gives_up() {
        let configured = Duration::from_secs(5);
        let slug = |slug| providers::find(slug).unwrap();
        assert_eq!(
            ack_timeout(slug("shopify"), configured),
            Duration::from_secs(4)
        );
        assert_eq!(
            ack_timeout(slug("shopery"), configured),
            Duration::from_secs(4)
        );
        assert_eq!(ack_timeout(slug("flexype"), configured), configured);
        assert_eq!(
            ack_timeout(slug("flexype"), Duration::from_secs(20)),
            Duration::from_secs(8)
        );
        assert_eq!(ack_timeout(slug("salla"), configured), configured);
        assert_eq!(
            ack_timeout(slug("shopify"), Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }
}
