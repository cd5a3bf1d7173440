//! What the documentation promises and no other test checked, shared by the `documented_*`
//! files: a webhook receiver whose every answer the test scripts (a status, an answer held
//! until released, a body that never ends), and a delivery worker on a manual clock with the
//! admin token, fed transitions straight on its topic.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use cartstream::app::Roles;
use cartstream::clock::Clock;
use cartstream::config::Config;
use cartstream::state::transition_id;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::support::{eventually, read_json, read_json_eventually, Answer, Http, TestDaemon};

/// The manual clock's start.
pub(crate) const T0: u64 = 1_790_000_000;
pub(crate) const WAIT: Duration = Duration::from_secs(30);
/// The admin token of every worker here.
pub(crate) const TOKEN: &str = "documented-admin-token-0123456789";

/// How a receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// At once, with this status.
    Status(u16),
    /// 200, but not before [`Receiver::release`].
    Held,
    /// 200 at once, with a body that never ends.
    Endless,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Arrived {
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
    /// The receiver's clock when it arrived, Unix ms.
    pub(crate) at_ms: i64,
}

impl Arrived {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhooks are JSON")
    }
}

/// A webhook receiver on 127.0.0.1: answers from its script, then with its default.
#[derive(Clone)]
pub(crate) struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    clock: Clock,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    arrived: Mutex<Vec<Arrived>>,
    /// Answers handed back to the connection (a held one once released).
    answered: AtomicUsize,
    /// Bytes of never-ending bodies produced so far.
    streamed: AtomicU64,
    released: tokio::sync::watch::Sender<bool>,
}

type Body = BoxBody<Bytes, Infallible>;

impl Receiver {
    /// A receiver answering 200 unless scripted otherwise.
    pub(crate) async fn start(clock: Clock) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            shared: Arc::new(Shared {
                clock,
                script: Mutex::default(),
                default: Mutex::new(Reply::Status(200)),
                arrived: Mutex::default(),
                answered: AtomicUsize::default(),
                streamed: AtomicU64::default(),
                released: tokio::sync::watch::channel(false).0,
            }),
        };
        let shared = receiver.shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(shared.clone(), request));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        receiver
    }

    /// The next requests are answered so, in order.
    pub(crate) fn script(&self, replies: &[Reply]) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    /// Requests beyond the script are answered so.
    pub(crate) fn by_default(&self, reply: Reply) {
        *self.shared.default.lock().unwrap() = reply;
    }

    /// Lets every held answer (and any later one) go.
    pub(crate) fn release(&self) {
        self.shared.released.send_replace(true);
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    pub(crate) fn arrived(&self) -> Vec<Arrived> {
        self.shared.arrived.lock().unwrap().clone()
    }

    pub(crate) fn answered(&self) -> usize {
        self.shared.answered.load(Ordering::SeqCst)
    }

    pub(crate) fn streamed(&self) -> u64 {
        self.shared.streamed.load(Ordering::SeqCst)
    }

    /// The requests, once `n` have arrived.
    pub(crate) async fn arrived_eventually(&self, n: usize) -> Vec<Arrived> {
        eventually(&format!("{n} requests at the receiver"), WAIT, || {
            let arrived = self.arrived();
            (arrived.len() >= n).then_some(arrived)
        })
        .await
    }
}

async fn answer(
    shared: Arc<Shared>,
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    shared.arrived.lock().unwrap().push(Arrived {
        headers: parts.headers,
        body,
        at_ms: shared.clock.now_millis(),
    });
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(*shared.default.lock().unwrap());
    let (status, body) = match reply {
        Reply::Status(status) => (status, Full::new(Bytes::from_static(b"ok")).boxed()),
        Reply::Held => {
            let mut released = shared.released.subscribe();
            let _ = released.wait_for(|released| *released).await;
            (200, Full::new(Bytes::from_static(b"ok")).boxed())
        }
        Reply::Endless => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let counter = shared.clone();
            let frames = futures_util::stream::repeat_with(move || {
                counter
                    .streamed
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                Ok::<_, Infallible>(Frame::data(chunk.clone()))
            });
            (200, StreamBody::new(frames).boxed())
        }
    };
    shared.answered.fetch_add(1, Ordering::SeqCst);
    Ok(http::Response::builder().status(status).body(body).unwrap())
}

pub(crate) fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

