//! Garbage collection: carts closed or abandoned past the retention, with the aliases that
//! still lead to them, and de-duplication markers past the window, found through the expiry
//! index, oldest first.

use std::time::Duration;

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{cf, keys, Cart, Collected, Error, Phase, Store};
use super::{CARTS, DEDUP, EXPIRY, INDEX, META};

impl Store {
    /// Deletes carts closed (completed or recovered) or abandoned (and not active again since)
    /// before `now_ms - retention`, with the aliases that still lead to them, and
    /// de-duplication markers older than the window — at most `limit` of each, oldest first,
    /// in one batch. What was staged is committed first.
    pub fn collect_garbage(
        &mut self,
        now_ms: i64,
        retention: Duration,
        limit: usize,
    ) -> Result<Collected, Error> {
        self.commit()?;
        let mut batch = WriteBatch::default();
        let mut collected = Collected::default();
        let expiry = cf(&self.db, EXPIRY);
        let carts_before = now_ms.saturating_sub(retention.as_millis() as i64);
        let markers_before = now_ms.saturating_sub(self.windows.dedup.as_millis() as i64);

        let mode = IteratorMode::From(&[keys::EXPIRY_CART], Direction::Forward);
        for item in self.db.iterator_cf(expiry, mode).take(limit) {
            let (key, _) = item?;
            let Some((closed, tenant, cart_key)) = keys::parse_expiry_cart(&key) else {
                break;
            };
            if closed >= carts_before {
                break;
            }
            batch.delete_cf(expiry, &key);
            let stored = keys::cart(tenant, cart_key);
            if let Some(cart) = self.get_cart(None, tenant, cart_key, &stored)? {
                // The entry still describes the cart: it has not been active, recovered or
                // abandoned again since (each of those wrote an entry of its own).
                let still = match cart.phase {
                    Phase::Abandoned => cart.deadline_ms() == closed,
                    _ => cart.closed_at_ms == Some(closed),
                };
                if still {
                    self.delete_aliases(&mut batch, &cart)?;
                    batch.delete_cf(cf(&self.db, CARTS), &stored);
                    self.counts.change(Some(cart.phase), None);
                    collected.carts += 1;
                }
            }
        }

        let mode = IteratorMode::From(&[keys::EXPIRY_DEDUP], Direction::Forward);
        for item in self.db.iterator_cf(expiry, mode).take(limit) {
            let (key, _) = item?;
            let Some((seen, dedup_key)) = keys::parse_expiry_dedup(&key) else {
                break;
            };
            if seen >= markers_before {
                break;
            }
            batch.delete_cf(expiry, &key);
            batch.delete_cf(cf(&self.db, DEDUP), dedup_key);
            collected.dedup_markers += 1;
        }
        batch.put_cf(cf(&self.db, META), keys::COUNTS, self.counts.encode());
        self.write(batch)?;
        Ok(collected)
    }

    fn delete_aliases(&self, batch: &mut WriteBatch, cart: &Cart) -> Result<(), Error> {
        for (kind, value) in cart.aliases() {
            if let Some((key, _)) = self.alias(None, &cart.tenant, kind, value)? {
                // A contact may have moved on to a newer cart; only this cart's aliases go.
                if key == cart.key {
                    batch.delete_cf(cf(&self.db, INDEX), keys::alias(&cart.tenant, kind, value));
                }
            }
        }
        Ok(())
    }
}
