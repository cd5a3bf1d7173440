//! The processor's state in RocksDB, one database per Kafka partition: carts, the de-duplication
//! window, the timer index, correlation aliases, the outbox of records not yet acknowledged by
//! Kafka, and the next offset to consume. Each input record's effects — and each batch of fired
//! timers — are one atomic `WriteBatch`, so a crash leaves either all of a step or none of it.
//! The store knows no broker: the processor moves records between Kafka and here.

mod cart;
mod keys;
mod outbox;

use std::path::Path;
use std::time::Duration;

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, DB};

pub use cart::{Cart, Phase, Step, Transition, TRANSITION_SCHEMA};
pub use keys::AliasKind;
pub use outbox::{Kind as OutboxKind, Record as OutboxRecord};

use crate::providers::{Bucket, Event};

const CARTS: &str = "carts";
const DEDUP: &str = "dedup";
const TIMERS: &str = "timers";
const INDEX: &str = "index";
const OUTBOX: &str = "outbox";
const META: &str = "meta";
const FAMILIES: [&str; 6] = [CARTS, DEDUP, TIMERS, INDEX, OUTBOX, META];

/// State store failures. All are I/O or corruption: the caller stops the partition.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("RocksDB failed")]
    Rocks(#[from] rocksdb::Error),
    #[error("a stored {what} cannot be decoded")]
    Corrupt { what: &'static str },
}

/// How long the store remembers things.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// A delivery id seen within this time is a duplicate.
    pub dedup: Duration,
    /// An order finds a cart by the customer's e-mail or phone only if the cart was active
    /// within this time before the order.
    pub contact_lookback: Duration,
}

/// One inbound delivery, normalized, as the processor hands it to the store.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The Kafka offset of the inbound record.
    pub offset: i64,
    pub tenant: &'a str,
    pub delivery_id: &'a str,
    pub event: &'a Event,
    /// Event time (the platform's `occurred_at`, else when the ingress received it), ms.
    pub at_ms: i64,
    /// The tenant's inactivity window.
    pub window_ms: i64,
}

/// What one input did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub duplicate: bool,
    pub transitions: Vec<Transition>,
}

