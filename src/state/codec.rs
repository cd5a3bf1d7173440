//! The stored form of a cart record in the `carts` column family.
//!
//! A cart is written in a compact binary form: a version byte, then the fields in a fixed order,
//! numbers as LEB128 varints, strings length-prefixed. Its tenant and key are not repeated in
//! the value: they are the record's key. Carts written before this form are JSON objects, whose
//! first byte is `{`; they are still read, and are rewritten in the binary form when they next
//! change.

use super::cart::Cart;
use crate::topics::event::{Bucket, Customer, Event, SCHEMA as EVENT_SCHEMA};
use crate::topics::transition::Phase;

/// First byte of a binary cart record (a JSON record starts with `{`).
const BINARY_V1: u8 = 1;

/// The cart's stored value.
pub fn encode(cart: &Cart) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(BINARY_V1);
    out.push(phase_tag(cart.phase));
    put_signed(&mut out, cart.last_activity_ms);
    put_signed(&mut out, cart.window_ms);
    put_varint(&mut out, u64::from(cart.episode));
    match cart.closed_at_ms {
        None => out.push(0),
        Some(at) => {
            out.push(1);
            put_signed(&mut out, at);
        }
    }
    put_event(&mut out, &cart.latest);
    out
}

/// The cart stored under (`tenant`, `key`) as `bytes`, in either stored form; `None` when the
/// bytes are not a cart record.
pub fn decode(tenant: &str, key: &str, bytes: &[u8]) -> Option<Cart> {
    match bytes.first()? {
        b'{' => serde_json::from_slice(bytes).ok(),
        &BINARY_V1 => decode_binary(tenant, key, &bytes[1..]),
        _ => None,
    }
}

fn decode_binary(tenant: &str, key: &str, bytes: &[u8]) -> Option<Cart> {
    let mut r = Reader(bytes);
    let phase = phase_from_tag(r.byte()?)?;
    let last_activity_ms = r.signed()?;
    let window_ms = r.signed()?;
    let episode = u32::try_from(r.varint()?).ok()?;
    let closed_at_ms = match r.byte()? {
        0 => None,
        1 => Some(r.signed()?),
        _ => return None,
    };
    let latest = r.event()?;
    r.0.is_empty().then_some(())?;
    Some(Cart {
        tenant: tenant.to_string(),
        key: key.to_string(),
        phase,
        last_activity_ms,
        window_ms,
        episode,
        latest,
        closed_at_ms,
    })
}

fn phase_tag(phase: Phase) -> u8 {
    match phase {
        Phase::Active => 0,
        Phase::Abandoned => 1,
        Phase::Completed => 2,
        Phase::Recovered => 3,
    }
}

fn phase_from_tag(tag: u8) -> Option<Phase> {
    Some(match tag {
        0 => Phase::Active,
        1 => Phase::Abandoned,
        2 => Phase::Completed,
        3 => Phase::Recovered,
        _ => return None,
    })
}

fn bucket_tag(bucket: Bucket) -> u8 {
    match bucket {
        Bucket::AbandonedCandidate => 0,
        Bucket::OrderCompleted => 1,
        Bucket::Other => 2,
    }
}

fn bucket_from_tag(tag: u8) -> Option<Bucket> {
    Some(match tag {
        0 => Bucket::AbandonedCandidate,
        1 => Bucket::OrderCompleted,
        2 => Bucket::Other,
        _ => return None,
    })
}

/// The event's fields in declaration order. The schema name, nearly always the current one, is
/// written as an absent string when it is.
fn put_event(out: &mut Vec<u8>, event: &Event) {
    let schema = (event.schema != EVENT_SCHEMA).then_some(event.schema.as_str());
    put_optional(out, schema);
    put_optional(out, Some(&event.provider));
    put_optional(out, event.provider_event.as_deref());
    out.push(bucket_tag(event.event_bucket));
    for field in [
        &event.resource_type,
        &event.resource_id,
        &event.cart_token,
        &event.checkout_token,
        &event.order_id,
        &event.customer.name,
        &event.customer.email,
        &event.customer.phone,
        &event.cart_value,
        &event.currency,
    ] {
        put_optional(out, field.as_deref());
    }
    match event.item_count {
        None => out.push(0),
        Some(n) => {
            out.push(1);
            put_varint(out, n);
        }
    }
    put_optional(out, event.recovery_url.as_deref());
    put_optional(out, event.occurred_at.as_deref());
}

