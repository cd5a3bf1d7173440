//! The cart state machine of SPEC §4.3, pure: a cart record and an event (or a timer) in, the
//! new record and the transitions out. The store persists the result; nothing here does I/O.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AliasKind;
use crate::clock::rfc3339;
use crate::topics::event::{Bucket, Customer, Event};
pub use crate::topics::transition::{Phase, Transition, SCHEMA as TRANSITION_SCHEMA};

/// One tenant's cart, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    pub tenant: String,
    pub key: String,
    pub phase: Phase,
    /// Event time of the latest activity, ms since the epoch.
    pub last_activity_ms: i64,
    pub window_ms: i64,
    /// Counts inactivity episodes, so each abandonment has its own transition id.
    pub episode: u32,
    /// What the latest event said about the cart (customer, value, recovery URL, ids).
    pub latest: Event,
    /// When the cart became terminal, for garbage collection.
    pub closed_at_ms: Option<i64>,
}

impl Cart {
    /// When the armed timer is due (only meaningful while active).
    pub fn deadline_ms(&self) -> i64 {
        self.last_activity_ms.saturating_add(self.window_ms)
    }

    /// The correlation ids and contacts that lead to this cart, as last described.
    pub fn aliases(&self) -> impl Iterator<Item = (AliasKind, &str)> {
        let latest = &self.latest;
        [
            (AliasKind::CartToken, &latest.cart_token),
            (AliasKind::CheckoutToken, &latest.checkout_token),
            (AliasKind::Email, &latest.customer.email),
            (AliasKind::Phone, &latest.customer.phone),
        ]
        .into_iter()
        .filter_map(|(kind, value)| Some((kind, value.as_deref()?)))
    }
}

/// The outcome of one step.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub cart: Option<Cart>,
    pub transitions: Vec<Transition>,
}

impl Step {
    /// The cart as it was, no transition.
    fn unchanged(cart: Option<Cart>) -> Self {
        Step {
            cart,
            transitions: vec![],
        }
    }
}

/// Applies cart activity or an order to `cart` (None when the cart is new).
pub fn on_event(
    tenant: &str,
    key: &str,
    cart: Option<Cart>,
    event: &Event,
    at_ms: i64,
    window_ms: i64,
) -> Step {
    match event.event_bucket {
        Bucket::AbandonedCandidate => on_activity(tenant, key, cart, event, at_ms, window_ms),
        Bucket::OrderCompleted => on_order(tenant, key, cart, event, at_ms),
        Bucket::Other => Step::unchanged(cart),
    }
}

fn on_activity(
    tenant: &str,
    key: &str,
    cart: Option<Cart>,
    event: &Event,
    at_ms: i64,
    window_ms: i64,
) -> Step {
    let cart = match cart {
        None => Cart {
            tenant: tenant.to_string(),
            key: key.to_string(),
            phase: Phase::Active,
            last_activity_ms: at_ms,
            window_ms,
            episode: 0,
            latest: event.clone(),
            closed_at_ms: None,
        },
        // Late or out-of-order deliveries, activity after the order, and activity that happened
        // before the abandonment already announced (delivered late) change nothing.
        Some(cart)
            if at_ms <= cart.last_activity_ms
                || cart.phase.is_terminal()
                || (cart.phase == Phase::Abandoned && at_ms <= cart.deadline_ms()) =>
        {
            return Step::unchanged(Some(cart))
        }
        // New activity on an abandoned cart opens a new inactivity episode.
        Some(cart) => Cart {
            phase: Phase::Active,
            last_activity_ms: at_ms,
            window_ms,
            episode: cart.episode + u32::from(cart.phase == Phase::Abandoned),
            latest: merge(&cart.latest, event),
            ..cart
        },
    };
    Step::unchanged(Some(cart))
}

