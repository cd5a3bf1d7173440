//! The admin API v1 (`/admin/v1/…`, `docs/openapi.json`): the tenant registry, read from and
//! written to the tenants topic, so that a change made through any instance is in force on
//! every instance (`tenants.source = "topic"`). JSON in and out; every error is
//! `{"error": …}`, answered here ([`ApiError`]). A write answers once this instance has read
//! it back from the topic and put it in force (or refused it), for five seconds at most.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use http_body_util::Full;
use hyper::Response;
use serde::{Deserialize, Serialize};

use crate::credentials::Keyring;
use crate::health::json;
use crate::problems::Problems;
use crate::tenants::{Live, Records, Refused, Registrar};
use crate::topics::registry::{self as topic, Entity, Key, Record};

mod deliveries;
mod endpoints;
mod integrations;
mod keys;
mod state;
mod tenants;
mod verify;
mod workers;

pub(super) use keys::Caller;

/// The routes of [`ROUTES`] whose POST writes nothing to the registry (the credentials test's
/// dry run, an endpoint's test send): they do not wait for the change in progress.
const WRITE_NOTHING: &[&str] = &[
    "/admin/v1/tenants/{id}/connect",
    "/admin/v1/tenants/{id}/integrations/{integration}/verify",
    "/admin/v1/tenants/{id}/endpoints/{endpoint}/test",
    "/admin/v1/tenants/{id}/endpoints/{endpoint}/replay",
    "/admin/v1/deliveries/retry",
    "/admin/v1/dead-letters/redrive",
];

/// The OpenAPI document of the admin port, served at `/admin/v1/openapi.json`.
pub(super) const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Every route of the API and its methods; the OpenAPI document lists exactly these.
pub(super) const ROUTES: &[(&str, &[Method])] = &[
    ("/admin/v1/openapi.json", &[Method::GET]),
    ("/admin/v1/tenants", &[Method::GET, Method::POST]),
    (
        "/admin/v1/tenants/{id}",
        &[Method::GET, Method::PATCH, Method::DELETE],
    ),
    ("/admin/v1/tenants/{id}/publishable_key", &[Method::POST]),
    ("/admin/v1/tenants/{id}/integrations", &[Method::POST]),
    ("/admin/v1/tenants/{id}/connect", &[Method::POST]),
    (
        "/admin/v1/tenants/{id}/integrations/{integration}",
        &[Method::DELETE],
    ),
    (
        "/admin/v1/tenants/{id}/integrations/{integration}/secret",
        &[Method::POST],
    ),
    (
        "/admin/v1/tenants/{id}/integrations/{integration}/verify",
        &[Method::POST],
    ),
    (
        "/admin/v1/tenants/{id}/integrations/{integration}/status",
        &[Method::GET],
    ),
    ("/admin/v1/tenants/{id}/endpoints", &[Method::POST]),
    (
        "/admin/v1/tenants/{id}/endpoints/{endpoint}",
        &[Method::PATCH, Method::DELETE],
    ),
    (
        "/admin/v1/tenants/{id}/endpoints/{endpoint}/test",
        &[Method::POST],
    ),
    (
        "/admin/v1/tenants/{id}/endpoints/{endpoint}/secret",
        &[Method::POST],
    ),
    ("/admin/v1/maintenance", &[Method::GET, Method::PUT]),
    ("/admin/v1/deliveries", &[Method::GET]),
    ("/admin/v1/deliveries/retry", &[Method::POST]),
    ("/admin/v1/dead-letters", &[Method::GET]),
    ("/admin/v1/dead-letters/redrive", &[Method::POST]),
    (
        "/admin/v1/tenants/{id}/endpoints/{endpoint}/replay",
        &[Method::POST],
    ),
    ("/admin/v1/state/carts", &[Method::GET]),
    ("/admin/v1/keys", &[Method::GET, Method::POST]),
    ("/admin/v1/keys/{key}", &[Method::DELETE]),
];

