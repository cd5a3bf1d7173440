//! Pending deliveries in RocksDB: one database per delivery worker (its `delivery.state_dir`).
//!
//! A delivery (a transition for one endpoint) is written here before the transition's offset
//! is committed, and leaves only together with its final outcome, in one write batch — so a
//! crash between any two steps loses nothing: a transition read twice finds its marker in
//! `seen` and is not stored again; an attempt whose outcome was not written is attempted again.
//! Outcome and dead-letter records wait in `outbox` until Kafka acknowledges them.
//!
//! Column families:
//! - `jobs`: key → [`Job`] (JSON), key = `tenant \0 endpoint \0 transition id`;
//! - `due`: big-endian due time (ms) ‖ key → nothing: the retry schedule, in time order;
//! - `carts`: tenant \0 endpoint \0 cart \0 key → nothing: pending abandonments per cart, for
//!   supersession;
//! - `seen`: key → big-endian time first seen: a transition is stored at most once;
//! - `dead`: key → [`Job`]: dead-lettered deliveries, kept for listing and retry;
//! - `redriven`: key → big-endian time T: every dead letter of this delivery stamped at or
//!   before T was put back on the schedule, so a redrive never sends one twice from this worker;
//! - `disabled`: tenant \0 endpoint → big-endian time: endpoints that answered 410;
//! - `outbox`: big-endian sequence → [`OutboxRecord`] (JSON).

use std::collections::HashMap;
use std::path::Path;

use foldhash::fast::RandomState;
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, DB};
use serde::{Deserialize, Serialize};

const JOBS: &str = "jobs";
const DUE: &str = "due";
const CARTS: &str = "carts";
const SEEN: &str = "seen";
const DEAD: &str = "dead";
const DISABLED: &str = "disabled";
const OUTBOX: &str = "outbox";
const REDRIVEN: &str = "redriven";
const FAMILIES: [&str; 8] = [JOBS, DUE, CARTS, SEEN, DEAD, DISABLED, OUTBOX, REDRIVEN];
const MAX_TOTAL_WAL_BYTES: u64 = 64 << 20;
/// Due entries looked at per [`Store::due`] call.
const MAX_DUE_SCAN: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("RocksDB failed")]
    Db(#[from] rocksdb::Error),
    #[error("a stored {what} cannot be read")]
    Corrupt {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The state volume cannot be written (full, or failing): see [`crate::volume`].
    pub fn is_volume(&self) -> bool {
        matches!(self, Error::Db(e) if crate::volume::is_volume_error(e))
    }
}

/// One transition to deliver to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub transition_id: String,
    pub tenant: String,
    pub endpoint: String,
    /// `abandoned_candidate` or `order_completed`.
    pub event: String,
    pub cart: String,
    /// The request body, fixed when the job is created so every attempt sends the same bytes.
    pub body: String,
    /// When the transition happened (its `at`), Unix ms: deadlines count from here.
    pub occurred_ms: i64,
    /// When the worker first read the transition, Unix ms.
    pub created_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, Unix ms.
    pub next_ms: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// An order for the cart came while this abandonment was in flight: it is not attempted
    /// again, whatever that attempt's answer (kept here, so a crash does not forget it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub superseded: bool,
}

impl Job {
    pub fn key(&self) -> Vec<u8> {
        key(&self.tenant, &self.endpoint, &self.transition_id)
    }
}

/// The `tenant \0 endpoint` part of a job's key.
pub fn endpoint_of(key: &[u8]) -> &[u8] {
    let mut zeros = key
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == 0)
        .map(|(i, _)| i);
    let _tenant_end = zeros.next();
    match zeros.next() {
        Some(end) => &key[..end],
        None => key,
    }
}

/// The key of a job.
pub fn key(tenant: &str, endpoint: &str, transition_id: &str) -> Vec<u8> {
    [
        tenant.as_bytes(),
        endpoint.as_bytes(),
        transition_id.as_bytes(),
    ]
    .join(&0u8)
}

/// A record waiting for Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub dead_letter: bool,
    pub key: String,
    /// `transition id/endpoint/attempt`: the `cartstream-id` header.
    pub id: String,
    pub value: String,
}

