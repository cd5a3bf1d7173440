//! Writing the registry: changes to the tenants topic, made only when the registry they leave
//! is one the deployment can serve, and in force on this instance when the write returns. The
//! admin API and the platforms' connect flows write through it.

use std::sync::Arc;
use std::time::Duration;

use super::{Live, Records, Registry};
use crate::clock::Clock;
use crate::credentials::Keyring;
use crate::kafka::registry::Writer;
use crate::problems::Problems;
use crate::topics::registry::{Key, Record};

/// What makes a registry one the deployment cannot serve (as at start, for every role).
pub type Check = Box<dyn Fn(&Registry) -> Problems + Send + Sync>;

/// How long a write waits to be read back and put in force on this instance.
const READ_BACK: Duration = Duration::from_secs(5);

/// Why a change was not written.
#[derive(Debug)]
pub enum Refused {
    /// The registry it would leave is invalid, or one the deployment cannot serve.
    Invalid(Problems),
    /// Kafka did not take it.
    Unavailable(String),
}

/// The tenants topic's writer, with what a change is checked against.
pub struct Registrar {
    live: Live,
    keys: Keyring,
    writer: Writer,
    check: Check,
    clock: Clock,
}

impl Registrar {
    pub fn new(live: Live, keys: Keyring, writer: Writer, check: Check, clock: Clock) -> Arc<Self> {
        Arc::new(Registrar {
            live,
            keys,
            writer,
            check,
            clock,
        })
    }

    /// The keys the topic's secrets are sealed with.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// The registry in force, and what the topic says.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Writes `changes` (a tombstone for `None`) to what `records` says, once the registry they
    /// leave is valid and servable, and waits until this instance has read them back; the
    /// records they leave.
    pub async fn write(
        &self,
        records: &Records,
        changes: Vec<(Key, Option<Record>)>,
    ) -> Result<Records, Refused> {
        let mut after = records.clone();
        let mut messages = Vec::with_capacity(changes.len());
        for (key, record) in changes {
            messages.push((key.encode(), record.as_ref().map(Record::encode)));
            after = after.with(&key, record);
        }
        let registry = after
            .registry(&self.keys, self.clock.now_millis())
            .map_err(Refused::Invalid)?;
        let problems = (self.check)(&registry);
        if !problems.is_empty() {
            return Err(Refused::Invalid(problems));
        }
        let offset = self
            .writer
            .write(messages)
            .await
            .map_err(|e| Refused::Unavailable(format!("{:#}", anyhow::Error::from(e))))?;
        if let Some(offset) = offset {
            if !self.live.wait_until_read(offset, READ_BACK).await {
                tracing::warn!(
                    offset,
                    "a registry change was written but not read back within 5 s"
                );
            }
        }
        Ok(after)
    }
}
