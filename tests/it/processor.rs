//! The processor through Kafka: signed webhooks in at the ingress, normalized events and cart
//! transitions out on their topics, with the wall clock under the test's control. Then crash
//! safety (a processor process killed mid-stream, again and again), restarts with timers due
//! during the downtime, and two processors sharing the partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use cartstream::app::Roles;
use cartstream::clock::Clock;
use cartstream::kafka::{self, inbound};
use cartstream::state::transition_id;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::support::{
    brokers, eventually, read_json, read_json_eventually, read_topic, schemas, shopify_headers,
    unique_prefix, wait_for, Http, RoleProcess, TestDaemon, Volume, TENANTS,
};

/// The default inactivity window (the test tenants set none).
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The manual clock's start: 2026-09-21T…Z.
const T0: u64 = 1_790_000_000;
const WAIT: Duration = Duration::from_secs(30);

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

/// One shop (tenant `acme`, Shopify) talking to a daemon that runs every role.
struct Shop {
    daemon: TestDaemon,
    http: Http,
    clock: Clock,
}

impl Shop {
    async fn start(test: &str) -> Shop {
        Shop::start_with(test, |_| {}).await
    }

    /// [`Shop::start`], the configuration edited further by `edit`.
    async fn start_with(test: &str, edit: impl FnOnce(&mut cartstream::config::Config)) -> Shop {
        let clock = Clock::manual(T0);
        let daemon = TestDaemon::builder(test)
            .roles(Roles::ALL)
            .clock(clock.clone())
            .config(|config| {
                patient(config);
                edit(config);
            })
            .start()
            .await;
        Shop {
            daemon,
            http: Http::http1(),
            clock,
        }
    }

    async fn send(&self, topic: &str, webhook_id: &str, body: Value) {
        let body = serde_json::to_vec(&body).unwrap();
        let mut headers = shopify_headers(
            "acme-shopify-secret",
            "acme.myshopify.com",
            &body,
            webhook_id,
        );
        for (name, value) in headers.iter_mut() {
            if *name == "x-shopify-topic" {
                *value = topic.to_string();
            }
        }
        // Like a platform, re-send what was not acknowledged (the shared broker can be slow
        // while other tests load it); the processor de-duplicates by the webhook id.
        for _ in 0..3 {
            let answer = self
                .http
                .post(
                    &self.daemon.url("/api/webhooks/shopify"),
                    &headers,
                    body.clone(),
                )
                .await;
            if answer.status == 200 {
                return;
            }
            assert!([503, 504].contains(&answer.status.as_u16()), "{answer:?}");
        }
        panic!("the delivery was not acknowledged after three tries");
    }

    /// A checkout for `cart`, updated at `updated_ms` (now when `None`).
    async fn checkout_at(&self, cart: &str, webhook_id: &str, updated_ms: Option<i64>) {
        let updated = updated_ms.unwrap_or_else(|| self.clock.now_millis());
        self.send(
            "checkouts/update",
            webhook_id,
            json!({
                "id": 1001,
                "token": format!("checkout-{cart}"),
                "cart_token": cart,
                "email": "bob@example.com",
                "total_price": "379.69",
                "currency": "USD",
                "abandoned_checkout_url": format!("https://acme.example/recover/{cart}"),
                "updated_at": rfc3339(updated),
            }),
        )
        .await;
    }

    async fn checkout(&self, cart: &str, webhook_id: &str) {
        self.checkout_at(cart, webhook_id, None).await;
    }

    async fn order(&self, cart: &str, webhook_id: &str) {
        self.send(
            "orders/create",
            webhook_id,
            json!({
                "id": 5001,
                "checkout_token": format!("checkout-{cart}"),
                "cart_token": cart,
                "email": "bob@example.com",
                "total_price": "379.69",
                "currency": "USD",
                "updated_at": rfc3339(self.clock.now_millis()),
            }),
        )
        .await;
    }

    fn events(&self) -> Vec<Value> {
        read_json(&self.daemon.brokers, &self.daemon.topics.events)
    }

    fn transitions(&self) -> Vec<Value> {
        read_json(&self.daemon.brokers, &self.daemon.topics.transitions)
    }

    /// Waits until the processor published `n` events (so it applied those deliveries).
    async fn applied(&self, n: usize) {
        read_json_eventually(&self.daemon.brokers, &self.daemon.topics.events, n, WAIT).await;
    }

    async fn transitions_eventually(&self, n: usize) -> Vec<Value> {
        let (brokers, topic) = (&self.daemon.brokers, &self.daemon.topics.transitions);
        read_json_eventually(brokers, topic, n, WAIT).await
    }

    /// Moves the clock and waits until the daemon has acted on it: every timer due by the new
    /// time fired and published ([`TestDaemon::advance`]).
    async fn advance(&self, by: Duration) {
        self.daemon.advance(by).await;
    }
}

/// Waits longer for Kafka's acknowledgement than the default (a busy shared test broker).
fn patient(config: &mut cartstream::config::Config) {
    config.ingress.ack_timeout = Duration::from_secs(20);
}

