//! What a request may hold before its sender is known (SPEC §7): body bytes are charged to the
//! shared buffer budget as they arrive — a declared length costs nothing until the bytes come —
//! a body must keep a minimum rate after a grace period, and one client address or one
//! connection may have only so many requests in that state at once. The rules take time and
//! addresses as arguments; [`read_body`] applies them to a live body. The rates per tenant, per
//! publishable key and per client address are [`Limiter`]s.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use http::{header, HeaderMap};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use ipnet::IpNet;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::Error;
use crate::server::{Counted, Peer, PeerGuard, PerPeer};

/// An address (`10.0.0.7`, `::1`) or a CIDR block (`10.0.0.0/8`).
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The client a request comes from: the TCP peer, unless the peer is a trusted proxy — then
/// the nearest address in `X-Forwarded-For` (read from the right, as each proxy appends the
/// address it was reached from) that is not itself a trusted proxy. A client cannot choose its
/// address this way: what it writes into the header sits left of what the proxies add.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // Unreadable: the last proxy's word is all that can be trusted.
            return client;
        };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            return client;
        }
    }
    client
}

/// The limits a body is read under.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// The whole body must have arrived within this, from the request head.
    pub timeout: Duration,
    /// After `grace`, `min_rate` bytes per second on average since the head (0: none).
    pub min_rate: u64,
    pub grace: Duration,
}

impl BodyLimits {
    /// When a body of which `received` bytes have arrived since `started` falls below the
    /// minimum rate, if no more comes; `None` without a minimum.
    pub fn too_slow_at(&self, started: Instant, received: usize) -> Option<Instant> {
        if self.min_rate == 0 {
            return None;
        }
        let earned = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        Some(started + self.grace + earned)
    }

    /// When reading must stop if nothing more arrives: the earlier of the timeout and the
    /// moment the body falls below the minimum rate.
    pub fn deadline(&self, started: Instant, received: usize) -> Instant {
        let end = started + self.timeout;
        self.too_slow_at(started, received)
            .map_or(end, |slow| slow.min(end))
    }
}

/// Reads a body under `limits`, charging each piece to `budget` (one permit a byte) as it
/// arrives into `held`, which keeps it until the request is answered. Past the budget: 503;
/// past the deadline or the minimum rate: 408; past `max_bytes`: 413.
pub async fn read_body(
    mut body: Incoming,
    headers: &HeaderMap,
    limits: BodyLimits,
    budget: &Arc<Semaphore>,
    held: &mut Option<OwnedSemaphorePermit>,
) -> Result<Bytes, Error> {
    let limit = limits.max_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Error::BodyTooLarge { limit });
    }
    let started = Instant::now();
    let mut pieces: Vec<Bytes> = Vec::new();
    let mut received = 0usize;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = tokio::time::sleep_until(limits.deadline(started, received)) => {
                return Err(Error::BodyTimeout);
            }
        };
        let piece = match frame {
            None => break,
            Some(Err(error)) => return Err(Error::BodyRead(Box::new(error))),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(piece) => piece,
                Err(_) => continue, // trailers
            },
        };
        if received + piece.len() > limit {
            return Err(Error::BodyTooLarge { limit });
        }
        charge(budget, held, piece.len())?;
        received += piece.len();
        if !piece.is_empty() {
            pieces.push(piece);
        }
    }
    Ok(match pieces.len() {
        0 => Bytes::new(),
        1 => pieces.swap_remove(0),
        _ => {
            let mut whole = BytesMut::with_capacity(received);
            for piece in &pieces {
                whole.extend_from_slice(piece);
            }
            whole.freeze()
        }
    })
}

