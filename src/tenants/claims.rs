//! Installations nobody had claimed, claimed: what a ShopiMind installation sent before any
//! tenant named it (its sealed `access_token`, held under the owner [`UNCLAIMED`] on the
//! credentials topic) moved to the tenant that now names it.

use std::time::Duration;

use super::UNCLAIMED;
use crate::credentials::Vault;
use crate::kafka::{self, credentials::read_latest, Producer};
use crate::providers::Provider;

/// What moves held credentials: the key they are sealed with, the producer that writes them
/// again, and the cluster they are read from.
#[derive(Clone)]
pub struct Claims {
    vault: Vault,
    producer: Producer,
    kafka: kafka::Config,
    timeout: Duration,
}

impl Claims {
    /// Claims with `vault` (`ingress.credentials_key`), reading and writing within `timeout`.
    pub fn new(
        vault: Vault,
        producer: Producer,
        kafka: kafka::Config,
        timeout: Duration,
    ) -> Claims {
        Claims {
            vault,
            producer,
            kafka,
            timeout,
        }
    }

    /// Moves what the installation `installation` of `provider` sent while nobody had claimed
    /// it to `tenant`: each field sealed again for the tenant, then the held record tombstoned.
    /// The fields moved; a held record that does not open is left where it is.
    pub async fn claim(
        &self,
        tenant: &str,
        provider: &dyn Provider,
        installation: &str,
        now_ms: i64,
    ) -> Result<Vec<String>, kafka::Error> {
        if provider.secret_fields().is_empty() {
            return Ok(Vec::new());
        }
        let (config, timeout) = (self.kafka.clone(), self.timeout);
        let read = tokio::task::spawn_blocking(move || read_latest(&config, timeout))
            .await
            .map_err(|_| kafka::Error::Timeout(timeout))?;
        let (held, _) = read?;
        let installation = provider.normalize_clue(installation);
        let mut claimed = Vec::new();
        for (key, record) in held {
            let theirs = record.tenant == UNCLAIMED
                && record.provider == provider.slug()
                && provider.normalize_clue(&record.installation) == installation;
            if !theirs {
                continue;
            }
            let value = match self.vault.open_record(key.as_bytes(), &record) {
                Ok(value) => value,
                Err(e) => {
                    tracing::warn!(%key, error = %e, "an unclaimed credential does not open: left where it is");
                    continue;
                }
            };
            let mut moved = record.clone();
            moved.tenant = tenant.to_string();
            self.vault.seal_record(&mut moved, &value);
            let bytes = serde_json::to_vec(&moved).expect("a credential always serializes");
            self.producer
                .send_credential(&moved.context(), &bytes, now_ms, self.timeout)
                .await?;
            self.producer
                .send_credential_tombstone(&key, now_ms, self.timeout)
                .await?;
            claimed.push(record.field);
        }
        Ok(claimed)
    }
}