fn millis(seconds: u64) -> i64 {
    seconds as i64 * 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_after_a_checkout_emits_exactly_one_abandonment() {
    let shop = Shop::start("silence").await;
    shop.checkout("cart-1", "w-1").await;
    shop.applied(1).await;

    shop.advance(WINDOW - Duration::from_secs(1)).await;
    assert!(shop.transitions().is_empty(), "not before the window");
    shop.advance(Duration::from_secs(2)).await;
    let transitions = shop.transitions_eventually(1).await;
    let abandoned = &transitions[0];
    assert_eq!(abandoned["schema"], "cartstream.transition.v1");
    assert_eq!(abandoned["bucket"], "abandoned_candidate");
    assert_eq!(
        (&abandoned["from"], &abandoned["to"]),
        (&json!("active"), &json!("abandoned"))
    );
    assert_eq!(abandoned["tenant_id"], "acme");
    assert_eq!(abandoned["cart"], "cart-1");
    assert_eq!(
        abandoned["at"],
        rfc3339(millis(T0) + WINDOW.as_millis() as i64)
    );
    assert_eq!(
        abandoned["event"]["recovery_url"],
        "https://acme.example/recover/cart-1"
    );
    assert_eq!(abandoned["event"]["customer"]["email"], "bob@example.com");
    assert_eq!(
        abandoned["id"],
        transition_id("acme", "cart-1", "abandoned_candidate", 0)
    );

    shop.advance(3 * WINDOW).await;
    assert_eq!(shop.transitions().len(), 1, "once per inactivity episode");
    shop.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_before_the_window_rearms_the_timer() {
    let shop = Shop::start("rearm").await;
    shop.checkout("cart-1", "w-1").await;
    shop.applied(1).await;
    shop.advance(Duration::from_secs(10 * 60)).await;
    shop.checkout("cart-1", "w-2").await;
    shop.applied(2).await;

    // Past the first deadline, before the second one.
    shop.advance(Duration::from_secs(6 * 60)).await;
    assert!(
        shop.transitions().is_empty(),
        "the first deadline no longer counts"
    );
    shop.advance(Duration::from_secs(10 * 60)).await;
    let transitions = shop.transitions_eventually(1).await;
    assert_eq!(
        transitions[0]["at"],
        rfc3339(millis(T0 + 10 * 60) + WINDOW.as_millis() as i64)
    );
    shop.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_after_abandonment_is_a_recovery() {
    let shop = Shop::start("recovery").await;
    shop.checkout("cart-1", "w-1").await;
    shop.applied(1).await;
    shop.advance(WINDOW + Duration::from_secs(60)).await;
    shop.transitions_eventually(1).await;

    shop.order("cart-1", "w-2").await;
    let transitions = shop.transitions_eventually(2).await;
    let recovery = &transitions[1];
    assert_eq!(recovery["bucket"], "order_completed");
    assert_eq!(
        (&recovery["from"], &recovery["to"]),
        (&json!("abandoned"), &json!("recovered"))
    );
    assert_eq!(recovery["recovered"], true);
    assert_eq!(recovery["event"]["order_id"], "5001");
    shop.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_within_the_window_completes_and_nothing_is_abandoned() {
    let shop = Shop::start("completed").await;
    shop.checkout("cart-1", "w-1").await;
    shop.applied(1).await;
    shop.advance(Duration::from_secs(5 * 60)).await;
    shop.order("cart-1", "w-2").await;
    let transitions = shop.transitions_eventually(1).await;
    assert_eq!(transitions[0]["to"], "completed");
    assert_eq!(transitions[0]["recovered"], false);

    shop.advance(3 * WINDOW).await;
    assert_eq!(shop.transitions().len(), 1, "the timer was cancelled");
    shop.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_emits_no_second_event_or_transition() {
    let shop = Shop::start("duplicate").await;
    shop.checkout("cart-1", "w-1").await;
    shop.advance(WINDOW + Duration::from_secs(60)).await;
    shop.transitions_eventually(1).await;
    shop.order("cart-1", "w-2").await;
    shop.order("cart-1", "w-2").await;
    shop.checkout("cart-2", "w-3").await;
    // w-3 is applied after both copies of w-2.
    eventually("the event of w-3", WAIT, || {
        let events = shop.events();
        events
            .iter()
            .any(|e| e["delivery_id"] == "w-3")
            .then_some(events)
    })
    .await;
    let events = shop.events();
    let delivery_ids: Vec<&str> = events
        .iter()
        .map(|e| e["delivery_id"].as_str().unwrap())
        .collect();
    assert_eq!(delivery_ids, ["w-1", "w-2", "w-3"]);
    assert_eq!(shop.transitions().len(), 2, "one abandonment, one recovery");
    shop.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_older_update_neither_rearms_nor_regresses() {
    let shop = Shop::start("late").await;
    let t0 = millis(T0);
    shop.checkout_at("cart-1", "w-2", Some(t0)).await;
    shop.advance(Duration::from_secs(5 * 60)).await;
    // Delivered now, but it happened before the update already applied.
    shop.checkout_at("cart-1", "w-1", Some(t0 - 4 * 60_000))
        .await;
    shop.applied(2).await;
    shop.advance(WINDOW - Duration::from_secs(5 * 60) + Duration::from_secs(1))
        .await;
    let transitions = shop.transitions_eventually(1).await;
    assert_eq!(
        transitions[0]["at"],
        rfc3339(t0 + WINDOW.as_millis() as i64),
        "the deadline of the newest activity"
    );
    // After the abandonment, a late update from before it does not reopen the cart.
    shop.checkout_at("cart-1", "w-0", Some(t0 + 60_000)).await;
    shop.applied(3).await;
    shop.advance(3 * WINDOW).await;
    assert_eq!(shop.transitions().len(), 1);
    shop.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_transitions_match_their_schemas() {
    let shop = Shop::start("schemas").await;
    shop.checkout("cart-1", "w-1").await;
    shop.checkout("cart-2", "w-2").await;
    shop.order("cart-2", "w-3").await;
    shop.advance(WINDOW + Duration::from_secs(1)).await;
    shop.order("cart-1", "w-4").await;
    let transitions = shop.transitions_eventually(3).await;
    shop.applied(4).await;
    let (events_schema, transitions_schema) = schemas();
    for (value, schema) in shop
        .events()
        .iter()
        .map(|v| (v, &events_schema))
        .chain(transitions.iter().map(|v| (v, &transitions_schema)))
    {
        let errors: Vec<String> = schema.iter_errors(value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{value}: {errors:?}");
    }
    // Output records carry their id and schema in headers too.
    let records = read_topic(&shop.daemon.brokers, &shop.daemon.topics.transitions);
    for record in records {
        let value: Value = serde_json::from_slice(&record.value).unwrap();
        assert_eq!(record.headers[kafka::HEADER_ID], value["id"]);
        assert_eq!(
            record.headers[inbound::HEADER_SCHEMA],
            "cartstream.transition.v1"
        );
        assert_eq!(record.key.as_deref(), Some(&b"acme"[..]));
    }
    shop.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_due_during_downtime_fire_once_after_restart() {
    let clock = Clock::manual(T0);
    let state = tempfile::tempdir().unwrap();
    let first = TestDaemon::builder("downtime")
        .roles(Roles::ALL)
        .config(patient)
        .clock(clock.clone())
        .state_dir(state.path())
        .start()
        .await;
    let shop = Shop {
        daemon: first,
        http: Http::http1(),
        clock: clock.clone(),
    };
    shop.checkout("cart-1", "w-1").await;
    shop.checkout("cart-2", "w-2").await;
    shop.applied(2).await;
    let config = shop.daemon.config.clone();
    shop.daemon.stop().await;

    // Down while both timers come due.
    clock.advance(2 * WINDOW);
    let second = TestDaemon::builder("downtime")
        .config(|c| *c = config)
        .roles(Roles::PROCESSOR)
        .clock(clock.clone())
        .state_dir(state.path())
        .start()
        .await;
    let shop = Shop {
        daemon: second,
        http: Http::http1(),
        clock,
    };
    let transitions = shop.transitions_eventually(2).await;
    let carts: BTreeSet<&str> = transitions
        .iter()
        .map(|t| t["cart"].as_str().unwrap())
        .collect();
    assert_eq!(carts, BTreeSet::from(["cart-1", "cart-2"]));
    shop.advance(WINDOW).await;
    assert_eq!(shop.transitions().len(), 2, "each fired once");
    assert_eq!(shop.events().len(), 2, "nothing was applied twice");
    shop.daemon.stop().await;
}

// ---- Streams of journeys, produced straight to the inbound topic ----

/// One inbound record as the ingress would have written it.
struct Inbound {
    tenant: &'static str,
    delivery_id: String,
    topic: &'static str,
    received_ms: i64,
    body: Vec<u8>,
}

/// `carts` checkout journeys, ten seconds apart, ending an hour before now: a third is
/// abandoned, a third ordered within the window (completed), a third ordered after it
/// (abandoned, then recovered); every tenth checkout is delivered twice. Returns the records in
/// arrival order and the transition ids the processor must emit — computed here, from the
/// journeys, not from a processor run.
fn journeys(carts: usize) -> (Vec<Inbound>, BTreeSet<String>) {
    const TENANTS: [&str; 2] = ["acme", "globex"];
    let end = Clock::System.now_millis() - 3_600_000;
    let base = end - carts as i64 * 10_000 - 3_600_000;
    let mut records = Vec::new();
    let mut expected = BTreeSet::new();
    for i in 0..carts {
        let tenant = TENANTS[i % TENANTS.len()];
        let cart = format!("cart-{i}");
        let at = base + i as i64 * 10_000;
        let checkout = json!({
            "id": i, "token": format!("checkout-{i}"), "cart_token": cart,
            "email": format!("c{i}@example.com"), "total_price": "10.00", "currency": "USD",
            "updated_at": rfc3339(at),
        });
        let body = serde_json::to_vec(&checkout).unwrap();
        for copy in 0..(1 + usize::from(i % 10 == 0)) {
            records.push(Inbound {
                tenant,
                delivery_id: format!("checkout-delivery-{i}"),
                topic: "checkouts/update",
                received_ms: at + copy as i64 * 1_000,
                body: body.clone(),
            });
        }
        let order_after = match i % 3 {
            0 => None,
            1 => Some(2 * 60_000),
            _ => Some(30 * 60_000),
        };
        if let Some(after) = order_after {
            let order = json!({
                "id": 100_000 + i, "checkout_token": format!("checkout-{i}"), "cart_token": cart,
                "email": format!("c{i}@example.com"), "total_price": "10.00", "currency": "USD",
                "updated_at": rfc3339(at + after),
            });
            records.push(Inbound {
                tenant,
                delivery_id: format!("order-delivery-{i}"),
                topic: "orders/create",
                received_ms: at + after,
                body: serde_json::to_vec(&order).unwrap(),
            });
            expected.insert(transition_id(tenant, &cart, "order_completed", 0));
        }
        if order_after != Some(2 * 60_000) {
            expected.insert(transition_id(tenant, &cart, "abandoned_candidate", 0));
        }
    }
    records.sort_by_key(|r| r.received_ms);
    (records, expected)
}

/// Produces `records` to `topic`; returns where each landed: (partition, offset).
async fn produce(brokers: &str, topic: &str, records: &[Inbound]) -> Vec<(i32, i64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut pending = Vec::new();
    for record in records {
        let received = rfc3339(record.received_ms);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: inbound::HEADER_SCHEMA,
                value: Some(inbound::SCHEMA),
            })
            .insert(Header {
                key: inbound::HEADER_PROVIDER,
                value: Some("shopify"),
            })
            .insert(Header {
                key: inbound::HEADER_TENANT,
                value: Some(record.tenant),
            })
            .insert(Header {
                key: inbound::HEADER_DELIVERY_ID,
                value: Some(&record.delivery_id),
            })
            .insert(Header {
                key: inbound::HEADER_RECEIVED_AT,
                value: Some(&received),
            })
            .insert(Header {
                key: inbound::HEADER_EVENT_TYPE,
                value: Some(record.topic),
            });
        let future = producer
            .send_result(
                FutureRecord::to(topic)
                    .key(record.tenant)
                    .payload(&record.body)
                    .headers(headers),
            )
            .unwrap_or_else(|_| panic!("the producer queue has room"));
        pending.push(future);
    }
    let mut positions = Vec::with_capacity(pending.len());
    for future in pending {
        let delivery = future.await.unwrap().expect("the broker takes the record");
        positions.push((delivery.partition, delivery.offset));
    }
    positions
}

/// Every transition on the topic, by id; panics if two records with one id differ.
fn transitions_by_id(brokers: &str, topic: &str) -> BTreeMap<String, Value> {
    let mut by_id = BTreeMap::new();
    for value in read_json(brokers, topic) {
        let id = value["id"].as_str().unwrap().to_string();
        if let Some(earlier) = by_id.insert(id.clone(), value.clone()) {
            assert_eq!(
                earlier, value,
                "transition {id} was emitted twice, differently"
            );
        }
    }
    by_id
}

/// Sum of the high watermarks of `topic`: how many records it holds.
fn topic_len(brokers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let timeout = Duration::from_secs(5);
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), timeout) else {
        return 0;
    };
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p.id(), timeout)
                .map_or(0, |(_, high)| high)
        })
        .sum()
}

/// Creates the topics of `config` and fills the inbound one with `records`; returns where each
/// landed: (partition, offset).
async fn prepare(config: &cartstream::config::Config, records: &[Inbound]) -> Vec<(i32, i64)> {
    let topics = config.kafka.topics();
    kafka::admin::ensure_topics(&config.kafka, &topics.all(), &[], 1 << 20)
        .await
        .unwrap();
    produce(&config.kafka.brokers, &topics.inbound, records).await
}

/// A kill loses nothing the processor applied: each store reopens past every record whose event
/// was published before the kill. Records are published at least once, though (see
/// docs/ARCHITECTURE.md): those written to a store's outbox whose acknowledgement by Kafka was
/// not stored yet at the kill are published again at the restart, with the same ids — so beyond
/// one copy of each, the topics hold at most what the outboxes held when the stores reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_processor_mid_stream_loses_no_transition_and_repeats_only_its_outbox() {
    kill_the_processor_three_times("crash", Stop::Kill).await;
}

/// The same with a power cut at each kill: the store loses every write not synced to disk
/// (`CARTSTREAM_FAULT_POWER_CUT`, see `cartstream::volume::simulate_power_cut`) — effects and
/// offsets alike, so the lost records are applied again and their outputs published again,
/// with the same ids. Each cut must be seen to take writes the stores had applied, among them
/// records whose events were already published, and those records to be applied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_under_the_processor_loses_and_invents_no_transition() {
    if !cfg!(feature = "fault-injection") {
        panic!(
            "the power cut is simulated by the `fault-injection` feature; without it this test \
             would only kill the processor: run it with `--features cartstream/fault-injection`"
        );
    }
    kill_the_processor_three_times("power-cut", Stop::PowerCut).await;
}