/// A transition of tenant `acme` as the processor writes it: `bucket` is
/// `abandoned_candidate` or `order_completed`.
pub(crate) fn transition(cart: &str, bucket: &str, at_ms: i64) -> Value {
    let to = match bucket {
        "abandoned_candidate" => "abandoned",
        _ => "completed",
    };
    json!({
        "schema": "cartstream.transition.v1",
        "id": transition_id("acme", cart, bucket, 0),
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

/// A delivery worker alone in its process, on `clock`, with the admin token; its state in a
/// folder of its own that outlives a restart.
pub(crate) struct Worker {
    pub(crate) daemon: TestDaemon,
    pub(crate) clock: Clock,
    tenants: String,
    producer: FutureProducer,
    http: Http,
    state: tempfile::TempDir,
}

impl Worker {
    pub(crate) async fn start(
        test: &str,
        tenants: &str,
        clock: Clock,
        edit: impl FnOnce(&mut Config),
    ) -> Worker {
        let state = tempfile::tempdir().unwrap();
        let daemon = TestDaemon::builder(test)
            .roles(Roles::DELIVERY)
            .clock(clock.clone())
            .tenants(tenants)
            .state_dir(state.path())
            .config(|config| {
                config.delivery.allow_private_networks = vec!["127.0.0.0/8".to_string()];
                config.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap());
                edit(config);
            })
            .start()
            .await;
        Worker::around(daemon, clock, tenants, state)
    }

    fn around(daemon: TestDaemon, clock: Clock, tenants: &str, state: tempfile::TempDir) -> Worker {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &daemon.brokers)
            .create()
            .unwrap();
        Worker {
            daemon,
            clock,
            tenants: tenants.to_string(),
            producer,
            http: Http::http1(),
            state,
        }
    }

    /// Stops the worker and starts it again: the same configuration, state, group and topics.
    pub(crate) async fn restart(self) -> Worker {
        let Worker {
            daemon,
            clock,
            tenants,
            state,
            ..
        } = self;
        let config = daemon.config.clone();
        daemon.stop().await;
        let daemon = TestDaemon::builder("documented-restart")
            .roles(Roles::DELIVERY)
            .clock(clock.clone())
            .tenants(&tenants)
            .state_dir(state.path())
            .config(|c| *c = config)
            .start()
            .await;
        Worker::around(daemon, clock, &tenants, state)
    }

    /// Sends a transition of `bucket` for `cart`, happening now on the worker's clock.
    pub(crate) async fn send(&self, cart: &str, bucket: &str) -> String {
        self.send_at(cart, bucket, self.clock.now_millis()).await
    }

    /// Sends a transition of `bucket` for `cart` that happened at `at_ms`; its id.
    pub(crate) async fn send_at(&self, cart: &str, bucket: &str, at_ms: i64) -> String {
        let transition = transition(cart, bucket, at_ms);
        self.producer
            .send(
                FutureRecord::to(&self.daemon.topics.transitions)
                    .key("acme")
                    .payload(&transition.to_string()),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        transition["id"].as_str().unwrap().to_string()
    }

    pub(crate) fn outcomes(&self) -> Vec<Value> {
        read_json(&self.daemon.brokers, &self.daemon.topics.deliveries)
    }

    pub(crate) async fn outcomes_eventually(&self, n: usize) -> Vec<Value> {
        let (brokers, topic) = (&self.daemon.brokers, &self.daemon.topics.deliveries);
        read_json_eventually(brokers, topic, n, WAIT).await
    }

    pub(crate) async fn dead_letters_eventually(&self, n: usize) -> Vec<Value> {
        let (brokers, topic) = (&self.daemon.brokers, &self.daemon.topics.dead_letters);
        read_json_eventually(brokers, topic, n, WAIT).await
    }

    /// `POST /admin/{action}` with the token and `body`.
    pub(crate) async fn act(&self, action: &str, body: Value) -> Answer {
        self.http
            .post(
                &self.daemon.admin_url(&format!("/admin/{action}")),
                &[("authorization", format!("Bearer {TOKEN}"))],
                body.to_string(),
            )
            .await
    }

    /// `GET /admin/deliveries?{query}`: the deliveries listed.
    pub(crate) async fn listed(&self, query: &str) -> Vec<Value> {
        let answer = self
            .http
            .send(
                "GET",
                &self.daemon.admin_url(&format!("/admin/deliveries?{query}")),
                &[("authorization", format!("Bearer {TOKEN}"))],
                Bytes::new(),
            )
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.json()["deliveries"].as_array().unwrap().clone()
    }
}

/// The values of field `name` of `records`.
pub(crate) fn fields(records: &[Value], name: &str) -> Vec<Value> {
    records.iter().map(|r| r[name].clone()).collect()
}

/// The configuration of `cartstream` processes started from the built binary
/// ([`crate::support::RoleProcess`]): their own topics, groups, state and ports, the admin
/// token, the tenants in `tenants.toml` beside it.
pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) file: std::path::PathBuf,
    pub(crate) admin: SocketAddr,
    pub(crate) ingress: SocketAddr,
    pub(crate) config: Config,
}

