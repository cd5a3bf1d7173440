//! What `/healthz` and `/readyz` answer, on the ingress and the admin port alike: the verdict
//! and the answers themselves ([`healthz`], [`readyz`]).
//!
//! Alive means the process serves HTTP. Ready means it is not draining and Kafka answers. The
//! Kafka verdict is reused for a second: probes — on the public port too, where anyone may send
//! them — cost at most one broker round trip per second, however many arrive.
//!
//! A process running the processor also reports its state stores (one per owned inbound
//! partition: where it is, how far behind, whether it has caught up) in the admin port's
//! answer. Catching up does not decide readiness: a store still behind is working as it should.
//! A role whose state volume cannot be written (full, or failing) stops consuming and keeps
//! running; it reports the stall here ([`Stalls`]) and `/readyz` answers 503 with the reason
//! until the role has recovered by itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, StatusCode};
use http_body_util::Full;
use hyper::Response;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::kafka;

const KAFKA_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a Kafka verdict is reused.
const VERDICT_TTL: Duration = Duration::from_secs(1);

/// Readiness inputs, cheap to clone.
#[derive(Clone)]
pub struct Health {
    draining: CancellationToken,
    producer: kafka::Producer,
    last: Arc<Mutex<Option<Verdict>>>,
    stores: Option<Stores>,
    stalls: Stalls,
}

/// One state store of this process (a processor's inbound partition), as reported by `/readyz`
/// on the admin port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreState {
    pub partition: i32,
    /// The next inbound offset the store applies; `None` before its first record.
    pub next_offset: Option<i64>,
    /// Records on the partition not applied yet, from the consumer's last statistics.
    pub lag: Option<i64>,
    /// Consumed to the end of its partition (timers then fire on wall-clock time).
    pub caught_up: bool,
}

type Report = Box<dyn Fn() -> Vec<StoreState> + Send + Sync>;

/// Where a role holding state stores lets readiness read them. Cheap to clone.
#[derive(Clone, Default)]
pub struct Stores(Arc<std::sync::Mutex<Option<Report>>>);

impl Stores {
    /// From now on the stores' states are what `report` says.
    pub fn attach(&self, report: impl Fn() -> Vec<StoreState> + Send + Sync + 'static) {
        *self.slot() = Some(Box::new(report));
    }

    /// The role closed its stores.
    pub fn detach(&self) {
        *self.slot() = None;
    }

    /// The stores' states; none while the role has not opened any.
    pub fn states(&self) -> Vec<StoreState> {
        self.slot()
            .as_ref()
            .map(|report| report())
            .unwrap_or_default()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Report>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The roles that are running but cannot make progress, each with the reason. Cheap to clone;
/// every clone is the same set.
#[derive(Clone, Default)]
pub struct Stalls(Arc<std::sync::Mutex<BTreeMap<&'static str, &'static str>>>);

impl Stalls {
    /// `role` cannot make progress, for `reason`, until it calls [`Stalls::recovered`]; the
    /// gauge `cartstream_state_volume_stalled{role}` says so too.
    pub fn stalled(&self, role: &'static str, reason: &'static str) {
        self.slot().insert(role, reason);
        crate::telemetry::metrics::state_stalled(role, true);
    }

    /// `role` makes progress (again): also how a role starts, so that its gauge shows 0.
    pub fn recovered(&self, role: &'static str) {
        self.slot().remove(role);
        crate::telemetry::metrics::state_stalled(role, false);
    }

    /// The first stalled role's reason, if any role is stalled.
    pub fn reason(&self) -> Option<&'static str> {
        self.slot().values().next().copied()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, &'static str>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// When Kafka was last asked, and what it said.
#[derive(Clone, Copy)]
struct Verdict {
    at: Instant,
    result: Result<(), &'static str>,
}

impl Health {
    pub fn new(draining: CancellationToken, producer: kafka::Producer) -> Self {
        Health {
            draining,
            producer,
            last: Arc::default(),
            stores: None,
            stalls: Stalls::default(),
        }
    }

    /// Where the roles of this process report a stall.
    pub fn stalls(&self) -> Stalls {
        self.stalls.clone()
    }

    /// This process holds state stores (it runs the processor): readiness reports them.
    pub fn with_stores(mut self, stores: Stores) -> Self {
        self.stores = Some(stores);
        self
    }

    /// The state stores' states, when this process has stores at all.
    pub fn stores(&self) -> Option<Vec<StoreState>> {
        self.stores.as_ref().map(Stores::states)
    }

    /// `Ok` when the process should receive traffic, else the reason it should not.
    pub async fn ready(&self) -> Result<(), &'static str> {
        if self.draining.is_cancelled() {
            return Err("draining");
        }
        if let Some(reason) = self.stalls.reason() {
            return Err(reason);
        }
        // One check at a time; those who waited for it take its verdict.
        let mut last = self.last.lock().await;
        if let Some(verdict) = *last {
            if verdict.at.elapsed() < VERDICT_TTL {
                return verdict.result;
            }
        }
        let result = self
            .producer
            .check(KAFKA_CHECK_TIMEOUT)
            .await
            .map_err(|e| match e {
                kafka::Error::Refused(refusal) => refusal.reason,
                _ => "kafka unreachable",
            });
        *last = Some(Verdict {
            at: Instant::now(),
            result,
        });
        result
    }
}

/// `200 {"status":"ok"}`: the process is alive.
pub fn healthz() -> Response<Full<Bytes>> {
    json(StatusCode::OK, r#"{"status":"ok"}"#)
}

/// `200 {"status":"ready"}`, or `503` with the reason. With `detailed` (the admin port), a
/// process holding state stores lists them under `stores`.
pub async fn readyz(health: &Health, detailed: bool) -> Response<Full<Bytes>> {
    let (status, mut body) = match health.ready().await {
        Ok(()) => (StatusCode::OK, serde_json::json!({ "status": "ready" })),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "not ready", "error": reason }),
        ),
    };
    if let Some(stores) = health.stores().filter(|_| detailed) {
        body["stores"] = serde_json::json!(stores);
    }
    json(status, body.to_string())
}