/// How the processor is stopped at each kill.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// A SIGKILL: the kernel keeps every write the process made.
    Kill,
    /// A SIGKILL with a simulated power cut: the writes not synced to disk are lost too.
    PowerCut,
}

/// What a processor run reported in its log (JSON) as it opened its partitions' stores.
struct Reopened {
    /// Per partition, the offset the run resumed at: its first opening's stored offset.
    next_offset: BTreeMap<i32, i64>,
    /// Outbox records found over every opening: records possibly published before.
    outbox: u64,
    /// Writes a simulated power cut took from the stores (their ledgers, fault-injection only).
    lost_writes: u64,
}

fn reopened(log: &Path) -> Reopened {
    let mut next_offset = BTreeMap::new();
    let mut outbox = 0;
    for line in crate::support::log_lines(log, "partition assigned") {
        let partition = line["partition"].as_i64().expect("a partition") as i32;
        // Logged as `Some(n)`, or `None` for a store that consumed nothing yet.
        let offset = line["next_offset"]
            .as_str()
            .and_then(|n| n.strip_prefix("Some(")?.strip_suffix(')'))
            .map_or(0, |n| n.parse().expect("an offset"));
        next_offset.entry(partition).or_insert(offset);
        outbox += line["outbox"].as_u64().expect("an outbox length");
    }
    let lost_writes = crate::support::log_lines(log, "store reopened after a simulated power cut")
        .iter()
        .map(|line| line["lost"].as_u64().expect("a count of lost writes"))
        .sum();
    Reopened {
        next_offset,
        outbox,
        lost_writes,
    }
}