/// How long a rotated-out secret still verifies, or signs, when a rotation does not say.
const DEFAULT_GRACE_MS: u64 = 24 * 3600 * 1000;

/// The longest grace period a rotation may ask for.
const MAX_GRACE_MS: u64 = 30 * 24 * 3600 * 1000;

/// Why a request is answered with an error.
#[derive(Debug)]
pub(super) enum ApiError {
    BadRequest(String),
    /// The caller's key does not reach the route (its scopes, or its tenant).
    Forbidden(String),
    NotFound(String),
    /// The methods the route takes.
    MethodNotAllowed(&'static [Method]),
    /// The tenants are read from a file: nothing here can read or change them.
    FromFile,
    Conflict(String),
    /// The registry the change would leave is invalid.
    Invalid(Problems),
    /// Kafka did not take the change.
    Unavailable(String),
    /// The key made its changes of the minute: again after this many seconds.
    TooMany(u64),
    /// What was asked is in a partition another instance processes: the member that has it.
    Elsewhere {
        partition: i32,
        owner: serde_json::Value,
    },
}

impl ApiError {
    pub(super) fn response(&self) -> Response<Full<Bytes>> {
        let (status, message) = match self {
            ApiError::BadRequest(why) => (StatusCode::BAD_REQUEST, why.clone()),
            ApiError::Forbidden(why) => (StatusCode::FORBIDDEN, why.clone()),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, format!("no {what}")),
            ApiError::MethodNotAllowed(methods) => {
                let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
                let message = format!("method not allowed: {}", allow.join(", "));
                let mut response = json(
                    StatusCode::METHOD_NOT_ALLOWED,
                    serde_json::json!({ "error": message }).to_string(),
                );
                if let Ok(allow) = allow.join(", ").parse() {
                    response.headers_mut().insert(header::ALLOW, allow);
                }
                return response;
            }
            ApiError::FromFile => (
                StatusCode::CONFLICT,
                "the tenants are read from tenants.file: set tenants.source = \"topic\" to manage them through this API".to_string(),
            ),
            ApiError::Conflict(why) => (StatusCode::CONFLICT, why.clone()),
            ApiError::Invalid(problems) => {
                let listed: Vec<&str> = problems.iter().collect();
                let body = serde_json::json!({
                    "error": "the registry this change would leave is invalid",
                    "problems": listed,
                });
                return json(StatusCode::UNPROCESSABLE_ENTITY, body.to_string());
            }
            ApiError::Unavailable(why) => (StatusCode::SERVICE_UNAVAILABLE, why.clone()),
            ApiError::Elsewhere { partition, owner } => {
                let body = serde_json::json!({
                    "error": format!("partition {partition} of the inbound topic is another instance's: ask it"),
                    "partition": partition,
                    "owner": owner,
                });
                return json(StatusCode::CONFLICT, body.to_string());
            }
            ApiError::TooMany(seconds) => {
                let mut response = json(
                    StatusCode::TOO_MANY_REQUESTS,
                    serde_json::json!({ "error": "too many changes with this key: admin.writes_per_minute" })
                        .to_string(),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, http::HeaderValue::from(*seconds));
                return response;
            }
        };
        json(status, serde_json::json!({ "error": message }).to_string())
    }
}

