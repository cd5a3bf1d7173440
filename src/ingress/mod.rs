//! The webhook receiver: route, bound, read the body once, let the provider find the tenant clue,
//! resolve the integration, verify with its keys only, and produce the untouched body to Kafka —
//! untouched but for secrets a platform carries in it, which are sealed into the credentials
//! topic and redacted ([`crate::credentials`]). A request is answered 200 only after the broker
//! acknowledged its records.

mod config;
mod error;
mod limits;
pub mod route;
mod tracking;

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{header, HeaderMap, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use config::Config;
pub use error::{Class, Error};
pub use route::Route;

use limits::{BodyLimits, Limiter, Unauthenticated};

use crate::clock::Clock;
use crate::credentials::{self, Vault};
use crate::health::Health;
use crate::kafka::{self, inbound};
use crate::platforms::installation::{self, Outcome};
use crate::providers::{self, Keys, Provider};
use crate::server::{Peer, PerPeer};
use crate::telemetry::metrics;
use crate::tenants::{Integration, Live, Registry};
use crate::topics::credentials::{self as credential, Credential};

/// The ingress request handler, shared by every connection.
pub struct Ingress {
    config: Config,
    registry: Live,
    producer: kafka::Producer,
    clock: Clock,
    health: Health,
    permits: Arc<Semaphore>,
    /// Bytes of request bodies that may be held in memory at once.
    buffered: Arc<Semaphore>,
    rate_limit: Option<Limiter<Arc<str>>>,
    tracking_limits: tracking::Limits,
    not_accepted_log: crate::telemetry::LogLimit,
    vault: Option<Vault>,
    /// Requests not yet authenticated, per client address.
    unauthenticated: Arc<PerPeer>,
    trusted_proxies: Vec<ipnet::IpNet>,
    /// ShopiMind installs for installations nobody has claimed ([`UNCLAIMED`]), when the
    /// deployment has the app's secret.
    unclaimed: Option<Integration>,
    /// The keys of the deployment's platform apps, which sign their shops' deliveries.
    apps: Arc<crate::platforms::Apps>,
    /// OAuth connect, with tenants from the topic (which it writes).
    connect: Option<Arc<crate::platforms::Connect>>,
}

impl Ingress {
    pub fn new(
        config: Config,
        registry: Live,
        producer: kafka::Producer,
        clock: Clock,
        health: Health,
        apps: Arc<crate::platforms::Apps>,
        connect: Option<Arc<crate::platforms::Connect>>,
    ) -> Arc<Self> {
        let rate_limit = Limiter::per_second(
            config.tenant_rate_limit_per_second,
            config.tenant_rate_limit_burst,
        );
        let vault = config.vault();
        let unclaimed = config.unclaimed_installations();
        Arc::new(Ingress {
            tracking_limits: tracking::Limits::new(&config.tracking),
            vault,
            unclaimed,
            apps,
            connect,
            unauthenticated: PerPeer::new(config.max_unauthenticated_per_peer),
            trusted_proxies: config.trusted_proxy_nets(),
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
        let route = route::parse(parts.uri.path());
        let not_allowed = || Err(Error::MethodNotAllowed(route.methods()));
        let (provider, key) = match route {
            Route::NotFound => return self.answer("unknown", Err(Error::NotFound), started),
            Route::Webhook { provider, key } => (provider, key),
            _ if !route.allows(&parts.method) => {
                return self.answer("unknown", not_allowed(), started)
            }
            Route::Healthz => return crate::health::healthz(),
            Route::Readyz => return crate::health::readyz(&self.health, false).await,
            Route::Oauth { provider, step } => {
                let cookie = connect_cookie(&parts.headers);
                let query = parts.uri.query().unwrap_or_default();
                let answer = match (&self.connect, step) {
                    (None, _) => Err(crate::platforms::Failure::Unavailable(
                        "OAuth connect needs tenants.source = \"topic\"".to_string(),
                    )),
                    (Some(connect), route::Step::Install) => connect.install(provider, query),
                    (Some(connect), route::Step::Callback) => {
                        connect.callback(provider, query, cookie.as_deref()).await
                    }
                    (Some(connect), route::Step::Consent) => {
                        connect.consent(provider, query, cookie.as_deref()).await
                    }
                };
                let response = match answer {
                    Ok(answer) => connected(answer),
                    Err(failure) => self.refused("oauth", Error::Connect(failure)),
                };
                metrics::ingress_request("oauth", response.status().as_u16(), started.elapsed());
                return response;
            }
            Route::Tracking => {
                let peer = parts.extensions.get::<Peer>();
                let response = self
                    .tracking(&parts.method, &parts.headers, parts.uri.query(), peer, body)
                    .await;
                let status = response.status().as_u16();
                metrics::ingress_request(providers::tracking::SLUG, status, started.elapsed());
                return response;
            }
        };
        let Some(provider) = providers::find(provider) else {
            return self.answer("unknown", Err(Error::UnknownProvider), started);
        };
        if !route.allows(&parts.method) {
            return self.answer(provider.slug(), not_allowed(), started);
        }
        let peer = parts.extensions.get::<Peer>();
        let result = self
            .webhook(provider, key, &parts.headers, peer, body)
            .await;
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
            Err(error) => self.refused(provider, error),
        };
        metrics::ingress_request(provider, response.status().as_u16(), started.elapsed());
        response
    }

    /// The answer to a request that was not accepted, logged as loudly as its class deserves.
    fn refused(&self, provider: &'static str, error: Error) -> Response<Full<Bytes>> {
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

    /// Takes one webhook in: admitted within the limits, its body read, its sender
    /// authenticated and within its rate, produced to Kafka — the provider's 200 body once
    /// Kafka acknowledged it.
    async fn webhook(
        &self,
        provider: &'static dyn Provider,
        key: Option<&str>,
        headers: &HeaderMap,
        peer: Option<&Peer>,
        body: Incoming,
    ) -> Result<&'static [u8], Error> {
        let mut admitted = self.admit(headers, peer)?;
        let limits = BodyLimits {
            max_bytes: self.config.max_body_bytes,
            timeout: self.config.body_read_timeout,
            min_rate: self.config.min_body_bytes_per_second,
            grace: self.config.body_rate_grace,
        };
        let body =
            limits::read_body(body, headers, limits, &self.buffered, &mut admitted.buffer).await?;
        #[cfg(feature = "fault-injection")]
        if headers.contains_key("x-cartstream-inject-panic") {
            panic!("fault injected by the test build (x-cartstream-inject-panic)");
        }
        let request = providers::Request::new(headers, &body);
        // The registry in force when the request is authenticated, for the whole request.
        let registry = self.registry.current();
        let sender = self.authenticate(&registry, provider, key, &request)?;
        // Known now: it no longer counts against its address's and connection's share.
        drop(admitted.unauthenticated.take());
        self.check_rate_limit(&sender.integration.tenant.id)?;
        let uninstalled = uninstalled(&sender);
        // ShopiMind's lifecycle: an event that changes nothing (a duplicate, one sent before
        // what is in force, anything after the uninstall) is answered as ShopiMind asks, and
        // what it carries is not kept.
        let lifecycle = match self.lifecycle(&sender, headers) {
            Some((_, Outcome::Unchanged(why))) => {
                tracing::info!(
                    tenant = %sender.integration.tenant.id,
                    installation = sender.integration.clue.as_deref().unwrap_or_default(),
                    why,
                    "a ShopiMind lifecycle event that changes nothing: answered, not kept"
                );
                return Ok(provider.accepted_body());
            }
            Some((installation, Outcome::Applied(next))) => {
                Some((sender.integration.tenant.id.to_string(), installation, next))
            }
            None => None,
        };
        self.produce(provider, sender, &request).await?;
        if let Some((tenant, installation, next)) = lifecycle {
            self.installation_changed(&tenant, &installation, next)
                .await?;
        }
        metrics::ingress_body_size(provider.slug(), body.len());
        // The app's uninstall, once produced: the store it connected is disconnected.
        if let (Some((tenant, shop)), Some(connect)) = (uninstalled, &self.connect) {
            connect.uninstalled(&tenant, provider.slug(), &shop).await;
        }
        Ok(provider.accepted_body())
    }

    /// Admits a request unless in maintenance (this instance's `ingress.maintenance`, or the
    /// deployment's on the tenants topic) or past the limits: one of the in-flight
    /// permits, and a place in its client address's and its connection's share of requests
    /// not yet authenticated. Its body is charged to the buffer budget as it arrives
    /// ([`limits::read_body`]): bodies being read are held in memory, so their total is
    /// bounded too, not only each one.
    fn admit(&self, headers: &HeaderMap, peer: Option<&Peer>) -> Result<Admitted, Error> {
        if self.config.maintenance || self.registry.maintenance() {
            return Err(Error::Maintenance);
        }
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded)?;
        let in_flight = InFlight::enter();
        let unauthenticated = match peer {
            Some(peer) => {
                let client = limits::client_address(peer.addr.ip(), headers, &self.trusted_proxies);
                let entered = Unauthenticated::enter(
                    &self.unauthenticated,
                    client,
                    peer,
                    self.config.max_unauthenticated_per_connection,
                );
                Some(entered.ok_or(Error::Overloaded)?)
            }
            // Not through the server (no connection to count against).
            None => None,
        };
        Ok(Admitted {
            buffer: None,
            unauthenticated,
            _in_flight: in_flight,
            _permit: permit,
        })
    }

    /// Finds the integration the request's clue or URL key names and verifies the request
    /// with its keys only (or its own scheme's).
    fn authenticate<'s, 'a>(
        &'s self,
        registry: &'s Registry,
        provider: &'static dyn Provider,
        key: Option<&str>,
        request: &providers::Request<'a>,
    ) -> Result<Authenticated<'s, 'a>, Error> {
        let seen = provider.inspect(request)?;
        if seen.clue.is_none() && key.is_none() {
            return Err(Error::MissingClue);
        }
        // The registry holds each configured clue as `normalize_clue` made it: the request's
        // clues pass through the same function before they are compared.
        let clue = seen.clue.as_deref().map(|c| provider.normalize_clue(c));
        let other_clue = seen
            .other_clue
            .as_deref()
            .map(|c| provider.normalize_clue(c));
        let slug = provider.slug();
        let mut integration = registry
            .resolve(slug, key, clue.as_deref())
            .or_else(|| registry.resolve(slug, key, Some(other_clue.as_deref()?)));
        // A store no integration has, behind an integration key, is a platform's test only when
        // the delivery says it is one or names a store of the vendor's documented samples; any
        // other is refused like an unknown tenant (the platform sees the error and retries).
        let mut sample = false;
        if integration.is_none() {
            let documented = [&clue, &other_clue]
                .into_iter()
                .flatten()
                .any(|c| provider.sample_stores().contains(&c.as_str()));
            if seen.test || documented {
                integration = registry
                    .resolve_sample(slug, key, clue.as_deref())
                    .filter(|_| {
                        other_clue
                            .as_deref()
                            .is_none_or(|other| registry.resolve(slug, None, Some(other)).is_none())
                    });
                sample = integration.is_some();
            }
        }
        // ShopiMind sends an installation's access token once, at install, possibly before any
        // tenant has named the installation: signed with the app's secret, it is kept unclaimed.
        if integration.is_none() && seen.event_type.as_deref() == Some(SHOPIMIND_INSTALLED) {
            integration = self
                .unclaimed
                .as_ref()
                .filter(|unclaimed| unclaimed.provider.slug() == slug);
        }
        // A disabled tenant's deliveries are refused as an unknown tenant's.
        let integration = integration.filter(|i| !i.tenant.disabled);
        // Unknown tenants are verified against keys nobody has, so the answer (and its timing)
        // is the one a wrong signature gets.
        // An integration of a platform app the deployment lacks is refused the same way.
        let keys = integration
            .and_then(|i| crate::platforms::keys_of(i, &self.apps))
            .unwrap_or(Keys::unknown_tenant());
        // An integration's own scheme replaces its provider's conventions (Vendera).
        let scheme = integration.and_then(|i| i.scheme.as_ref());
        // One reading of the clock for the whole check: the signature's window and the
        // integration's status.
        let now = self.clock.now();
        let verdict = match scheme {
            Some(scheme) => scheme.verify(request, keys),
            None => provider.verify(request, keys, now),
        };
        if let Err(providers::Error::Unauthorized(why)) = verdict {
            metrics::ingress_signature_failure(provider.slug());
            if let Some(integration) = integration {
                integration
                    .status
                    .refused(crate::clock::unix_millis(now), why);
            }
        }
        verdict?;
        let Some(integration) = integration else {
            metrics::ingress_signature_failure(provider.slug());
            return Err(providers::Error::Unauthorized("unauthorized").into());
        };
        if sample {
            warn_of_clue_mismatch(provider.slug(), &integration.tenant.id, now);
        }
        let seen = match scheme {
            Some(scheme) => scheme.inspect(request)?,
            None => seen,
        };
        integration
            .status
            .authentic(crate::clock::unix_millis(now), seen.test || sample);
        Ok(Authenticated {
            integration,
            seen,
            sample,
        })
    }

    /// The installation a ShopiMind lifecycle event is for, and what it does to it; `None` for
    /// anything else, or when the installation is not in the registry (nobody claimed it, or
    /// the tenants are read from a file).
    fn lifecycle(
        &self,
        sender: &Authenticated<'_, '_>,
        headers: &HeaderMap,
    ) -> Option<(String, Outcome)> {
        let integration = sender.integration;
        if integration.provider.slug() != "shopimind" || sender.sample {
            return None;
        }
        let event = installation::Event::named(sender.seen.event_type.as_deref()?)?;
        // Verified to be whole seconds near now.
        let sent_at: i64 = headers
            .get("x-shopimind-timestamp")?
            .to_str()
            .ok()?
            .parse()
            .ok()?;
        let installation = integration.clue.clone()?;
        let outcome = self.connect.as_ref()?.lifecycle(
            &integration.tenant.id,
            &installation,
            event,
            sent_at,
        )?;
        Some((installation, outcome))
    }

    /// Records an installation's new lifecycle; at its uninstall, first forgets its sealed
    /// token and configuration (tombstones on the credentials topic).
    async fn installation_changed(
        &self,
        tenant: &str,
        installation: &str,
        next: installation::Installation,
    ) -> Result<(), Error> {
        let Some(connect) = &self.connect else {
            return Ok(());
        };
        if next.phase == installation::Phase::Uninstalled {
            let now = self.clock.now_millis();
            let provider = "shopimind";
            for field in providers::shopimind::Shopimind.secret_fields() {
                let key = credential::record_key(tenant, provider, installation, field);
                self.producer
                    .send_credential_tombstone(&key, now, self.config.ack_timeout)
                    .await
                    .map_err(Error::Kafka)?;
            }
        }
        if let Err(refused) = connect.record_lifecycle(tenant, installation, next).await {
            tracing::warn!(%tenant, %installation, ?refused, "a ShopiMind installation's lifecycle could not be recorded");
        }
        Ok(())
    }

    /// Refuses the request while its tenant is past the configured rate.
    fn check_rate_limit(&self, tenant: &Arc<str>) -> Result<(), Error> {
        limits::check(self.rate_limit.as_ref(), tenant)
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
        let delivery_id = match seen.delivery_id {
            Some(id) => id,
            // The plain digest of a body whose secrets are redacted would confirm a guess of
            // them: the ids of such a platform's bodies are keyed.
            None if !provider.secret_fields().is_empty() => {
                Cow::Owned(self.vault()?.delivery_id(request.body))
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
    /// Its body's bytes in the buffer budget, charged as they arrived.
    buffer: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Its place in its client's and connection's share, until its sender is known.
    unauthenticated: Option<Unauthenticated>,
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
    /// The vault of `ingress.credentials_key`, which platforms that send secrets need (start-up
    /// refuses a configuration without it; a request reaching an ingress without one is a bug).
    fn vault(&self) -> Result<&Vault, Error> {
        self.vault
            .as_ref()
            .ok_or_else(|| Error::Internal("ingress.credentials_key is not set".into()))
    }

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
        let vault = self.vault()?;
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

/// ShopiMind's install event, the one that carries an installation's access token.
const SHOPIMIND_INSTALLED: &str = "integration.installed";

/// Counts an authentic delivery accepted as a platform's test behind an integration key whose
/// store is not the payload's, and says so at WARN — at most once per 10 s, so that a platform
/// sending many cannot flood the log: a merchant's second store or a mistyped clue shows here.
/// The tenant and store of an authentic uninstall of the deployment's app by a store connected
/// through it: Shopify's `app/uninstalled` (which OAuth connect subscribes), Salla's
/// `app.uninstalled` (which Salla sends every app).
fn uninstalled(sender: &Authenticated<'_, '_>) -> Option<(String, String)> {
    let integration = sender.integration;
    let uninstall = match integration.provider.slug() {
        "shopify" => "app/uninstalled",
        "salla" => "app.uninstalled",
        _ => return None,
    };
    let app_uninstalled = sender.seen.event_type.as_deref() == Some(uninstall)
        && integration.keys.is_none()
        && !sender.sample;
    app_uninstalled.then(|| {
        let shop = integration.clue.clone().unwrap_or_default();
        (integration.tenant.id.to_string(), shop)
    })
}

/// A connect step's answer: a redirect, or the outcome as JSON; never cached.
fn connected(answer: crate::platforms::Answer) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .header(header::CACHE_CONTROL, "no-store")
        .header("referrer-policy", "no-referrer");
    if let Some(cookie) = &answer.set_cookie {
        response = response.header(header::SET_COOKIE, cookie);
    }
    let response = match &answer.location {
        Some(location) => response
            .status(StatusCode::FOUND)
            .header(header::LOCATION, location)
            .body(Full::new(Bytes::new())),
        None => response
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(answer.body.to_string()))),
    };
    response.expect("a connect answer's parts are valid")
}

/// The value of the cookie that ties a consent to its browser ([`crate::platforms::COOKIE`]).
fn connect_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == crate::platforms::COOKIE)
        .map(|(_, value)| value.to_string())
}

fn warn_of_clue_mismatch(provider: &'static str, tenant: &str, now: std::time::SystemTime) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static LAST_WARNED_SECOND: AtomicU64 = AtomicU64::new(0);
    metrics::ingress_clue_mismatch(provider);
    let now = crate::clock::unix_millis(now).max(0) as u64 / 1000;
    let last = LAST_WARNED_SECOND.load(Relaxed);
    if (last == 0 || now >= last + 10)
        && LAST_WARNED_SECOND
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
    {
        tracing::warn!(
            provider,
            tenant,
            "a platform test delivery behind this integration's key names a store that is not the integration's: answered 200 as a test, no cart tracked; if it is a real store, give it an integration of its own"
        );
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