/// How many records of `topic` carry each value of their `field` (`id`, `delivery_id`); panics
/// if two copies differ.
fn copies_by_id(brokers: &str, topic: &str, field: &str) -> BTreeMap<String, usize> {
    let mut first = BTreeMap::new();
    let mut copies = BTreeMap::new();
    for value in read_json(brokers, topic) {
        let id = value[field].as_str().unwrap().to_string();
        *copies.entry(id.clone()).or_default() += 1;
        if let Some(earlier) = first.insert(id.clone(), value.clone()) {
            assert_eq!(earlier, value, "{id} was published twice, differently");
        }
    }
    copies
}

/// How many ids have 1, 2, … copies.
fn histogram(copies: &BTreeMap<String, usize>) -> BTreeMap<usize, usize> {
    let mut histogram = BTreeMap::new();
    for n in copies.values() {
        *histogram.entry(*n).or_default() += 1;
    }
    histogram
}

/// Journeys of 1,500 records through a processor process killed at a third, half and two
/// thirds of the way; then one runs to the end. Every expected transition and event must be
/// there by id, and nothing else; each at most once per run, and beyond the first copy only
/// what `stop` explains.
async fn kill_the_processor_three_times(test: &str, stop: Stop) {
    let env: &[(&str, &str)] = match stop {
        Stop::Kill => &[],
        Stop::PowerCut => &[("CARTSTREAM_FAULT_POWER_CUT", "1")],
    };
    let (records, expected) = journeys(1_500);
    let prefix = unique_prefix(test);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tenants.toml"), TENANTS).unwrap();
    let config_file = dir.path().join("cartstream.toml");
    // Every run joins the same group: the process restarted after a SIGKILL is the same static
    // member (same host, same state folder) and takes its partitions back without waiting for
    // the killed one's session to time out. Where a run starts comes from its state store, not
    // from the group (whose offsets only report progress).
    std::fs::write(
        &config_file,
        format!(
            r#"
[admin]
listen = "127.0.0.1:0"
[kafka]
brokers = "{brokers}"
topic_prefix = "{prefix}"
partitions = 3
[processor]
state_dir = "{state}"
group_id = "{prefix}-processor"
tick = "50ms"
max_batch_records = 50
[processor.consumer]
# librdkafka's own default: without static membership a restart would wait this long.
"session.timeout.ms" = "45000"
[tenants]
file = "{tenants}"
[telemetry]
# The stores' openings (their offsets and outboxes) are what the test reads from the log.
log_filter = "warn,cartstream::processor::partition=info"
log_format = "json"
"#,
            brokers = brokers(),
            state = dir.path().join("state").display(),
            tenants = dir.path().join("tenants.toml").display(),
        ),
    )
    .unwrap();
    let config = cartstream::config::Config::load(Some(&config_file), &Default::default())
        .expect("the test configuration is valid");
    let positions = prepare(&config, &records).await;
    // Where each delivery is first in the inbound topic: the record whose event it is.
    let mut first_at = BTreeMap::<&str, (i32, i64)>::new();
    for (record, &(partition, offset)) in records.iter().zip(&positions) {
        let at = first_at
            .entry(record.delivery_id.as_str())
            .or_insert((partition, offset));
        *at = (*at).min((partition, offset));
    }
    let log = |run: usize| dir.path().join(format!("processor-{run}.log"));
    let topics = config.kafka.topics();
    let brokers = brokers();
    let distinct = records
        .iter()
        .map(|r| r.delivery_id.as_str())
        .collect::<BTreeSet<_>>()
        .len() as i64;

    // Kill it at a third, half and two thirds of the way (plus a random few milliseconds),
    // while it consumes, publishes and commits.
    let mut seed = Clock::System.now_millis() as u64;
    println!("kill jitter seed {seed}");
    let mut incomplete_at_a_kill = false;
    // The deliveries whose events were published before each kill: applied by then.
    let mut published_at_kill = Vec::new();
    for (run, fraction) in [0.33, 0.5, 0.66].into_iter().enumerate() {
        let before = topic_len(&brokers, &topics.events);
        let started = Instant::now();
        let process = RoleProcess::start_logging("processor", &config_file, env, &log(run));
        if run > 0 {
            // The restarted process is the killed one's static member: it gets the partitions
            // back at once, not after the killed member's 45 s session.
            while topic_len(&brokers, &topics.events) <= before {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "no progress {:?} after the restart",
                    started.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            println!("run {run} resumed after {:?}", started.elapsed());
        }
        let target = (distinct as f64 * fraction) as i64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while topic_len(&brokers, &topics.events) < target {
            assert!(Instant::now() < deadline, "the processor makes no progress");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(seed >> 58)).await;
        process.kill();
        let emitted = transitions_by_id(&brokers, &topics.transitions);
        incomplete_at_a_kill |= emitted.len() < expected.len();
        published_at_kill.push(copies_by_id(&brokers, &topics.events, "delivery_id"));
    }
    assert!(
        incomplete_at_a_kill,
        "the kills happened after the stream was done; they prove nothing"
    );

    let process = RoleProcess::start_logging("processor", &config_file, env, &log(3));
    eventually(
        "every expected transition",
        Duration::from_secs(120),
        || (transitions_by_id(&brokers, &topics.transitions).len() >= expected.len()).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let transitions = copies_by_id(&brokers, &topics.transitions, "id");
    let emitted: BTreeSet<String> = transitions.keys().cloned().collect();
    assert_eq!(emitted, expected, "none missing, none extra");
    // One event per distinct delivery, whatever was re-published.
    let events = copies_by_id(&brokers, &topics.events, "delivery_id");
    assert_eq!(events.len() as i64, distinct);
    process.kill();

    // What each restart found, from the processor's own reports.
    let runs = 4;
    let mut outboxes = 0;
    for run in 0..runs {
        outboxes += reopened(&log(run)).outbox;
    }
    for (kill, published) in published_at_kill.iter().enumerate() {
        let after = reopened(&log(kill + 1));
        // Records whose events were out before the kill, at or past where the store resumed.
        let taken: Vec<&str> = published
            .keys()
            .map(String::as_str)
            .filter(|&id| {
                let (partition, offset) = first_at[id];
                let resumed = after.next_offset.get(&partition).unwrap_or_else(|| {
                    panic!("run {} did not open partition {partition}", kill + 1)
                });
                offset >= *resumed
            })
            .collect();
        println!(
            "kill {kill}: {} events out; the stores resumed at {:?} with {} outbox records, {} \
             writes lost; {} published records taken back",
            published.len(),
            after.next_offset,
            after.outbox,
            after.lost_writes,
            taken.len()
        );
        match stop {
            Stop::Kill => assert!(
                taken.is_empty(),
                "kill {kill}: the stores resumed at {:?}, before {} records they had applied and \
                 published, among them {:?}",
                after.next_offset,
                taken.len(),
                &taken[..taken.len().min(5)]
            ),
            Stop::PowerCut => {
                assert!(
                    after.lost_writes > 0,
                    "kill {kill}: no power cut happened: the stores reopened with every write \
                     they had applied"
                );
                assert!(
                    !taken.is_empty(),
                    "kill {kill}: the cut took back no record whose event was published"
                );
                let not_again: Vec<&&str> = taken.iter().filter(|id| events[**id] < 2).collect();
                assert!(
                    not_again.is_empty(),
                    "kill {kill}: {} records the cut took back were not applied again, among \
                     them {:?}",
                    not_again.len(),
                    &not_again[..not_again.len().min(5)]
                );
            }
        }
    }
    println!(
        "copies per transition: {:?}; per event: {:?}",
        histogram(&transitions),
        histogram(&events)
    );
    // A run applies and publishes each record once: it resumes past what its store holds.
    let most = transitions.values().chain(events.values()).max().copied();
    assert!(
        most.unwrap_or(0) <= runs,
        "a record published {most:?} times by {runs} runs"
    );
    if stop == Stop::Kill {
        let again: usize = transitions
            .values()
            .chain(events.values())
            .map(|n| n - 1)
            .sum();
        assert!(
            again as u64 <= outboxes,
            "{again} records published again, more than the {outboxes} the outboxes held when \
             the stores reopened"
        );
    }
}

/// Small steps that each wait for the producer's linger: the records of [`journeys`] take a
/// processor ten seconds or more however fast the broker, so that a second one joins mid-stream.
fn slow_steps(config: &mut cartstream::config::Config) {
    config.processor.max_batch_records = 10;
    config
        .kafka
        .producer
        .insert("linger.ms".to_string(), "100".to_string());
}

/// Two processors share the partitions, the second joining mid-stream: together they emit the
/// transitions one would, by id. A partition that moves to the second is rebuilt there by
/// replaying it from the start (it has no state of its own: docs/ARCHITECTURE.md), which
/// publishes its transitions again with the same ids; a processor that owned a partition emits
/// each of its transitions once. So a transition is on the topic once per processor that owned
/// its partition — once where only one did — and never otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processors_in_one_group_emit_what_one_would_once_per_owner_of_the_partition() {
    let (records, expected) = journeys(600);
    let first = TestDaemon::builder("pair")
        .roles(Roles::PROCESSOR)
        .config(slow_steps)
        .start()
        .await;
    let shared = first.config.clone();
    let positions = prepare(&shared, &records).await;
    // Every record of a tenant is in one partition (the tenant is the key).
    let partition_of: BTreeMap<&str, i32> = records
        .iter()
        .zip(&positions)
        .map(|(record, &(partition, _))| (record.tenant, partition))
        .collect();
    let topics = shared.kafka.topics();
    // The second joins while the first is mid-stream, which moves partitions between them.
    // It keeps its state in a folder of its own, as on another machine.
    eventually("the first processor's progress", WAIT, || {
        (topic_len(&first.brokers, &topics.events) > 50).then_some(())
    })
    .await;
    let second = TestDaemon::builder("pair")
        .roles(Roles::PROCESSOR)
        .config(|c| {
            c.kafka = shared.kafka.clone();
            c.processor.group_id = shared.processor.group_id.clone();
            slow_steps(c);
        })
        .start()
        .await;

    let emitted = eventually(
        "every expected transition",
        Duration::from_secs(120),
        || {
            let emitted = transitions_by_id(&first.brokers, &topics.transitions);
            (emitted.len() >= expected.len()).then_some(emitted)
        },
    )
    .await;
    assert_eq!(emitted.into_keys().collect::<BTreeSet<_>>(), expected);
    // The partitions each one owned: it keeps a store for each (`<inbound topic>-<partition>`).
    let owned = |dir: &Path| -> BTreeSet<i32> {
        std::fs::read_dir(dir).map_or_else(
            |_| BTreeSet::new(),
            |entries| {
                entries
                    .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                    .filter_map(|name| {
                        let partition = name.strip_prefix(&format!("{}-", topics.inbound))?;
                        Some(partition.parse().expect("a partition number"))
                    })
                    .collect()
            },
        )
    };
    let owned_by_second = owned(&second.config.processor.state_dir);
    let owned_by_first = owned(&first.config.processor.state_dir);
    assert!(
        !owned_by_second.is_empty(),
        "the second processor owned partitions"
    );
    assert!(!owned_by_first.is_empty());
    second.stop().await;
    first.stop().await;

    let copies = copies_by_id(&shared.kafka.brokers, &topics.transitions, "id");
    let tenants: BTreeMap<String, String> = read_json(&shared.kafka.brokers, &topics.transitions)
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().into(),
                t["tenant_id"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut beyond = Vec::new();
    for (id, &n) in &copies {
        let partition = partition_of[tenants[id].as_str()];
        let owners = usize::from(owned_by_first.contains(&partition))
            + usize::from(owned_by_second.contains(&partition));
        if n > owners {
            beyond.push((id, partition, n, owners));
        }
    }
    println!(
        "copies per transition: {:?}; partitions owned by the first {owned_by_first:?}, by the \
         second {owned_by_second:?}",
        histogram(&copies)
    );
    assert!(
        beyond.is_empty(),
        "{} transitions on the topic more often than processors owned their partition (id, \
         partition, copies, owners), among them {:?}",
        beyond.len(),
        &beyond[..beyond.len().min(5)]
    );
}

/// Acme with three platforms: two of them send no delivery id but a resource id in the body
/// (Shopery), one sends real delivery ids (Shopify, Standard Webhooks).
const IDENTITY_TENANTS: &str = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "acme.myshopify.com"
  secret = "acme-shopify-secret"

  [[tenant.integration]]
  provider = "standard"
  integration_key = "int_acme_standard_0000001"
  secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

  [[tenant.integration]]
  provider = "shopery"
  integration_key = "int_acme_shopery_0000001"
  secret = "acme-shopery-secret"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_a_duplicate_but_a_new_event_on_the_same_resource_or_platform_id_is_not() {
    let daemon = TestDaemon::builder("identity")
        .roles(Roles {
            delivery: false,
            ..Roles::ALL
        })
        .tenants(IDENTITY_TENANTS)
        .start()
        .await;
    let http = Http::http1();
    let post = |path: &'static str, headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let (http, url) = (http.clone(), daemon.url(path));
        async move {
            let answer = http.post(&url, &headers, body).await;
            assert_eq!(answer.status, 200, "{answer:?}");
        }
    };

    // Shopery: an order created, then updated — both carry the order's id as `id`.
    let shopery = "/api/webhooks/shopery/int_acme_shopery_0000001";
    let secret = || vec![("x-shopery-secret", "acme-shopery-secret".to_string())];
    let created = br#"{"id":"ord_7","event":"orders-created","data":{"total":"10.00"}}"#.to_vec();
    let updated = br#"{"id":"ord_7","event":"orders-updated","data":{"total":"12.00"}}"#.to_vec();
    post(shopery, secret(), created.clone()).await;
    post(shopery, secret(), updated).await;
    // Shopery retries the first: the same bytes.
    post(shopery, secret(), created).await;

    // The same delivery id from two platforms of one tenant.
    let body =
        crate::support::fixture("shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json");
    let headers = shopify_headers(
        "acme-shopify-secret",
        "acme.myshopify.com",
        &body,
        "shared-id",
    );
    post("/api/webhooks/shopify", headers, body).await;
    let standard_body = br#"{"type":"checkout.updated","data":{"id":"c1"}}"#.to_vec();
    let key = cartstream::providers::Provider::key(
        &cartstream::providers::standard::Standard,
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    .unwrap();
    let now = Clock::System.now_millis() as u64 / 1000;
    let standard = vec![
        ("content-type", "application/json".to_string()),
        ("webhook-id", "shared-id".to_string()),
        ("webhook-timestamp", now.to_string()),
        (
            "webhook-signature",
            cartstream::providers::standard::sign(&key, "shared-id", now, &standard_body),
        ),
    ];
    post(
        "/api/webhooks/standard/int_acme_standard_0000001",
        standard,
        standard_body,
    )
    .await;

    // Four deliveries; the retry is the only duplicate.
    read_json_eventually(&daemon.brokers, &daemon.topics.events, 4, WAIT).await;
    // A fifth, were the retry taken for a new delivery, is published by the time the
    // processor has settled.
    daemon.settle().await;
    let events = read_json(&daemon.brokers, &daemon.topics.events);
    let mut seen: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            let text = |field: &str| e[field].as_str().unwrap_or_default().to_string();
            (
                text("provider"),
                text("provider_event"),
                text("event_bucket"),
            )
        })
        .collect();
    seen.sort();
    let expected = [
        ("shopery", "orders-created", "order_completed"),
        ("shopery", "orders-updated", "other"),
        ("shopify", "checkouts/create", "abandoned_candidate"),
        ("standard", "checkout.updated", "other"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(seen, expected, "{events:#?}");
    daemon.stop().await;
}

const TEST_DELIVERY_TENANTS: &str = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "flexype"
  flexype_store = "store_acme"
  integration_key = "int_acme_flexype_0000001"
  secret = "acme-flexype-secret"

  [[tenant.integration]]
  provider = "shopery"
  integration_key = "int_acme_shopery_0000001"
  secret = "acme-shopery-secret"
"#;

/// FlexyPe's Test button "send[s] a sample payload", Shopery's Test URL "will try to connect to
/// your endpoint and will expect a HTTP 200". Authentic tests are answered 200, marked
/// `cartstream-test` and track no cart; where nothing names a tenant the answer stays an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_test_deliveries_are_answered_200_marked_and_track_no_cart() {
    let daemon = TestDaemon::builder("platform-tests")
        .roles(Roles {
            delivery: false,
            ..Roles::ALL
        })
        .tenants(TEST_DELIVERY_TENANTS)
        .start()
        .await;
    let http = Http::http1();
    let flexype = |secret: &str, event_id: &str| {
        vec![
            ("content-type", "application/json".to_string()),
            ("x-flexype-authorization", secret.to_string()),
            ("x-event-id", event_id.to_string()),
        ]
    };
    let checkout = |store: &str, event_type: &str, checkout: &str| {
        json!({
            "event_time": rfc3339(Clock::System.now_millis()),
            "event_type": event_type,
            "store": {"id": store},
            "checkout_id": checkout,
            "total_payable": "10.00",
            "user": {"email": "sample@example.com"}
        })
        .to_string()
    };
    let post = |path: &'static str, headers: Vec<(&'static str, String)>, body: String| {
        let (http, url) = (http.clone(), daemon.url(path));
        async move { http.post(&url, &headers, body).await }
    };
    let keyed = "/api/webhooks/flexype/int_acme_flexype_0000001";
    // The store of FlexyPe's documented samples behind the integration's key, with the real
    // secret: a test.
    let sample = post(
        keyed,
        flexype("acme-flexype-secret", "evt-test-1"),
        checkout("store_01", "ABANDONED_CHECKOUT", "chk-sample"),
    )
    .await;
    assert_eq!(sample.status, 200, "{sample:?}");
    // The merchant's own store, but the event says it is a test.
    let named = post(
        keyed,
        flexype("acme-flexype-secret", "evt-test-2"),
        checkout("store_acme", "TEST", "chk-named"),
    )
    .await;
    assert_eq!(named.status, 200, "{named:?}");
    // Shopery's connection test: no body, the endpoint secret.
    let shopery = "/api/webhooks/shopery/int_acme_shopery_0000001";
    let ping = post(
        shopery,
        vec![("x-shopery-secret", "acme-shopery-secret".to_string())],
        String::new(),
    )
    .await;
    assert_eq!(ping.status, 200, "{ping:?}");

    // Not authentic, or nothing names a tenant: clear JSON errors, nothing produced.
    let refusals = [
        post(
            keyed,
            flexype("not-the-secret-at-all", "evt-test-3"),
            checkout("sample_store", "ABANDONED_CHECKOUT", "chk-x"),
        )
        .await,
        post(
            "/api/webhooks/flexype",
            flexype("acme-flexype-secret", "evt-test-4"),
            checkout("sample_store", "ABANDONED_CHECKOUT", "chk-y"),
        )
        .await,
        post(
            shopery,
            vec![("x-shopery-secret", "not-the-secret-at-all".to_string())],
            String::new(),
        )
        .await,
    ];
    for refusal in &refusals {
        assert_eq!(refusal.status, 401, "{refusal:?}");
        assert!(refusal.json()["error"].is_string(), "{refusal:?}");
    }

    // A real checkout afterwards is tracked as usual.
    let real = post(
        keyed,
        flexype("acme-flexype-secret", "evt-real-1"),
        checkout("store_acme", "ABANDONED_CHECKOUT", "chk-real"),
    )
    .await;
    assert_eq!(real.status, 200, "{real:?}");

    let inbound = read_topic(&daemon.brokers, &daemon.topics.inbound);
    let marked: Vec<&str> = inbound
        .iter()
        .map(|r| r.headers.get("cartstream-test").map_or("-", String::as_str))
        .collect();
    assert_eq!(marked, ["true", "true", "true", "-"], "{inbound:?}");
    // Only the real checkout became an event (and a cart).
    read_json_eventually(&daemon.brokers, &daemon.topics.events, 1, WAIT).await;
    // The tests' events too, were they tracked, are published by the time the processor has
    // settled: they came before the real checkout.
    daemon.settle().await;
    let events = read_json(&daemon.brokers, &daemon.topics.events);
    let checkouts: Vec<&str> = events
        .iter()
        .map(|e| e["checkout_token"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(checkouts, ["chk-real"], "{events:#?}");
    daemon.stop().await;
}

/// Amounts a platform writes as JSON numbers reach the events as the decimal text it wrote: as
/// `f64` they came out as `10.1` and `1234567890123456.8`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_written_as_json_numbers_reaches_the_events_digit_for_digit() {
    let daemon = TestDaemon::builder("money")
        .roles(Roles {
            delivery: false,
            ..Roles::ALL
        })
        .tenants(IDENTITY_TENANTS)
        .start()
        .await;
    let http = Http::http1();
    let headers = [("x-shopery-secret", "acme-shopery-secret".to_string())];
    for body in [
        &br#"{"id":"ord_20","event":"orders-created","data":{"total":10.10,"currency":"EUR"}}"#[..],
        br#"{"id":"ord_21","event":"orders-created","data":{"total":1234567890123456.78,"currency":"IDR"}}"#,
    ] {
        let answer = http
            .post(
                &daemon.url("/api/webhooks/shopery/int_acme_shopery_0000001"),
                &headers,
                body.to_vec(),
            )
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let events = read_json_eventually(&daemon.brokers, &daemon.topics.events, 2, WAIT).await;
    let mut values: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["order_id"].as_str().unwrap(),
                e["cart_value"].as_str().unwrap(),
            )
        })
        .collect();
    values.sort();
    assert_eq!(
        values,
        [("ord_20", "10.10"), ("ord_21", "1234567890123456.78")]
    );
    daemon.stop().await;
}

