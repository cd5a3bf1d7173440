//! What the ingress saw of each integration lately, on this instance: when a delivery last
//! verified, when the platform's test last came, and when a signature last failed and why —
//! for the operator (the admin API's integration status), never for the platform. Kept apart
//! from the registry so that a registry put in force again keeps it ([`Statuses`]). With the
//! tenants on their topic, each instance writes what changed to the status topic ([`Written`]),
//! so that any instance's admin API answers with every instance's view.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Integration, Registry};
use crate::topics::status::{Record, View, SCHEMA};

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

impl Seen {
    /// The view the status topic carries.
    pub fn view(&self) -> View {
        View {
            last_authentic_ms: self.last_authentic_ms,
            last_test_ms: self.last_test_ms,
            last_failure_ms: self.last_signature_failure.map(|(ms, _)| ms),
            last_failure_reason: self
                .last_signature_failure
                .map(|(_, reason)| reason.to_string()),
        }
    }
}

/// What this instance last wrote to the status topic of each integration, so that only what
/// changed is written again.
#[derive(Debug, Default)]
pub struct Written(HashMap<Identity, Seen>);

impl Written {
    /// The records of `registry`'s integrations whose view on this instance changed since it
    /// was last written (those that never saw anything have nothing to say), marked written.
    pub fn changes(&mut self, registry: &Registry, instance: &str) -> Vec<Record> {
        let mut records = Vec::new();
        for integration in &registry.integrations {
            let seen = integration.status.seen();
            let nothing = seen.last_authentic_ms.is_none() && seen.last_signature_failure.is_none();
            let identity = identity(integration);
            if nothing || self.0.get(&identity) == Some(&seen) {
                continue;
            }
            records.push(Record {
                schema: SCHEMA.to_string(),
                instance: instance.to_string(),
                tenant_id: integration.tenant.id.to_string(),
                provider: integration.provider.slug().to_string(),
                integration_key: integration.key.clone(),
                clue: integration.clue.clone(),
                view: seen.view(),
            });
            self.0.insert(identity, seen);
        }
        records
    }

    /// `record` was not written after all: it is a change again at the next round.
    pub fn unwritten(&mut self, record: &Record) {
        self.0.retain(|(tenant, provider, key, clue), _| {
            !record.is_about(tenant, provider, key.as_deref(), clue.as_deref())
        });
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

    #[test]
    fn an_integrations_view_is_written_when_it_changed_and_again_when_it_was_not_written() {
        let text = r#"
[[tenant]]
id = "acme"
  [[tenant.integration]]
  provider = "shopify"
  shop_domain = "acme.myshopify.com"
  secret = "acme-shopify-secret"
  [[tenant.integration]]
  provider = "flexype"
  integration_key = "int_quiet_flexype_01"
  secret = "acme-flexype-secret"
"#;
        let registry = Registry::from_toml(
            text,
            std::path::Path::new("."),
            &std::collections::HashMap::new(),
        )
        .unwrap();
        let mut written = Written::default();
        assert!(
            written.changes(&registry, "i-1").is_empty(),
            "nothing seen yet"
        );
        let shop = &registry.integrations[0];
        shop.status.authentic(1_000, false);
        let records = written.changes(&registry, "i-1");
        assert_eq!(records.len(), 1, "the quiet one has nothing to say");
        assert_eq!(records[0].view.last_authentic_ms, Some(1_000));
        assert_eq!(records[0].clue.as_deref(), Some("acme.myshopify.com"));
        assert!(written.changes(&registry, "i-1").is_empty(), "unchanged");
        written.unwritten(&records[0]);
        assert_eq!(
            written.changes(&registry, "i-1"),
            records,
            "again once it was lost"
        );
        shop.status.refused(2_000, "invalid X-Shopify-Hmac-Sha256");
        let failed = written.changes(&registry, "i-1");
        assert_eq!(failed[0].view.last_failure_ms, Some(2_000));
    }
}