/// The fields of a stored [`Job`] that changing it needs; the others are skipped when read.
#[derive(Deserialize)]
struct Standing {
    next_ms: i64,
    #[serde(default)]
    superseded: bool,
}

/// What the worker decided about one job.
pub enum Change {
    /// Insert or update the job, due at its `next_ms`.
    Schedule(Job),
    /// The job ends: removed, and kept among the dead when `dead`.
    Finish { job: Job, dead: bool },
}

/// A dead letter read back from `<prefix>.deliveries.dlq.v1`, to be scheduled again.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub job: Job,
    /// When it was dead-lettered, Unix ms: with the key, which dead letter this is.
    pub dead_ms: i64,
}

/// What [`Store::adopt`] did with the dead letters it was given.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Adopted {
    /// Put back on the schedule, due now, with a fresh attempt budget.
    pub redriven: usize,
    /// The delivery is pending already (a retry, or an earlier redrive not yet finished).
    pub already_pending: usize,
    /// This worker redrove this dead letter (or a later one of the same delivery) before.
    pub already_redriven: usize,
}

/// What a due scan does with one entry (see [`Store::due_scan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Return the job.
    Take,
    /// Pass over it and go on.
    Pass,
    /// End the scan here, before this entry: nothing after it is wanted.
    Stop,
}