/// The registry as the API reads and writes it.
pub(super) struct Tenants {
    live: Live,
    /// With tenants from the topic: what writes it.
    registrar: Option<Arc<Registrar>>,
    /// `ingress.public_url`, which webhook URLs are built from.
    public_url: Option<String>,
    /// The keys of the deployment's platform apps.
    apps: std::sync::Arc<crate::platforms::Apps>,
    /// OAuth connect, which issues install links.
    connect: Option<Arc<crate::platforms::Connect>>,
    /// What moves an unclaimed installation's sealed token to the tenant that claims it.
    credentials: Option<crate::tenants::Claims>,
    /// Held by each change from reading the registry to reading its write back, so that this
    /// instance's changes are checked against each other's outcome.
    writing: tokio::sync::Mutex<()>,
    clock: crate::clock::Clock,
    /// Changes per key and minute (`admin.writes_per_minute`), when limited.
    writes: Option<governor::DefaultKeyedRateLimiter<[u8; 32]>>,
    router: matchit::Router<usize>,
    /// Sends an endpoint's test event.
    tester: crate::delivery::Tester,
    /// Where delivery searches read the outcomes topic, and how long they may wait for it.
    kafka: crate::kafka::Config,
    kafka_timeout: Duration,
    /// What operator actions on the delivery workers are asked with, and the workers' group.
    producer: crate::kafka::Producer,
    delivery_group: String,
    /// The carts of the partitions this instance's processor has, and the processors' group.
    inspector: crate::processor::Inspector,
    processor_group: String,
}

impl Tenants {
    pub(super) fn new(registry: super::Registry) -> Tenants {
        let super::Registry {
            live,
            registrar,
            public_url,
            apps,
            connect,
            credentials,
            writes_per_minute,
            clock,
            tester,
            kafka,
            kafka_timeout,
            producer,
            delivery_group,
            inspector,
            processor_group,
        } = registry;
        let writes = std::num::NonZeroU32::new(writes_per_minute)
            .map(|n| governor::RateLimiter::keyed(governor::Quota::per_minute(n)));
        let mut router = matchit::Router::new();
        for (n, (path, _)) in ROUTES.iter().enumerate() {
            router.insert(*path, n).expect("the routes do not overlap");
        }
        Tenants {
            live,
            registrar,
            public_url,
            apps,
            connect,
            credentials,
            writing: tokio::sync::Mutex::new(()),
            clock,
            writes,
            router,
            tester,
            kafka,
            kafka_timeout,
            producer,
            delivery_group,
            inspector,
            processor_group,
        }
    }