/// A JSON answer (the admin port's answers use it too).
pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_probes_asks_kafka_once() {
        // Nothing listens there: each check waits out its 2 s timeout.
        let config = kafka::Config {
            brokers: "127.0.0.1:1".to_string(),
            ..kafka::Config::default()
        };
        let producer = kafka::Producer::from_config(&config, 1 << 20).unwrap();
        let health = Health::new(CancellationToken::new(), producer);
        let started = Instant::now();
        let probes: Vec<_> = (0..50)
            .map(|_| {
                let health = health.clone();
                tokio::spawn(async move { health.ready().await })
            })
            .collect();
        for probe in probes {
            assert_eq!(probe.await.unwrap(), Err("kafka unreachable"));
        }
        // Fifty checks one after another would take 100 s; one took 2 s.
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "{took:?}");
        let draining = CancellationToken::new();
        draining.cancel();
        let health = Health { draining, ..health };
        assert_eq!(health.ready().await, Err("draining"));
    }

    #[tokio::test]
    async fn a_stalled_role_makes_the_process_unready_until_it_recovers() {
        let config = kafka::Config {
            brokers: "127.0.0.1:1".to_string(),
            ..kafka::Config::default()
        };
        let producer = kafka::Producer::from_config(&config, 1 << 20).unwrap();
        let health = Health::new(CancellationToken::new(), producer);
        let stalls = health.stalls();
        stalls.stalled("processor", "processor state volume cannot be written");
        stalls.stalled("delivery", "delivery state volume cannot be written");
        // Answered at once, without asking Kafka (nothing listens there).
        assert_eq!(
            health.ready().await,
            Err("delivery state volume cannot be written")
        );
        stalls.recovered("delivery");
        assert_eq!(
            health.ready().await,
            Err("processor state volume cannot be written")
        );
        stalls.recovered("processor");
        assert_eq!(health.ready().await, Err("kafka unreachable"));
    }

    #[test]
    fn stores_are_reported_while_attached_and_only_where_there_are_stores() {
        let config = kafka::Config::default();
        let producer = kafka::Producer::from_config(&config, 1 << 20).unwrap();
        let without = Health::new(CancellationToken::new(), producer);
        assert_eq!(without.stores(), None);
        let stores = Stores::default();
        let with = without.with_stores(stores.clone());
        assert_eq!(with.stores(), Some(vec![]));
        let state = StoreState {
            partition: 2,
            next_offset: Some(40),
            lag: Some(0),
            caught_up: true,
        };
        let reported = state.clone();
        stores.attach(move || vec![reported.clone()]);
        assert_eq!(with.stores(), Some(vec![state]));
        stores.detach();
        assert_eq!(with.stores(), Some(vec![]));
    }
}