impl Setup {
    /// Writes the configuration (edited by `edit`, section by section) and `tenants`.
    pub(crate) fn write(
        test: &str,
        brokers: &str,
        tenants: &str,
        edit: impl FnOnce(&mut toml::Table),
    ) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let prefix = crate::support::unique_prefix(test);
        let port = || SocketAddr::from(([127, 0, 0, 1], crate::support::free_port()));
        let (admin, ingress) = (port(), port());
        let path = |name: &str| dir.path().join(name).display().to_string();
        let mut table: toml::Table = toml::from_str(&format!(
            r#"
[ingress]
listen = "{ingress}"
[admin]
listen = "{admin}"
token = "{TOKEN}"
[kafka]
brokers = "{brokers}"
topic_prefix = "{prefix}"
partitions = 3
[processor]
state_dir = "{processor}"
group_id = "{prefix}-processor"
tick = "50ms"
[delivery]
state_dir = "{delivery}"
group_id = "{prefix}-delivery"
tick = "50ms"
jitter = 0.0
allow_private_networks = ["127.0.0.0/8"]
allow_plain_http = true
[tenants]
file = "{tenants}"
[telemetry]
log_filter = "warn"
"#,
            processor = path("processor"),
            delivery = path("delivery"),
            tenants = path("tenants.toml"),
        ))
        .unwrap();
        edit(&mut table);
        let file = dir.path().join("cartstream.toml");
        std::fs::write(&file, toml::to_string(&table).unwrap()).unwrap();
        std::fs::write(dir.path().join("tenants.toml"), tenants).unwrap();
        let config = Config::load(Some(&file), &Default::default())
            .expect("the test configuration is valid");
        Setup {
            dir,
            file,
            admin,
            ingress,
            config,
        }
    }

    /// Creates every topic, as a process would at its start.
    pub(crate) async fn create_topics(&self) {
        let topics = self.config.kafka.topics();
        cartstream::kafka::admin::ensure_topics(&self.config.kafka, &topics.all(), &[], 1 << 20)
            .await
            .unwrap();
    }

    pub(crate) fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Waits until the process answers ready on its admin port.
    pub(crate) async fn ready(&self, http: &Http) {
        let url = self.admin_url("/readyz");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match http.try_send("GET", &url, &[], Bytes::new()).await {
                Ok(answer) if answer.status == 200 => return,
                answer => assert!(
                    std::time::Instant::now() < deadline,
                    "{url}: last answer {answer:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Sends transitions straight to the transitions topic.
    pub(crate) async fn send(&self, transitions: &[Value]) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.config.kafka.brokers)
            .create()
            .unwrap();
        let topic = self.config.kafka.topics().transitions;
        for transition in transitions {
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key(transition["tenant_id"].as_str().unwrap())
                        .payload(&transition.to_string()),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    }

    /// `POST /admin/{action}` with the token, or why no answer came.
    pub(crate) async fn act(
        &self,
        http: &Http,
        action: &str,
        body: Value,
    ) -> Result<Answer, String> {
        http.try_send(
            "POST",
            &self.admin_url(&format!("/admin/{action}")),
            &[("authorization", format!("Bearer {TOKEN}"))],
            body.to_string(),
        )
        .await
    }
}

/// Waits until `check` answers `Some`, asking every 250 ms; panics with `what` after `timeout`.
pub(crate) async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sum of the high watermarks of `topic`: how many records it holds.
pub(crate) fn topic_len(brokers: &str, topic: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let timeout = Duration::from_secs(5);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| consumer.fetch_watermarks(topic, p.id(), timeout).unwrap().1 as usize)
        .sum()
}
