//! What one client address may hold: a count per address with a cap, and what a request knows
//! of the connection it came on.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The connection a request came on, put into each request's extensions by [`super::serve`]:
/// the peer's address, and the connection's own count for limits per connection (HTTP/2 carries
/// many requests on one).
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub connection: Arc<AtomicUsize>,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Self {
        Peer {
            addr,
            connection: Arc::default(),
        }
    }

    /// Counts one more on this connection unless `max` are counted already; the count lasts
    /// as long as the returned guard.
    pub fn enter_connection(&self, max: usize) -> Option<Counted> {
        let previous = self.connection.fetch_add(1, Ordering::AcqRel);
        if previous >= max {
            self.connection.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Counted(self.connection.clone()))
    }
}

/// One unit of a connection's count, given back when dropped.
#[derive(Debug)]
pub struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How many of something each client address holds, at most `max` each (0: no cap).
#[derive(Debug)]
pub struct PerPeer {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

impl PerPeer {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(PerPeer {
            max,
            held: Mutex::default(),
        })
    }

    /// Takes one for `ip` unless it holds `max` already; it is given back when the returned
    /// guard is dropped.
    pub fn try_enter(self: &Arc<Self>, ip: IpAddr) -> Option<PeerGuard> {
        let ip = ip.to_canonical();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(ip).or_insert(0);
        if self.max > 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PeerGuard {
            owner: self.clone(),
            ip,
        })
    }

    /// How many `ip` holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

/// One held by a client address, given back when dropped.
#[derive(Debug)]
pub struct PeerGuard {
    owner: Arc<PerPeer>,
    ip: IpAddr,
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_holds_at_most_its_share_and_gets_it_back_on_drop() {
        let peers = PerPeer::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let first = peers.try_enter(a).unwrap();
        let second = peers.try_enter(a).unwrap();
        assert!(peers.try_enter(a).is_none(), "a third for the same address");
        assert!(peers.try_enter(b).is_some(), "another address has its own");
        // An IPv4 peer seen through an IPv6 socket is the same address.
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert!(peers.try_enter(mapped).is_none());
        drop(first);
        assert_eq!(peers.held(a), 1);
        let again = peers.try_enter(mapped).unwrap();
        drop((second, again));
        assert_eq!(peers.held(a), 0);
        assert!(peers.held.lock().unwrap().is_empty(), "no entry is left");
        let unlimited = PerPeer::new(0);
        let all: Vec<_> = (0..1000).map(|_| unlimited.try_enter(a).unwrap()).collect();
        assert_eq!(unlimited.held(a), all.len());
    }

    #[test]
    fn a_connection_counts_its_own_requests() {
        let peer = Peer::new("127.0.0.1:9".parse().unwrap());
        let one = peer.enter_connection(2).unwrap();
        let two = peer.enter_connection(2).unwrap();
        assert!(peer.enter_connection(2).is_none());
        drop(one);
        let three = peer.enter_connection(2).unwrap();
        drop((two, three));
        assert_eq!(peer.connection.load(Ordering::Acquire), 0);
    }
}
