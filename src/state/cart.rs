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