/// An order that shares nothing with the abandoned checkout but the customer's phone number —
/// another cart token, another checkout, no e-mail, the number written another way — is its
/// recovery: both normalize to the same E.164 number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_from_the_same_phone_recovers_an_abandoned_checkout() {
    let shop = Shop::start("recovery-phone").await;
    shop.send(
        "checkouts/update",
        "w-p1",
        json!({
            "id": 1101,
            "token": "checkout-phone-1",
            "cart_token": "cart-phone-1",
            "phone": "+1 502-459-2181",
            "total_price": "120.00",
            "currency": "USD",
            "updated_at": rfc3339(shop.clock.now_millis()),
        }),
    )
    .await;
    shop.applied(1).await;
    shop.advance(WINDOW + Duration::from_secs(60)).await;
    let abandoned = shop.transitions_eventually(1).await;
    assert_eq!(abandoned[0]["to"], "abandoned");
    assert_eq!(abandoned[0]["event"]["customer"]["phone"], "+15024592181");

    shop.send(
        "orders/create",
        "w-p2",
        json!({
            "id": 5101,
            "checkout_token": "checkout-from-another-device",
            "cart_token": "cart-from-another-device",
            "billing_address": {"phone": "(502) 459-2181", "country_code": "US"},
            "total_price": "120.00",
            "currency": "USD",
            "updated_at": rfc3339(shop.clock.now_millis()),
        }),
    )
    .await;
    let transitions = shop.transitions_eventually(2).await;
    let recovery = &transitions[1];
    assert_eq!(recovery["cart"], abandoned[0]["cart"], "{recovery}");
    assert_eq!(
        (&recovery["from"], &recovery["to"]),
        (&json!("abandoned"), &json!("recovered"))
    );
    assert_eq!(recovery["recovered"], true);
    assert_eq!(recovery["event"]["order_id"], "5101");
    shop.daemon.stop().await;
}