    /// Answers one request to `/admin/v1/…` from `caller` (`None` for the document, which is
    /// anyone's).
    pub(super) async fn handle(
        &self,
        caller: Option<&Caller>,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Response<Full<Bytes>> {
        let Ok(matched) = self.router.at(path) else {
            return ApiError::NotFound("such route".into()).response();
        };
        let (route, methods) = ROUTES[*matched.value];
        if !methods.contains(method) {
            return ApiError::MethodNotAllowed(methods).response();
        }
        // Ids may hold characters a path escapes (`easyorders#2`): each segment is decoded.
        let decoded = |name| {
            let raw = matched.params.get(name)?;
            Some(
                percent_encoding::percent_decode_str(raw)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        };
        let id = decoded("id");
        let integration = decoded("integration").unwrap_or_default();
        let endpoint = decoded("endpoint").unwrap_or_default();
        if route != "/admin/v1/openapi.json" {
            // A search names its tenant in the query, a retry or redrive in its body.
            let tenant = match route {
                "/admin/v1/deliveries" | "/admin/v1/dead-letters" | "/admin/v1/state/carts" => {
                    deliveries::tenant_of(query)
                }
                "/admin/v1/deliveries/retry" | "/admin/v1/dead-letters/redrive" => {
                    workers::tenant_in_body(body)
                }
                _ => id.clone(),
            };
            let allowed = match caller {
                Some(caller) => caller.allows(route, method, tenant.as_deref()),
                None => Err(ApiError::Forbidden("no key".to_string())),
            };
            if let Err(refused) = allowed {
                return refused.response();
            }
        }
        // Changes one at a time; reads, credentials tests and test sends write nothing.
        let writes = *method != Method::GET && !WRITE_NOTHING.contains(&route);
        let _turn = match writes {
            false => None,
            true => Some(self.writing.lock().await),
        };
        let answer = match (route, method, id) {
            ("/admin/v1/openapi.json", _, _) => return json(StatusCode::OK, OPENAPI),
            ("/admin/v1/tenants", &Method::GET, _) => self.list(query),
            ("/admin/v1/tenants", &Method::POST, _) => self.create(body).await,
            ("/admin/v1/deliveries", _, _) => self.search_deliveries(query).await,
            ("/admin/v1/deliveries/retry", _, _) => self.retry_delivery(body).await,
            ("/admin/v1/dead-letters", _, _) => self.list_dead_letters(query).await,
            ("/admin/v1/state/carts", _, _) => self.inspect_cart(query).await,
            ("/admin/v1/dead-letters/redrive", _, _) => self.redrive(body).await,
            ("/admin/v1/tenants/{id}/endpoints/{endpoint}/replay", _, Some(id)) => {
                self.replay(&id, &endpoint, body).await
            }
            ("/admin/v1/maintenance", &Method::GET, _) => self.maintenance(),
            ("/admin/v1/maintenance", _, _) => self.set_maintenance(body).await,
            ("/admin/v1/keys", &Method::GET, _) => self.list_keys(),
            ("/admin/v1/keys", &Method::POST, _) => self.create_key(body).await,
            ("/admin/v1/keys/{key}", _, _) => {
                self.delete_key(&decoded("key").unwrap_or_default()).await
            }
            ("/admin/v1/tenants/{id}/publishable_key", _, Some(id)) => {
                self.new_publishable_key(&id).await
            }
            ("/admin/v1/tenants/{id}/integrations", _, Some(id)) => {
                self.create_integration(&id, body).await
            }
            ("/admin/v1/tenants/{id}/connect", _, Some(id)) => self.connect_link(&id, body),
            ("/admin/v1/tenants/{id}/integrations/{integration}", _, Some(id)) => {
                self.delete_integration(&id, &integration).await
            }
            ("/admin/v1/tenants/{id}/integrations/{integration}/secret", _, Some(id)) => {
                self.rotate_integration(&id, &integration, body).await
            }
            ("/admin/v1/tenants/{id}/integrations/{integration}/verify", _, Some(id)) => {
                self.verify_integration(&id, &integration, body)
            }
            ("/admin/v1/tenants/{id}/integrations/{integration}/status", _, Some(id)) => {
                self.integration_status(&id, &integration).await
            }
            ("/admin/v1/tenants/{id}/endpoints", _, Some(id)) => {
                self.create_endpoint(&id, body).await
            }
            ("/admin/v1/tenants/{id}/endpoints/{endpoint}", &Method::PATCH, Some(id)) => {
                self.update_endpoint(&id, &endpoint, body).await
            }
            ("/admin/v1/tenants/{id}/endpoints/{endpoint}", _, Some(id)) => {
                self.delete_endpoint(&id, &endpoint).await
            }
            ("/admin/v1/tenants/{id}/endpoints/{endpoint}/test", _, Some(id)) => {
                self.test_endpoint(&id, &endpoint).await
            }
            ("/admin/v1/tenants/{id}/endpoints/{endpoint}/secret", _, Some(id)) => {
                self.rotate_endpoint(&id, &endpoint, body).await
            }
            (_, &Method::GET, Some(id)) => self.get(&id),
            (_, &Method::PATCH, Some(id)) => self.update(&id, body).await,
            (_, &Method::DELETE, Some(id)) => self.delete(&id).await,
            _ => Err(ApiError::MethodNotAllowed(methods)),
        };
        answer.unwrap_or_else(|e| e.response())
    }

    /// `record` with `secret` as its secret and the one it had as its previous one, which
    /// still verifies (or signs) for `grace_period_ms` (24 hours when not given); with the
    /// moment it stops, in RFC 3339.
    fn rotated(
        &self,
        record: &Record,
        secret: &str,
        grace_period_ms: Option<&serde_json::Number>,
    ) -> Result<(Record, String), ApiError> {
        let keys = self.keys()?;
        let grace = match grace_period_ms {
            None => DEFAULT_GRACE_MS,
            Some(n) => whole(n, MAX_GRACE_MS).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "grace_period_ms: whole milliseconds from 0 to {MAX_GRACE_MS} (30 days), not {n}"
                ))
            })?,
        };
        let until = self.clock.now_millis() + grace as i64;
        let rotated = crate::tenants::rotate(record, secret, keys, Some(until))
            .map_err(|problem| ApiError::Invalid(Problems::one(problem)))?;
        Ok((rotated, crate::clock::rfc3339(until)))
    }

    /// Deletes the record `key` (a tombstone), 204; `missing` when there is none.
    async fn delete_record(
        &self,
        key: Key,
        missing: ApiError,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        if records.get(&key).is_none() {
            return Err(missing);
        }
        self.write(&records, vec![(key, None)]).await?;
        Ok(no_content())
    }

    /// Lets a change with the key `key` through, unless the key made its changes of the minute.
    pub(super) fn admit(&self, key: [u8; 32]) -> Result<(), ApiError> {
        let Some(limiter) = &self.writes else {
            return Ok(());
        };
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(limiter.clock()));
            ApiError::TooMany(wait.as_secs_f64().ceil().max(1.0) as u64)
        })
    }

    /// `GET /admin/v1/maintenance`: whether the deployment is in maintenance mode, and since when.
    fn maintenance(&self) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        Ok(json(StatusCode::OK, maintenance_view(&records)))
    }

    /// `PUT /admin/v1/maintenance` `{"on": bool}`: every ingress reading the topic answers
    /// webhooks 503 while it is on (each instance as it reads the change).
    async fn set_maintenance(&self, body: &[u8]) -> Result<Response<Full<Bytes>>, ApiError> {
        let records = self.records()?;
        let change: MaintenanceChange = parse_body(body)?;
        if records.maintenance() == change.on {
            return Ok(json(StatusCode::OK, maintenance_view(&records)));
        }
        let record = Record::new(Entity::Maintenance(topic::Maintenance {
            on: change.on,
            changed_at_ms: self.clock.now_millis(),
        }));
        let after = self
            .write(&records, vec![(Key::Maintenance, Some(record))])
            .await?;
        Ok(json(StatusCode::OK, maintenance_view(&after)))
    }

    /// The keys the topic's secrets are sealed with.
    fn keys(&self) -> Result<&Keyring, ApiError> {
        Ok(self.registrar.as_ref().ok_or(ApiError::FromFile)?.keys())
    }

    /// What the tenants topic says now, or why the API cannot say.
    fn records(&self) -> Result<Arc<Records>, ApiError> {
        self.live.records().ok_or(ApiError::FromFile)
    }

    /// The URL platforms post to at `path` on the ingress, with `ingress.public_url`.
    fn webhook_url(&self, path: &str) -> Option<String> {
        let base = self.public_url.as_deref()?.trim_end_matches('/');
        Some(format!("{base}{path}"))
    }

    /// Writes `changes` (a tombstone for `None`) once the registry they leave is valid, and
    /// waits until this instance has read them back; the records they leave.
    async fn write(
        &self,
        records: &Records,
        changes: Vec<(Key, Option<Record>)>,
    ) -> Result<Records, ApiError> {
        let registrar = self.registrar.as_ref().ok_or(ApiError::FromFile)?;
        registrar
            .write(records, changes)
            .await
            .map_err(|refused| match refused {
                Refused::Invalid(problems) => ApiError::Invalid(problems),
                Refused::Unavailable(why) => ApiError::Unavailable(why),
            })
    }
}