fn on_order(tenant: &str, key: &str, cart: Option<Cart>, event: &Event, at_ms: i64) -> Step {
    let Some(cart) = cart else {
        // An order with no tracked cart: nothing to recover, nothing to complete.
        return Step::default();
    };
    let to = match cart.phase {
        Phase::Active => Phase::Completed,
        Phase::Abandoned => Phase::Recovered,
        Phase::Completed | Phase::Recovered => return Step::unchanged(Some(cart)),
    };
    let latest = merge(&cart.latest, event);
    let transition = transition(
        tenant,
        key,
        &cart,
        to,
        Bucket::OrderCompleted,
        at_ms,
        latest.clone(),
    );
    let cart = Cart {
        phase: to,
        latest,
        closed_at_ms: Some(at_ms),
        ..cart
    };
    Step {
        cart: Some(cart),
        transitions: vec![transition],
    }
}

/// The inactivity timer at `deadline_ms` fired. It counts only if it still is the cart's
/// current deadline (timers are invalidated lazily).
pub fn on_timer(cart: Cart, deadline_ms: i64) -> Step {
    if cart.phase != Phase::Active || cart.deadline_ms() != deadline_ms {
        return Step::unchanged(Some(cart));
    }
    let transition = transition(
        &cart.tenant,
        &cart.key,
        &cart,
        Phase::Abandoned,
        Bucket::AbandonedCandidate,
        deadline_ms,
        cart.latest.clone(),
    );
    Step {
        cart: Some(Cart {
            phase: Phase::Abandoned,
            ..cart
        }),
        transitions: vec![transition],
    }
}

/// The transition a step makes: `cart`, the cart `key` of `tenant`, leaves its phase for `to`
/// at `at_ms`, as `event` last describes it. Its id is the same for the same episode however
/// often the step is replayed.
fn transition(
    tenant: &str,
    key: &str,
    cart: &Cart,
    to: Phase,
    bucket: Bucket,
    at_ms: i64,
    event: Event,
) -> Transition {
    Transition {
        schema: TRANSITION_SCHEMA.to_string(),
        id: transition_id(tenant, key, bucket.as_str(), cart.episode),
        tenant_id: tenant.to_string(),
        cart: key.to_string(),
        from: cart.phase,
        to,
        bucket,
        recovered: to == Phase::Recovered,
        at: rfc3339(at_ms),
        event,
    }
}

/// The newest description of a cart: fields the new event states win, the others are kept.
fn merge(old: &Event, new: &Event) -> Event {
    let pick = |new: &Option<String>, old: &Option<String>| new.clone().or_else(|| old.clone());
    Event {
        cart_token: pick(&new.cart_token, &old.cart_token),
        checkout_token: pick(&new.checkout_token, &old.checkout_token),
        order_id: pick(&new.order_id, &old.order_id),
        cart_value: pick(&new.cart_value, &old.cart_value),
        currency: pick(&new.currency, &old.currency),
        recovery_url: pick(&new.recovery_url, &old.recovery_url),
        item_count: new.item_count.or(old.item_count),
        customer: Customer {
            name: pick(&new.customer.name, &old.customer.name),
            email: pick(&new.customer.email, &old.customer.email),
            phone: pick(&new.customer.phone, &old.customer.phone),
        },
        ..new.clone()
    }
}

