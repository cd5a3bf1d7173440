//! What the ingress saw of each integration lately, on this instance: when a delivery last
//! verified, when the platform's test last came, and when a signature last failed and why —
//! for the operator (the admin API's integration status), never for the platform. Kept apart
//! from the registry so that a registry put in force again keeps it ([`Statuses`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Integration, Registry};

/// One integration's recent history. Updated on the ingress's path: a verified delivery costs
/// one atomic store, a refused one a short lock.
#[derive(Debug, Default)]
pub struct Status {
    /// Unix milliseconds; 0 for never.
    authentic_ms: AtomicI64,
    test_ms: AtomicI64,
    failure: Mutex<Option<(i64, &'static str)>>,
}

/// A [`Status`] as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub last_authentic_ms: Option<i64>,
    pub last_test_ms: Option<i64>,
    /// When, and why.
    pub last_signature_failure: Option<(i64, &'static str)>,
}

impl Status {
    /// A delivery verified at `now_ms`; `test` when the platform marked it as its test.
    pub fn authentic(&self, now_ms: i64, test: bool) {
        self.authentic_ms.store(now_ms, Ordering::Relaxed);
        if test {
            self.test_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// A delivery naming this integration whose signature did not verify, and why.
    pub fn refused(&self, now_ms: i64, reason: &'static str) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some((now_ms, reason));
    }

    pub fn seen(&self) -> Seen {
        let at = |ms: &AtomicI64| Some(ms.load(Ordering::Relaxed)).filter(|&ms| ms != 0);
        Seen {
            last_authentic_ms: at(&self.authentic_ms),
            last_test_ms: at(&self.test_ms),
            last_signature_failure: *self.failure.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

/// Every integration's [`Status`], by what identifies it across registries: its tenant,
/// provider, integration key and clue.
#[derive(Debug, Default, Clone)]
pub(super) struct Statuses(Arc<Mutex<HashMap<Identity, Arc<Status>>>>);

type Identity = (Arc<str>, &'static str, Option<String>, Option<String>);

fn identity(integration: &Integration) -> Identity {
    (
        integration.tenant.id.clone(),
        integration.provider.slug(),
        integration.key.clone(),
        integration.clue.clone(),
    )
}

impl Statuses {
    /// Gives each integration of `registry` the status it had in the registry before, or a new
    /// one; forgets those of integrations it no longer has.
    pub(super) fn carry(&self, registry: &mut Registry) {
        let mut statuses = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = HashMap::with_capacity(registry.integrations.len());
        for integration in &mut registry.integrations {
            let identity = identity(integration);
            let status = statuses.remove(&identity).unwrap_or_default();
            integration.status = status.clone();
            kept.insert(identity, status);
        }
        *statuses = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_tells_never_from_when_and_keeps_the_last_failure_and_its_reason() {
        let status = Status::default();
        assert_eq!(
            status.seen(),
            Seen {
                last_authentic_ms: None,
                last_test_ms: None,
                last_signature_failure: None,
            }
        );
        status.authentic(1_000, true);
        status.authentic(2_000, false);
        status.refused(3_000, "invalid X-Shopify-Hmac-Sha256");
        status.refused(4_000, "missing X-Shopify-Hmac-Sha256");
        assert_eq!(
            status.seen(),
            Seen {
                last_authentic_ms: Some(2_000),
                last_test_ms: Some(1_000),
                last_signature_failure: Some((4_000, "missing X-Shopify-Hmac-Sha256")),
            }
        );
    }
}
