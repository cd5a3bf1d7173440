//! The registry in force, which the tenants topic may replace while the daemon runs.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::status::Statuses;
use super::{Records, Registry};

/// The registry every role reads, replaced whole when the tenants topic changes. A reader
/// takes the registry in force ([`Live::current`]) and keeps it for one request, batch or
/// tick, so that each sees one registry, never half of a change.
#[derive(Clone)]
pub struct Live {
    registry: Arc<ArcSwap<Registry>>,
    /// What the ingress saw of each integration, carried from one registry to the next.
    statuses: Statuses,
    /// With tenants read from the topic: what it says, and how far it was read.
    topic: Option<Arc<Topic>>,
}

/// The tenants topic as the follower last read it.
struct Topic {
    records: ArcSwap<Records>,
    /// Whether the records last read say maintenance mode is on: a deployment setting, in
    /// force whether or not the registry they make is.
    maintenance: AtomicBool,
    /// The offset after the last message read.
    read_to: watch::Sender<i64>,
}

impl Live {
    /// A registry read from a file, in force for good.
    pub fn new(mut registry: Registry) -> Live {
        let statuses = Statuses::default();
        statuses.carry(&mut registry);
        Live {
            registry: Arc::new(ArcSwap::from_pointee(registry)),
            statuses,
            topic: None,
        }
    }

    /// A registry read from the tenants topic up to `read_to`, where it said `records`.
    pub fn following(mut registry: Registry, records: Records, read_to: i64) -> Live {
        let statuses = Statuses::default();
        statuses.carry(&mut registry);
        Live {
            registry: Arc::new(ArcSwap::from_pointee(registry)),
            statuses,
            topic: Some(Arc::new(Topic {
                maintenance: AtomicBool::new(records.maintenance()),
                records: ArcSwap::from_pointee(records),
                read_to: watch::Sender::new(read_to),
            })),
        }
    }

    /// The registry in force now.
    pub fn current(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// Puts `registry` in force for every reader that takes the current one from now on.
    pub fn replace(&self, mut registry: Registry) {
        self.statuses.carry(&mut registry);
        self.registry.store(Arc::new(registry));
    }

    /// Whether the tenants topic puts the deployment in maintenance mode (never with tenants
    /// from a file: there `ingress.maintenance` does).
    pub fn maintenance(&self) -> bool {
        self.topic
            .as_ref()
            .is_some_and(|topic| topic.maintenance.load(Ordering::Relaxed))
    }

    /// What the tenants topic says, as last read (whether or not the registry it makes was
    /// put in force); `None` when the tenants come from a file.
    pub fn records(&self) -> Option<Arc<Records>> {
        Some(self.topic.as_ref()?.records.load_full())
    }

    /// The follower read the topic up to `read_to`, where it says `records`.
    pub fn read(&self, records: Records, read_to: i64) {
        if let Some(topic) = &self.topic {
            topic
                .maintenance
                .store(records.maintenance(), Ordering::Relaxed);
            topic.records.store(Arc::new(records));
            topic.read_to.send_replace(read_to);
        }
    }

    /// Waits until the topic has been read past `offset` (and what it says there is in force,
    /// or refused), for `timeout` at most; whether it was.
    pub async fn wait_until_read(&self, offset: i64, timeout: Duration) -> bool {
        let Some(topic) = &self.topic else {
            return false;
        };
        let mut read_to = topic.read_to.subscribe();
        tokio::time::timeout(timeout, read_to.wait_for(|&at| at > offset))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }
}

impl From<Registry> for Live {
    fn from(registry: Registry) -> Live {
        Live::new(registry)
    }
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current();
        f.debug_struct("Live")
            .field("tenants", &current.tenants().len())
            .field("integrations", &current.integrations().len())
            .field("endpoints", &current.endpoints().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;

    fn registry(tenants: &[&str]) -> Registry {
        let text: String = tenants
            .iter()
            .map(|id| format!("[[tenant]]\nid = \"{id}\"\n"))
            .collect();
        Registry::from_toml(&text, Path::new("."), &HashMap::new()).unwrap()
    }

    #[tokio::test]
    async fn a_write_is_waited_for_until_the_follower_has_read_past_it() {
        let live = Live::following(registry(&["acme"]), Records::default(), 5);
        assert!(live.wait_until_read(4, Duration::from_secs(1)).await);
        let waiting = tokio::spawn({
            let live = live.clone();
            async move { live.wait_until_read(7, Duration::from_secs(5)).await }
        });
        tokio::task::yield_now().await;
        live.read(Records::default(), 8);
        assert!(waiting.await.unwrap());
        // Nothing past 8 has been read: the wait gives up at its timeout.
        assert!(!live.wait_until_read(8, Duration::from_millis(10)).await);
        assert!(
            !Live::new(registry(&["acme"]))
                .wait_until_read(0, Duration::ZERO)
                .await
        );
        assert!(Live::new(registry(&["acme"])).records().is_none());
    }

    #[test]
    fn a_reader_keeps_the_registry_it_took_while_every_later_reader_gets_the_replacement() {
        let live = Live::new(registry(&["acme"]));
        let clone = live.clone();
        let taken = live.current();
        clone.replace(registry(&["acme", "globex"]));
        assert!(taken.tenant("globex").is_none());
        assert!(live.current().tenant("globex").is_some());
        assert_eq!(clone.current().tenants().len(), 2);
    }
}
