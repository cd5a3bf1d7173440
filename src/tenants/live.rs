//! The registry in force, which the tenants topic may replace while the daemon runs.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::Registry;

/// The registry every role reads, replaced whole when the tenants topic changes. A reader
/// takes the registry in force ([`Live::current`]) and keeps it for one request, batch or
/// tick, so that each sees one registry, never half of a change.
#[derive(Clone)]
pub struct Live(Arc<ArcSwap<Registry>>);

impl Live {
    pub fn new(registry: Registry) -> Live {
        Live(Arc::new(ArcSwap::from_pointee(registry)))
    }

    /// The registry in force now.
    pub fn current(&self) -> Arc<Registry> {
        self.0.load_full()
    }

    /// Puts `registry` in force for every reader that takes the current one from now on.
    pub fn replace(&self, registry: Registry) {
        self.0.store(Arc::new(registry));
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
