//! Shared test support: a daemon on ephemeral ports, an HTTP client, a Kafka reader, and a
//! private broker process for tests that stop and restart it.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cartstream::app::{self, Roles, Running};
use cartstream::clock::Clock;
use cartstream::config::Config;
use cartstream::kafka::Topics;
use cartstream::tenants::Registry;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The broker every test shares, started by `scripts/test.sh`.
pub fn brokers() -> String {
    std::env::var("CARTSTREAM_TEST_BROKERS").unwrap_or_else(|_| {
        panic!(
            "CARTSTREAM_TEST_BROKERS is not set. These tests need a real Apache Kafka broker: \
             run them with scripts/test.sh, which starts one."
        )
    })
}

/// A topic prefix no other test uses.
pub fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "t-{test}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
    .replace('_', "-")
}

pub const TENANTS: &str = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "acme.myshopify.com"
  secret = "acme-shopify-secret"
  previous_secret = "acme-shopify-old-secret"

  [[tenant.integration]]
  provider = "standard"
  integration_key = "int_acme_standard_0000001"
  secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[tenant]]
id = "globex"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "globex.myshopify.com"
  secret = "globex-shopify-secret"

  [[tenant.integration]]
  provider = "salla"
  merchant_id = "1305146709"
  secret = "globex-salla-secret"

  [[tenant.integration]]
  provider = "standard"
  integration_key = "int_globex_standard_00001"
  secret = "whsec_ZGVyaXZlZC1zdGFuZGFyZC13ZWJob29rcy1rZXktMzJi"
"#;

/// The variable the configuration [`TestDaemon::credentials_config`] writes names for the
/// credentials key; [`credentials_command`] sets it to [`CREDENTIALS_KEY`].
pub const CREDENTIALS_KEY_VARIABLE: &str = "TEST_CREDENTIALS_KEY";

