//! Records staged in memory between two commits of a [`super::Store`]: the last write to each
//! key, by family, which later records read back; written at the commit in one `WriteBatch`,
//! each family's keys in order.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use rocksdb::DBPinnableSlice;

use super::{CARTS, DEDUP, EXPIRY, INDEX, OUTBOX, TIMERS};

/// One key's last write: its value, or `None` when deleted.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// The effects of records staged since the last commit, written at the next one.
#[derive(Default)]
pub struct Pending {
    /// The last write to each key (`None`: deleted), by [`Staged`] family.
    writes: [HashMap<Vec<u8>, Option<Vec<u8>>, RandomState>; 6],
    /// The offset after the last record staged.
    pub next_offset: Option<i64>,
}

/// The families records write to (the offset, watermark, outbox sequence and counts are
/// written at the commit, as they stand then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staged {
    Carts = 0,
    Dedup = 1,
    Index = 2,
    Timers = 3,
    Expiry = 4,
    Outbox = 5,
}

impl Staged {
    pub const ALL: [Staged; 6] = [
        Staged::Carts,
        Staged::Dedup,
        Staged::Index,
        Staged::Timers,
        Staged::Expiry,
        Staged::Outbox,
    ];

    pub fn family(self) -> &'static str {
        match self {
            Staged::Carts => CARTS,
            Staged::Dedup => DEDUP,
            Staged::Index => INDEX,
            Staged::Timers => TIMERS,
            Staged::Expiry => EXPIRY,
            Staged::Outbox => OUTBOX,
        }
    }
}

impl Pending {
    pub fn put(&mut self, family: Staged, key: Vec<u8>, value: Vec<u8>) {
        self.writes[family as usize].insert(key, Some(value));
    }

    pub fn delete(&mut self, family: Staged, key: Vec<u8>) {
        self.writes[family as usize].insert(key, None);
    }

    /// What was staged for `key` in `family`: `Some(None)` when it was deleted, `None` when
    /// nothing was staged for it.
    pub fn get(&self, family: Staged, key: &[u8]) -> Option<Option<&[u8]>> {
        self.writes[family as usize]
            .get(key)
            .map(|value| value.as_deref())
    }

    /// Every family's writes, each family's in key order: RocksDB inserts a batch's keys into
    /// its memtables fastest in order, with the previous insert's position as the hint.
    pub fn into_sorted(self) -> impl Iterator<Item = (Staged, Vec<Write>)> {
        Staged::ALL
            .into_iter()
            .zip(self.writes)
            .map(|(family, writes)| {
                let mut writes: Vec<_> = writes.into_iter().collect();
                writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                (family, writes)
            })
    }
}

/// A value read through the staged writes: staged, or stored.
pub enum Bytes<'a> {
    Staged(&'a [u8]),
    Stored(DBPinnableSlice<'a>),
}

impl std::ops::Deref for Bytes<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Staged(bytes) => bytes,
            Bytes::Stored(slice) => slice,
        }
    }
}