/// The admin port's `/readyz` of a process running the processor lists its state stores — one
/// per owned inbound partition, where it is and whether it has caught up — to a caller with
/// the admin token, while a probe without it, and the public port, learn only whether to send
/// traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_on_the_admin_port_reports_the_processors_state_stores() {
    const TOKEN: &str = "test-admin-token-0123456789";
    let shop = Shop::start_with("readyz-stores", |config| {
        config.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap());
    })
    .await;
    shop.checkout("cart-1", "w-1").await;
    shop.applied(1).await;
    let partitions = shop.daemon.config.kafka.partitions as usize;
    let deadline = std::time::Instant::now() + WAIT;
    let authorized = [("authorization", format!("Bearer {TOKEN}"))];
    let stores = loop {
        let answer = shop
            .http
            .send(
                "GET",
                &shop.daemon.admin_url("/readyz"),
                &authorized,
                bytes::Bytes::new(),
            )
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let body = answer.json();
        assert_eq!(body["status"], "ready");
        let stores = body["stores"].as_array().cloned().unwrap_or_default();
        let settled = stores.len() == partitions
            && stores
                .iter()
                .all(|s| s["caught_up"] == true && (s["next_offset"].is_null() || s["lag"] == 0));
        if settled {
            break stores;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stores never all caught up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut owned: Vec<i64> = stores
        .iter()
        .map(|s| s["partition"].as_i64().unwrap())
        .collect();
    owned.sort();
    assert_eq!(owned, (0..partitions as i64).collect::<Vec<_>>());
    let applied: i64 = stores
        .iter()
        .filter_map(|s| s["next_offset"].as_i64())
        .sum();
    assert_eq!(applied, 1, "one record applied in all: {stores:?}");

    let public = shop.http.get(&shop.daemon.url("/readyz")).await;
    assert_eq!(public.json(), json!({"status": "ready"}));
    let probe = shop.http.get(&shop.daemon.admin_url("/readyz")).await;
    assert_eq!(
        probe.json(),
        json!({"status": "ready"}),
        "no detail without the token"
    );
    shop.daemon.stop().await;
}

/// An abandoned cart that is never recovered is forgotten `processor.retention` after its
/// abandonment: an order for it after that is an order of its own, not a recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_cart_is_forgotten_after_the_retention() {
    let clock = Clock::manual(T0);
    let daemon = TestDaemon::builder("retention-abandoned")
        .roles(Roles::ALL)
        .clock(clock.clone())
        .config(|config| {
            patient(config);
            config.processor.retention = Duration::from_secs(24 * 3600);
            config.processor.gc_interval = Duration::from_millis(200);
        })
        .start()
        .await;
    let shop = Shop {
        daemon,
        http: Http::http1(),
        clock,
    };
    shop.checkout("cart-old", "w-1").await;
    shop.applied(1).await;
    shop.advance(WINDOW + Duration::from_secs(60)).await;
    assert_eq!(shop.transitions_eventually(1).await[0]["to"], "abandoned");

    shop.advance(Duration::from_secs(24 * 3600 + 60)).await;
    // Garbage is collected every `gc_interval` of real time, not when the clock moves: a few
    // passes. (Too few, and the order below is a recovery: the test fails, it cannot pass.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    shop.order("cart-old", "w-2").await;
    shop.applied(2).await;
    // Everything the order did is published: a recovery would be a second transition.
    shop.daemon.settle().await;
    let transitions = shop.transitions();
    assert!(
        transitions.iter().all(|t| t["to"] != "recovered"),
        "{transitions:?}"
    );
    shop.daemon.stop().await;
}