/// `cartstream credentials ARGS --config CONFIG`, its output into a pipe, with the test
/// credentials key in its environment; panics unless it succeeds. Its standard output.
pub fn credentials_command(config: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_cartstream"))
        .arg("credentials")
        .args(args)
        .arg("--config")
        .arg(config)
        .env(CREDENTIALS_KEY_VARIABLE, CREDENTIALS_KEY)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// A daemon running in this process on ephemeral ports, with its own topics.
/// The `ingress.credentials_key` of every test daemon (32 bytes, base64).
pub const CREDENTIALS_KEY: &str = "dGVzdC1jcmVkZW50aWFscy1rZXktMzItYnl0ZXMhISE=";

pub struct TestDaemon {
    pub running: Running,
    pub topics: Topics,
    pub brokers: String,
    pub config: Config,
    pub roles: Roles,
    /// The wall clock the daemon reads.
    pub clock: Clock,
    _state: Option<tempfile::TempDir>,
}

pub struct Builder {
    config: Config,
    tenants: String,
    /// Whether the daemon reads its tenants from the tenants topic instead of `tenants`.
    from_topic: bool,
    roles: Roles,
    clock: Clock,
    state: Option<tempfile::TempDir>,
}

impl TestDaemon {
    pub fn builder(test: &str) -> Builder {
        // Logs show up in the output of failing tests only.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "cartstream=info".into()))
            .with_test_writer()
            .try_init();
        let mut config = Config::default();
        config.ingress.listen = "127.0.0.1:0".parse().unwrap();
        config.admin.listen = "127.0.0.1:0".parse().unwrap();
        config.ingress.shutdown_grace = Duration::from_secs(5);
        // The shared broker, unless the test names its own (see `Builder::brokers`).
        config.kafka.brokers = String::new();
        config.kafka.topic_prefix = unique_prefix(test);
        config.kafka.partitions = 3;
        config.processor.group_id = format!("{}-processor", config.kafka.topic_prefix);
        config.processor.tick = Duration::from_millis(50);
        config.delivery.group_id = format!("{}-delivery", config.kafka.topic_prefix);
        config.delivery.tick = Duration::from_millis(50);
        // The test tenants have ShopiMind integrations, whose payloads carry secrets.
        config.ingress.credentials_key = Some(cartstream::kafka::Property::Text(
            CREDENTIALS_KEY.to_string(),
        ));
        // The tests' receivers listen on loopback, in plain HTTP.
        config.delivery.allow_plain_http = true;
        let state = tempfile::tempdir().unwrap();
        config.processor.state_dir = state.path().join("processor");
        config.delivery.state_dir = state.path().join("delivery");
        Builder {
            config,
            tenants: TENANTS.to_string(),
            from_topic: false,
            roles: Roles::INGRESS,
            clock: Clock::System,
            state: Some(state),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ingress_addr())
    }

    pub fn ingress_addr(&self) -> SocketAddr {
        self.running
            .ingress_addr
            .expect("this daemon runs the ingress")
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.admin_addr)
    }

    /// A configuration file for the `cartstream` commands that read this daemon's topics with
    /// the test credentials key (from [`CREDENTIALS_KEY_VARIABLE`]), in a folder that lives as
    /// long as the returned guard.
    pub fn credentials_config(&self) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cartstream.toml");
        std::fs::write(
            &config,
            format!(
                "[ingress]\ncredentials_key = {{ env = \"{CREDENTIALS_KEY_VARIABLE}\" }}\n[kafka]\nbrokers = {:?}\ntopic_prefix = {:?}\n",
                self.brokers, self.config.kafka.topic_prefix
            ),
        )
        .unwrap();
        (dir, config)
    }

    pub async fn stop(self) {
        self.running.shutdown();
        self.running.wait().await.expect("the daemon stops cleanly");
    }

    /// Moves the daemon's manual clock forward by `by` and waits until the daemon has settled
    /// up to its new time (see [`TestDaemon::settled_up_to`]): every timer and every delivery
    /// due by then has been carried out and published — what has not happened by now will
    /// not happen before the clock moves again.
    pub async fn advance(&self, by: Duration) {
        assert!(
            matches!(self.clock, Clock::Manual(_)) && !by.is_zero(),
            "only moving a manual clock forward gives a time the daemon has not settled yet"
        );
        self.clock.advance(by);
        self.settled_up_to(self.clock.now_millis()).await;
    }

    /// The same barrier without waiting for anything to come due: waits until the daemon has
    /// settled at a time later than anything it had settled up to before the call — a manual
    /// clock is moved 1 ms for that, a system clock is waited on — so that everything it had
    /// read before the call has been carried out and published.
    pub async fn settle(&self) {
        match self.clock {
            Clock::Manual(_) => self.advance(Duration::from_millis(1)).await,
            Clock::System => self.settled_up_to(self.clock.now_millis() + 1).await,
        }
    }

    /// Waits until each role of this daemon that acts on the clock has settled up to `target_ms`
    /// (`cartstream::telemetry::Settled`, the `*_settled_timestamp_seconds` gauges of this
    /// daemon alone): the processor had every partition consumed to its end, every timer due
    /// by then fired and its outbox acknowledged by Kafka; the delivery worker had every
    /// delivery due by then attempted, its answer recorded and its outcome acknowledged.
    ///
    /// Records reach the roles through Kafka: one produced a moment ago may not have been
    /// read yet, and a role that has not read it is settled all the same. Wait for an effect
    /// of the records (their events, their outcomes) before the barrier.
    pub async fn settled_up_to(&self, target_ms: i64) {
        let mut watermarks = Vec::new();
        if self.roles.processor {
            watermarks.push(("processor", &self.running.processor_settled));
        }
        if self.roles.delivery {
            watermarks.push(("delivery worker", &self.running.delivery_settled));
        }
        assert!(!watermarks.is_empty(), "no role here acts on the clock");
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let behind: Vec<String> = watermarks
                .iter()
                .filter(|(_, settled)| settled.up_to().is_none_or(|up_to| up_to < target_ms))
                .map(|(role, settled)| format!("the {role} settled up to {:?}", settled.up_to()))
                .collect();
            if behind.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not settled up to {target_ms} after {SETTLE_TIMEOUT:?}: {}",
                behind.join(", ")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// How long [`TestDaemon::settled_up_to`] waits: long enough for a loaded machine, whose
/// slowness it absorbs (it waits for the daemon to report, not for a fixed time).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// [`TestDaemon::settle`] for a role running in a process of its own ([`RoleProcess`], on the
/// system clock), whose `/metrics` on `admin` belongs to it alone: waits until its gauge
/// `settled` (`cartstream::telemetry::metrics::PROCESSOR_SETTLED` or `DELIVERY_SETTLED`) shows
/// a time later than the call. The same caveat as [`TestDaemon::settled_up_to`]: records the
/// role has not read yet do not count.
pub async fn process_settled(admin: SocketAddr, settled: &str) {
    let target_ms = Clock::System.now_millis() + 1;
    let (http, url) = (Http::http1(), format!("http://{admin}/metrics"));
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let scrape = http.try_send("GET", &url, &[], Bytes::new()).await;
        let up_to = scrape.ok().and_then(|answer| gauge(&answer.body, settled));
        if up_to.is_some_and(|seconds| (seconds * 1000.0).round() as i64 >= target_ms) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{settled} of the process at {admin}: {up_to:?} s, not yet {target_ms} ms"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the metric `name`, without labels, in a Prometheus text exposition.
fn gauge(scrape: &[u8], name: &str) -> Option<f64> {
    String::from_utf8_lossy(scrape).lines().find_map(|line| {
        let (metric, value) = line.split_once(' ')?;
        (metric == name).then(|| value.trim().parse().ok())?
    })
}

impl Builder {
    pub fn config(mut self, edit: impl FnOnce(&mut Config)) -> Self {
        edit(&mut self.config);
        self
    }

    /// Replaces the tenant registry ([`TENANTS`] by default).
    pub fn tenants(mut self, text: &str) -> Self {
        self.tenants = text.to_string();
        self
    }

    /// Reads the tenants from the tenants topic (`tenants.source = "topic"`), their secrets
    /// sealed with `sealing_key`, instead of a registry given here.
    pub fn tenants_from_topic(mut self, sealing_key: &str) -> Self {
        self.config.tenants.source = cartstream::tenants::Source::Topic;
        self.config.tenants.sealing_key =
            Some(cartstream::kafka::Property::Text(sealing_key.to_string()));
        self.from_topic = true;
        self
    }

    /// Names the topic prefix, as another daemon of the same deployment does.
    pub fn topic_prefix(mut self, prefix: &str) -> Self {
        self.config.kafka.topic_prefix = prefix.to_string();
        self
    }

    pub fn brokers(mut self, brokers: &str) -> Self {
        self.config.kafka.brokers = brokers.to_string();
        self
    }

    pub fn roles(mut self, roles: Roles) -> Self {
        self.roles = roles;
        self
    }

    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps the processor's and the delivery worker's state below `dir` (which outlives the
    /// daemon) instead of a folder of their own.
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.config.processor.state_dir = dir.join("processor");
        self.config.delivery.state_dir = dir.join("delivery");
        self.state = None;
        self
    }

    pub async fn start(self) -> TestDaemon {
        self.try_start().await.expect("the daemon starts")
    }

    /// Starts the daemon, or says why it cannot.
    pub async fn try_start(mut self) -> anyhow::Result<TestDaemon> {
        if self.config.kafka.brokers.is_empty() {
            self.config.kafka.brokers = brokers();
        }
        let tenants = match self.from_topic {
            true => app::Tenants::Topic,
            false => Registry::from_toml(&self.tenants, Path::new("."), &HashMap::new())
                .expect("test tenants are valid")
                .into(),
        };
        let topics = self.config.kafka.topics();
        let brokers = self.config.kafka.brokers.clone();
        let config = self.config.clone();
        let (roles, clock) = (self.roles, self.clock.clone());
        let running = app::start(self.config, tenants, self.clock, self.roles).await?;
        Ok(TestDaemon {
            running,
            topics,
            brokers,
            config,
            roles,
            clock,
            _state: self.state,
        })
    }
}

/// An HTTP response, fully read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// A pooled HTTP/1.1 (or HTTP/2 prior-knowledge) client.
#[derive(Clone)]
pub struct Http(Client<HttpConnector, Full<Bytes>>);

impl Http {
    pub fn http1() -> Self {
        Http(Client::builder(TokioExecutor::new()).build_http())
    }

    pub fn h2c() -> Self {
        Http(
            Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        )
    }

    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = self
            .0
            .request(request.body(Full::new(body.into())).unwrap())
            .await
            .expect("the request reaches the daemon");
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body
                .collect()
                .await
                .expect("the body is readable")
                .to_bytes(),
        }
    }

    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> Answer {
        self.send("POST", url, headers, body).await
    }

    pub async fn get(&self, url: &str) -> Answer {
        self.send("GET", url, &[], Bytes::new()).await
    }
}