/// One partition's state.
pub struct Store {
    db: DB,
    windows: Windows,
    next_outbox: u64,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path, windows: Windows) -> Result<Self, Error> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let families = FAMILIES.map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&options, path, families)?;
        let next_outbox = match db.get_cf(cf(&db, META), keys::NEXT_OUTBOX)? {
            Some(bytes) => decode_u64(&bytes).ok_or(Error::Corrupt {
                what: "outbox sequence",
            })?,
            None => 0,
        };
        Ok(Store {
            db,
            windows,
            next_outbox,
        })
    }

    /// The next Kafka offset to consume, if this partition consumed anything yet.
    pub fn next_offset(&self) -> Result<Option<i64>, Error> {
        self.db
            .get_cf(cf(&self.db, META), keys::NEXT_OFFSET)?
            .map(|bytes| {
                decode_u64(&bytes)
                    .map(|n| n as i64)
                    .ok_or(Error::Corrupt { what: "offset" })
            })
            .transpose()
    }

    /// The cart `key` of `tenant`, if tracked.
    pub fn cart(&self, tenant: &str, key: &str) -> Result<Option<Cart>, Error> {
        self.get_cart(&keys::cart(tenant, key))
    }

    fn get_cart(&self, key: &[u8]) -> Result<Option<Cart>, Error> {
        self.db
            .get_cf(cf(&self.db, CARTS), key)?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|_| Error::Corrupt { what: "cart" })
            })
            .transpose()
    }

    /// Applies one inbound record: de-duplication, the cart step, timer and alias updates, the
    /// normalized event and any transition into the outbox, and the consumed offset — all in one
    /// atomic batch.
    pub fn apply(&mut self, input: Input<'_>) -> Result<Applied, Error> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf(&self.db, META),
            keys::NEXT_OFFSET,
            ((input.offset + 1) as u64).to_be_bytes(),
        );

        let dedup_key = keys::delivery(input.tenant, input.delivery_id);
        if let Some(seen) = self.db.get_cf(cf(&self.db, DEDUP), &dedup_key)? {
            let seen_ms = decode_u64(&seen).ok_or(Error::Corrupt {
                what: "dedup marker",
            })? as i64;
            if input.at_ms.saturating_sub(seen_ms) <= self.windows.dedup.as_millis() as i64 {
                self.db.write(batch)?;
                return Ok(Applied {
                    duplicate: true,
                    transitions: vec![],
                });
            }
        }
        batch.put_cf(
            cf(&self.db, DEDUP),
            &dedup_key,
            (input.at_ms.max(0) as u64).to_be_bytes(),
        );

        let mut outbox = Vec::new();
        outbox.push(outbox::Record::event(
            input.tenant,
            input.delivery_id,
            input.event,
        ));

        let mut transitions = Vec::new();
        if let Some(key) = self.find_cart(&input)? {
            let stored = keys::cart(input.tenant, &key);
            let before = self.get_cart(&stored)?;
            let step = cart::on_event(
                input.tenant,
                &key,
                before.clone(),
                input.event,
                input.at_ms,
                input.window_ms,
            );
            if let Some(after) = &step.cart {
                if before.as_ref() != Some(after) {
                    self.write_cart(&mut batch, before.as_ref(), after);
                    self.write_aliases(&mut batch, after, input.at_ms);
                }
            }
            for transition in &step.transitions {
                outbox.push(outbox::Record::transition(transition));
            }
            transitions = step.transitions;
        }
        self.push_outbox(&mut batch, outbox);
        self.db.write(batch)?;
        Ok(Applied {
            duplicate: false,
            transitions,
        })
    }

    /// Which cart an event belongs to: its correlation ids first, then — for orders — the
    /// customer's e-mail or phone within the look-back window. `None`: nothing to track.
    fn find_cart(&self, input: &Input<'_>) -> Result<Option<String>, Error> {
        let event = input.event;
        if event.event_bucket == Bucket::Other {
            return Ok(None);
        }
        let ids = [
            (AliasKind::CartToken, &event.cart_token),
            (AliasKind::CheckoutToken, &event.checkout_token),
        ];
        for (kind, value) in ids {
            if let Some(value) = value {
                if let Some((key, _)) = self.alias(input.tenant, kind, value)? {
                    return Ok(Some(key));
                }
            }
        }
        if event.event_bucket == Bucket::OrderCompleted {
            let contacts = [
                (AliasKind::Email, &event.customer.email),
                (AliasKind::Phone, &event.customer.phone),
            ];
            let earliest = input.at_ms - self.windows.contact_lookback.as_millis() as i64;
            for (kind, value) in contacts {
                if let Some(value) = value {
                    if let Some((key, at_ms)) = self.alias(input.tenant, kind, value)? {
                        if at_ms >= earliest {
                            return Ok(Some(key));
                        }
                    }
                }
            }
            return Ok(None);
        }
        // New cart activity: named by its first correlation id.
        Ok(event
            .cart_token
            .as_ref()
            .or(event.checkout_token.as_ref())
            .or(event.resource_id.as_ref())
            .cloned())
    }

    fn alias(
        &self,
        tenant: &str,
        kind: AliasKind,
        value: &str,
    ) -> Result<Option<(String, i64)>, Error> {
        let Some(bytes) = self
            .db
            .get_cf(cf(&self.db, INDEX), keys::alias(tenant, kind, value))?
        else {
            return Ok(None);
        };
        let (at, key) = bytes
            .split_at_checked(8)
            .ok_or(Error::Corrupt { what: "alias" })?;
        let at = decode_u64(at).ok_or(Error::Corrupt { what: "alias" })? as i64;
        let key = String::from_utf8(key.to_vec()).map_err(|_| Error::Corrupt { what: "alias" })?;
        Ok(Some((key, at)))
    }

    fn write_cart(&self, batch: &mut WriteBatch, before: Option<&Cart>, after: &Cart) {
        let timers = cf(&self.db, TIMERS);
        if let Some(before) = before.filter(|c| c.phase == Phase::Active) {
            batch.delete_cf(
                timers,
                keys::timer(before.deadline_ms(), &before.tenant, &before.key),
            );
        }
        if after.phase == Phase::Active {
            batch.put_cf(
                timers,
                keys::timer(after.deadline_ms(), &after.tenant, &after.key),
                [],
            );
        }
        let value = serde_json::to_vec(after).expect("a cart always serializes");
        batch.put_cf(
            cf(&self.db, CARTS),
            keys::cart(&after.tenant, &after.key),
            value,
        );
    }

    fn write_aliases(&self, batch: &mut WriteBatch, cart: &Cart, at_ms: i64) {
        let latest = &cart.latest;
        let aliases = [
            (AliasKind::CartToken, &latest.cart_token),
            (AliasKind::CheckoutToken, &latest.checkout_token),
            (AliasKind::Email, &latest.customer.email),
            (AliasKind::Phone, &latest.customer.phone),
        ];
        for (kind, value) in aliases {
            if let Some(value) = value {
                let mut target = (at_ms.max(0) as u64).to_be_bytes().to_vec();
                target.extend_from_slice(cart.key.as_bytes());
                batch.put_cf(
                    cf(&self.db, INDEX),
                    keys::alias(&cart.tenant, kind, value),
                    target,
                );
            }
        }
    }

    fn push_outbox(&mut self, batch: &mut WriteBatch, records: Vec<outbox::Record>) {
        for record in records {
            batch.put_cf(
                cf(&self.db, OUTBOX),
                keys::outbox(self.next_outbox),
                record.encode(),
            );
            self.next_outbox += 1;
        }
        batch.put_cf(
            cf(&self.db, META),
            keys::NEXT_OUTBOX,
            self.next_outbox.to_be_bytes(),
        );
    }

    /// Fires the inactivity timers due at `now_ms`, earliest first, at most `limit` of them, in
    /// one batch. A timer that no longer matches its cart's deadline is dropped silently.
    pub fn fire_due(&mut self, now_ms: i64, limit: usize) -> Result<Vec<Transition>, Error> {
        let mut batch = WriteBatch::default();
        let mut transitions = Vec::new();
        let mut records = Vec::new();
        let timers = cf(&self.db, TIMERS);
        for (fired, item) in self.db.iterator_cf(timers, IteratorMode::Start).enumerate() {
            let (key, _) = item?;
            let (deadline, tenant, cart_key) =
                keys::parse_timer(&key).ok_or(Error::Corrupt { what: "timer" })?;
            if deadline > now_ms || fired >= limit {
                break;
            }
            batch.delete_cf(timers, &key);
            let stored = keys::cart(tenant, cart_key);
            let Some(cart) = self.get_cart(&stored)? else {
                continue;
            };
            let step = cart::on_timer(cart, deadline);
            if let (Some(after), false) = (&step.cart, step.transitions.is_empty()) {
                let value = serde_json::to_vec(after).expect("a cart always serializes");
                batch.put_cf(cf(&self.db, CARTS), &stored, value);
            }
            for transition in step.transitions {
                records.push(outbox::Record::transition(&transition));
                transitions.push(transition);
            }
        }
        self.push_outbox(&mut batch, records);
        self.db.write(batch)?;
        Ok(transitions)
    }

    /// The earliest armed deadline, if any (when to wake up next).
    pub fn next_deadline(&self) -> Result<Option<i64>, Error> {
        match self
            .db
            .iterator_cf(cf(&self.db, TIMERS), IteratorMode::Start)
            .next()
        {
            None => Ok(None),
            Some(item) => {
                let (key, _) = item?;
                Ok(Some(
                    keys::parse_timer(&key)
                        .ok_or(Error::Corrupt { what: "timer" })?
                        .0,
                ))
            }
        }
    }

    /// Up to `limit` outbox records not yet acknowledged, oldest first, with their sequence.
    pub fn outbox(&self, limit: usize) -> Result<Vec<(u64, OutboxRecord)>, Error> {
        let mut records = Vec::new();
        let mode = IteratorMode::From(&[], Direction::Forward);
        for item in self.db.iterator_cf(cf(&self.db, OUTBOX), mode).take(limit) {
            let (key, value) = item?;
            let sequence = decode_u64(&key).ok_or(Error::Corrupt { what: "outbox key" })?;
            let record = OutboxRecord::decode(&value).ok_or(Error::Corrupt {
                what: "outbox record",
            })?;
            records.push((sequence, record));
        }
        Ok(records)
    }

    /// Removes acknowledged outbox records.
    pub fn acknowledge(&mut self, sequences: &[u64]) -> Result<(), Error> {
        let mut batch = WriteBatch::default();
        for sequence in sequences {
            batch.delete_cf(cf(&self.db, OUTBOX), keys::outbox(*sequence));
        }
        self.db.write(batch)?;
        Ok(())
    }
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .expect("every column family is created at open")
}

fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests;
