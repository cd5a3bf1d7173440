//! The processor's state in RocksDB, one database per Kafka partition: carts, the de-duplication
//! window, the timer index, correlation aliases, the outbox of records not yet acknowledged by
//! Kafka, and the next offset to consume. The effects of a run of input records are staged in
//! memory ([`Store::stage`]) and written with the offset after the last of them in one atomic
//! `WriteBatch` ([`Store::commit`]); each batch of fired timers is one more. A crash leaves
//! either all of a commit or none of it, and the records it held are consumed again. Within a
//! run, a record reads what the ones before it staged, and a key written several times is
//! written once. The store knows no broker: the processor moves records between Kafka and here.
//!
//! Time comes in two kinds. *Event time* (`at_ms`, when the platform says something happened)
//! orders a cart's activity. *Arrival time* (`received_ms`, when the ingress accepted the
//! delivery) drives the partition's watermark: before a record is applied, every timer due by
//! its arrival time fires. So the outcome depends only on the records and their order in the
//! partition — a replay after a crash, or another processor rebuilding the partition, makes the
//! same decisions and the same transition ids. The processor fires the remaining due timers by
//! the wall clock only when it has consumed everything there is ([`Store::fire_due`]).

mod cart;
mod codec;
mod garbage;
mod keys;
mod outbox;
mod staged;
mod timers;

use std::path::Path;
use std::time::Duration;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch,
    DB,
};

pub use cart::{transition_id, Cart, Phase, Step, Transition, TRANSITION_SCHEMA};
pub use keys::AliasKind;

pub use outbox::{Kind as OutboxKind, Record as OutboxRecord};
use staged::{Bytes, Pending, Staged};

use crate::topics::event::{Bucket, Event};

const CARTS: &str = "carts";
const DEDUP: &str = "dedup";
const TIMERS: &str = "timers";
const INDEX: &str = "index";
const OUTBOX: &str = "outbox";
const META: &str = "meta";
/// Expiry indexes for garbage collection: closed carts and de-duplication markers by time.
const EXPIRY: &str = "expiry";
const FAMILIES: [&str; 7] = [CARTS, DEDUP, TIMERS, INDEX, OUTBOX, META, EXPIRY];

/// Timers fired per write batch while the watermark catches up.
const FIRE_CHUNK: usize = 10_000;
/// Block cache of one store (one partition).
const BLOCK_CACHE_BYTES: usize = 32 << 20;
/// Uncompressed size of a table block. Larger blocks than RocksDB's 4 KiB compress the tenants,
/// domains and URL parts that repeat from record to record better and make the index smaller:
/// less disk per cart, and fewer blocks to read when a chunk of timers fires.
const BLOCK_BYTES: usize = 16 << 10;
/// Past this much write-ahead log, RocksDB flushes the column families that hold it back, so
/// the log (and the time to replay it at open) stays bounded.
const MAX_TOTAL_WAL_BYTES: u64 = 128 << 20;
/// Table files a store keeps open (RocksDB's default is all of them): bounded, so that the
/// process's open files limit (raised to the hard limit at start; the ingress's connections take
/// at most half) can be shared out between the stores. Below the number of table files a store
/// holds, look-ups reopen table files (footer, index and filter) over and over: at 64, the store
/// of `benches/state_step.rs`, which rewrites 10,000 carts as fast as it can, spent most of its
/// batched step in `TableCache::FindTable` (28 ms per 1,000 events; 9.5 ms unbounded).
pub const MAX_OPEN_FILES: i32 = 256;

/// State store failures. All are I/O or corruption: the caller stops the partition.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("RocksDB failed")]
    Rocks(#[from] rocksdb::Error),
    #[error("a stored {what} cannot be decoded")]
    Corrupt { what: &'static str },
    /// An earlier step of this store failed: what it had staged was dropped, and the store's
    /// view of itself may be ahead of what it holds, so it must be opened again.
    #[error("an earlier write to this store failed; it must be opened again")]
    Interrupted,
}

impl Error {
    /// The state volume cannot be written (full, or failing): see [`crate::volume`].
    pub fn is_volume(&self) -> bool {
        matches!(self, Error::Rocks(e) if crate::volume::is_volume_error(e))
    }
}

/// How long the store remembers things.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// A delivery id seen again within this time (arrival to arrival) is a duplicate.
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
    /// When the ingress received the delivery, ms: de-duplication and the watermark.
    pub received_ms: i64,
    /// The tenant's inactivity window.
    pub window_ms: i64,
}

