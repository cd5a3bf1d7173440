//! The HTTP server loop both ports run: accept connections (HTTP/1.1 with keep-alive, or HTTP/2
//! over cleartext with prior knowledge), serve them under the app's task tracker, and on
//! shutdown stop accepting and let in-flight requests finish within a grace period.
//!
//! A connection costs a file descriptor and memory until it closes, so none is held for free:
//! at most `max_connections` are open at once, and at most `max_connections_per_peer` from one
//! address (past either, a new one gets a 503 and is closed); a connection's request head may
//! hold at most `max_header_bytes` (past it: 431);
//! one that has not sent the start of a request within `header_read_timeout` is closed; one with
//! no request in progress for `idle_timeout` is closed (HTTP/2: with a GOAWAY); HTTP/2 peers
//! that stop answering pings are dropped.
//!
//! The answers hyper makes itself (400 for a request it cannot parse, 414, 431) are JSON like
//! every other answer ([`json_errors`]).

mod json_errors;
mod peers;

pub use peers::{Counted, Peer, PeerGuard, PerPeer};

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How connections are served.
#[derive(Debug, Clone)]
pub struct Options {
    /// The listener's name in logs and metrics (`ingress`, `admin`).
    pub name: &'static str,
    /// Time a client has, from connecting, to send the start of its first request, and then a
    /// complete HTTP/1 request head.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Connections open at once from one address (0: no cap); more are answered 503 and
    /// closed. Addresses in `unlimited_peers` (trusted proxies) have no cap of their own.
    pub max_connections_per_peer: usize,
    pub unlimited_peers: Vec<ipnet::IpNet>,
    /// Bytes a request head may take: HTTP/1's read buffer and HTTP/2's header list, per
    /// connection (at least 8 KiB).
    pub max_header_bytes: usize,
    /// Concurrent streams on one HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// How long in-flight requests may run after shutdown begins.
    pub grace: Duration,
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The answer to a connection past the cap, written without reading its request.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 48\r\n\r\n{\"error\":\"too many connections: try again later\"}";

/// Serves `service` on `listener` until `shutdown`, then drains. Returns when every connection
/// has closed or the grace period ran out (the rest are then closed).
pub async fn serve<S, F>(
    listener: TcpListener,
    service: S,
    options: Options,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) where
    S: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let builder = connection_builder(&options);
    let open = Arc::new(Semaphore::new(options.max_connections));
    let per_peer = PerPeer::new(options.max_connections_per_peer);
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();

    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            refuse(&stream, &options, "connection refused: too many open");
            continue;
        };
        let unlimited = options
            .unlimited_peers
            .iter()
            .any(|net| net.contains(&peer.ip().to_canonical()));
        let peer_slot = match unlimited {
            true => None,
            false => match per_peer.try_enter(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    refuse(
                        &stream,
                        &options,
                        "connection refused: too many open from one address",
                    );
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let connection = serve_connection(
            stream,
            Peer::new(peer),
            builder.clone(),
            service.clone(),
            options.clone(),
            shutdown.clone(),
            closing.clone(),
        );
        tracker.spawn(connections.track_future(async move {
            connection.await;
            drop((peer_slot, permit));
        }));
    }
    drop(listener);
    drain(connections, options.grace, closing).await;
}

/// Answers a connection past a cap (`why` says which) with a 503 and counts it; the caller
/// drops it, which closes it.
fn refuse(stream: &TcpStream, options: &Options, why: &'static str) {
    crate::telemetry::metrics::connection_refused(options.name);
    tracing::debug!(
        listener = options.name,
        max_connections = options.max_connections,
        max_connections_per_peer = options.max_connections_per_peer,
        "{why}"
    );
    let _ = stream.try_write(TOO_MANY_CONNECTIONS);
}

/// The smallest HTTP/1 read buffer hyper accepts.
pub const MIN_HEADER_BYTES: usize = 8192;

/// HTTP/1.1 with keep-alive and HTTP/2 with pings, as `options` say.
fn connection_builder(options: &Options) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_bytes.max(MIN_HEADER_BYTES))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(options.http2_max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// Waits for the open connections to finish their requests, at most `grace`; then closes
/// those still open.
async fn drain(connections: TaskTracker, grace: Duration, closing: CancellationToken) {
    connections.close();
    tokio::select! {
        _ = connections.wait() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(grace = ?grace, "connections still open after the grace period; closing them");
            closing.cancel();
        }
    }
}

