//! Key layout of the state store. Every multi-part key joins its parts with a 0 byte (tenant ids,
//! cart keys and tokens never contain one); numbers are big-endian so byte order is time order.

/// `carts`: one record per (tenant, cart).
pub fn cart(tenant: &str, cart: &str) -> Vec<u8> {
    join(&[tenant.as_bytes(), cart.as_bytes()])
}

/// The tenant and cart of a `carts` key.
pub fn parse_cart(key: &[u8]) -> Option<(&str, &str)> {
    let mut parts = key.splitn(2, |b| *b == 0);
    let tenant = std::str::from_utf8(parts.next()?).ok()?;
    let cart = std::str::from_utf8(parts.next()?).ok()?;
    Some((tenant, cart))
}

/// `dedup`: one marker per (tenant, provider, delivery id): the same id from two platforms of one
/// tenant names two deliveries.
pub fn delivery(tenant: &str, provider: &str, delivery_id: &str) -> Vec<u8> {
    join(&[
        tenant.as_bytes(),
        provider.as_bytes(),
        delivery_id.as_bytes(),
    ])
}

/// `index`: correlation ids and contacts that lead to a cart: `tenant\0kind\0value`.
pub fn alias(tenant: &str, kind: AliasKind, value: &str) -> Vec<u8> {
    join(&[tenant.as_bytes(), kind.tag(), value.as_bytes()])
}

/// `timers`: `deadline_ms (8 bytes BE) tenant\0cart`, so a range scan from the start yields the
/// earliest deadlines first.
pub fn timer(deadline_ms: i64, tenant: &str, cart: &str) -> Vec<u8> {
    let mut key = (deadline_ms.max(0) as u64).to_be_bytes().to_vec();
    key.extend_from_slice(&join(&[tenant.as_bytes(), cart.as_bytes()]));
    key
}

/// The deadline a `timers` key (or any key sharing its first 8 bytes) starts with.
pub fn timer_deadline(key: &[u8]) -> Option<i64> {
    Some(u64::from_be_bytes(key.get(..8)?.try_into().ok()?) as i64)
}

/// The parts of a `timers` key.
pub fn parse_timer(key: &[u8]) -> Option<(i64, &str, &str)> {
    let (deadline, rest) = key.split_at_checked(8)?;
    let deadline = u64::from_be_bytes(deadline.try_into().ok()?) as i64;
    let mut parts = rest.splitn(2, |b| *b == 0);
    let tenant = std::str::from_utf8(parts.next()?).ok()?;
    let cart = std::str::from_utf8(parts.next()?).ok()?;
    Some((deadline, tenant, cart))
}

/// `outbox`: records waiting for Kafka's acknowledgement, in the order they were written.
pub fn outbox(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

/// `meta`: the next Kafka offset to consume, the next outbox sequence, the watermark (latest
/// arrival time applied) and the carts by phase.
pub const NEXT_OFFSET: &[u8] = b"next_offset";
pub const NEXT_OUTBOX: &[u8] = b"next_outbox";
pub const WATERMARK: &[u8] = b"watermark";
pub const COUNTS: &[u8] = b"counts";

/// `expiry` tags: closed carts and de-duplication markers, each ordered by time.
pub const EXPIRY_CART: u8 = b'c';
pub const EXPIRY_DEDUP: u8 = b'd';

/// `expiry`: `c closed_at_ms (8 bytes BE) tenant\0cart` — terminal carts by closing time.
pub fn expiry_cart(closed_ms: i64, tenant: &str, cart: &str) -> Vec<u8> {
    let mut key = vec![EXPIRY_CART];
    key.extend_from_slice(&timer(closed_ms, tenant, cart));
    key
}

/// The parts of an `expiry_cart` key; `None` past the carts (at the markers).
pub fn parse_expiry_cart(key: &[u8]) -> Option<(i64, &str, &str)> {
    let (&tag, rest) = key.split_first()?;
    (tag == EXPIRY_CART).then_some(())?;
    parse_timer(rest)
}

/// `expiry`: `d received_ms (8 bytes BE) dedup key` — de-duplication markers by arrival.
pub fn expiry_dedup(received_ms: i64, dedup_key: &[u8]) -> Vec<u8> {
    let mut key = vec![EXPIRY_DEDUP];
    key.extend_from_slice(&(received_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(dedup_key);
    key
}

/// The parts of an `expiry_dedup` key; `None` for any other key.
pub fn parse_expiry_dedup(key: &[u8]) -> Option<(i64, &[u8])> {
    let (&tag, rest) = key.split_first()?;
    (tag == EXPIRY_DEDUP).then_some(())?;
    let (at, dedup_key) = rest.split_at_checked(8)?;
    Some((u64::from_be_bytes(at.try_into().ok()?) as i64, dedup_key))
}

/// What an alias points from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasKind {
    CartToken,
    CheckoutToken,
    Email,
    Phone,
}

impl AliasKind {
    pub const ALL: [AliasKind; 4] = [
        AliasKind::CartToken,
        AliasKind::CheckoutToken,
        AliasKind::Email,
        AliasKind::Phone,
    ];

    /// How the admin API names it.
    pub fn name(self) -> &'static str {
        match self {
            AliasKind::CartToken => "cart_token",
            AliasKind::CheckoutToken => "checkout_token",
            AliasKind::Email => "email",
            AliasKind::Phone => "phone",
        }
    }

    fn tag(self) -> &'static [u8] {
        match self {
            AliasKind::CartToken => b"cart",
            AliasKind::CheckoutToken => b"checkout",
            AliasKind::Email => b"email",
            AliasKind::Phone => b"phone",
        }
    }
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_sort_by_deadline_and_parse_back() {
        let early = timer(1_000, "zeta", "c1");
        let late = timer(2_000, "alpha", "c0");
        assert!(early < late, "byte order is deadline order");
        assert_eq!(parse_timer(&late), Some((2_000, "alpha", "c0")));
    }
}
