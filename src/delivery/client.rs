//! The outbound HTTP client: keep-alive pooling, no redirects, a per-request timeout, response
//! bodies read only up to a cap, and destinations on private, loopback or link-local addresses
//! refused unless their network is allow-listed. The check runs on the address the client
//! connects to: a host that is an address in any form the client accepts (`127.1`,
//! `2130706433`, `0x7f000001`, `127.0.0.1.` — WHATWG URL parsing, the client's own) is checked
//! as the address it denotes, and a name on its *resolved* addresses (a custom resolver), so a
//! public name pointing at 10.0.0.1 is refused too.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::Config;

/// Why an attempt got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the destination {0} is a private, loopback or link-local address and not allow-listed"
    )]
    Refused(String),
    #[error("no answer within the timeout")]
    Timeout,
    #[error("connection failed")]
    Connection(#[source] reqwest::Error),
    #[error("the endpoint URL is not usable")]
    Url(#[source] reqwest::Error),
    #[error("the endpoint URL is not a valid URL")]
    Unparsable,
}

impl Error {
    /// The `status_class` label and outcome field for an attempt that failed this way.
    pub fn class(&self) -> &'static str {
        match self {
            Error::Refused(_) | Error::Url(_) | Error::Unparsable => "refused",
            Error::Timeout => "timeout",
            Error::Connection(_) => "connection",
        }
    }
}

/// What an endpoint answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After`, when sent (as a number of seconds or an HTTP date).
    pub retry_after: Option<RetryAfter>,
}

/// Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    inner: reqwest::Client,
    guard: Arc<Guard>,
    max_body_bytes: usize,
}

impl Client {
    pub fn from_config(config: &Config) -> Result<Self, reqwest::Error> {
        // reqwest is built without a bundled crypto provider; ring is the process default.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let guard = Arc::new(Guard {
            allowed: config.allowed_networks(),
        });
        let inner = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(config.max_in_flight_per_endpoint)
            .no_proxy()
            .user_agent(concat!("cartstream/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(guard.clone())
            .build()?;
        Ok(Client {
            inner,
            guard,
            max_body_bytes: config.max_response_body_bytes,
        })
    }

    /// POSTs `body` with `headers` (plus `Content-Type: application/json`) to `url`.
    pub async fn post(
        &self,
        url: &http::Uri,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Answer, Error> {
        // Parsed as the client parses it; an address never reaches the resolver: check it here.
        let url = url::Url::parse(&url.to_string()).map_err(|_| Error::Unparsable)?;
        if let Some(ip) = host_address(&url) {
            if !self.guard.allows(ip) {
                return Err(Error::Refused(ip.to_string()));
            }
        }
        let mut request = self
            .inner
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let mut response = request.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // Read (and discard) at most the cap, so the connection can be reused for small
        // answers and a huge one costs nothing.
        let mut read = 0usize;
        while read < self.max_body_bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(Answer {
            status,
            retry_after,
        })
    }
}

/// The address `url`'s host denotes, when it is an address rather than a name.
pub fn host_address(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// The error, without the endpoint's URL (whose path or query may hold a token): what an attempt
/// failed with is recorded on topics and shown by the admin API.
fn classify(e: reqwest::Error) -> Error {
    let e = e.without_url();
    if e.is_timeout() {
        return Error::Timeout;
    }
    if e.is_builder() {
        return Error::Url(e);
    }
    // A refusal by the resolver arrives as a connect error whose chain holds our message.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Error::Refused(refused.0.clone());
        }
        source = cause.source();
    }
    Error::Connection(e)
}

/// When an endpoint asked to be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 120`.
    Delay(Duration),
    /// `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`.
    At(SystemTime),
}

impl RetryAfter {
    /// How long from `now_ms` (Unix ms, the worker's clock) that is; a date in the past is now.
    pub fn delay_from(self, now_ms: i64) -> Duration {
        match self {
            RetryAfter::Delay(delay) => delay,
            RetryAfter::At(at) => {
                let now = UNIX_EPOCH + Duration::from_millis(now_ms.max(0) as u64);
                at.duration_since(now).unwrap_or_default()
            }
        }
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds, or an HTTP date; anything else is `None`.
pub fn parse_retry_after(value: &str) -> Option<RetryAfter> {
    let value = value.trim();
    // delay-seconds is 1*DIGIT: no sign (which `u64::from_str` would take).
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse::<u64>()
            .ok()
            .map(|seconds| RetryAfter::Delay(Duration::from_secs(seconds)));
    }
    httpdate::parse_http_date(value).ok().map(RetryAfter::At)
}

/// Resolves names and keeps only the addresses that may be delivered to.
struct Guard {
    allowed: Vec<IpNet>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to private, loopback or link-local addresses that are not allow-listed")]
struct Refused(String);

impl Guard {
    fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        is_public(ip) || self.allowed.iter().any(|net| net.contains(&ip))
    }
}

impl Resolve for Guard {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let guard = Guard { allowed };
            let usable: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| guard.allows(addr.ip()))
                .collect();
            if usable.is_empty() {
                return Err(Box::new(Refused(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(usable.into_iter()) as Addrs)
        })
    }
}