pub struct Store {
    db: DB,
    next_outbox: u64,
    pending: u64,
    /// Pending jobs per endpoint (`tenant \0 endpoint`), counted with `pending`: what lets a
    /// scan know that none of the entries it has not looked at yet can be wanted.
    pending_at: HashMap<Vec<u8>, u64, RandomState>,
    /// No live `due` entry sorts before this key: scans seek here instead of wading through
    /// the deletion markers of the jobs already finished (empty: from the start).
    due_floor: Vec<u8>,
    /// The greatest `due` entry deleted so far: where the floor goes when nothing is due.
    due_deleted: Vec<u8>,
    /// No outbox record has a lower sequence.
    outbox_floor: u64,
    /// What a simulated power cut takes (test builds only; see [`crate::volume::Ledger`]).
    ledger: crate::volume::Ledger,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, Error> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        crate::volume::simulate_power_cut(&mut options);
        options.set_max_open_files(crate::state::MAX_OPEN_FILES);
        let families = FAMILIES.map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&options, path, families)?;
        let ledger = crate::volume::Ledger::open(path, db.latest_sequence_number());
        let next_outbox = match db.iterator_cf(cf(&db, OUTBOX), IteratorMode::End).next() {
            Some(item) => be_u64(&item?.0) + 1,
            None => 0,
        };
        let mut pending = 0;
        let mut pending_at: HashMap<Vec<u8>, u64, RandomState> = HashMap::default();
        for item in db.iterator_cf(cf(&db, JOBS), IteratorMode::Start) {
            let (key, _) = item?;
            pending += 1;
            count(&mut pending_at, endpoint_of(&key), 1);
        }
        Ok(Store {
            db,
            next_outbox,
            pending,
            pending_at,
            due_floor: Vec::new(),
            due_deleted: Vec::new(),
            outbox_floor: 0,
            ledger,
        })
    }

    /// Makes every write so far durable: syncs the write-ahead log to disk. Until then a power
    /// cut (not a process crash) may lose the latest writes.
    pub fn sync(&self) -> Result<(), Error> {
        self.db.flush_wal(true)?;
        self.ledger.synced(self.db.latest_sequence_number());
        Ok(())
    }

    /// Deliveries waiting for an attempt (first or retry).
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Deliveries waiting for an attempt at the endpoint `tenant \0 endpoint` (see
    /// [`endpoint_of`]).
    pub fn pending_at(&self, endpoint: &[u8]) -> u64 {
        self.pending_at.get(endpoint).copied().unwrap_or(0)
    }

    /// Whether this transition was already stored for this endpoint.
    pub fn seen(&self, key: &[u8]) -> Result<bool, Error> {
        Ok(self.db.get_pinned_cf(cf(&self.db, SEEN), key)?.is_some())
    }

    pub fn job(&self, key: &[u8]) -> Result<Option<Job>, Error> {
        match self.db.get_pinned_cf(cf(&self.db, JOBS), key)? {
            Some(bytes) => Ok(Some(decode(&bytes, "job")?)),
            None => Ok(None),
        }
    }

    /// Whether the pending job with `key` is marked superseded (an order for its cart came while
    /// its attempt was in flight); `false` when no such job is pending.
    pub fn superseded(&self, key: &[u8]) -> Result<bool, Error> {
        Ok(self.standing(key)?.is_some_and(|job| job.superseded))
    }

    /// What the store needs of a pending job to change it, read without building its strings.
    fn standing(&self, key: &[u8]) -> Result<Option<Standing>, Error> {
        match self.db.get_pinned_cf(cf(&self.db, JOBS), key)? {
            Some(bytes) => Ok(Some(decode(&bytes, "job")?)),
            None => Ok(None),
        }
    }

    /// Applies `changes` and queues `records`, atomically. `seen` marks keys of transitions
    /// handled (stored or ended at once) at `now_ms`.
    pub fn write(
        &mut self,
        changes: Vec<Change>,
        seen: &[Vec<u8>],
        records: Vec<OutboxRecord>,
        now_ms: i64,
    ) -> Result<(), Error> {
        self.write_with(WriteBatch::default(), changes, seen, records, now_ms)
    }

    /// [`Store::write`], adding the changes to `batch`, which may hold others already.
    fn write_with(
        &mut self,
        mut batch: WriteBatch,
        changes: Vec<Change>,
        seen: &[Vec<u8>],
        records: Vec<OutboxRecord>,
        now_ms: i64,
    ) -> Result<(), Error> {
        let mut pending = self.pending as i64;
        // The keys of jobs that began (+1) or ended (-1) pending, counted once the write is in.
        let mut counted: Vec<(Vec<u8>, i64)> = Vec::new();
        for key in seen {
            batch.put_cf(cf(&self.db, SEEN), key, now_ms.to_be_bytes());
        }
        for change in changes {
            let (job, end) = match change {
                Change::Schedule(job) => (job, None),
                Change::Finish { job, dead } => (job, Some(dead)),
            };
            let key = job.key();
            let previous = self.standing(&key)?;
            if let Some(previous) = &previous {
                let due = due_key(previous.next_ms, &key);
                if due > self.due_deleted {
                    self.due_deleted.clone_from(&due);
                }
                batch.delete_cf(cf(&self.db, DUE), due);
            }
            let mut change = 0;
            if previous.is_none() && end.is_none() {
                pending += 1;
                change = 1;
            }
            let cart = cart_key(&job.tenant, &job.endpoint, &job.cart, &key);
            match end {
                None => {
                    batch.put_cf(cf(&self.db, JOBS), &key, encode(&job));
                    let due = due_key(job.next_ms, &key);
                    // Lowered before the write: a floor too low is only slower, never wrong.
                    if due < self.due_floor {
                        self.due_floor.clone_from(&due);
                    }
                    batch.put_cf(cf(&self.db, DUE), due, []);
                    if job.event == "abandoned_candidate" {
                        batch.put_cf(cf(&self.db, CARTS), cart, []);
                    }
                }
                Some(dead) => {
                    if previous.is_some() {
                        pending -= 1;
                        change = -1;
                        batch.delete_cf(cf(&self.db, JOBS), &key);
                        batch.delete_cf(cf(&self.db, CARTS), cart);
                    }
                    if dead {
                        batch.put_cf(cf(&self.db, DEAD), &key, encode(&job));
                    }
                }
            }
            if change != 0 {
                counted.push((key, change));
            }
        }
        let mut sequence = self.next_outbox;
        for record in &records {
            batch.put_cf(cf(&self.db, OUTBOX), sequence.to_be_bytes(), encode(record));
            sequence += 1;
        }
        self.db.write(batch)?;
        self.ledger.applied(self.db.latest_sequence_number());
        self.next_outbox = sequence;
        self.pending = pending.max(0) as u64;
        for (key, change) in counted {
            count(&mut self.pending_at, endpoint_of(&key), change);
        }
        Ok(())
    }

    /// Up to `limit` jobs due by `now_ms`, earliest first, skipping those `skip` rejects; at
    /// most `scan` entries (and never more than `MAX_DUE_SCAN`) are looked at, so jobs waiting
    /// behind a blocked endpoint cost a bounded scan.
    pub fn due(
        &mut self,
        now_ms: i64,
        limit: usize,
        scan: usize,
        mut skip: impl FnMut(&[u8]) -> bool,
    ) -> Result<Vec<Job>, Error> {
        self.due_scan(now_ms, limit, scan, |key, _| match skip(key) {
            true => Visit::Pass,
            false => Visit::Take,
        })
    }

    /// [`Store::due`], where `visit` decides about each entry given its job's key and the
    /// number of pending jobs at that job's endpoint ([`Store::pending_at`]), and may end the
    /// scan early.
    pub fn due_scan(
        &mut self,
        now_ms: i64,
        limit: usize,
        scan: usize,
        mut visit: impl FnMut(&[u8], u64) -> Visit,
    ) -> Result<Vec<Job>, Error> {
        let mut jobs = Vec::new();
        let mut first = None;
        let scan = scan.min(MAX_DUE_SCAN);
        let entries = self
            .db
            .iterator_cf(
                cf(&self.db, DUE),
                IteratorMode::From(&self.due_floor, Direction::Forward),
            )
            .take(scan);
        for item in entries {
            let (due, _) = item?;
            if first.is_none() {
                first = Some(due.to_vec());
            }
            if due.len() < 8 || be_u64(&due[..8]) as i64 > now_ms || jobs.len() >= limit {
                break;
            }
            let key = &due[8..];
            let pending_at = self.pending_at(endpoint_of(key));
            match visit(key, pending_at) {
                Visit::Take => {}
                Visit::Pass => continue,
                Visit::Stop => break,
            }
            if let Some(job) = self.job(key)? {
                jobs.push(job);
            }
        }
        // A scan that looked at nothing learned nothing about the floor.
        if scan > 0 {
            self.raise_due_floor(first);
        }
        Ok(jobs)
    }

    /// When the earliest pending job is due.
    pub fn next_due(&mut self) -> Result<Option<i64>, Error> {
        let first = match self
            .db
            .iterator_cf(
                cf(&self.db, DUE),
                IteratorMode::From(&self.due_floor, Direction::Forward),
            )
            .next()
        {
            Some(item) => Some(item?.0.to_vec()),
            None => None,
        };
        let next = first.as_deref().map(|due| be_u64(due) as i64);
        self.raise_due_floor(first);
        Ok(next)
    }

    /// After a scan from the floor found `first` (or nothing): nothing live sorts before it.
    fn raise_due_floor(&mut self, first: Option<Vec<u8>>) {
        match first {
            Some(first) => self.due_floor = first,
            // Nothing is due at all: every entry deleted so far is behind.
            None => self.due_floor.clone_from(&self.due_deleted),
        }
    }

    /// The pending abandonments of `cart` for an endpoint.
    pub fn pending_abandonments(
        &self,
        tenant: &str,
        endpoint: &str,
        cart: &str,
    ) -> Result<Vec<Job>, Error> {
        let prefix = [tenant.as_bytes(), endpoint.as_bytes(), cart.as_bytes(), b""].join(&0u8);
        let mut jobs = Vec::new();
        let iter = self.db.iterator_cf(
            cf(&self.db, CARTS),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in iter {
            let (entry, _) = item?;
            let Some(key) = entry.strip_prefix(prefix.as_slice()) else {
                break;
            };
            if let Some(job) = self.job(key)? {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }

    /// Pending jobs that have failed at least once, up to `limit`.
    pub fn failed(&self, limit: usize) -> Result<Vec<Job>, Error> {
        let mut jobs = Vec::new();
        for item in self.db.iterator_cf(cf(&self.db, JOBS), IteratorMode::Start) {
            let (_, value) = item?;
            let job: Job = decode(&value, "job")?;
            if job.attempts > 0 {
                jobs.push(job);
                if jobs.len() >= limit {
                    break;
                }
            }
        }
        Ok(jobs)
    }

    /// Dead-lettered jobs, up to `limit`.
    pub fn dead(&self, limit: usize) -> Result<Vec<Job>, Error> {
        let mut jobs = Vec::new();
        for item in self
            .db
            .iterator_cf(cf(&self.db, DEAD), IteratorMode::Start)
            .take(limit)
        {
            let (_, value) = item?;
            jobs.push(decode(&value, "dead job")?);
        }
        Ok(jobs)
    }

    /// Moves the dead-lettered job with `key` back to pending, due at `now_ms`, with a fresh
    /// attempt budget, and marks every dead letter of it so far as redriven. Whether it was
    /// there.
    fn redrive(&mut self, key: &[u8], now_ms: i64) -> Result<bool, Error> {
        let Some(bytes) = self.db.get_cf(cf(&self.db, DEAD), key)? else {
            return Ok(false);
        };
        let job: Job = decode(&bytes, "dead job")?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf(&self.db, DEAD), key);
        batch.put_cf(cf(&self.db, REDRIVEN), key, now_ms.to_be_bytes());
        let change = Change::Schedule(fresh(job, now_ms));
        self.write_with(batch, vec![change], &[], Vec::new(), now_ms)?;
        Ok(true)
    }

    /// Schedules dead letters read back from the dead-letter topic, due at `now_ms` with a
    /// fresh attempt budget — except those pending already and those this worker redrove
    /// before — in one write.
    pub fn adopt(&mut self, letters: Vec<DeadLetter>, now_ms: i64) -> Result<Adopted, Error> {
        let mut adopted = Adopted::default();
        let mut batch = WriteBatch::default();
        let mut changes = Vec::new();
        let mut scheduled = std::collections::HashSet::new();
        for DeadLetter { job, dead_ms } in letters {
            let key = job.key();
            if scheduled.contains(&key) || self.job(&key)?.is_some() {
                adopted.already_pending += 1;
                continue;
            }
            let redriven_until = self.db.get_pinned_cf(cf(&self.db, REDRIVEN), &key)?;
            if redriven_until.is_some_and(|t| be_u64(&t) as i64 >= dead_ms) {
                adopted.already_redriven += 1;
                continue;
            }
            batch.delete_cf(cf(&self.db, DEAD), &key);
            batch.put_cf(cf(&self.db, REDRIVEN), &key, dead_ms.to_be_bytes());
            changes.push(Change::Schedule(fresh(job, now_ms)));
            scheduled.insert(key);
            adopted.redriven += 1;
        }
        self.write_with(batch, changes, &[], Vec::new(), now_ms)?;
        Ok(adopted)
    }

    /// Schedules `jobs` again (a replay), due at `now_ms` with a fresh attempt budget, except
    /// those pending already, in one write: how many were scheduled, and how many were pending.
    pub fn replay(&mut self, jobs: Vec<Job>, now_ms: i64) -> Result<(usize, usize), Error> {
        let (mut changes, mut pending) = (Vec::new(), 0);
        let mut scheduled = std::collections::HashSet::new();
        for job in jobs {
            let key = job.key();
            if scheduled.contains(&key) || self.job(&key)?.is_some() {
                pending += 1;
                continue;
            }
            scheduled.insert(key);
            changes.push(Change::Schedule(fresh(job, now_ms)));
        }
        let replayed = changes.len();
        self.write(changes, &[], Vec::new(), now_ms)?;
        Ok((replayed, pending))
    }

    /// Makes a pending job due at `now_ms` (an operator's "retry now"). Whether it exists.
    pub fn retry_now(&mut self, key: &[u8], now_ms: i64) -> Result<bool, Error> {
        if let Some(mut job) = self.job(key)? {
            job.next_ms = now_ms;
            self.write(vec![Change::Schedule(job)], &[], Vec::new(), now_ms)?;
            return Ok(true);
        }
        self.redrive(key, now_ms)
    }

    pub fn disable(&mut self, tenant: &str, endpoint: &str, now_ms: i64) -> Result<(), Error> {
        let key = [tenant.as_bytes(), endpoint.as_bytes()].join(&0u8);
        self.db
            .put_cf(cf(&self.db, DISABLED), key, now_ms.to_be_bytes())?;
        Ok(())
    }

    pub fn enable(&mut self, tenant: &str, endpoint: &str) -> Result<(), Error> {
        let key = [tenant.as_bytes(), endpoint.as_bytes()].join(&0u8);
        self.db.delete_cf(cf(&self.db, DISABLED), key)?;
        Ok(())
    }

    /// Every disabled endpoint as `(tenant, endpoint)`.
    pub fn disabled(&self) -> Result<Vec<(String, String)>, Error> {
        let mut endpoints = Vec::new();
        for item in self
            .db
            .iterator_cf(cf(&self.db, DISABLED), IteratorMode::Start)
        {
            let (key, _) = item?;
            let mut parts = key.splitn(2, |b| *b == 0);
            let tenant = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let endpoint = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            endpoints.push((tenant, endpoint));
        }
        Ok(endpoints)
    }

    /// Up to `limit` records waiting for Kafka, oldest first, with their sequence numbers.
    pub fn outbox(&mut self, limit: usize) -> Result<Vec<(u64, OutboxRecord)>, Error> {
        let mut records = Vec::new();
        let floor = self.outbox_floor.to_be_bytes();
        for item in self
            .db
            .iterator_cf(
                cf(&self.db, OUTBOX),
                IteratorMode::From(&floor, Direction::Forward),
            )
            .take(limit)
        {
            let (key, value) = item?;
            records.push((be_u64(&key), decode(&value, "outbox record")?));
        }
        // Nothing waits below the first record found; with none, below the next one written.
        self.outbox_floor = records.first().map_or(self.next_outbox, |r| r.0);
        Ok(records)
    }

    pub fn outbox_len(&self) -> u64 {
        self.db
            .property_int_value_cf(cf(&self.db, OUTBOX), "rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Drops records Kafka acknowledged.
    pub fn acknowledge(&mut self, sequences: &[u64]) -> Result<(), Error> {
        let mut batch = WriteBatch::default();
        for sequence in sequences {
            batch.delete_cf(cf(&self.db, OUTBOX), sequence.to_be_bytes());
        }
        self.db.write(batch)?;
        self.ledger.applied(self.db.latest_sequence_number());
        Ok(())
    }

    /// Forgets `seen` markers older than `before_ms`: a transition read again after that is
    /// delivered again (receivers de-duplicate on `webhook-id`). At most `limit` per call.
    pub fn forget_seen(&mut self, before_ms: i64, limit: usize) -> Result<usize, Error> {
        let mut batch = WriteBatch::default();
        let mut count = 0;
        for item in self.db.iterator_cf(cf(&self.db, SEEN), IteratorMode::Start) {
            let (key, value) = item?;
            if value.len() == 8 && (be_u64(&value) as i64) < before_ms {
                batch.delete_cf(cf(&self.db, SEEN), key);
                count += 1;
                if count >= limit {
                    break;
                }
            }
        }
        self.db.write(batch)?;
        self.ledger.applied(self.db.latest_sequence_number());
        Ok(count)
    }
}

/// A job starting over: due at `now_ms`, no attempts made, its deadline counting from now.
fn fresh(mut job: Job, now_ms: i64) -> Job {
    job.attempts = 0;
    job.next_ms = now_ms;
    job.occurred_ms = now_ms;
    job.last_status = None;
    job.last_error = None;
    job.superseded = false;
    job
}

/// Adds `change` to the count of `endpoint`'s pending jobs (never below zero).
fn count(pending_at: &mut HashMap<Vec<u8>, u64, RandomState>, endpoint: &[u8], change: i64) {
    match pending_at.get_mut(endpoint) {
        Some(n) => *n = n.saturating_add_signed(change),
        None if change > 0 => {
            pending_at.insert(endpoint.to_vec(), change as u64);
        }
        None => {}
    }
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .expect("every column family is created at open")
}

fn due_key(next_ms: i64, key: &[u8]) -> Vec<u8> {
    let mut due = (next_ms.max(0) as u64).to_be_bytes().to_vec();
    due.extend_from_slice(key);
    due
}

fn cart_key(tenant: &str, endpoint: &str, cart: &str, key: &[u8]) -> Vec<u8> {
    let mut entry = [tenant.as_bytes(), endpoint.as_bytes(), cart.as_bytes(), b""].join(&0u8);
    entry.extend_from_slice(key);
    entry
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(buf)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain structs serialize")
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &'static str) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt { what, source })
}

#[cfg(test)]
mod tests;