/// FlexyPe sends an Abandoned Checkout Recovery event after 15 minutes of the customer's
/// inactivity: with the tenant's window of 15 minutes, the cart is abandoned as the event
/// arrives, not 15 minutes later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flexype_recovery_event_does_not_wait_the_inactivity_a_second_time() {
    let clock = Clock::manual(T0);
    let tenants = format!(
        "{TENANTS}\n[[tenant]]\nid = \"hooli\"\n  [[tenant.integration]]\n  provider = \"flexype\"\n  flexype_store = \"store_hooli\"\n  secret = \"hooli-flexype-secret\"\n"
    );
    let daemon = TestDaemon::builder("flexype-acr")
        .roles(Roles::ALL)
        .clock(clock.clone())
        .tenants(&tenants)
        .config(patient)
        .start()
        .await;
    let body = json!({
        "event_time": rfc3339(clock.now_millis()),
        "event_type": "ACR_CHECKOUT",
        "event_id": "evt_acr_1",
        "store": {"id": "store_hooli"},
        "payload": {
            "checkout_id": "chk_1",
            "checkout_url": "https://hooli.example/recover/chk_1",
            "total_payable": "42.00",
            "currency": "INR",
            "user": {"email": "asha@example.com"}
        }
    })
    .to_string()
    .into_bytes();
    let headers = vec![
        ("content-type", "application/json".to_string()),
        (
            "x-flexype-authorization",
            "hooli-flexype-secret".to_string(),
        ),
        ("x-webhook-version", "2026-05".to_string()),
        ("x-event-id", "evt_acr_1".to_string()),
    ];
    let answer = Http::http1()
        .post(&daemon.url("/api/webhooks/flexype"), &headers, body)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    read_json_eventually(&daemon.brokers, &daemon.topics.events, 1, WAIT).await;

    let inbound = read_topic(&daemon.brokers, &daemon.topics.inbound);
    assert_eq!(
        inbound[0]
            .headers
            .get("cartstream-payload-version")
            .map(String::as_str),
        Some("2026-05"),
        "X-Webhook-Version is kept with the record"
    );

    // A second later — not a window later — the cart is abandoned.
    clock.advance(Duration::from_secs(1));
    let transitions =
        read_json_eventually(&daemon.brokers, &daemon.topics.transitions, 1, WAIT).await;
    assert_eq!(transitions[0]["tenant_id"], "hooli");
    assert_eq!(transitions[0]["to"], "abandoned");
    assert_eq!(
        transitions[0]["event"]["recovery_url"],
        "https://hooli.example/recover/chk_1"
    );
    daemon.stop().await;
}

