//! Firing the inactivity timers: the due keys from the timer index, earliest first; their carts
//! in one sorted multi-get; the abandonments, the carts and the outbox in one batch.

use std::collections::HashMap;

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{cart, cf, codec, keys, outbox, Cart, Error, Phase, Store, Transition};
use super::{CARTS, EXPIRY, OUTBOX, TIMERS};

impl Store {
    /// Fires the inactivity timers due at `now_ms`, earliest first, at most `limit` of them, in
    /// one batch. A timer that no longer matches its cart's deadline is dropped silently.
    ///
    /// [`Store::apply`] fires timers by arrival time on its own; the processor calls this with
    /// the wall clock only when the partition is caught up, so that no record still waiting in
    /// the partition could have cancelled a timer it fires.
    ///
    /// What was staged is committed first.
    pub fn fire_due(&mut self, now_ms: i64, limit: usize) -> Result<Vec<Transition>, Error> {
        self.commit()?;
        let (due, floor) = self.due_timers(now_ms, limit)?;
        let mut carts = self.carts_of(&due)?;
        let mut batch = WriteBatch::default();
        let mut transitions = Vec::new();
        let mut records = Vec::new();
        let timers = cf(&self.db, TIMERS);
        for key in &due {
            let (deadline, tenant, cart_key) =
                keys::parse_timer(key).ok_or(Error::Corrupt { what: "timer" })?;
            batch.delete_cf(timers, key);
            let stored = keys::cart(tenant, cart_key);
            // A cart fired twice in one chunk sees what the first firing made of it.
            let Some(cart) = carts.get_mut(&stored).and_then(Option::take) else {
                continue;
            };
            let step = cart::on_timer(cart, deadline);
            if let (Some(after), false) = (&step.cart, step.transitions.is_empty()) {
                self.counts.change(Some(Phase::Active), Some(after.phase));
                batch.put_cf(cf(&self.db, CARTS), &stored, codec::encode(after));
                // An abandoned cart that is never recovered goes `retention` after it was
                // abandoned, like a closed one after it closed.
                batch.put_cf(
                    cf(&self.db, EXPIRY),
                    keys::expiry_cart(deadline, tenant, cart_key),
                    [],
                );
            }
            carts.insert(stored, step.cart);
            for transition in step.transitions {
                records.push(outbox::Record::transition(&transition));
                transitions.push(transition);
            }
        }
        for (sequence, record) in self.sequence(records) {
            batch.put_cf(
                cf(&self.db, OUTBOX),
                keys::outbox(sequence),
                record.encode(),
            );
        }
        self.write_meta(&mut batch);
        self.write(batch)?;
        // Everything before the first timer left armed is gone (or was never there).
        self.timers_floor = floor.unwrap_or_else(|| {
            // Past every real key (deadlines are below i64::MAX), due never.
            let mut end = i64::MAX.to_be_bytes().to_vec();
            end.push(0xff);
            end
        });
        Ok(transitions)
    }

    /// Whether a timer may be due at `now_ms` all the same: one [`Store::fire_due`] left for
    /// its limit, one armed since, or — before the first firing — any. No armed timer sorts
    /// before the floor, so when even the floor is not due, none is. Reads nothing from disk.
    pub fn may_have_due_timers(&self, now_ms: i64) -> bool {
        keys::timer_deadline(&self.timers_floor).is_none_or(|floor| floor <= now_ms)
    }

    /// The keys of the timers due at `now_ms`, earliest first, at most `limit` of them; and the
    /// first key left armed, if any.
    fn due_timers(&self, now_ms: i64, limit: usize) -> Result<DueTimers, Error> {
        let mut due = Vec::new();
        let mode = IteratorMode::From(&self.timers_floor, Direction::Forward);
        for item in self.db.iterator_cf(cf(&self.db, TIMERS), mode) {
            let (key, _) = item?;
            let deadline = keys::timer_deadline(&key).ok_or(Error::Corrupt { what: "timer" })?;
            if deadline > now_ms || due.len() >= limit {
                return Ok((due, Some(key.to_vec())));
            }
            due.push(key);
        }
        Ok((due, None))
    }

    /// The carts the timer keys `due` name, by stored key (`None`: no such cart), read in one
    /// sorted multi-get rather than one look-up each.
    fn carts_of(&self, due: &[Box<[u8]>]) -> Result<HashMap<Vec<u8>, Option<Cart>>, Error> {
        let mut stored = Vec::with_capacity(due.len());
        for key in due {
            let (_, tenant, cart_key) =
                keys::parse_timer(key).ok_or(Error::Corrupt { what: "timer" })?;
            stored.push(keys::cart(tenant, cart_key));
        }
        stored.sort_unstable();
        stored.dedup();
        let values = self
            .db
            .batched_multi_get_cf(cf(&self.db, CARTS), &stored, true);
        let mut carts = HashMap::with_capacity(stored.len());
        for (key, value) in stored.into_iter().zip(values) {
            let cart = match value? {
                None => None,
                Some(bytes) => {
                    let (tenant, cart_key) =
                        keys::parse_cart(&key).ok_or(Error::Corrupt { what: "cart key" })?;
                    let cart = codec::decode(tenant, cart_key, &bytes)
                        .ok_or(Error::Corrupt { what: "cart" })?;
                    Some(cart)
                }
            };
            carts.insert(key, cart);
        }
        Ok(carts)
    }
}

/// Timer keys due now, and the first key left armed (see [`Store::due_timers`]).
type DueTimers = (Vec<Box<[u8]>>, Option<Vec<u8>>);