/// `sha256(tenant, cart, kind, episode)`, hex: the same cart episode always gets the same id.
pub fn transition_id(tenant: &str, cart: &str, kind: &str, episode: u32) -> String {
    let mut hasher = Sha256::new();
    for part in [
        tenant.as_bytes(),
        cart.as_bytes(),
        kind.as_bytes(),
        &episode.to_be_bytes(),
    ] {
        hasher.update((part.len() as u32).to_be_bytes());
        hasher.update(part);
    }
    hex::encode(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;
    const WINDOW: i64 = 15 * 60_000;

    fn activity() -> Event {
        Event::new(
            "shopify",
            Some("checkouts/update"),
            Bucket::AbandonedCandidate,
        )
    }

    fn order() -> Event {
        Event::new("shopify", Some("orders/create"), Bucket::OrderCompleted)
    }

    /// `transition_id(tenant, cart, kind, episode)` for inputs of every kind, with the value each
    /// must have, computed outside the crate by
    ///
    /// ```sh
    /// python3 -c 'import hashlib,struct,sys; p=[a.encode() for a in sys.argv[1:4]]+[struct.pack(">I",int(sys.argv[4]))]; print(hashlib.sha256(b"".join(struct.pack(">I",len(x))+x for x in p)).hexdigest()[:32])' TENANT CART KIND EPISODE
    /// ```
    ///
    /// (each part preceded by its length as 4 big-endian bytes, the episode as 4 big-endian bytes;
    /// the first 16 bytes of the SHA-256, hex). The first one also by
    /// `printf '\0\0\0\4acme\0\0\0\2c1\0\0\0\23abandoned_candidate\0\0\0\4\0\0\0\0' | sha256sum | cut -c1-32`.
    const TRANSITION_ID_VECTORS: &[(&str, &str, &str, u32, &str)] = &[
        (
            "acme",
            "c1",
            "abandoned_candidate",
            0,
            "fe4b52f091e24d540669fb7758846a5f",
        ),
        (
            "acme",
            "c1",
            "abandoned_candidate",
            1,
            "e91033a72fb881cd4e6e79f76348cee4",
        ),
        (
            "acme",
            "c1",
            "order_completed",
            0,
            "fb3c3f0eeb24d0521a6410dfba6481f4",
        ),
        // The lengths keep parts apart: "a" + "bc" is not "ab" + "c".
        ("a", "bc", "other", 0, "235bab385db29d9afe0d51a0abd811d6"),
        ("ab", "c", "other", 0, "fa4d9294c67dba4056cf900aeb8c7c6e"),
        ("", "", "", 0, "b18bd8fe01a8c7fa271bda0166f26826"),
        // UTF-8 parts: the store "متجر", the cart "سلة-٧" (with an Arabic-Indic seven).
        (
            "\u{645}\u{62a}\u{62c}\u{631}",
            "\u{633}\u{644}\u{629}-\u{667}",
            "abandoned_candidate",
            u32::MAX,
            "057c22b4ff5eeb655500d380fb7400a4",
        ),
        (
            "acme",
            "gid://shopify/Cart/1\u{1f6d2}",
            "order_completed",
            7,
            "248bcd84baed2a1ed208b011bfdc4cd9",
        ),
    ];

    #[test]
    fn transition_ids_match_vectors_computed_outside_the_crate() {
        // Receivers de-duplicate on these ids (the `webhook-id` of every delivery): a change of
        // their derivation re-sends every transition across an upgrade.
        for &(tenant, cart, kind, episode, expected) in TRANSITION_ID_VECTORS {
            assert_eq!(
                transition_id(tenant, cart, kind, episode),
                expected,
                "transition_id({tenant:?}, {cart:?}, {kind:?}, {episode})"
            );
        }
    }

    #[test]
    fn the_state_machine_names_its_transitions_by_tenant_cart_bucket_and_episode() {
        let active = on_event("acme", "c1", None, &activity(), T0, WINDOW);
        let abandoned = on_timer(active.cart.unwrap(), T0 + WINDOW);
        assert_eq!(
            abandoned.transitions[0].id, "fe4b52f091e24d540669fb7758846a5f",
            "acme, c1, abandoned_candidate, episode 0"
        );
        let recovered = on_event(
            "acme",
            "c1",
            abandoned.cart.clone(),
            &order(),
            T0 + 2 * WINDOW,
            WINDOW,
        );
        assert_eq!(
            recovered.transitions[0].id, "fb3c3f0eeb24d0521a6410dfba6481f4",
            "acme, c1, order_completed, episode 0"
        );
        let again = on_event(
            "acme",
            "c1",
            abandoned.cart,
            &activity(),
            T0 + 2 * WINDOW,
            WINDOW,
        );
        let abandoned_again = on_timer(again.cart.unwrap(), T0 + 3 * WINDOW);
        assert_eq!(
            abandoned_again.transitions[0].id, "e91033a72fb881cd4e6e79f76348cee4",
            "acme, c1, abandoned_candidate, episode 1"
        );
    }
}