/// What one input did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub duplicate: bool,
    /// Abandonments whose timers came due by the record's arrival, fired before it applied.
    pub fired: Vec<Transition>,
    /// What the record itself caused (an order completing or recovering a cart).
    pub transitions: Vec<Transition>,
}

/// How many carts are in each phase (active carts are also the armed timers).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub active: u64,
    pub abandoned: u64,
    pub completed: u64,
    pub recovered: u64,
}

impl Counts {
    fn slot(&mut self, phase: Phase) -> &mut u64 {
        match phase {
            Phase::Active => &mut self.active,
            Phase::Abandoned => &mut self.abandoned,
            Phase::Completed => &mut self.completed,
            Phase::Recovered => &mut self.recovered,
        }
    }

    fn change(&mut self, before: Option<Phase>, after: Option<Phase>) {
        if before == after {
            return;
        }
        if let Some(before) = before {
            let slot = self.slot(before);
            *slot = slot.saturating_sub(1);
        }
        if let Some(after) = after {
            *self.slot(after) += 1;
        }
    }

    pub fn get(&self, phase: Phase) -> u64 {
        match phase {
            Phase::Active => self.active,
            Phase::Abandoned => self.abandoned,
            Phase::Completed => self.completed,
            Phase::Recovered => self.recovered,
        }
    }

    fn encode(&self) -> [u8; 32] {
        let mut bytes = [0; 32];
        for (i, n) in [self.active, self.abandoned, self.completed, self.recovered]
            .into_iter()
            .enumerate()
        {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&n.to_be_bytes());
        }
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let n = |i: usize| decode_u64(bytes.get(i * 8..i * 8 + 8)?);
        (bytes.len() == 32).then_some(())?;
        Some(Counts {
            active: n(0)?,
            abandoned: n(1)?,
            completed: n(2)?,
            recovered: n(3)?,
        })
    }
}

/// How a cart is looked for: by its key, or by an alias that leads to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    Cart(&'a str),
    Alias(AliasKind, &'a str),
}

/// A cart as the store holds it, with the aliases that lead to it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub cart: Cart,
    pub aliases: Vec<(AliasKind, String)>,
}

/// What one garbage collection pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    pub carts: usize,
    pub dedup_markers: usize,
}