/// Adds `bytes` to what `held` holds of `budget`, or says the budget is spent.
fn charge(
    budget: &Arc<Semaphore>,
    held: &mut Option<OwnedSemaphorePermit>,
    bytes: usize,
) -> Result<(), Error> {
    if bytes == 0 {
        return Ok(());
    }
    let bytes = u32::try_from(bytes).map_err(|_| Error::Overloaded)?;
    let more = budget
        .clone()
        .try_acquire_many_owned(bytes)
        .map_err(|_| Error::Overloaded)?;
    match held {
        Some(permit) => permit.merge(more),
        None => *held = Some(more),
    }
    Ok(())
}

/// A request counted against its client address and its connection until its sender is
/// authenticated (or it ends).
#[derive(Debug)]
pub struct Unauthenticated {
    _peer: PeerGuard,
    _connection: Counted,
}

impl Unauthenticated {
    /// Counts a request from `client` on `peer`'s connection, unless either holds its maximum.
    pub fn enter(
        per_peer: &Arc<PerPeer>,
        client: IpAddr,
        peer: &Peer,
        max_per_connection: usize,
    ) -> Option<Self> {
        let connection = peer.enter_connection(max_per_connection)?;
        let peer = per_peer.try_enter(client)?;
        Some(Unauthenticated {
            _peer: peer,
            _connection: connection,
        })
    }
}

/// Checks between two sweeps of a limiter's keys.
const SWEEP_EVERY: u64 = 4096;

/// A rate per key (a tenant, a publishable key, a client address): every [`SWEEP_EVERY`] checks
/// it forgets the keys whose state is back to fresh, so that a sender going through many
/// addresses or keys grows its memory only by those it used within a burst's refill.
pub(super) struct Limiter<K: std::hash::Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<C::Instant>>,
    checks: AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> Limiter<K> {
    /// `rate` a second per key with bursts of `burst` (0: the rate), on the real clock; `None`
    /// for a rate of 0, no limit.
    pub(super) fn per_second(rate: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(rate)?;
        let quota = Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate));
        Some(Limiter::new(quota, DefaultClock::default()))
    }
}

impl<K: std::hash::Hash + Eq + Clone, C: Clock> Limiter<K, C> {
    fn new(quota: Quota, clock: C) -> Self {
        Limiter {
            limiter: RateLimiter::dashmap_with_clock(quota, clock),
            checks: AtomicU64::new(0),
        }
    }

    /// Refused while `key` is past its rate, with the seconds until it may try again.
    pub(super) fn check(&self, key: &K) -> Result<(), Error> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            Error::RateLimited {
                retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }
}