/// The processor's state volume fills up mid-stream. The processor stops consuming and says
/// why on `/readyz` (503) and in its metrics, the ingress goes on accepting, and once space
/// returns it resumes by itself: every delivery applied exactly once, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_volume_pauses_the_processor_until_space_returns() {
    let volume = Volume::mount(32);
    let state_dir = volume.path().join("processor");
    let clock = Clock::manual(T0);
    let daemon = TestDaemon::builder("volume-full")
        .roles(Roles::ALL)
        .clock(clock.clone())
        .config(move |config| {
            patient(config);
            config.processor.state_dir = state_dir;
            // Longer than `wait_for` waits for readiness below: a processor that resumes only
            // once this deadline for closing its paused consumer has passed fails the test
            // instead of merely slowing it down.
            config.kafka.shutdown_timeout = Duration::from_secs(90);
        })
        .start()
        .await;
    let shop = Shop {
        daemon,
        http: Http::http1(),
        clock,
    };
    let readyz = shop.daemon.admin_url("/readyz");
    let metrics = shop.daemon.admin_url("/metrics");
    for i in 0..10 {
        shop.checkout(&format!("cart-{i}"), &format!("w-{i}")).await;
    }
    shop.applied(10).await;
    assert_eq!(shop.http.get(&readyz).await.status, 200);

    let filler = volume.fill();
    // The ingress does not use the volume: it still answers 200. RocksDB may take a few more
    // writes into space its log file already holds, so checkouts go on until the processor
    // stops; then ten more, which must wait for space.
    let mut sent = 10;
    let stalled = loop {
        shop.checkout(&format!("cart-{sent}"), &format!("w-{sent}"))
            .await;
        sent += 1;
        let answer = shop.http.get(&readyz).await;
        if answer.status == 503 {
            break answer;
        }
        assert!(sent < 500, "the processor never stopped on the full volume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        stalled.json()["error"],
        "processor state volume cannot be written"
    );
    for _ in 0..10 {
        shop.checkout(&format!("cart-{sent}"), &format!("w-{sent}"))
            .await;
        sent += 1;
    }
    let scrape = String::from_utf8(shop.http.get(&metrics).await.body.to_vec()).unwrap();
    assert!(
        scrape.contains("cartstream_state_volume_stalled{role=\"processor\"} 1"),
        "{scrape}"
    );
    let events_while_full = shop.events().len();
    assert!(
        events_while_full <= sent - 10,
        "the full volume took writes after the processor stopped: {events_while_full} of {sent}"
    );

    std::fs::remove_file(filler).unwrap();
    wait_for(&shop.http, &readyz, |answer| answer.status == 200).await;
    for _ in 0..5 {
        shop.checkout(&format!("cart-{sent}"), &format!("w-{sent}"))
            .await;
        sent += 1;
    }
    shop.applied(sent).await;
    // Published once more only when applied once more: every record read is applied and
    // published once the processor has settled.
    shop.daemon.settle().await;
    let events = shop.events();
    let ids: BTreeSet<&str> = events
        .iter()
        .map(|event| event["delivery_id"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<String> = (0..sent).map(|i| format!("w-{i}")).collect();
    assert_eq!(
        ids,
        expected.iter().map(String::as_str).collect(),
        "every delivery applied"
    );
    assert_eq!(events.len(), sent, "each delivery applied once");
    let scrape = String::from_utf8(shop.http.get(&metrics).await.body.to_vec()).unwrap();
    assert!(
        scrape.contains("cartstream_state_volume_stalled{role=\"processor\"} 0"),
        "{scrape}"
    );
    shop.daemon.stop().await;
}

/// A processor stopped and started again under a new topic prefix, with the same group and the
/// same state folder, consumes the new topic. (A static member that comes back is handed its old
/// assignment by the broker: had its id stayed the same, it would own the old topic's partitions
/// and consume nothing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_restarted_under_a_new_topic_prefix_consumes_the_new_topic() {
    let state = tempfile::tempdir().unwrap();
    let group = unique_prefix("renamed-group");
    let run = |test: &'static str| {
        let group = group.clone();
        TestDaemon::builder(test)
            .roles(Roles::ALL)
            .state_dir(state.path())
            .config(move |config| {
                patient(config);
                config.processor.group_id = group;
            })
    };
    let clock = Clock::manual(T0);
    for (test, cart) in [("renamed-before", "cart-a"), ("renamed-after", "cart-b")] {
        let shop = Shop {
            daemon: run(test).clock(clock.clone()).start().await,
            http: Http::http1(),
            clock: clock.clone(),
        };
        shop.checkout(cart, &format!("w-{cart}")).await;
        shop.applied(1).await;
        shop.daemon.stop().await;
    }
}