/// One record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
    pub partition: i32,
}

/// Reads every record of `topic` up to the end of each partition as a `read_committed` reader
/// sees it now: its last stable offset, past which an open transaction's records wait, and
/// without the records of aborted transactions or the markers transactions leave (which take
/// offsets no reader is given). A partition is done when the consumer reports reaching its end.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique_prefix("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("a consumer can be created");
    let timeout = Duration::from_secs(10);
    // A topic created moments ago may not have its partitions' leaders yet (nothing was
    // produced to it): ask again until every partition answers, as a client would.
    let settle = Instant::now() + Duration::from_secs(20);
    let partitions = loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .expect("topic metadata");
        let partitions: Vec<i32> = metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        let led = partitions
            .iter()
            .all(|&partition| consumer.fetch_watermarks(topic, partition, timeout).is_ok());
        match (led, partitions.is_empty()) {
            (true, false) => break partitions,
            _ if Instant::now() >= settle => panic!("topic {topic} has no partitions that answer"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut reading: std::collections::BTreeSet<i32> = partitions.into_iter().collect();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reading.is_empty() {
        assert!(
            Instant::now() < deadline,
            "read {} records of {topic}; partitions {reading:?} never reached their end",
            records.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                reading.remove(&partition);
            }
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
            Some(Ok(message)) => {
                let headers = message
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                records.push(Record {
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().unwrap_or_default().to_vec(),
                    headers,
                    partition: message.partition(),
                });
            }
        }
    }
    records
}