/// `PUT /admin/v1/maintenance`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceChange {
    on: bool,
}

/// `{"on", "changed_at"}` as `records` say.
fn maintenance_view(records: &Records) -> String {
    let changed_at = match records.get(&Key::Maintenance).map(|r| &r.entity) {
        Some(Entity::Maintenance(m)) => Some(crate::clock::rfc3339(m.changed_at_ms)),
        _ => None,
    };
    serde_json::json!({ "on": records.maintenance(), "changed_at": changed_at }).to_string()
}

/// A field that is present, `null` or not: absent fields are `None` through `default`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A JSON object read as `T`, or a 400 that says what is wrong with it. Only an object: serde
/// would also read a struct from an array of its fields.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let bad = |e: serde_json::Error| ApiError::BadRequest(format!("the body: {e}"));
    match serde_json::from_slice(body).map_err(bad)? {
        object @ serde_json::Value::Object(_) => serde_json::from_value(object).map_err(bad),
        _ => Err(ApiError::BadRequest(
            "the body: a JSON object is expected".to_string(),
        )),
    }
}

/// A JSON number that is a whole number from 0 to `max`: JSON's integers include numbers
/// written with a zero fraction (`60000.0`).
fn whole(n: &serde_json::Number, max: u64) -> Option<u64> {
    n.as_u64()
        .or_else(|| {
            let f = n.as_f64()?;
            (f.fract() == 0.0 && (0.0..=max as f64).contains(&f)).then_some(f as u64)
        })
        .filter(|&n| n <= max)
}

