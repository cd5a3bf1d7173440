//! The delivery worker against real HTTP receivers: transitions in on their topic (or, end to
//! end, a signed checkout through the ingress and the processor), signed requests out, one
//! outcome record per attempt, retries on the schedule with the wall clock under the test's
//! control, supersession, 410, redirects, private destinations and restarts.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use cartstream::app::Roles;
use cartstream::clock::Clock;
use cartstream::state::transition_id;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;

use crate::support::{
    brokers, eventually, read_json, read_json_eventually, schema, shopify_headers, unique_prefix,
    wait_for, Http, RoleProcess, TestDaemon, Volume, TENANTS,
};

const T0: u64 = 1_790_000_000;
const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "crm-old-signing-secret";
const TOKEN: &str = "test-admin-token-0123456789";

/// What a receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
    /// The manual clock when it arrived, Unix ms.
    at_ms: i64,
    /// What the receiver answered.
    pub(crate) status: u16,
}

/// A scripted answer: status and headers.
type Reply = (u16, Vec<(&'static str, String)>);

/// A webhook receiver on 127.0.0.1: answers from its script, then 200.
#[derive(Clone)]
pub(crate) struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// Answer 500 to the first request of every webhook id (and follow the script after).
    fail_first: Arc<std::sync::atomic::AtomicBool>,
    /// Milliseconds to wait before answering (a slow receiver).
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Requests that arrived, answered or not yet.
    arrived: Arc<std::sync::atomic::AtomicUsize>,
}

impl Receiver {
    pub(crate) async fn start(clock: Clock) -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap(), clock).await
    }

    async fn start_on(addr: SocketAddr, clock: Clock) -> Receiver {
        let listener = TcpListener::bind(addr).await.unwrap();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            script: Arc::default(),
            fail_first: Arc::default(),
            delay_ms: Arc::default(),
            arrived: Arc::default(),
        };
        let shared = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (shared, clock) = (shared.clone(), clock.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: http::Request<hyper::body::Incoming>| {
                            let (shared, clock) = (shared.clone(), clock.clone());
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body.collect().await.unwrap().to_bytes();
                                shared
                                    .arrived
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let delay =
                                    shared.delay_ms.load(std::sync::atomic::Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                                let (status, headers) = shared.reply(&parts.headers);
                                shared.received.lock().unwrap().push(Received {
                                    headers: parts.headers,
                                    body,
                                    at_ms: clock.now_millis(),
                                    status,
                                });
                                let mut response = http::Response::builder().status(status);
                                for (name, value) in headers {
                                    response = response.header(name, value);
                                }
                                Ok::<_, Infallible>(
                                    response.body(Full::new(Bytes::from_static(b"ok"))).unwrap(),
                                )
                            }
                        });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        receiver
    }

    /// The answer to a request with `headers`: 500 for a new webhook id when failing first,
    /// else the script's next, else 200.
    fn reply(&self, headers: &http::HeaderMap) -> Reply {
        let fail_first = self.fail_first.load(std::sync::atomic::Ordering::Relaxed);
        let known = self
            .received
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.headers.get("webhook-id") == headers.get("webhook-id"));
        if fail_first && !known {
            return (500, Vec::new());
        }
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((200, Vec::new()))
    }

    fn answer(&self, status: u16, headers: Vec<(&'static str, String)>) {
        self.script.lock().unwrap().push_back((status, headers));
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Checks both signature schemes the way a receiver would, with HMAC computed here.
fn verify(request: &Received, secret: &str, previous: &str) {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let hmac = |key: &[u8], message: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    };
    assert_eq!(
        header("x-cartstream-signature"),
        hex::encode(hmac(secret.as_bytes(), &request.body)),
        "X-Cartstream-Signature is the hex HMAC of the raw body"
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        header("x-cartstream-event"),
        body["event"].as_str().unwrap()
    );
    let id = header("webhook-id");
    assert_eq!(id, body["id"].as_str().unwrap());
    let timestamp = header("webhook-timestamp");
    let signed = [
        id.as_bytes(),
        b".",
        timestamp.as_bytes(),
        b".",
        &request.body,
    ]
    .concat();
    let current = BASE64
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let expected = [
        format!("v1,{}", BASE64.encode(hmac(&current, &signed))),
        format!("v1,{}", BASE64.encode(hmac(previous.as_bytes(), &signed))),
    ];
    let sent: Vec<String> = header("webhook-signature")
        .split(' ')
        .map(str::to_string)
        .collect();
    assert_eq!(sent, expected, "one signature per valid secret");
    assert_eq!(
        request.headers.get("content-type").unwrap(),
        "application/json"
    );
}

/// The test tenants plus endpoints for `acme`: `(id, url, extra lines)`.
pub(crate) fn tenants(endpoints: &[(&str, &str, &str)]) -> String {
    let mut text = TENANTS.to_string();
    // TENANTS lists acme first: its endpoints go right after its integrations, before globex.
    let globex = text.find("[[tenant]]\nid = \"globex\"").unwrap();
    let mut lines = String::new();
    for (id, url, extra) in endpoints {
        lines.push_str(&format!(
            "  [[tenant.endpoint]]\n  id = \"{id}\"\n  url = \"{url}\"\n  secret = \"{SECRET}\"\n  previous_secret = \"{OLD_SECRET}\"\n{extra}\n"
        ));
    }
    text.insert_str(globex, &lines);
    text
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

/// A transition as the processor writes it.
fn transition(cart: &str, bucket: &str, at_ms: i64) -> Value {
    let (to, kind) = match bucket {
        "abandoned_candidate" => ("abandoned", "abandoned_candidate"),
        _ => ("completed", "order_completed"),
    };
    json!({
        "schema": "cartstream.transition.v1",
        "id": transition_id("acme", cart, kind, 0),
        "tenant_id": "acme",
        "cart": cart,
        "from": "active",
        "to": to,
        "bucket": bucket,
        "recovered": false,
        "at": rfc3339(at_ms),
        "event": {
            "schema": "cartstream.event.v1",
            "provider": "shopify",
            "customer": {"name": null, "email": "bob@example.com", "phone": null},
            "cart_value": "379.69",
            "currency": "USD",
            "item_count": 2,
            "recovery_url": format!("https://acme.example/recover/{cart}"),
            "cart_token": cart,
            "checkout_token": null,
            "order_id": null,
        }
    })
}

struct Bench {
    daemon: TestDaemon,
    clock: Clock,
    producer: FutureProducer,
}

impl Bench {
    async fn start_with(
        test: &str,
        tenants: &str,
        state: Option<&std::path::Path>,
        clock: Clock,
        edit: impl FnOnce(&mut cartstream::config::Config),
    ) -> Bench {
        let mut builder = TestDaemon::builder(test)
            .roles(Roles::DELIVERY)
            .clock(clock.clone())
            .tenants(tenants)
            .config(|config| {
                config.delivery.allow_private_networks = vec!["127.0.0.0/8".to_string()];
                edit(config);
            });
        if let Some(dir) = state {
            builder = builder.state_dir(dir);
        }
        let daemon = builder.start().await;
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &daemon.brokers)
            .create()
            .unwrap();
        Bench {
            daemon,
            clock,
            producer,
        }
    }

    /// Sends a transition of `bucket` for `cart`, happening now on the bench's clock.
    async fn send_now(&self, cart: &str, bucket: &str) {
        let payload = transition(cart, bucket, self.clock.now_millis()).to_string();
        self.producer
            .send(
                FutureRecord::to(&self.daemon.topics.transitions)
                    .key("acme")
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    fn outcomes(&self) -> Vec<Value> {
        read_json(&self.daemon.brokers, &self.daemon.topics.deliveries)
    }

    fn dead_letters(&self) -> Vec<Value> {
        read_json(&self.daemon.brokers, &self.daemon.topics.dead_letters)
    }

    async fn outcomes_eventually(&self, n: usize) -> Vec<Value> {
        let (brokers, topic) = (&self.daemon.brokers, &self.daemon.topics.deliveries);
        read_json_eventually(brokers, topic, n, WAIT).await
    }

    /// The outcome of the first attempt, once the worker has recorded it. The worker decides
    /// on an answer at its clock's time, so a test waits for this before moving the clock —
    /// the request reaching the receiver is not enough.
    async fn first_outcome(&self) -> Value {
        self.outcomes_eventually(1).await.swap_remove(0)
    }

    /// Moves the clock and waits until the worker has acted on it: every delivery due by the
    /// new time attempted and its outcome published ([`TestDaemon::advance`]).
    async fn advance(&self, by: Duration) {
        self.daemon.advance(by).await;
    }
}

async fn received_eventually(receiver: &Receiver, n: usize) -> Vec<Received> {
    eventually(&format!("{n} requests"), WAIT, || {
        let received = receiver.received();
        (received.len() >= n).then_some(received)
    })
    .await
}

fn fields(outcomes: &[Value], name: &str) -> Vec<Value> {
    outcomes.iter().map(|o| o[name].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_after_a_checkout_ends_as_a_signed_webhook() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let daemon = TestDaemon::builder("delivery-e2e")
        .roles(Roles::ALL)
        .clock(clock.clone())
        .tenants(&tenants(&[("crm", &receiver.url(), "")]))
        .config(|config| {
            config.delivery.allow_private_networks = vec!["127.0.0.0/8".to_string()];
            config.ingress.ack_timeout = Duration::from_secs(20);
        })
        .start()
        .await;
    let body = serde_json::to_vec(&json!({
        "id": 1001,
        "token": "checkout-cart-1",
        "cart_token": "cart-1",
        "email": "bob@example.com",
        "total_price": "379.69",
        "currency": "USD",
        "abandoned_checkout_url": "https://acme.example/recover/cart-1",
        "updated_at": rfc3339(clock.now_millis()),
    }))
    .unwrap();
    let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, "w-1");
    let answer = Http::http1()
        .post(&daemon.url("/api/webhooks/shopify"), &headers, body)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    eventually("the checkout's event", WAIT, || {
        (!read_json(&daemon.brokers, &daemon.topics.events).is_empty()).then_some(())
    })
    .await;
    daemon.settle().await;
    assert!(receiver.received().is_empty(), "nothing before the window");

    clock.advance(Duration::from_secs(16 * 60));
    let received = received_eventually(&receiver, 1).await;
    verify(&received[0], SECRET, OLD_SECRET);
    let webhook: Value = serde_json::from_slice(&received[0].body).unwrap();
    let errors: Vec<String> = schema("webhook.v1.json")
        .iter_errors(&webhook)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}: {webhook}");
    assert_eq!(webhook["event"], "abandoned_candidate");
    assert_eq!(
        webhook["id"],
        transition_id("acme", "cart-1", "abandoned_candidate", 0)
    );
    assert_eq!(
        webhook["data"]["recovery_url"],
        "https://acme.example/recover/cart-1"
    );
    assert_eq!(webhook["data"]["customer"]["email"], "bob@example.com");

    let outcomes = eventually("the outcome", WAIT, || {
        let o = read_json(&daemon.brokers, &daemon.topics.deliveries);
        (!o.is_empty()).then_some(o)
    })
    .await;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0]["outcome"], "delivered");
    assert_eq!(outcomes[0]["status_code"], 200);
    assert_eq!(outcomes[0]["attempt"], 1);
    let validator = schema("delivery.v1.json");
    assert!(validator.is_valid(&outcomes[0]), "{}", outcomes[0]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_500s_then_200_is_three_attempts_on_the_schedule() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let bench = Bench::start_with(
        "delivery-retry",
        &tenants(&[("crm", &receiver.url(), "")]),
        None,
        clock.clone(),
        |_| {},
    )
    .await;
    receiver.answer(500, Vec::new());
    receiver.answer(500, Vec::new());
    bench.send_now("cart-1", "abandoned_candidate").await;
    received_eventually(&receiver, 1).await;
    bench.outcomes_eventually(1).await;

    // The schedule: 1 min (±10 %) before the second attempt, 5 min before the third.
    bench.advance(Duration::from_secs(50)).await;
    assert_eq!(receiver.received().len(), 1, "not before 54 s");
    bench.advance(Duration::from_secs(17)).await;
    received_eventually(&receiver, 2).await;
    bench.outcomes_eventually(2).await;
    bench.advance(Duration::from_secs(4 * 60)).await;
    assert_eq!(receiver.received().len(), 2, "not before 4.5 min");
    bench.advance(Duration::from_secs(2 * 60)).await;
    let received = received_eventually(&receiver, 3).await;
    for request in &received {
        verify(request, SECRET, OLD_SECRET);
        assert_eq!(
            request.body, received[0].body,
            "every attempt sends the same bytes"
        );
    }

    let outcomes = bench.outcomes_eventually(3).await;
    assert_eq!(
        fields(&outcomes, "outcome"),
        [json!("failed"), json!("failed"), json!("delivered")]
    );
    assert_eq!(fields(&outcomes, "attempt"), [json!(1), json!(2), json!(3)]);
    assert_eq!(
        fields(&outcomes, "status_code"),
        [json!(500), json!(500), json!(200)]
    );
    assert!(outcomes[0]["next_attempt_at"].is_string());
    let validator = schema("delivery.v1.json");
    for outcome in &outcomes {
        assert!(validator.is_valid(outcome), "{outcome}");
    }
    bench.advance(Duration::from_secs(3600)).await;
    assert_eq!(receiver.received().len(), 3, "nothing after delivery");
    bench.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_holds_the_next_attempt_back() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let bench = Bench::start_with(
        "delivery-429",
        &tenants(&[("crm", &receiver.url(), "")]),
        None,
        clock.clone(),
        |_| {},
    )
    .await;
    receiver.answer(429, vec![("retry-after", "120".to_string())]);
    bench.send_now("cart-1", "abandoned_candidate").await;
    let first = received_eventually(&receiver, 1).await[0].at_ms;
    let outcome = bench.first_outcome().await;
    assert_eq!(
        outcome["next_attempt_at"],
        rfc3339(T0 as i64 * 1000 + 120_000)
    );
    bench.advance(Duration::from_secs(100)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "the schedule says 1 min, Retry-After 120 s"
    );
    bench.advance(Duration::from_secs(21)).await;
    let received = received_eventually(&receiver, 2).await;
    assert!(received[1].at_ms - first >= 120_000);
    let outcomes = bench.outcomes_eventually(2).await;
    assert_eq!(outcomes[0]["status_code"], 429);
    assert_eq!(outcomes[1]["outcome"], "delivered");
    bench.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_as_an_http_date_counts_from_the_workers_clock() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let bench = Bench::start_with(
        "delivery-date",
        &tenants(&[("crm", &receiver.url(), "")]),
        None,
        clock.clone(),
        |_| {},
    )
    .await;
    let at = UNIX_EPOCH + Duration::from_millis(clock.now_millis() as u64 + 150_000);
    receiver.answer(503, vec![("retry-after", httpdate::fmt_http_date(at))]);
    bench.send_now("cart-1", "abandoned_candidate").await;
    received_eventually(&receiver, 1).await;
    let outcome = bench.first_outcome().await;
    assert_eq!(outcome["status_code"], 503);
    assert_eq!(
        outcome["next_attempt_at"],
        rfc3339(T0 as i64 * 1000 + 150_000)
    );
    bench.advance(Duration::from_secs(120)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "the schedule says 1 min, the date 150 s"
    );
    bench.advance(Duration::from_secs(31)).await;
    let received = received_eventually(&receiver, 2).await;
    assert!(received[1].at_ms >= T0 as i64 * 1000 + 150_000);
    bench.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_capped_as_configured() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let bench = Bench::start_with(
        "delivery-cap",
        &tenants(&[("crm", &receiver.url(), "")]),
        None,
        clock.clone(),
        |config| config.delivery.max_retry_after = Duration::from_secs(90),
    )
    .await;
    receiver.answer(503, vec![("retry-after", "86400".to_string())]);
    bench.send_now("cart-1", "abandoned_candidate").await;
    received_eventually(&receiver, 1).await;
    let outcome = bench.first_outcome().await;
    assert_eq!(outcome["status_code"], 503);
    assert_eq!(
        outcome["next_attempt_at"],
        rfc3339(T0 as i64 * 1000 + 90_000),
        "a day asked, 90 s allowed"
    );
    bench.advance(Duration::from_secs(80)).await;
    assert_eq!(receiver.received().len(), 1);
    bench.advance(Duration::from_secs(11)).await;
    received_eventually(&receiver, 2).await;
    bench.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_failures_and_gone_disables_the_endpoint() {
    let clock = Clock::manual(T0);
    let moved = Receiver::start(clock.clone()).await;
    let elsewhere = Receiver::start(clock.clone()).await;
    let gone = Receiver::start(clock.clone()).await;
    moved.answer(301, vec![("location", elsewhere.url())]);
    gone.answer(410, Vec::new());
    let bench = Bench::start_with(
        "delivery-gone",
        &tenants(&[("moved", &moved.url(), ""), ("gone", &gone.url(), "")]),
        None,
        clock.clone(),
        |_| {},
    )
    .await;
    bench.send_now("cart-1", "abandoned_candidate").await;
    let outcomes = bench.outcomes_eventually(2).await;
    let of = |endpoint: &str| -> Vec<Value> {
        bench
            .outcomes()
            .into_iter()
            .filter(|o| o["endpoint_id"] == endpoint)
            .collect()
    };
    assert_eq!(outcomes.len(), 2);
    let redirect = &of("moved")[0];
    assert_eq!(redirect["outcome"], "failed");
    assert_eq!(redirect["status_code"], 301);
    assert_eq!(redirect["status_class"], "3xx");
    assert!(
        elsewhere.received().is_empty(),
        "the redirect was not followed"
    );
    let gone_outcome = &of("gone")[0];
    assert_eq!(gone_outcome["outcome"], "dead_lettered");
    assert_eq!(gone_outcome["status_code"], 410);
    let dead = eventually("the dead letter", WAIT, || {
        let d = bench.dead_letters();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(dead[0]["reason"], "gone");
    assert!(
        schema("delivery_dlq.v1.json").is_valid(&dead[0]),
        "{}",
        dead[0]
    );

    // A later transition is recorded for the disabled endpoint, and not sent.
    bench.send_now("cart-2", "abandoned_candidate").await;
    eventually("skipped_disabled", WAIT, || {
        of("gone")
            .iter()
            .any(|o| o["outcome"] == "skipped_disabled" && o["cart"] == "cart-2")
            .then_some(())
    })
    .await;
    assert_eq!(gone.received().len(), 1);
    bench.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_tenants_transitions_are_recorded_and_not_sent() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let registry = tenants(&[("crm", &receiver.url(), "")]).replacen(
        "id = \"acme\"\n",
        "id = \"acme\"\nenabled = false\n",
        1,
    );
    let bench = Bench::start_with("tenant-disabled", &registry, None, clock, |_| {}).await;
    bench.send_now("cart-1", "abandoned_candidate").await;
    let outcomes = bench.outcomes_eventually(1).await;
    assert_eq!(outcomes[0]["outcome"], "skipped_disabled", "{outcomes:?}");
    assert_eq!(outcomes[0]["endpoint_id"], "crm");
    assert!(receiver.received().is_empty());
    bench.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_past_the_schedule_is_dead_lettered_and_redriven() {
    let clock = Clock::manual(T0);
    // Ports nothing listens on, for now.
    let (addr, erp_addr) = (closed_port().await, closed_port().await);
    let url = format!("http://{addr}/hooks");
    let erp_url = format!("http://{erp_addr}/hooks");
    // `erp` takes orders only, and gives up after one attempt.
    let registry = tenants(&[
        ("crm", &url, "  retry_schedule = [\"0s\", \"1m\", \"5m\"]"),
        (
            "erp",
            &erp_url,
            "  events = [\"order_completed\"]\n  retry_schedule = [\"0s\"]",
        ),
    ]);
    let with_token = |config: &mut cartstream::config::Config| {
        config.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap())
    };
    let bench =
        Bench::start_with("delivery-dead", &registry, None, clock.clone(), with_token).await;
    bench.send_now("cart-1", "abandoned_candidate").await;
    bench.outcomes_eventually(1).await;
    bench.advance(Duration::from_secs(70)).await;
    bench.outcomes_eventually(2).await;
    bench.advance(Duration::from_secs(6 * 60)).await;
    let outcomes = bench.outcomes_eventually(3).await;
    assert_eq!(
        fields(&outcomes, "outcome"),
        [json!("failed"), json!("failed"), json!("dead_lettered")]
    );
    assert_eq!(outcomes[0]["status_class"], "connection");
    let dead = eventually("the dead letter", WAIT, || {
        let d = bench.dead_letters();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(dead[0]["reason"], "exhausted");
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["body"]["data"]["cart"], "cart-1");
    assert!(
        schema("delivery_dlq.v1.json").is_valid(&dead[0]),
        "{}",
        dead[0]
    );

    // The operator lists it, the receiver comes back, and a redrive delivers it.
    let http = Http::http1();
    let admin = |path: &str| bench.daemon.admin_url(path);
    let bearer = [("authorization", format!("Bearer {TOKEN}"))];
    let denied = http.get(&admin("/admin/deliveries?state=dead")).await;
    assert_eq!(denied.status, 401);
    let listed = http
        .send(
            "GET",
            &admin("/admin/deliveries?state=dead"),
            &bearer,
            Bytes::new(),
        )
        .await;
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    assert_eq!(listed["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(listed["deliveries"][0]["attempts"], 3);

    let receiver = Receiver::start_on(addr, clock.clone()).await;
    let redriven = http
        .post(&admin("/admin/dead-letters/redrive"), &bearer, Bytes::new())
        .await;
    assert_eq!(redriven.status, 200, "{redriven:?}");
    assert_eq!(redriven.json()["redriven"], 1);
    let received = received_eventually(&receiver, 1).await;
    verify(&received[0], SECRET, OLD_SECRET);
    let outcomes = bench.outcomes_eventually(4).await;
    assert_eq!(outcomes[3]["outcome"], "delivered");

    // A test delivery goes out at once and reports the answer.
    let tested = http
        .post(
            &admin("/admin/endpoints/test"),
            &bearer,
            json!({"tenant_id": "acme", "endpoint_id": "crm"}).to_string(),
        )
        .await;
    assert_eq!(tested.status, 200, "{tested:?}");
    assert_eq!(tested.json()["test"]["status_code"], 200);
    let received = received_eventually(&receiver, 2).await;
    assert_eq!(received[1].headers["x-cartstream-event"], "test");
    verify(&received[1], SECRET, OLD_SECRET);

    // The redrive moved the shared position past that dead letter: nothing is left; read
    // from the beginning, this worker knows it redrove that one already.
    let redrive = |body: Value| {
        let (http, url, bearer) = (
            http.clone(),
            admin("/admin/dead-letters/redrive"),
            bearer.clone(),
        );
        async move {
            let answer = http.post(&url, &bearer, body.to_string()).await;
            assert_eq!(answer.status, 200, "{answer:?}");
            answer.json()
        }
    };
    let again = redrive(json!({})).await;
    assert_eq!(
        (again["read"].clone(), again["redriven"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(again["complete"], true);
    let from_start = redrive(json!({"from": "beginning"})).await;
    assert_eq!(from_start["read"], 1, "{from_start}");
    assert_eq!(from_start["already_redriven"], 1, "{from_start}");
    assert_eq!(from_start["position_saved"], false);
    let refused = http
        .post(
            &admin("/admin/dead-letters/redrive"),
            &bearer,
            json!({"since": "last week"}).to_string(),
        )
        .await;
    assert_eq!(refused.status, 400, "{refused:?}");

    // An order: `crm` takes it, `erp` is down and dead-letters it at once.
    bench.send_now("cart-2", "order_completed").await;
    received_eventually(&receiver, 3).await;
    eventually("the order's dead letter", WAIT, || {
        (bench.dead_letters().len() == 2).then_some(())
    })
    .await;
    let (prefix, group) = (
        bench.daemon.config.kafka.topic_prefix.clone(),
        bench.daemon.config.delivery.group_id.clone(),
    );
    bench.daemon.stop().await;

    // The worker's volume is lost. A new worker redrives from the topic: only the dead letter
    // no redrive has read yet, which `erp`, back now, gets.
    let erp = Receiver::start_on(erp_addr, clock.clone()).await;
    let bench = Bench::start_with("delivery-dead", &registry, None, clock.clone(), |config| {
        with_token(config);
        config.kafka.topic_prefix = prefix;
        config.delivery.group_id = group;
    })
    .await;
    let admin = |path: &str| bench.daemon.admin_url(path);
    let answer = http
        .post(&admin("/admin/dead-letters/redrive"), &bearer, Bytes::new())
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let report = answer.json();
    assert_eq!(report["read"], 1, "{report}");
    assert_eq!(report["redriven"], 1, "{report}");
    assert_eq!(report["position_saved"], true, "{report}");
    let got = received_eventually(&erp, 1).await;
    verify(&got[0], SECRET, OLD_SECRET);
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["data"]["cart"], "cart-2");
    eventually("erp's delivered outcome", WAIT, || {
        bench
            .outcomes()
            .iter()
            .any(|o| o["endpoint_id"] == "erp" && o["outcome"] == "delivered")
            .then_some(())
    })
    .await;
    bench.daemon.settle().await;
    assert_eq!(erp.received().len(), 1);
    assert_eq!(receiver.received().len(), 3, "crm got nothing twice");
    bench.daemon.stop().await;
}

/// A local address nothing listens on (for now).
async fn closed_port() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_supersedes_an_abandonment_waiting_for_its_retry() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    receiver.answer(500, Vec::new());
    let bench = Bench::start_with(
        "delivery-supersede",
        &tenants(&[("crm", &receiver.url(), "")]),
        None,
        clock.clone(),
        |_| {},
    )
    .await;
    bench.send_now("cart-1", "abandoned_candidate").await;
    bench.outcomes_eventually(1).await;
    bench.send_now("cart-1", "order_completed").await;
    let outcomes = bench.outcomes_eventually(3).await;
    let mut seen: Vec<(String, String)> = outcomes
        .iter()
        .map(|o| {
            (
                o["event"].as_str().unwrap().to_string(),
                o["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("abandoned_candidate".to_string(), "failed".to_string()),
            ("abandoned_candidate".to_string(), "superseded".to_string()),
            ("order_completed".to_string(), "delivered".to_string()),
        ]
    );
    bench.advance(Duration::from_secs(3600)).await;
    let events: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| {
            r.headers["x-cartstream-event"]
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        events,
        ["abandoned_candidate", "order_completed"],
        "the stale abandonment is not retried"
    );
    bench.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_destinations_are_refused_unless_allow_listed() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let bench = Bench::start_with(
        "delivery-private",
        &tenants(&[("crm", &receiver.url(), "")]),
        None,
        clock.clone(),
        |config| config.delivery.allow_private_networks.clear(),
    )
    .await;
    bench.send_now("cart-1", "abandoned_candidate").await;
    let outcomes = bench.outcomes_eventually(1).await;
    // Refused at once, not retried through the schedule: no retry can change the address.
    assert_eq!(outcomes[0]["outcome"], "dead_lettered");
    assert_eq!(outcomes[0]["status_class"], "refused");
    assert_eq!(outcomes[0]["attempt"], 1);
    assert_eq!(outcomes[0]["next_attempt_at"], Value::Null);
    let dead = eventually("the dead letter", WAIT, || {
        let d = bench.dead_letters();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(dead[0]["reason"], "refused");
    assert_eq!(dead[0]["attempts"], 1);
    let error = dead[0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("not allow-listed"), "{}", dead[0]);
    assert!(
        schema("delivery_dlq.v1.json").is_valid(&dead[0]),
        "{}",
        dead[0]
    );
    // The next step of the schedule (1m by default) comes and goes without another attempt.
    bench.advance(Duration::from_secs(2 * 60)).await;
    assert_eq!(bench.outcomes().len(), 1, "{:?}", bench.outcomes());
    assert!(receiver.received().is_empty());
    bench.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_retries_survive_a_restart() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let state = tempfile::tempdir().unwrap();
    let carts = 20;
    for _ in 0..carts {
        receiver.answer(503, Vec::new());
    }
    let text = tenants(&[("crm", &receiver.url(), "")]);
    // Twenty failures in a row would open the circuit (covered elsewhere); not here.
    let bench = Bench::start_with(
        "delivery-restart",
        &text,
        Some(state.path()),
        clock.clone(),
        |config| config.delivery.circuit_failures = 1_000,
    )
    .await;
    for i in 0..carts {
        bench
            .send_now(&format!("cart-{i}"), "abandoned_candidate")
            .await;
    }
    bench.outcomes_eventually(carts).await;
    let config = bench.daemon.config.clone();
    bench.daemon.stop().await;

    // The same worker (same state, same group and topics) comes back a few minutes later.
    clock.advance(Duration::from_secs(5 * 60));
    let daemon = TestDaemon::builder("delivery-restart")
        .roles(Roles::DELIVERY)
        .clock(clock.clone())
        .tenants(&text)
        .state_dir(state.path())
        .config(|c| *c = config)
        .start()
        .await;
    let received = received_eventually(&receiver, 2 * carts).await;
    let mut delivered: Vec<Value> = received[carts..]
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["cart"].clone())
        .collect();
    delivered.sort_by_key(|c| c.as_str().unwrap().to_string());
    let mut expected: Vec<Value> = (0..carts).map(|i| json!(format!("cart-{i}"))).collect();
    expected.sort_by_key(|c| c.as_str().unwrap().to_string());
    assert_eq!(delivered, expected, "every pending retry, once");
    let outcomes = eventually("every delivery's outcome", WAIT, || {
        let o = read_json(&daemon.brokers, &daemon.topics.deliveries);
        (o.len() >= 2 * carts).then_some(o)
    })
    .await;
    let delivered = outcomes
        .iter()
        .filter(|o| o["outcome"] == "delivered")
        .count();
    assert_eq!(delivered, carts);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_worker_with_retries_pending_loses_none() {
    // At least once: a request answered just before a kill, whose outcome was not yet on
    // disk, goes again — at most the requests in flight at each kill.
    kill_the_worker_twice("delivery-kill", &[], 2 * 8).await;
}

/// A power cut under the worker, twice: each kill also loses every store write not yet synced
/// (`CARTSTREAM_FAULT_POWER_CUT`, see `cartstream::volume::simulate_power_cut`), and comes
/// while the store holds such writes. The worker must report a cut that took writes it had
/// applied. No transition is lost: its offset is committed only once its jobs are synced to
/// disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_under_the_worker_loses_no_delivery() {
    if !cfg!(feature = "fault-injection") {
        panic!(
            "the power cut is simulated by the `fault-injection` feature; without it this test \
             would only kill the worker: run it with `--features cartstream/fault-injection`"
        );
    }
    // A cut also takes back the outcomes recorded since the last sync (one 50 ms tick: at
    // most 8 answers at 50 ms each, 8 at a time), whose deliveries go again, besides the 8 in
    // flight.
    let power_cut = [("CARTSTREAM_FAULT_POWER_CUT", "1")];
    kill_the_worker_twice("delivery-power-cut", &power_cut, 2 * (8 + 8)).await;
}

/// Waits until the worker's store at `state` holds writes it has not synced to disk — its
/// ledger says so, kept under a simulated power cut (`cartstream::volume::Ledger`) — so that a
/// cut now has something to take.
async fn until_unsynced(state: &std::path::Path) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match cartstream::volume::ledger(state) {
            Some((applied, synced)) if applied > synced => return,
            _ => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the store never held a write it had not synced: {:?} (applied, synced)",
            cartstream::volume::ledger(state)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Transitions for 200 carts, each failing once; the worker process is killed once mid-way
/// through the first attempts and once while retries are pending, then runs to the end. Every
/// transition must be delivered: at least once each, at most once per run (a delivery goes
/// again only when a kill took its outcome), and at most `extra` successful requests beyond
/// one each in all. Under a simulated power cut, the worker must report that a cut took writes
/// it had applied.
async fn kill_the_worker_twice(test: &str, env: &[(&str, &str)], extra: usize) {
    let power_cut = env.contains(&("CARTSTREAM_FAULT_POWER_CUT", "1"));
    // JSON logs, for the stores' reports on reopening.
    let env = [env, &[("CARTSTREAM__TELEMETRY__LOG_FORMAT", "json")]].concat();
    let receiver = Receiver::start(Clock::System).await;
    receiver
        .fail_first
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // 50 ms per request, 8 at a time: the first attempts take over a second, so a kill lands
    // in the middle of them.
    receiver
        .delay_ms
        .store(50, std::sync::atomic::Ordering::Relaxed);
    let prefix = unique_prefix(test);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tenants.toml"),
        tenants(&[(
            "crm",
            &receiver.url(),
            "  retry_schedule = [\"0s\", \"3s\", \"3s\"]",
        )]),
    )
    .unwrap();
    let config_file = dir.path().join("cartstream.toml");
    write_worker_config(dir.path(), &prefix);
    // Offsets committed every 100 ms rather than 5 s, so that each kill comes after commits:
    // a commit covering jobs that were not on disk would lose them.
    let mut text = std::fs::read_to_string(&config_file).unwrap();
    text.push_str("[delivery.consumer]\n\"auto.commit.interval.ms\" = \"100\"\n");
    std::fs::write(&config_file, text).unwrap();
    let config = cartstream::config::Config::load(Some(&config_file), &Default::default())
        .expect("the test configuration is valid");
    let topics = config.kafka.topics();
    cartstream::kafka::admin::ensure_topics(&config.kafka, &topics.all(), &[], 1 << 20)
        .await
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .create()
        .unwrap();
    let carts = 200;
    let now = Clock::System.now_millis();
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..carts {
        let t = transition(&format!("cart-{i}"), "abandoned_candidate", now);
        ids.insert(t["id"].as_str().unwrap().to_string());
        producer
            .send(
                FutureRecord::to(&topics.transitions)
                    .key("acme")
                    .payload(&t.to_string()),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let distinct = |received: &[Received], status: Option<u16>| {
        received
            .iter()
            .filter(|r| status.is_none_or(|s| r.status == s))
            .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };

    let state = dir.path().join("state");
    let log = |run: usize| dir.path().join(format!("delivery-{run}.log"));

    // Killed once mid-way through the first attempts, once while retries are pending.
    let first = RoleProcess::start_logging("delivery", &config_file, &env, &log(0));
    eventually("first attempts under way", WAIT, || {
        (distinct(&receiver.received(), None).len() >= carts / 3).then_some(())
    })
    .await;
    if power_cut {
        until_unsynced(&state).await;
    }
    drop(first);
    let attempted = distinct(&receiver.received(), None).len();
    assert!(attempted < carts, "the kill came after every first attempt");
    let second = RoleProcess::start_logging("delivery", &config_file, &env, &log(1));
    eventually("every first attempt", WAIT, || {
        (distinct(&receiver.received(), None).len() == carts).then_some(())
    })
    .await;
    if power_cut {
        until_unsynced(&state).await;
    }
    drop(second);
    let delivered_before = distinct(&receiver.received(), Some(200)).len();
    assert!(delivered_before < carts, "retries were pending at the kill");

    let _third = RoleProcess::start_logging("delivery", &config_file, &env, &log(2));
    let delivered = eventually(
        "every transition delivered",
        Duration::from_secs(60),
        || {
            let delivered = distinct(&receiver.received(), Some(200));
            (delivered.len() == carts).then_some(delivered)
        },
    )
    .await;
    assert_eq!(delivered, ids, "none lost");
    let outcomes = eventually("a delivered outcome for each", WAIT, || {
        let delivered: std::collections::BTreeSet<String> =
            read_json(&config.kafka.brokers, &topics.deliveries)
                .into_iter()
                .filter(|o| o["outcome"] == "delivered")
                .map(|o| o["transition_id"].as_str().unwrap().to_string())
                .collect();
        (delivered.len() == carts).then_some(delivered)
    })
    .await;
    assert_eq!(outcomes, ids);
    let mut copies = std::collections::BTreeMap::<String, usize>::new();
    for request in receiver.received().iter().filter(|r| r.status == 200) {
        let id = request.headers["webhook-id"].to_str().unwrap().to_string();
        *copies.entry(id).or_default() += 1;
    }
    let mut histogram = std::collections::BTreeMap::<usize, usize>::new();
    for n in copies.values() {
        *histogram.entry(*n).or_default() += 1;
    }
    println!("successful requests per transition: {histogram:?}");
    let runs = 3;
    let beyond: Vec<_> = copies.iter().filter(|(_, n)| **n > runs).collect();
    assert!(
        beyond.is_empty(),
        "delivered more often than the worker ran ({runs}): {beyond:?}"
    );
    let successes: usize = copies.values().sum();
    assert!(
        successes - carts <= extra,
        "{successes} successes for {carts}"
    );

    // What the cuts took, as the store reported on reopening.
    if power_cut {
        let lost: Vec<u64> = (1..runs)
            .map(|run| {
                crate::support::log_lines(&log(run), "store reopened after a simulated power cut")
                    .iter()
                    .map(|line| line["lost"].as_u64().expect("a count of lost writes"))
                    .sum()
            })
            .collect();
        println!("writes the two cuts took: {lost:?}");
        assert!(
            lost.iter().any(|&n| n > 0),
            "no power cut happened: the store reopened with every write it had applied"
        );
    }
}

/// Writes `dir/cartstream.toml` for a `cartstream delivery` process (state in `dir/state`, the
/// registry in `dir/tenants.toml`). Every run joins the same group: a process restarted after
/// a SIGKILL comes back as the same static member and takes its partitions back at once.
fn write_worker_config(dir: &std::path::Path, prefix: &str) {
    std::fs::write(
        dir.join("cartstream.toml"),
        format!(
            r#"
[admin]
listen = "127.0.0.1:0"
[kafka]
brokers = "{brokers}"
topic_prefix = "{prefix}"
partitions = 3
[delivery]
state_dir = "{state}"
group_id = "{prefix}-delivery"
tick = "50ms"
jitter = 0.0
circuit_failures = 1000000
allow_private_networks = ["127.0.0.0/8"]
allow_plain_http = true
[tenants]
file = "{tenants}"
[telemetry]
log_filter = "warn"
"#,
            brokers = brokers(),
            state = dir.join("state").display(),
            tenants = dir.join("tenants.toml").display(),
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_during_the_abandonments_attempt_survives_a_kill() {
    // A receiver slow enough that both requests are still in the air at the kill.
    let slow = Receiver::start(Clock::System).await;
    slow.delay_ms
        .store(60_000, std::sync::atomic::Ordering::Relaxed);
    let prefix = unique_prefix("delivery-kill-supersede");
    let dir = tempfile::tempdir().unwrap();
    let registry = |url: &str| {
        std::fs::write(
            dir.path().join("tenants.toml"),
            tenants(&[("crm", url, "")]),
        )
        .unwrap()
    };
    registry(&slow.url());
    write_worker_config(dir.path(), &prefix);
    let config_file = dir.path().join("cartstream.toml");
    let config = cartstream::config::Config::load(Some(&config_file), &Default::default())
        .expect("the test configuration is valid");
    let topics = config.kafka.topics();
    cartstream::kafka::admin::ensure_topics(&config.kafka, &topics.all(), &[], 1 << 20)
        .await
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .create()
        .unwrap();
    let send = |t: Value| {
        let producer = producer.clone();
        let topic = topics.transitions.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(&topic).key("acme").payload(&t.to_string()),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    };
    let arrived = |n: usize| {
        let slow = slow.clone();
        move || (slow.arrived.load(std::sync::atomic::Ordering::Relaxed) >= n).then_some(())
    };

    let first = RoleProcess::start("delivery", &config_file);
    let now = Clock::System.now_millis();
    let abandonment = transition("cart-1", "abandoned_candidate", now);
    send(abandonment.clone()).await;
    eventually("the abandonment's attempt", WAIT, arrived(1)).await;
    // The order's own attempt starts only after the worker wrote down what it supersedes.
    send(transition("cart-1", "order_completed", now + 1_000)).await;
    eventually("the order's attempt", WAIT, arrived(2)).await;
    drop(first);

    // Back, with the endpoint on a receiver that answers at once: the order goes out, the
    // abandonment does not.
    let fast = Receiver::start(Clock::System).await;
    registry(&fast.url());
    // An admin port of its own, where the barrier below reads the worker's gauge.
    let admin = SocketAddr::from(([127, 0, 0, 1], crate::support::free_port()));
    let _second = RoleProcess::start_with_env(
        "delivery",
        &config_file,
        &[("CARTSTREAM__ADMIN__LISTEN", &admin.to_string())],
    );
    let got = received_eventually(&fast, 1).await;
    assert_eq!(got[0].headers["x-cartstream-event"], "order_completed");
    let superseded = eventually("the abandonment's superseded outcome", WAIT, || {
        read_json(&config.kafka.brokers, &topics.deliveries)
            .into_iter()
            .find(|o| o["transition_id"] == abandonment["id"] && o["outcome"] == "superseded")
    })
    .await;
    assert_eq!(superseded["attempt"], 0);
    // Whatever the worker had to send, it has sent (and heard back) once it has settled.
    crate::support::process_settled(admin, cartstream::telemetry::metrics::DELIVERY_SETTLED).await;
    let events: Vec<_> = fast
        .received()
        .iter()
        .map(|r| r.headers["x-cartstream-event"].clone())
        .collect();
    assert_eq!(
        events,
        ["order_completed"],
        "the stale abandonment never went out"
    );
}

#[cfg(feature = "fault-injection")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_delivery_worker_fails_readiness_and_stops_the_process() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let bench = Bench::start_with(
        "delivery-panic",
        &tenants(&[("crm", &receiver.url(), "")]),
        None,
        clock.clone(),
        |_| {},
    )
    .await;
    let http = crate::support::Http::http1();
    let ready = http.get(&bench.daemon.admin_url("/readyz")).await;
    assert_eq!(ready.status, 200, "{ready:?}");

    // The test build's delivery worker panics on this cart.
    bench
        .send_now("cartstream-inject-panic", "abandoned_candidate")
        .await;
    let Bench { daemon, .. } = bench;
    let stopped = tokio::time::timeout(WAIT, daemon.running.wait())
        .await
        .expect("the process stops when its delivery worker panicked");
    let error = format!("{:#}", stopped.unwrap_err());
    assert!(
        error.contains("the delivery worker panicked: fault injected"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_endpoints_need_an_explicit_allowance() {
    let text = tenants(&[("crm", "http://127.0.0.1:9/hooks", "")]);
    let refused = TestDaemon::builder("plain-http")
        .roles(Roles::DELIVERY)
        .tenants(&text)
        .config(|config| config.delivery.allow_plain_http = false)
        .try_start()
        .await;
    let Err(error) = refused else {
        panic!("a delivery role started with a plain http:// endpoint");
    };
    let error = format!("{error:#}");
    assert!(
        error.contains("tenant acme endpoint crm: plain http:// sends customer data in clear"),
        "{error}"
    );

    // The tenant allows it for its own endpoints.
    let allowed = text.replacen(
        "id = \"acme\"\n",
        "id = \"acme\"\nallow_plain_http = true\n",
        1,
    );
    let daemon = TestDaemon::builder("plain-http")
        .roles(Roles::DELIVERY)
        .tenants(&allowed)
        .config(|config| config.delivery.allow_plain_http = false)
        .start()
        .await;
    daemon.stop().await;
}

/// An abandonment older than its deadline when it reaches delivery (a cart last seen long ago,
/// a backlog) is not sent to anyone: it ends `expired` and is dead-lettered, so an operator can
/// still redrive it on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_abandonment_expires_without_an_attempt() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let bench = Bench::start_with(
        "delivery-expired",
        &tenants(&[("crm", &receiver.url(), "")]),
        None,
        clock.clone(),
        |_| {},
    )
    .await;
    // The default deadline of an abandonment is 24 hours; this one happened 25 hours ago.
    let at_ms = clock.now_millis() - 25 * 3600 * 1000;
    let payload = transition("cart-old", "abandoned_candidate", at_ms).to_string();
    bench
        .producer
        .send(
            FutureRecord::to(&bench.daemon.topics.transitions)
                .key("acme")
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let outcomes = bench.outcomes_eventually(1).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0]["outcome"], "expired", "{outcomes:?}");
    let dead = read_json_eventually(
        &bench.daemon.brokers,
        &bench.daemon.topics.dead_letters,
        1,
        WAIT,
    )
    .await;
    assert_eq!(dead[0]["reason"], "expired");
    // A fresh one for the same endpoint is delivered: only the stale one was held back.
    bench.send_now("cart-new", "abandoned_candidate").await;
    let received = received_eventually(&receiver, 1).await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].headers["x-cartstream-event"],
        "abandoned_candidate"
    );
    assert!(String::from_utf8_lossy(&received[0].body).contains("cart-new"));
    bench.daemon.stop().await;
}

/// The worker's state volume fills up. It stops taking transitions and says why on `/readyz`
/// (503) and in its metrics; once space returns it resumes by itself: every transition
/// delivered, each with its outcome, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_volume_pauses_the_worker_until_space_returns() {
    let volume = Volume::mount(32);
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let text = tenants(&[("crm", &receiver.url(), "")]);
    let bench = Bench::start_with(
        "delivery-volume-full",
        &text,
        Some(volume.path()),
        clock.clone(),
        |_| {},
    )
    .await;
    let http = Http::http1();
    let readyz = bench.daemon.admin_url("/readyz");
    let metrics = bench.daemon.admin_url("/metrics");
    let send = |from: usize, to: usize| {
        let bench = &bench;
        async move {
            for i in from..to {
                bench
                    .send_now(&format!("cart-{i}"), "abandoned_candidate")
                    .await;
            }
        }
    };
    send(0, 10).await;
    bench.outcomes_eventually(10).await;
    assert_eq!(http.get(&readyz).await.status, 200);

    let filler = volume.fill();
    // RocksDB may take a few more writes into space its log file already holds: transitions
    // go on until the worker stops (as the processor's test does).
    let mut sent = 10;
    let stalled = loop {
        send(sent, sent + 1).await;
        sent += 1;
        let answer = http.get(&readyz).await;
        if answer.status == 503 {
            break answer;
        }
        assert!(sent < 500, "the worker never stopped on the full volume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        stalled.json()["error"],
        "delivery state volume cannot be written"
    );
    send(sent, sent + 10).await;
    sent += 10;
    let scrape = String::from_utf8(http.get(&metrics).await.body.to_vec()).unwrap();
    assert!(
        scrape.contains("cartstream_state_volume_stalled{role=\"delivery\"} 1"),
        "{scrape}"
    );

    std::fs::remove_file(filler).unwrap();
    wait_for(&http, &readyz, |answer| answer.status == 200).await;
    send(sent, sent + 5).await;
    sent += 5;
    let expected: std::collections::BTreeSet<String> = (0..sent)
        .map(|i| transition_id("acme", &format!("cart-{i}"), "abandoned_candidate", 0))
        .collect();
    let delivered = eventually("every transition delivered", WAIT, || {
        let delivered: std::collections::BTreeSet<String> = bench
            .outcomes()
            .into_iter()
            .filter(|o| o["outcome"] == "delivered")
            .map(|o| o["transition_id"].as_str().unwrap().to_string())
            .collect();
        (delivered.len() >= expected.len()).then_some(delivered)
    })
    .await;
    assert_eq!(delivered, expected);
    let carts: std::collections::BTreeSet<String> = receiver
        .received()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["cart"].to_string())
        .collect();
    assert_eq!(carts.len(), sent, "the receiver got every cart");
    let scrape = String::from_utf8(http.get(&metrics).await.body.to_vec()).unwrap();
    assert!(
        scrape.contains("cartstream_state_volume_stalled{role=\"delivery\"} 0"),
        "{scrape}"
    );
    bench.daemon.stop().await;
}

/// Whoever can write to the dead-letter topic could otherwise have any body signed with an
/// endpoint's secret and sent to it. A redrive sends only the dead letters whose tag shows that a
/// delivery worker of this deployment wrote them; the others are counted (`unverified`) and
/// logged, never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_sends_only_dead_letters_this_deployment_wrote() {
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let registry = tenants(&[("crm", &receiver.url(), "  retry_schedule = [\"0s\"]")]);
    let with_token = |config: &mut cartstream::config::Config| {
        config.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap())
    };
    let bench = Bench::start_with(
        "delivery-forged",
        &registry,
        None,
        clock.clone(),
        with_token,
    )
    .await;
    receiver.answer(500, Vec::new());
    bench.send_now("cart-1", "abandoned_candidate").await;
    let dead = eventually("the dead letter", WAIT, || {
        let d = bench.dead_letters();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(dead[0]["reason"], "exhausted");
    assert!(
        schema("delivery_dlq.v1.json").is_valid(&dead[0]),
        "{}",
        dead[0]
    );

    // Two forgeries: the genuine record with another body and id, its tag kept; and one with
    // no tag at all.
    let mut altered = dead[0].clone();
    altered["transition_id"] = json!("ffffffffffffffffffffffffffffffff");
    altered["body"]["data"]["recovery_url"] = json!("https://forged.example/recover");
    let mut untagged = altered.clone();
    untagged["transition_id"] = json!("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");
    untagged.as_object_mut().unwrap().remove("tag");
    for forged in [&altered, &untagged] {
        bench
            .producer
            .send(
                FutureRecord::to(&bench.daemon.topics.dead_letters)
                    .key("acme")
                    .payload(&forged.to_string()),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    let answer = Http::http1()
        .post(
            &bench.daemon.admin_url("/admin/dead-letters/redrive"),
            &[("authorization", format!("Bearer {TOKEN}"))],
            Bytes::new(),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let report = answer.json();
    assert_eq!(report["read"], 3, "{report}");
    assert_eq!(report["redriven"], 1, "{report}");
    assert_eq!(report["unverified"], 2, "{report}");
    let received = received_eventually(&receiver, 2).await;
    verify(&received[1], SECRET, OLD_SECRET);
    // Everything the worker had to send is sent once it has settled: nothing else was.
    bench.daemon.settle().await;
    let received = receiver.received();
    assert_eq!(received.len(), 2, "{received:?}");
    assert!(received
        .iter()
        .all(|r| !String::from_utf8_lossy(&r.body).contains("forged.example")));
    bench.daemon.stop().await;
}

/// The Standard Webhooks signatures `request` should carry: one per `secrets` (`whsec_…`), in
/// order.
fn standard_signatures(request: &Received, secrets: &[&str]) -> Vec<String> {
    let header = |name: &str| request.headers[name].to_str().unwrap().to_string();
    let signed = [
        header("webhook-id").as_bytes(),
        b".",
        header("webhook-timestamp").as_bytes(),
        b".",
        &request.body,
    ]
    .concat();
    secrets
        .iter()
        .map(|secret| {
            let key = BASE64
                .decode(secret.strip_prefix("whsec_").unwrap())
                .unwrap();
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
            mac.update(&signed);
            format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_added_through_the_admin_api_receives_the_next_transition_and_once_deleted_nothing(
) {
    const TOKEN: &str = "admin-api-delivery-token-0001";
    let clock = Clock::manual(T0);
    let receiver = Receiver::start(clock.clone()).await;
    let daemon = TestDaemon::builder("delivery-api-endpoint")
        .roles(Roles::ALL)
        .clock(clock.clone())
        .tenants_from_topic("ZGVsaXZlcnktYXBpLWVuZHBvaW50LXNlYWxpbmcta2U=")
        .config(|config| {
            config.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap());
            config.delivery.allow_private_networks = vec!["127.0.0.0/8".to_string()];
            config.ingress.ack_timeout = Duration::from_secs(20);
        })
        .start()
        .await;
    let http = Http::http1();
    let api = |method: &'static str, path: &str, body: &str| {
        let (http, url, body) = (http.clone(), daemon.admin_url(path), body.to_string());
        async move {
            let auth = [("authorization", format!("Bearer {TOKEN}"))];
            http.send(method, &url, &auth, body).await
        }
    };
    // Onboarded through the API alone: the tenant, its shop, its CRM.
    assert_eq!(
        api("POST", "/admin/v1/tenants", r#"{"id":"acme"}"#)
            .await
            .status,
        201
    );
    let shop = r#"{"provider":"shopify","shop_domain":"acme.myshopify.com","secret":"acme-shopify-secret"}"#;
    assert_eq!(
        api("POST", "/admin/v1/tenants/acme/integrations", shop)
            .await
            .status,
        201
    );
    let crm = json!({"id": "crm", "url": receiver.url()}).to_string();
    let created = api("POST", "/admin/v1/tenants/acme/endpoints", &crm).await;
    assert_eq!(created.status, 201, "{created:?}");
    let first = created.json()["secret"].as_str().unwrap().to_string();

    // A checkout left alone, on a cart of its own (checkout `n`): its abandonment, the
    // receiver's `received`th request, signed with `secrets`.
    let abandon = |cart: &'static str, (n, count): (usize, usize), secrets: Vec<String>| {
        let (http, daemon, receiver, clock) = (&http, &daemon, &receiver, &clock);
        async move {
            let body = serde_json::to_vec(&json!({
                "id": 2000 + n,
                "token": format!("checkout-{cart}"),
                "cart_token": cart,
                "email": "bob@example.com",
                "total_price": "10.00",
                "currency": "USD",
                "updated_at": rfc3339(clock.now_millis()),
            }))
            .unwrap();
            let headers = shopify_headers("acme-shopify-secret", "acme.myshopify.com", &body, cart);
            let answer = http
                .post(&daemon.url("/api/webhooks/shopify"), &headers, body)
                .await;
            assert_eq!(answer.status, 200, "{answer:?}");
            daemon.settle().await;
            daemon.advance(Duration::from_secs(16 * 60)).await;
            if secrets.is_empty() {
                return;
            }
            let received = received_eventually(receiver, count).await;
            let last = &received[count - 1];
            let webhook: Value = serde_json::from_slice(&last.body).unwrap();
            assert_eq!(
                webhook["id"],
                transition_id("acme", cart, "abandoned_candidate", 0)
            );
            let sent: Vec<&str> = last.headers["webhook-signature"]
                .to_str()
                .unwrap()
                .split(' ')
                .collect();
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            assert_eq!(
                sent,
                standard_signatures(last, &secrets),
                "signed with {} secret(s)",
                secrets.len()
            );
        }
    };
    abandon("api-cart-1", (1, 1), vec![first.clone()]).await;

    // Rotated: the next one carries a signature with each.
    let rotated = api("POST", "/admin/v1/tenants/acme/endpoints/crm/secret", "{}").await;
    assert_eq!(rotated.status, 200);
    let second = rotated.json()["secret"].as_str().unwrap().to_string();
    abandon("api-cart-2", (2, 2), vec![second.clone(), first.clone()]).await;

    // A test send: the receiver's answer shown, the event signed with both secrets.
    receiver.answer(299, Vec::new());
    let tested = api("POST", "/admin/v1/tenants/acme/endpoints/crm/test", "").await;
    assert_eq!(tested.status, 200, "{tested:?}");
    assert_eq!(tested.json()["status_code"], 299, "{:?}", tested.json());
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    let test: Value = serde_json::from_slice(&received[2].body).unwrap();
    assert_eq!(
        (test["event"].as_str(), test["id"].as_str()),
        (Some("test"), tested.json()["id"].as_str())
    );
    let sent: Vec<&str> = received[2].headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(sent, standard_signatures(&received[2], &[&second, &first]));

    // Disabled: the next abandonment ends without an attempt; enabled, the one after arrives.
    let disabled = api(
        "PATCH",
        "/admin/v1/tenants/acme/endpoints/crm",
        r#"{"enabled":false}"#,
    )
    .await;
    assert_eq!(disabled.status, 200, "{disabled:?}");
    abandon("api-cart-off", (3, 0), Vec::new()).await;
    daemon.advance(Duration::from_secs(60)).await;
    assert_eq!(receiver.received().len(), 3, "nothing while disabled");
    let enabled = api(
        "PATCH",
        "/admin/v1/tenants/acme/endpoints/crm",
        r#"{"enabled":true}"#,
    )
    .await;
    assert_eq!(enabled.json()["enabled"], true);
    abandon("api-cart-on", (4, 4), vec![second, first]).await;

    // Deleted: the next abandonment reaches nobody, once the worker has settled past it.
    let deleted = api("DELETE", "/admin/v1/tenants/acme/endpoints/crm", "").await;
    assert_eq!(deleted.status, 204);
    abandon("api-cart-3", (5, 0), Vec::new()).await;
    daemon.advance(Duration::from_secs(60)).await;
    assert_eq!(
        receiver.received().len(),
        4,
        "nothing after the endpoint was deleted"
    );

    // The deliveries, searched through another instance's API: read from the outcomes topic,
    // not from the worker's disk.
    let other = TestDaemon::builder("delivery-api-endpoint-reader")
        .topic_prefix(&daemon.config.kafka.topic_prefix)
        .tenants_from_topic("ZGVsaXZlcnktYXBpLWVuZHBvaW50LXNlYWxpbmcta2U=")
        .config(|config| {
            config.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap());
        })
        .start()
        .await;
    let search = |query: &str| {
        let (http, url) = (
            http.clone(),
            other.admin_url(&format!("/admin/v1/deliveries?{query}")),
        );
        async move {
            let auth = [("authorization", format!("Bearer {TOKEN}"))];
            let answer = http.send("GET", &url, &auth, "").await;
            assert_eq!(answer.status, 200, "{answer:?}");
            answer.json()
        }
    };
    let since = "since=2000-01-01T00:00:00Z";
    let deadline = std::time::Instant::now() + WAIT;
    let found = loop {
        let found = search(&format!("tenant=acme&endpoint=crm&{since}")).await;
        let outcomes: Vec<&str> = found["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["outcome"].as_str().unwrap())
            .collect();
        if outcomes.len() >= 4 {
            let mut sorted = outcomes.clone();
            sorted.sort();
            assert_eq!(
                sorted,
                ["delivered", "delivered", "delivered", "skipped_disabled"],
                "{found}"
            );
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "{found}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(found["complete"], true);
    let skipped = search(&format!("tenant=acme&outcome=skipped_disabled&{since}")).await;
    assert_eq!(
        skipped["deliveries"][0]["transition_id"],
        transition_id("acme", "api-cart-off", "abandoned_candidate", 0)
    );
    assert_eq!(skipped["deliveries"][0]["attempt"], 0);
    assert_eq!(skipped["deliveries"].as_array().unwrap().len(), 1);
    let elsewhere = search(&format!("tenant=globex&{since}")).await;
    assert_eq!(elsewhere["deliveries"], json!([]));
    other.stop().await;
    daemon.stop().await;
}