/// Serves one connection until it ends, is idle too long, or the server shuts down.
async fn serve_connection<S, F>(
    stream: TcpStream,
    peer: Peer,
    builder: auto::Builder<TokioExecutor>,
    service: S,
    options: Options,
    shutdown: CancellationToken,
    closing: CancellationToken,
) where
    S: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let started = tokio::select! {
        started = tokio::time::timeout(options.header_read_timeout, first_bytes(&stream)) => started,
        _ = shutdown.cancelled() => return,
    };
    if !matches!(started, Ok(true)) {
        return;
    }
    let activity = Activity::new(Instant::now());
    let seen = activity.clone();
    let hyper_service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(peer.clone());
        let busy = seen.begin(Instant::now());
        let response = service(request);
        async move {
            let response = response.await;
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let stream = TokioIo::new(json_errors::JsonErrors::new(stream));
    let connection = builder.serve_connection(stream, hyper_service);
    tokio::pin!(connection);
    let mut ending = false;
    loop {
        let idle_until = activity.idle_deadline(options.idle_timeout, Instant::now());
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
                return;
            }
            _ = closing.cancelled() => return,
            _ = shutdown.cancelled(), if !ending => {
                connection.as_mut().graceful_shutdown();
                ending = true;
            }
            _ = tokio::time::sleep_until(idle_until), if !ending => {
                if activity.idle_for(Instant::now()) >= options.idle_timeout {
                    connection.as_mut().graceful_shutdown();
                    ending = true;
                }
            }
        }
    }
}

/// Waits until the client has sent enough to tell its protocol: the whole HTTP/2 preface, or
/// anything that is not its start (an HTTP/1 request line). `false` when it closed first.
async fn first_bytes(stream: &TcpStream) -> bool {
    let mut buffer = [0u8; PREFACE.len()];
    let mut pause = Duration::from_millis(2);
    loop {
        match stream.peek(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if n == PREFACE.len() || !PREFACE.starts_with(&buffer[..n]) => return true,
            // Part of the preface: peeking again would return at once, so wait a little, and
            // longer each time (the rest of a preface comes at once, or is a stalling client).
            Ok(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
        }
    }
}

/// Requests in progress on one connection, and when the last one ended. Time is passed in.
#[derive(Clone)]
struct Activity(Arc<ActivityState>);

struct ActivityState {
    opened: Instant,
    in_progress: AtomicUsize,
    /// Milliseconds after `opened` when a request last began or ended.
    last_ms: AtomicU64,
}

/// Marks a request in progress until dropped.
struct Busy(Activity);

impl Activity {
    fn new(now: Instant) -> Self {
        Activity(Arc::new(ActivityState {
            opened: now,
            in_progress: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }))
    }

    /// A request began at `now`; it ends when the returned guard is dropped.
    fn begin(&self, now: Instant) -> Busy {
        self.start(now);
        Busy(self.clone())
    }

    fn start(&self, now: Instant) {
        self.0.in_progress.fetch_add(1, Ordering::SeqCst);
        self.touch(now);
    }

    fn end(&self, now: Instant) {
        self.touch(now);
        self.0.in_progress.fetch_sub(1, Ordering::SeqCst);
    }

    fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.0.opened).as_millis() as u64;
        self.0.last_ms.fetch_max(ms, Ordering::SeqCst);
    }

    /// How long no request has been in progress at `now`; zero while one is.
    fn idle_for(&self, now: Instant) -> Duration {
        if self.0.in_progress.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.0.last_ms.load(Ordering::SeqCst));
        now.saturating_duration_since(self.0.opened)
            .saturating_sub(last)
    }

    /// When the connection will have been idle for `timeout`, if nothing happens before.
    fn idle_deadline(&self, timeout: Duration, now: Instant) -> Instant {
        now + timeout.saturating_sub(self.idle_for(now))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end(Instant::now());
    }
}

/// Raises the soft limit of open files to the hard limit and returns it (1,024 when the limit
/// cannot be read).
pub fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open files limit; assuming 1024");
            1024
        }
    }
}

/// Connections the ingress may hold given the open files limit: what is configured, but never
/// more than half the limit, so the stores, Kafka and the admin port keep the other half.
pub fn connection_cap(configured: usize, open_files_limit: u64) -> usize {
    let half = usize::try_from(open_files_limit / 2).unwrap_or(usize::MAX);
    configured
        .min(half.saturating_sub(ADMIN_CONNECTIONS))
        .max(1)
}

/// Connections the admin port may hold (scrapes, probes, an operator).
pub const ADMIN_CONNECTIONS: usize = 64;

/// Connections the admin port takes from one address: a peer that holds connections open
/// cannot take the slots the kubelet's probes and the Prometheus scrape need.
pub const ADMIN_CONNECTIONS_PER_PEER: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_half_the_open_files_to_the_rest_of_the_process() {
        assert_eq!(connection_cap(10_000, 1024), 448);
        assert_eq!(connection_cap(10_000, 1_048_576), 10_000);
        assert_eq!(connection_cap(100, 1024), 100);
        assert_eq!(connection_cap(10_000, 16), 1);
    }

    #[test]
    fn a_connection_is_idle_only_while_no_request_is_in_progress() {
        let opened = Instant::now();
        let at = |seconds: u64| opened + Duration::from_secs(seconds);
        let activity = Activity::new(opened);
        assert_eq!(activity.idle_for(at(5)), Duration::from_secs(5));
        activity.start(at(5));
        assert_eq!(activity.idle_for(at(105)), Duration::ZERO);
        activity.end(at(105));
        assert_eq!(activity.idle_for(at(107)), Duration::from_secs(2));
        assert_eq!(
            activity.idle_deadline(Duration::from_secs(60), at(107)),
            at(165)
        );
    }
}