/// An Apache Kafka broker of this test's own (`scripts/kafka.sh`), for tests that stop,
/// freeze and restart it. Its data lives in a folder of its own, so a restart keeps the topics.
pub struct PrivateBroker {
    pub address: SocketAddr,
    dir: tempfile::TempDir,
    pid: Option<u32>,
    env: Vec<(String, String)>,
}

impl PrivateBroker {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A broker started with these `scripts/kafka.sh` environment settings (a SASL_SSL
    /// listener, say).
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let mut broker = PrivateBroker {
            address: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir: tempfile::tempdir().unwrap(),
            pid: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        broker.restart();
        broker
    }

    /// Starts the process (again) and waits until it answers a metadata request.
    pub fn restart(&mut self) {
        assert!(self.pid.is_none(), "the broker is already running");
        self.pid = Some(start_kafka_node(
            self.address.port(),
            self.dir.path(),
            &self.env,
        ));
    }

    /// The folder of the broker's data, its configuration and its log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Freezes the process (SIGSTOP): connections stay open and nothing is answered, like a
    /// broker that hangs. [`PrivateBroker::resume`] thaws it.
    pub fn pause(&self) {
        signal(self.pid.expect("the broker is running"), "-STOP");
    }

    pub fn resume(&self) {
        signal(self.pid.expect("the broker is running"), "-CONT");
    }

    /// Kills the process at once (SIGKILL, no clean shutdown) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            kill_and_reap(pid);
        }
    }

    pub fn brokers(&self) -> String {
        self.address.to_string()
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The repository's `scripts/` folder.
fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// Runs `scripts/kafka.sh PORT DIR` (a first start formats the node, a later one restarts it)
/// and returns the broker's pid once it answers.
fn start_kafka_node(port: u16, dir: &Path, env: &[(String, String)]) -> u32 {
    let output = Command::new(scripts().join("kafka.sh"))
        .arg(port.to_string())
        .arg(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/kafka.sh ({e})"));
    assert!(
        output.status.success(),
        "scripts/kafka.sh could not start a broker in {}; run scripts/install.sh first",
        dir.display()
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("scripts/kafka.sh prints the broker's pid")
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// SIGKILLs a broker (not a child of this process: the script started it) and waits until it
/// is gone, so that its ports are free again.
fn kill_and_reap(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A three-node Kafka cluster of this test's own (`scripts/kafka-cluster.sh`): three replicas
/// of every topic, `min.insync.replicas` 2.
pub struct Cluster {
    dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

pub struct Node {
    pub port: u16,
    pub pid: Option<u32>,
}

impl Cluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new(scripts().join("kafka-cluster.sh"))
            .arg(dir.path().join("cluster"))
            .stdout(Stdio::null())
            .status()
            .expect("scripts/kafka-cluster.sh runs");
        assert!(
            status.success(),
            "scripts/kafka-cluster.sh could not start the cluster"
        );
        let read = |node: usize, file: &str| {
            std::fs::read_to_string(dir.path().join(format!("cluster/node-{node}/{file}")))
                .unwrap()
                .trim()
                .parse::<u32>()
                .unwrap()
        };
        let nodes = (1..=3)
            .map(|n| Node {
                port: read(n, "port") as u16,
                pid: Some(read(n, "pid")),
            })
            .collect();
        Cluster { dir, nodes }
    }

    pub fn brokers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node_dir(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("cluster/node-{}", node + 1))
    }

    /// The index of the node listening on `port`.
    pub fn node_on(&self, port: u16) -> usize {
        self.nodes.iter().position(|n| n.port == port).unwrap()
    }

    pub fn kill(&mut self, node: usize) {
        if let Some(pid) = self.nodes[node].pid.take() {
            kill_and_reap(pid);
        }
    }

    pub fn pause(&self, node: usize) {
        signal(self.nodes[node].pid.expect("the node runs"), "-STOP");
    }

    pub fn resume(&self, node: usize) {
        signal(self.nodes[node].pid.expect("the node runs"), "-CONT");
    }

    /// Starts a killed node again with its data.
    pub fn restart(&mut self, node: usize) {
        assert!(self.nodes[node].pid.is_none(), "node {node} runs");
        let pid = start_kafka_node(self.nodes[node].port, &self.node_dir(node), &[]);
        self.nodes[node].pid = Some(pid);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in 0..self.nodes.len() {
            if let Some(pid) = self.nodes[node].pid {
                let _ = Command::new("kill")
                    .args(["-CONT", &pid.to_string()])
                    .status();
            }
            self.kill(node);
        }
    }
}

/// Headers of a correctly signed Shopify delivery.
pub fn shopify_headers(
    secret: &str,
    shop: &str,
    body: &[u8],
    webhook_id: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_string()),
        (
            "x-shopify-hmac-sha256",
            cartstream::providers::shopify::sign(secret.as_bytes(), body),
        ),
        ("x-shopify-shop-domain", shop.to_string()),
        ("x-shopify-topic", "checkouts/create".to_string()),
        ("x-shopify-webhook-id", webhook_id.to_string()),
    ]
}

pub fn fixture(relative: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/providers")
        .join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Waits until `done` holds, checking every 250 ms; panics with `what` after `timeout`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = done() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The JSON values of every record on `topic`.
pub fn read_json(brokers: &str, topic: &str) -> Vec<serde_json::Value> {
    read_topic(brokers, topic)
        .into_iter()
        .map(|record| serde_json::from_slice(&record.value).expect("records are JSON"))
        .collect()
}

/// The JSON values of every record on `topic`, once there are at least `n`; panics after
/// `timeout`.
pub async fn read_json_eventually(
    brokers: &str,
    topic: &str,
    n: usize,
    timeout: Duration,
) -> Vec<serde_json::Value> {
    eventually(&format!("{n} records on {topic}"), timeout, || {
        let records = read_json(brokers, topic);
        (records.len() >= n).then_some(records)
    })
    .await
}

/// A validator for `schemas/{name}`, with every schema of the folder available to its `$ref`s.
pub fn schema(name: &str) -> jsonschema::Validator {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut registry = jsonschema::Registry::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        registry = registry
            .add(format!("https://cartstream.dev/schemas/{file}"), value)
            .unwrap();
    }
    let registry = registry.prepare().unwrap();
    let root: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
    jsonschema::options()
        .with_registry(&registry)
        .build(&root)
        .unwrap()
}

/// Validators of the topic schemas: `schemas/event.v1.json` and `schemas/transition.v1.json`
/// (which refers to the first).
pub fn schemas() -> (jsonschema::Validator, jsonschema::Validator) {
    (schema("event.v1.json"), schema("transition.v1.json"))
}

/// One role of the daemon as a process of its own, started from the built binary; dropping or
/// killing it sends SIGKILL: no shutdown, no flush, no commit.
pub struct RoleProcess {
    child: std::process::Child,
}

impl RoleProcess {
    pub fn start(role: &str, config_file: &Path) -> Self {
        Self::start_with_env(role, config_file, &[])
    }

    /// The same, with these variables added to the environment.
    pub fn start_with_env(role: &str, config_file: &Path, env: &[(&str, &str)]) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_cartstream"))
            .args([role, "--config"])
            .arg(config_file)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the cartstream binary starts");
        RoleProcess { child }
    }

    /// The same, with the open files limit (soft and hard) set to `limit` (util-linux prlimit).
    pub fn start_with_open_files(role: &str, config_file: &Path, limit: u64) -> Self {
        let child = std::process::Command::new("prlimit")
            .arg(format!("--nofile={limit}:{limit}"))
            .arg(env!("CARGO_BIN_EXE_cartstream"))
            .args([role, "--config"])
            .arg(config_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("prlimit and the cartstream binary start");
        RoleProcess { child }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill(self) {
        drop(self);
    }

    /// CPU time (user + system) the process has used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("the process is running");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let per_second: u64 = String::from_utf8(
            std::process::Command::new("getconf")
                .arg("CLK_TCK")
                .output()
                .expect("getconf runs")
                .stdout,
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
        ticks as f64 / per_second as f64
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small tmpfs mounted for one test: a state volume that can be filled (root only, as the
/// tests run in CI). Unmounted when dropped.
pub struct Volume {
    dir: tempfile::TempDir,
}

impl Volume {
    pub fn mount(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root: {status}");
        Volume { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the volume has no space left; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 << 10];
        loop {
            if let Err(e) = file.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                break;
            }
        }
        // Small writes too, until not even one byte fits.
        while file.write_all(&[0u8; 512]).is_ok() {}
        while file.write_all(&[0u8]).is_ok() {}
        path
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Asks `url` every 250 ms until `done` holds for the answer; panics after 60 s.
pub async fn wait_for(http: &Http, url: &str, done: impl Fn(&Answer) -> bool) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http.get(url).await;
        if done(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "{url}: last answer {answer:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl RoleProcess {
    /// [`RoleProcess::start_with_env`], its log (standard error) written to the file `log`, for
    /// a test to read what the process reported (see [`log_lines`]).
    pub fn start_logging(role: &str, config_file: &Path, env: &[(&str, &str)], log: &Path) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_cartstream"))
            .args([role, "--config"])
            .arg(config_file)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).expect("the log file can be created"))
            .spawn()
            .expect("the cartstream binary starts");
        RoleProcess { child }
    }
}

/// The lines of a JSON log (`telemetry.log_format = "json"`) whose message is `message`.
pub fn log_lines(log: &Path, message: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["message"] == message)
        .collect()
}

impl Http {
    /// [`Http::send`], or why no answer came (the connection closed, say).
    pub async fn try_send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, String> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = self
            .0
            .request(request.body(Full::new(body.into())).unwrap())
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| format!("{e:?}"))?;
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.to_bytes(),
        })
    }
}

impl RoleProcess {
    /// Waits until the process has exited, at most `timeout`; how it ended.
    pub async fn exited(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .expect("the process can be waited for")
            {
                return status;
            }
            assert!(Instant::now() < deadline, "the process is still running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