/// One partition's state.
pub struct Store {
    db: DB,
    windows: Windows,
    next_outbox: u64,
    watermark: i64,
    counts: Counts,
    /// No armed timer sorts before this key: firing starts here instead of wading through the
    /// deletion markers of the timers fired before (lowered when an earlier timer is armed).
    timers_floor: Vec<u8>,
    /// No unacknowledged outbox record has a smaller sequence.
    outbox_floor: u64,
    /// Records staged and not yet committed.
    pending: Option<Pending>,
    /// A step failed; see [`Error::Interrupted`].
    interrupted: bool,
    /// What a simulated power cut takes (test builds only; see [`crate::volume::Ledger`]).
    ledger: crate::volume::Ledger,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path, windows: Windows) -> Result<Self, Error> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        crate::volume::simulate_power_cut(&mut options);
        options.set_max_open_files(MAX_OPEN_FILES);
        // Most look-ups (a new delivery id, a new cart, its aliases) find nothing: bloom
        // filters answer those without reading a block.
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE_BYTES));
        table.set_block_size(BLOCK_BYTES);
        let families = FAMILIES.map(|name| {
            let mut family = Options::default();
            family.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(name, family)
        });
        let db = DB::open_cf_descriptors(&options, path, families)?;
        let ledger = crate::volume::Ledger::open(path, db.latest_sequence_number());
        let meta = |key: &[u8], what: &'static str| -> Result<u64, Error> {
            match db.get_cf(cf(&db, META), key)? {
                Some(bytes) => decode_u64(&bytes).ok_or(Error::Corrupt { what }),
                None => Ok(0),
            }
        };
        let next_outbox = meta(keys::NEXT_OUTBOX, "outbox sequence")?;
        let watermark = meta(keys::WATERMARK, "watermark")? as i64;
        let counts = match db.get_cf(cf(&db, META), keys::COUNTS)? {
            Some(bytes) => Counts::decode(&bytes).ok_or(Error::Corrupt { what: "counts" })?,
            None => Counts::default(),
        };
        let outbox_floor = match db.iterator_cf(cf(&db, OUTBOX), IteratorMode::Start).next() {
            Some(item) => decode_u64(&item?.0).ok_or(Error::Corrupt { what: "outbox key" })?,
            None => next_outbox,
        };
        Ok(Store {
            db,
            windows,
            next_outbox,
            watermark,
            counts,
            timers_floor: Vec::new(),
            outbox_floor,
            pending: None,
            interrupted: false,
            ledger,
        })
    }

    /// The bytes of table files each column family holds, by family name.
    pub fn family_sizes(&self) -> Result<Vec<(&'static str, u64)>, Error> {
        FAMILIES
            .iter()
            .map(|&name| {
                let bytes = self
                    .db
                    .property_int_value_cf(cf(&self.db, name), "rocksdb.total-sst-files-size")?;
                Ok((name, bytes.unwrap_or(0)))
            })
            .collect()
    }

    /// Carts by phase.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The latest arrival time applied (0 before the first record).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Records not yet acknowledged by Kafka.
    pub fn outbox_len(&self) -> u64 {
        self.next_outbox.saturating_sub(self.outbox_floor)
    }

    /// The next Kafka offset to consume, as committed, if this partition consumed anything yet.
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

    /// Records that the inbound record at `offset` was consumed without effect (it could not be
    /// read), and commits.
    pub fn skip(&mut self, offset: i64) -> Result<(), Error> {
        self.stage_skip(offset)?;
        self.commit()
    }

    /// Stages the inbound record at `offset` as consumed without effect.
    pub fn stage_skip(&mut self, offset: i64) -> Result<(), Error> {
        self.usable()?;
        self.pending
            .get_or_insert_with(Pending::default)
            .next_offset = Some(offset + 1);
        Ok(())
    }

    /// The cart `key` of `tenant`, if tracked (as staged).
    pub fn cart(&self, tenant: &str, key: &str) -> Result<Option<Cart>, Error> {
        self.get_cart(self.pending.as_ref(), tenant, key, &keys::cart(tenant, key))
    }

    /// The cart of `tenant` that `lookup` leads to (as staged), with the aliases of it that
    /// still lead to it; `None` when there is none.
    pub fn find(&self, tenant: &str, lookup: Lookup<'_>) -> Result<Option<Kept>, Error> {
        let pending = self.pending.as_ref();
        let key = match lookup {
            Lookup::Cart(key) => key.to_string(),
            Lookup::Alias(kind, value) => match self.alias(pending, tenant, kind, value)? {
                Some((key, _)) => key,
                None => return Ok(None),
            },
        };
        let Some(cart) = self.get_cart(pending, tenant, &key, &keys::cart(tenant, &key))? else {
            return Ok(None);
        };
        let mut aliases = Vec::new();
        for (kind, value) in cart.aliases() {
            let leads_here = self
                .alias(pending, tenant, kind, value)?
                .is_some_and(|(to, _)| to == cart.key);
            if leads_here {
                aliases.push((kind, value.to_string()));
            }
        }
        Ok(Some(Kept { cart, aliases }))
    }

    /// The value of `key` in `family`: what `pending` staged for it, else what is stored.
    fn get<'a>(
        &'a self,
        pending: Option<&'a Pending>,
        family: Staged,
        key: &[u8],
    ) -> Result<Option<Bytes<'a>>, Error> {
        if let Some(staged) = pending.and_then(|p| p.get(family, key)) {
            return Ok(staged.map(Bytes::Staged));
        }
        let stored = self.db.get_pinned_cf(cf(&self.db, family.family()), key)?;
        Ok(stored.map(Bytes::Stored))
    }

    /// The cart `key` of `tenant`, stored under `stored`.
    fn get_cart(
        &self,
        pending: Option<&Pending>,
        tenant: &str,
        key: &str,
        stored: &[u8],
    ) -> Result<Option<Cart>, Error> {
        self.get(pending, Staged::Carts, stored)?
            .map(|bytes| codec::decode(tenant, key, &bytes).ok_or(Error::Corrupt { what: "cart" }))
            .transpose()
    }

    /// Applies one inbound record: [`Store::stage`], then [`Store::commit`].
    pub fn apply(&mut self, input: Input<'_>) -> Result<Applied, Error> {
        let applied = self.stage(input)?;
        self.commit()?;
        Ok(applied)
    }

    /// Stages one inbound record: de-duplication, the cart step, timer and alias updates, the
    /// normalized event and any transition into the outbox, and the consumed offset. Nothing is
    /// written until [`Store::commit`], which writes every record staged since the last one in
    /// one atomic batch.
    ///
    /// Before the record, the watermark moves to its arrival time and every timer due by then
    /// fires ([`Applied::fired`]): what was staged is committed first, and the fired timers are
    /// written in batches of their own.
    ///
    /// After an error, what was staged is dropped and the store must be opened again.
    pub fn stage(&mut self, input: Input<'_>) -> Result<Applied, Error> {
        self.usable()?;
        let staged = self.stage_record(&input);
        if staged.is_err() {
            self.interrupted = true;
        }
        staged
    }

    /// [`Store::stage`], which marks the store interrupted when this fails.
    fn stage_record(&mut self, input: &Input<'_>) -> Result<Applied, Error> {
        let fired = self.advance(input.received_ms)?;
        // Taken out while the record is staged: a failure drops it with the record.
        let mut pending = self.pending.take().unwrap_or_default();
        let (duplicate, transitions) = self.stage_into(&mut pending, input)?;
        pending.next_offset = Some(input.offset + 1);
        self.pending = Some(pending);
        Ok(Applied {
            duplicate,
            fired,
            transitions,
        })
    }

    /// The record's effects into `pending`: whether it is a duplicate, and its transitions.
    fn stage_into(
        &mut self,
        pending: &mut Pending,
        input: &Input<'_>,
    ) -> Result<(bool, Vec<Transition>), Error> {
        if self.deduplicate(pending, input)? {
            return Ok((true, Vec::new()));
        }
        let transitions = self.step_cart(pending, input)?;
        let mut outbox = Vec::with_capacity(1 + transitions.len());
        outbox.push(outbox::Record::event(
            input.tenant,
            input.delivery_id,
            input.event,
        ));
        outbox.extend(transitions.iter().map(outbox::Record::transition));
        for (sequence, record) in self.sequence(outbox) {
            pending.put(
                Staged::Outbox,
                keys::outbox(sequence).to_vec(),
                record.encode(),
            );
        }
        Ok((false, transitions))
    }

    /// Writes what was staged since the last commit, with the offset after the last record
    /// staged and the watermark, in one atomic batch. Nothing staged: nothing written.
    pub fn commit(&mut self) -> Result<(), Error> {
        self.usable()?;
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        let next_offset = pending.next_offset;
        for (family, writes) in pending.into_sorted() {
            let handle = cf(&self.db, family.family());
            for (key, value) in writes {
                match value {
                    Some(value) => batch.put_cf(handle, key, value),
                    None => batch.delete_cf(handle, key),
                }
            }
        }
        if let Some(next) = next_offset {
            batch.put_cf(
                cf(&self.db, META),
                keys::NEXT_OFFSET,
                (next.max(0) as u64).to_be_bytes(),
            );
        }
        batch.put_cf(
            cf(&self.db, META),
            keys::WATERMARK,
            (self.watermark.max(0) as u64).to_be_bytes(),
        );
        self.write_meta(&mut batch);
        self.write(batch)
    }

    /// [`Error::Interrupted`] once a step of this store has failed.
    fn usable(&self) -> Result<(), Error> {
        if self.interrupted {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Writes a batch that carries in-memory changes (counts, sequences, the watermark) with it:
    /// should it fail, the store is interrupted. Each memtable inserts from the position of the
    /// batch's previous insert, which makes a batch written in key order cheap.
    fn write(&mut self, batch: WriteBatch) -> Result<(), Error> {
        let mut options = rocksdb::WriteOptions::default();
        options.set_memtable_insert_hint_per_batch(true);
        self.db
            .write_opt(batch, &options)
            .inspect_err(|_| self.interrupted = true)?;
        self.ledger.applied(self.db.latest_sequence_number());
        Ok(())
    }

    /// Whether the input's delivery id was seen within the de-duplication window; when it was
    /// not, `pending` marks it seen at the record's arrival (replacing an older marker).
    fn deduplicate(&self, pending: &mut Pending, input: &Input<'_>) -> Result<bool, Error> {
        let dedup_key = keys::delivery(input.tenant, &input.event.provider, input.delivery_id);
        let seen = match self.get(Some(pending), Staged::Dedup, &dedup_key)? {
            Some(seen) => Some(decode_u64(&seen).ok_or(Error::Corrupt {
                what: "dedup marker",
            })? as i64),
            None => None,
        };
        if let Some(seen_ms) = seen {
            if input.received_ms.saturating_sub(seen_ms) <= self.windows.dedup.as_millis() as i64 {
                return Ok(true);
            }
            pending.delete(Staged::Expiry, keys::expiry_dedup(seen_ms, &dedup_key));
        }
        pending.put(
            Staged::Expiry,
            keys::expiry_dedup(input.received_ms, &dedup_key),
            Vec::new(),
        );
        let received = (input.received_ms.max(0) as u64).to_be_bytes();
        pending.put(Staged::Dedup, dedup_key, received.to_vec());
        Ok(false)
    }

    /// The event's step on the cart it belongs to, if any: the cart and its aliases written to
    /// `batch` when they changed; the transitions the step made.
    fn step_cart(
        &mut self,
        pending: &mut Pending,
        input: &Input<'_>,
    ) -> Result<Vec<Transition>, Error> {
        let Some(Found { key, by_token }) = self.find_cart(pending, input)? else {
            return Ok(Vec::new());
        };
        let stored = keys::cart(input.tenant, &key);
        let before = self.get_cart(Some(pending), input.tenant, &key, &stored)?;
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
                self.write_cart(pending, stored, before.as_ref(), after);
                write_aliases(pending, after, input.at_ms, by_token);
            }
        }
        Ok(step.transitions)
    }

    /// Moves the watermark to `received_ms` (never back) and fires every timer due by it.
    fn advance(&mut self, received_ms: i64) -> Result<Vec<Transition>, Error> {
        if received_ms <= self.watermark {
            return Ok(vec![]);
        }
        // Stored with the record's commit; a crash before it replays the record, which
        // advances the same way again.
        self.watermark = received_ms;
        // No armed timer sorts before the floor: when even the floor is not due, none is.
        if keys::timer_deadline(&self.timers_floor).is_some_and(|floor| floor > received_ms) {
            return Ok(vec![]);
        }
        // Timers fire from what is stored: the staged records (and their timers) go first.
        self.commit()?;
        let mut fired = Vec::new();
        loop {
            let chunk = self.fire_due(received_ms, FIRE_CHUNK)?;
            let done = chunk.is_empty();
            fired.extend(chunk);
            if done {
                return Ok(fired);
            }
        }
    }

    /// Which cart an event belongs to: its correlation ids first, then — for orders — the
    /// customer's e-mail or phone within the look-back window. `None`: nothing to track.
    fn find_cart<'i>(
        &self,
        pending: &Pending,
        input: &Input<'i>,
    ) -> Result<Option<Found<'i>>, Error> {
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
                if let Some((key, _)) = self.alias(Some(pending), input.tenant, kind, value)? {
                    return Ok(Some(Found {
                        key,
                        by_token: Some((kind, value)),
                    }));
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
                    if let Some((key, at_ms)) =
                        self.alias(Some(pending), input.tenant, kind, value)?
                    {
                        if at_ms >= earliest {
                            return Ok(Some(Found {
                                key,
                                by_token: None,
                            }));
                        }
                    }
                }
            }
            return Ok(None);
        }
        // New cart activity: named by its first correlation id, else — activity that names no
        // cart, as FlexyPe's recovery events without a checkout session — by the shopper's
        // contact, so that successive events of one shopper update one cart and an order with
        // the same contact finds it.
        let named = event
            .cart_token
            .clone()
            .or_else(|| event.checkout_token.clone())
            .or_else(|| event.resource_id.clone())
            .or_else(|| contact_key(&event.customer));
        Ok(named.map(|key| Found {
            key,
            by_token: None,
        }))
    }

    fn alias(
        &self,
        pending: Option<&Pending>,
        tenant: &str,
        kind: AliasKind,
        value: &str,
    ) -> Result<Option<(String, i64)>, Error> {
        let key = keys::alias(tenant, kind, value);
        let Some(bytes) = self.get(pending, Staged::Index, &key)? else {
            return Ok(None);
        };
        let (at, key) = bytes
            .split_at_checked(8)
            .ok_or(Error::Corrupt { what: "alias" })?;
        let at = decode_u64(at).ok_or(Error::Corrupt { what: "alias" })? as i64;
        let key = String::from_utf8(key.to_vec()).map_err(|_| Error::Corrupt { what: "alias" })?;
        Ok(Some((key, at)))
    }

    fn write_cart(
        &mut self,
        pending: &mut Pending,
        stored: Vec<u8>,
        before: Option<&Cart>,
        after: &Cart,
    ) {
        self.counts
            .change(before.map(|c| c.phase), Some(after.phase));
        if let (Some(closed), false) = (
            after.closed_at_ms,
            before.is_some_and(|b| b.phase.is_terminal()),
        ) {
            pending.put(
                Staged::Expiry,
                keys::expiry_cart(closed, &after.tenant, &after.key),
                Vec::new(),
            );
        }
        if let Some(before) = before.filter(|c| c.phase == Phase::Active) {
            pending.delete(
                Staged::Timers,
                keys::timer(before.deadline_ms(), &before.tenant, &before.key),
            );
        }
        if after.phase == Phase::Active {
            let key = keys::timer(after.deadline_ms(), &after.tenant, &after.key);
            if key < self.timers_floor {
                self.timers_floor = key.clone();
            }
            pending.put(Staged::Timers, key, Vec::new());
        }
        pending.put(Staged::Carts, stored, codec::encode(after));
    }

    /// Outbox records with the sequences they take, in order.
    fn sequence(&mut self, records: Vec<outbox::Record>) -> Vec<(u64, outbox::Record)> {
        let first = self.next_outbox;
        self.next_outbox += records.len() as u64;
        (first..).zip(records).collect()
    }

    /// The next outbox sequence and the counts, as they stand, into `batch`.
    fn write_meta(&self, batch: &mut WriteBatch) {
        batch.put_cf(
            cf(&self.db, META),
            keys::NEXT_OUTBOX,
            self.next_outbox.to_be_bytes(),
        );
        batch.put_cf(cf(&self.db, META), keys::COUNTS, self.counts.encode());
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
        let floor = keys::outbox(self.outbox_floor);
        let mode = IteratorMode::From(&floor, Direction::Forward);
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
        self.ledger.applied(self.db.latest_sequence_number());
        // Records are acknowledged oldest first; the floor follows the acknowledged prefix.
        let mut acknowledged: Vec<u64> = sequences.to_vec();
        acknowledged.sort_unstable();
        for sequence in acknowledged {
            if sequence == self.outbox_floor {
                self.outbox_floor += 1;
            }
        }
        Ok(())
    }
}