/// `204 No Content`.
fn no_content() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Full::new(Bytes::new()))
        .expect("static response parts are valid")
}

/// The secret a request gives, else one `generate` makes; and the generated one, to be shown
/// this once. A given secret has at least 16 characters, as the document says (the registry
/// counts bytes, which a shorter text of wide characters could reach).
fn chosen_secret(
    given: Option<String>,
    generate: impl FnOnce() -> Result<String, ApiError>,
) -> Result<(String, Option<String>), ApiError> {
    match given {
        Some(secret) if secret.chars().count() < 16 => Err(ApiError::BadRequest(
            "secret: at least 16 characters".to_string(),
        )),
        Some(secret) => Ok((secret, None)),
        None => {
            let secret = generate()?;
            Ok((secret.clone(), Some(secret)))
        }
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("tenant {id:?}"))
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("the views always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> serde_json::Value {
        serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON")
    }

    #[test]
    fn the_document_lists_exactly_the_routes_and_methods_served() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        let documented: std::collections::BTreeSet<(String, String)> = paths
            .iter()
            .filter(|(path, _)| path.starts_with("/admin/v1/"))
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| *k != "parameters")
                    .map(move |method| (path.clone(), method.to_uppercase()))
            })
            .collect();
        let served: std::collections::BTreeSet<(String, String)> = ROUTES
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .iter()
                    .map(move |m| (path.to_string(), m.as_str().to_string()))
            })
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn the_routes_that_write_nothing_are_routes() {
        for route in WRITE_NOTHING {
            let served = ROUTES.iter().find(|(path, _)| path == route);
            assert_eq!(
                served.map(|(_, methods)| *methods),
                Some(&[Method::POST][..]),
                "{route}"
            );
        }
    }

    /// Each error schema has the `error` string, and some say more (the problems of an invalid
    /// change, the member that has a partition).
    #[test]
    fn every_documented_error_answer_is_the_error_object() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let Some(responses) = operation["responses"].as_object() else {
                    continue;
                };
                for (status, response) in responses {
                    let response = match response["$ref"].as_str() {
                        Some(name) => {
                            let name = name.strip_prefix("#/components/responses/").unwrap();
                            &doc["components"]["responses"][name]
                        }
                        None => response,
                    };
                    if status.starts_with('4') || status.starts_with('5') {
                        let schema = &response["content"]["application/json"]["schema"]["$ref"];
                        let name = schema.as_str().and_then(|s| s.rsplit('/').next());
                        let required =
                            &doc["components"]["schemas"][name.unwrap_or_default()]["required"];
                        assert!(
                            required
                                .as_array()
                                .is_some_and(|r| r.contains(&"error".into())),
                            "{method} {path} {status}: {schema}"
                        );
                        assert!(
                            schema
                                .as_str()
                                .is_some_and(|s| ["/Error", "/Invalid", "/Elsewhere"]
                                    .iter()
                                    .any(|error| s.ends_with(error))),
                            "{method} {path} {status}: {response}"
                        );
                    }
                }
            }
        }
    }
}