/// Address ranges that are not globally routable or that reach another network's hosts:
/// private, loopback, link-local, shared (CGNAT), documentation, benchmarking, multicast,
/// reserved, and the IPv6 forms that embed or tunnel an IPv4 address (IPv4-compatible, NAT64,
/// 6to4, Teredo), site-local and unique-local.
static NOT_PUBLIC: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/32",
        "2001:10::/28",
        "2001:20::/28",
        "2001:db8::/32",
        "2002::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    ]
    .iter()
    .map(|net| net.parse().expect("a valid network"))
    .collect()
});

/// Whether `ip` is a globally routable address (an IPv4-mapped IPv6 address is judged as the
/// IPv4 address it maps).
pub fn is_public(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    !NOT_PUBLIC.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_link_local_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "2001:0:7f00:1::1",
            "fec0::1",
            "ff02::1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "0.1.2.3",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn allow_list_admits_only_its_networks() {
        let guard = Guard {
            allowed: vec!["127.0.0.0/8".parse().unwrap()],
        };
        assert!(guard.allows("127.0.0.1".parse().unwrap()));
        assert!(!guard.allows("10.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn loopback_literal_is_refused_without_the_allow_list() {
        let client = Client::from_config(&Config::default()).unwrap();
        let url: http::Uri = "http://127.0.0.1:9/hook".parse().unwrap();
        let err = client.post(&url, &[], b"{}".to_vec()).await.unwrap_err();
        assert_eq!(err.class(), "refused");
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_after_resolution() {
        let client = Client::from_config(&Config::default()).unwrap();
        let url: http::Uri = "http://localhost:9/hook".parse().unwrap();
        let err = client.post(&url, &[], b"{}".to_vec()).await.unwrap_err();
        assert_eq!(err.class(), "refused", "{err:?}");
    }

    /// Every spelling of loopback the client accepts, against a real listener on loopback.
    fn loopback_spellings(port: u16) -> Vec<String> {
        [
            "2130706433",
            "127.1",
            "0",
            "0x7f000001",
            "0177.0.0.1",
            "127.0.0.1.",
            "0x7f.0.0.1",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
        ]
        .iter()
        .map(|host| format!("http://{host}:{port}/hook"))
        .collect()
    }

    /// Posts to every spelling with `config`; returns the classes and the connections the
    /// listener accepted.
    async fn post_to_loopback_spellings(config: &Config) -> (Vec<String>, usize) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        let client = Client::from_config(config).unwrap();
        let mut outcomes = Vec::new();
        for url in loopback_spellings(port) {
            let uri: http::Uri = url.parse().unwrap();
            let outcome = match client.post(&uri, &[], b"{}".to_vec()).await {
                Ok(answer) => format!("{url}: answered {}", answer.status),
                Err(e) => format!("{url}: {}", e.class()),
            };
            outcomes.push(outcome);
        }
        server.abort();
        (outcomes, accepted.load(std::sync::atomic::Ordering::SeqCst))
    }

    #[tokio::test]
    async fn every_spelling_of_loopback_is_refused_and_the_listener_receives_nothing() {
        let (outcomes, accepted) = post_to_loopback_spellings(&Config::default()).await;
        for outcome in &outcomes {
            assert!(outcome.ends_with(": refused"), "{outcome}");
        }
        assert_eq!(accepted, 0, "{outcomes:?}");
    }

    #[tokio::test]
    async fn the_same_spellings_reach_the_listener_when_loopback_is_allow_listed() {
        // The control: the spellings do reach loopback, so the refusal above is the guard's.
        let config = Config {
            allow_private_networks: vec!["127.0.0.0/8".to_string(), "0.0.0.0/8".to_string()],
            ..Config::default()
        };
        let (outcomes, accepted) = post_to_loopback_spellings(&config).await;
        for outcome in &outcomes {
            assert!(outcome.ends_with(": answered 200"), "{outcome}");
        }
        assert_eq!(accepted, outcomes.len(), "{outcomes:?}");
    }

    #[tokio::test]
    async fn a_failed_attempt_says_nothing_of_the_url_path_or_query() {
        let config = Config {
            allow_private_networks: vec!["127.0.0.0/8".to_string()],
            ..Config::default()
        };
        let client = Client::from_config(&config).unwrap();
        // Nothing listens on port 1.
        let url: http::Uri = "http://127.0.0.1:1/hooks/tok_path_secret?token=query_secret"
            .parse()
            .unwrap();
        let err = client.post(&url, &[], b"{}".to_vec()).await.unwrap_err();
        assert_eq!(err.class(), "connection", "{err:?}");
        let text = crate::telemetry::error_chain(&err);
        assert!(!text.contains("secret"), "{text}");
        assert!(!format!("{err:?}").contains("secret"), "{err:?}");
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        let now_ms = 1_792_567_600_000; // 2026-10-21T07:26:40Z
        let seconds = parse_retry_after(" 120 ").unwrap();
        assert_eq!(seconds.delay_from(now_ms), Duration::from_secs(120));
        let date = parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        assert_eq!(date.delay_from(now_ms), Duration::from_secs(80));
        assert_eq!(date.delay_from(now_ms + 3_600_000), Duration::ZERO);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-5"), None);
        // Found by the fuzzer: `u64::from_str` takes a sign, delay-seconds does not.
        assert_eq!(parse_retry_after("+8"), None);
    }
}