/// An optional string: 0 when absent, else its length + 1, then its bytes.
fn put_optional(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(0),
        Some(s) => {
            put_varint(out, s.len() as u64 + 1);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Zigzag, so that small negative numbers stay short too.
fn put_signed(out: &mut Vec<u8>, n: i64) {
    put_varint(out, ((n << 1) ^ (n >> 63)) as u64);
}

/// Reads the binary form front to back; every method is `None` on truncated or invalid input.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn signed(&mut self) -> Option<i64> {
        let n = self.varint()?;
        Some(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    fn optional(&mut self) -> Option<Option<String>> {
        let len = match self.varint()? {
            0 => return Some(None),
            n => usize::try_from(n - 1).ok()?,
        };
        let (s, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(Some(std::str::from_utf8(s).ok()?.to_string()))
    }

    fn event(&mut self) -> Option<Event> {
        let schema = self.optional()?.unwrap_or_else(|| EVENT_SCHEMA.to_string());
        let provider = self.optional()??;
        let provider_event = self.optional()?;
        let event_bucket = bucket_from_tag(self.byte()?)?;
        let resource_type = self.optional()?;
        let resource_id = self.optional()?;
        let cart_token = self.optional()?;
        let checkout_token = self.optional()?;
        let order_id = self.optional()?;
        let customer = Customer {
            name: self.optional()?,
            email: self.optional()?,
            phone: self.optional()?,
        };
        let cart_value = self.optional()?;
        let currency = self.optional()?;
        let item_count = match self.byte()? {
            0 => None,
            1 => Some(self.varint()?),
            _ => return None,
        };
        let recovery_url = self.optional()?;
        let occurred_at = self.optional()?;
        Some(Event {
            schema,
            provider,
            provider_event,
            event_bucket,
            resource_type,
            resource_id,
            cart_token,
            checkout_token,
            order_id,
            customer,
            cart_value,
            currency,
            item_count,
            recovery_url,
            occurred_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_cart() -> Cart {
        let mut latest = Event::new("shopify", Some("checkouts/update"), Bucket::OrderCompleted);
        latest.resource_type = Some("checkout".into());
        latest.resource_id = Some("981".into());
        latest.cart_token = Some("c1".into());
        latest.checkout_token = Some("co-c1".into());
        latest.order_id = Some("1001".into());
        latest.customer = Customer {
            name: Some("Layla Ḥaddād".into()),
            email: Some("layla@example.com".into()),
            phone: Some("+15024592181".into()),
        };
        latest.cart_value = Some("379.69".into());
        latest.currency = Some("SAR".into());
        latest.item_count = Some(u64::MAX);
        latest.recovery_url = Some(format!("https://shop.example/{}", "r".repeat(300)));
        latest.occurred_at = Some("2026-11-02T10:00:00.250Z".into());
        Cart {
            tenant: "acme".into(),
            key: "c1".into(),
            phase: Phase::Recovered,
            last_activity_ms: 1_700_000_000_000,
            window_ms: 15 * 60_000,
            episode: u32::MAX,
            latest,
            closed_at_ms: Some(-5),
        }
    }

    #[test]
    fn a_cart_with_every_field_round_trips() {
        let cart = full_cart();
        assert_eq!(decode("acme", "c1", &encode(&cart)), Some(cart));
    }

    #[test]
    fn a_cart_with_nothing_optional_round_trips() {
        let cart = Cart {
            tenant: "acme".into(),
            key: "".into(),
            phase: Phase::Active,
            last_activity_ms: i64::MIN,
            window_ms: i64::MAX,
            episode: 0,
            latest: Event::new("", None, Bucket::Other),
            closed_at_ms: None,
        };
        assert_eq!(decode("acme", "", &encode(&cart)), Some(cart));
    }

    #[test]
    fn an_unusual_schema_name_is_kept() {
        let mut cart = full_cart();
        cart.latest.schema = "cartstream.event.v0".into();
        assert_eq!(decode("acme", "c1", &encode(&cart)), Some(cart));
    }

    #[test]
    fn a_json_cart_is_read() {
        let cart = full_cart();
        let json = serde_json::to_vec(&cart).unwrap();
        assert_eq!(decode("acme", "c1", &json), Some(cart));
    }

    #[test]
    fn truncated_or_trailing_bytes_are_not_a_cart() {
        let bytes = encode(&full_cart());
        for end in 0..bytes.len() {
            assert_eq!(decode("acme", "c1", &bytes[..end]), None, "cut at {end}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode("acme", "c1", &longer), None);
        assert_eq!(decode("acme", "c1", &[7]), None);
    }
}