/// Refused while `key` is past `limiter`'s rate; always let through without a limiter.
pub(super) fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: Option<&Limiter<K>>,
    key: &K,
) -> Result<(), Error> {
    limiter.map_or(Ok(()), |limiter| limiter.check(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in forwarded {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_forwarded_address_counts_only_behind_a_trusted_proxy() {
        let trusted = vec![parse_net("10.0.0.0/8").unwrap(), parse_net("::1").unwrap()];
        let spoofed = headers(&["203.0.113.9"]);
        // A client that is not a proxy cannot name another address.
        assert_eq!(
            client_address(ip("198.51.100.7"), &spoofed, &trusted),
            ip("198.51.100.7")
        );
        // Behind the proxy, the nearest untrusted hop: what the client wrote sits to its left.
        let chain = headers(&["203.0.113.9, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &chain, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(ip("::1"), &headers(&["192.0.2.1"]), &trusted),
            ip("192.0.2.1")
        );
        // Nothing forwarded, or only proxies: the last proxy is the client.
        assert_eq!(
            client_address(ip("10.0.0.5"), &HeaderMap::new(), &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_address(ip("10.0.0.5"), &headers(&["10.9.9.9"]), &trusted),
            ip("10.9.9.9")
        );
        // An unreadable hop ends the walk at the last address a proxy vouched for.
        assert_eq!(
            client_address(ip("10.0.0.5"), &headers(&["198.51.100.7, junk"]), &trusted),
            ip("10.0.0.5")
        );
        // Without trusted proxies the header is ignored.
        assert_eq!(client_address(ip("10.0.0.5"), &chain, &[]), ip("10.0.0.5"));
        assert_eq!(parse_net("not an address"), None);
    }

    #[test]
    fn a_body_may_be_slow_during_the_grace_and_then_must_keep_the_minimum_rate() {
        let limits = BodyLimits {
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(10),
            min_rate: 1024,
            grace: Duration::from_secs(2),
        };
        let started = Instant::now();
        // Nothing yet: cut when the grace ends.
        assert_eq!(
            limits.deadline(started, 0),
            started + Duration::from_secs(2)
        );
        // 4 KiB buys four more seconds at 1 KiB/s.
        assert_eq!(
            limits.deadline(started, 4096),
            started + Duration::from_secs(6)
        );
        // Never past the whole body's timeout.
        assert_eq!(
            limits.deadline(started, 1 << 20),
            started + Duration::from_secs(10)
        );
        let no_minimum = BodyLimits {
            min_rate: 0,
            ..limits
        };
        assert_eq!(no_minimum.too_slow_at(started, 0), None);
        assert_eq!(
            no_minimum.deadline(started, 0),
            started + Duration::from_secs(10)
        );
    }

    #[test]
    fn the_budget_is_charged_by_what_arrived_and_given_back_with_the_request() {
        let budget = Arc::new(Semaphore::new(10));
        let mut first = None;
        charge(&budget, &mut first, 4).unwrap();
        charge(&budget, &mut first, 4).unwrap();
        assert_eq!(budget.available_permits(), 2);
        let mut second = None;
        assert!(matches!(
            charge(&budget, &mut second, 3),
            Err(Error::Overloaded)
        ));
        charge(&budget, &mut second, 0).unwrap();
        assert!(second.is_none(), "nothing arrived, nothing held");
        drop(first);
        assert_eq!(budget.available_permits(), 10);
    }

    #[test]
    fn unauthenticated_requests_are_bounded_per_address_and_per_connection() {
        let per_peer = PerPeer::new(3);
        let one = Peer::new("127.0.0.1:1".parse().unwrap());
        let two = Peer::new("127.0.0.1:2".parse().unwrap());
        let client = ip("127.0.0.1");
        let a = Unauthenticated::enter(&per_peer, client, &one, 2).unwrap();
        let b = Unauthenticated::enter(&per_peer, client, &one, 2).unwrap();
        assert!(
            Unauthenticated::enter(&per_peer, client, &one, 2).is_none(),
            "the connection's share"
        );
        let c = Unauthenticated::enter(&per_peer, client, &two, 2).unwrap();
        assert!(
            Unauthenticated::enter(&per_peer, client, &two, 2).is_none(),
            "the address's share"
        );
        assert_eq!(
            two.connection.load(std::sync::atomic::Ordering::Acquire),
            1,
            "a refusal holds nothing"
        );
        drop((a, b, c));
        assert_eq!(per_peer.held(client), 0);
    }

    #[test]
    fn keys_back_to_fresh_are_forgotten_every_few_thousand_checks() {
        let clock = governor::clock::FakeRelativeClock::default();
        let quota = Quota::per_second(NonZeroU32::new(1).unwrap());
        let limiter = Limiter::new(quota, clock.clone());
        for n in 0..1000u32 {
            assert!(limiter.check(&n).is_ok());
        }
        assert_eq!(limiter.limiter.len(), 1000);
        // Each key's one cell is back a second later: nothing of them is worth keeping.
        clock.advance(Duration::from_secs(2));
        let refused = limiter
            .check(&1_000_000)
            .and_then(|()| limiter.check(&1_000_000));
        assert_eq!(refused.unwrap_err().status(), 429);
        while limiter.checks.load(Ordering::Relaxed) % SWEEP_EVERY != 0 {
            let _ = limiter.check(&1_000_000);
        }
        assert_eq!(limiter.limiter.len(), 1, "only the key in use is kept");
    }
}