/// The aliases that lead to `cart`, each with the time of the activity that wrote it — except
/// the token alias the cart was just found by (`found_by`), which leads to it already: a token
/// alias's time is never read (only a contact's is, against `contact_lookback`).
fn write_aliases(
    pending: &mut Pending,
    cart: &Cart,
    at_ms: i64,
    found_by: Option<(AliasKind, &str)>,
) {
    for (kind, value) in cart.aliases() {
        if found_by == Some((kind, value)) {
            continue;
        }
        let mut target = Vec::with_capacity(8 + cart.key.len());
        target.extend_from_slice(&(at_ms.max(0) as u64).to_be_bytes());
        target.extend_from_slice(cart.key.as_bytes());
        pending.put(
            Staged::Index,
            keys::alias(&cart.tenant, kind, value),
            target,
        );
    }
}

/// The cart an event belongs to, and the token alias it was found by, if it was.
struct Found<'i> {
    key: String,
    by_token: Option<(AliasKind, &'i str)>,
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .expect("every column family is created at open")
}

/// The key of a cart that only its shopper's contact names: `shopper:` and the first 128 bits
/// of the SHA-256 of `email:<address>`, else of `phone:<number>` (both as normalized), so that
/// the key that transitions and logs carry does not spell the contact out.
fn contact_key(customer: &crate::topics::event::Customer) -> Option<String> {
    use sha2::{Digest, Sha256};
    let contact = match (&customer.email, &customer.phone) {
        (Some(email), _) => format!("email:{email}"),
        (None, Some(phone)) => format!("phone:{phone}"),
        (None, None) => return None,
    };
    let digest = Sha256::digest(contact.as_bytes());
    Some(format!("shopper:{}", hex::encode(&digest[..16])))
}

fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests;
