//! A normalized event on `<prefix>.events.v1` (`schemas/event.v1.json`): one per distinct
//! delivery, written by the processor. Its shape is [`Event`] (SPEC §4.1): one shape for every
//! platform, so that everything downstream — cart state, data teams' warehouses — handles a
//! single format. Every provider maps its payload into it by the rules of
//! `providers::normalize`; on the topic it also names its tenant and the delivery id that
//! de-duplicates it.

use serde::{Deserialize, Serialize};

/// The schema name and version every normalized event carries.
pub const SCHEMA: &str = "cartstream.event.v1";

/// What an event means for a cart (SPEC §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// A cart or checkout started or changed and is not completed.
    AbandonedCandidate,
    /// Payment confirmed or order placed.
    OrderCompleted,
    /// Stored and counted; no customer action.
    Other,
}

impl Bucket {
    /// The wire name, also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::AbandonedCandidate => "abandoned_candidate",
            Bucket::OrderCompleted => "order_completed",
            Bucket::Other => "other",
        }
    }
}

/// The customer, as far as the payload names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub name: Option<String>,
    pub email: Option<String>,
    /// E.164 (`+15024592181`) when the country is known, else as the platform sent it.
    pub phone: Option<String>,
}

/// One inbound delivery in the common shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub schema: String,
    pub provider: String,
    /// The provider's own event name (`checkouts/create`, `abandoned.cart`, …).
    pub provider_event: Option<String>,
    pub event_bucket: Bucket,
    /// `cart`, `checkout`, `order`, … — the kind of resource the payload describes.
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub cart_token: Option<String>,
    pub checkout_token: Option<String>,
    pub order_id: Option<String>,
    pub customer: Customer,
    /// The cart or order total as a decimal string (`"379.69"`), never a float.
    pub cart_value: Option<String>,
    /// ISO 4217 code of `cart_value`.
    pub currency: Option<String>,
    pub item_count: Option<u64>,
    pub recovery_url: Option<String>,
    /// When the platform says the event happened, RFC 3339 in UTC.
    pub occurred_at: Option<String>,
}

impl Event {
    /// An event with nothing known but its provider, name and bucket.
    pub fn new(provider: &str, provider_event: Option<&str>, bucket: Bucket) -> Self {
        Event {
            schema: SCHEMA.to_string(),
            provider: provider.to_string(),
            provider_event: provider_event.map(str::to_string),
            event_bucket: bucket,
            resource_type: None,
            resource_id: None,
            cart_token: None,
            checkout_token: None,
            order_id: None,
            customer: Customer::default(),
            cart_value: None,
            currency: None,
            item_count: None,
            recovery_url: None,
            occurred_at: None,
        }
    }
}

/// One record of `<prefix>.events.v1`: key = the tenant id, id = [`Record::id`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub tenant_id: String,
    pub delivery_id: String,
    #[serde(flatten)]
    pub event: Event,
}

impl Record {
    /// The record's `cartstream-id` header: `tenant/provider/delivery id`. Two platforms may
    /// send the same delivery id (as may two tenants' stores), so the id names all three, as
    /// the processor's de-duplication key does; tenant ids and provider slugs hold no `/`.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}",
            self.tenant_id, self.event.provider, self.delivery_id
        )
    }

    /// The record's JSON value, its keys in alphabetical order as events have always been
    /// written.
    pub fn encode(&self) -> Vec<u8> {
        let event = &self.event;
        let customer = &event.customer;
        let alphabetical = Alphabetical {
            cart_token: event.cart_token.as_deref(),
            cart_value: event.cart_value.as_deref(),
            checkout_token: event.checkout_token.as_deref(),
            currency: event.currency.as_deref(),
            customer: AlphabeticalCustomer {
                email: customer.email.as_deref(),
                name: customer.name.as_deref(),
                phone: customer.phone.as_deref(),
            },
            delivery_id: &self.delivery_id,
            event_bucket: event.event_bucket,
            item_count: event.item_count,
            occurred_at: event.occurred_at.as_deref(),
            order_id: event.order_id.as_deref(),
            provider: &event.provider,
            provider_event: event.provider_event.as_deref(),
            recovery_url: event.recovery_url.as_deref(),
            resource_id: event.resource_id.as_deref(),
            resource_type: event.resource_type.as_deref(),
            schema: &event.schema,
            tenant_id: &self.tenant_id,
        };
        serde_json::to_vec(&alphabetical).expect("an event always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A [`Record`]'s members in alphabetical order, borrowed: serialized directly, it gives the
/// bytes a sorted JSON map of the record gives, without building one.
#[derive(Serialize)]
struct Alphabetical<'a> {
    cart_token: Option<&'a str>,
    cart_value: Option<&'a str>,
    checkout_token: Option<&'a str>,
    currency: Option<&'a str>,
    customer: AlphabeticalCustomer<'a>,
    delivery_id: &'a str,
    event_bucket: Bucket,
    item_count: Option<u64>,
    occurred_at: Option<&'a str>,
    order_id: Option<&'a str>,
    provider: &'a str,
    provider_event: Option<&'a str>,
    recovery_url: Option<&'a str>,
    resource_id: Option<&'a str>,
    resource_type: Option<&'a str>,
    schema: &'a str,
    tenant_id: &'a str,
}

/// A [`Customer`]'s members in alphabetical order.
#[derive(Serialize)]
struct AlphabeticalCustomer<'a> {
    email: Option<&'a str>,
    name: Option<&'a str>,
    phone: Option<&'a str>,
}

/// An event with every field stated, for the records' tests.
#[cfg(test)]
pub(crate) fn sample() -> Event {
    let mut event = Event::new(
        "shopify",
        Some("checkouts/update"),
        Bucket::AbandonedCandidate,
    );
    event.resource_type = Some("checkout".into());
    event.resource_id = Some("981".into());
    event.checkout_token = Some("chk-1".into());
    event.customer = Customer {
        name: Some("Layla".into()),
        email: Some("layla@example.com".into()),
        phone: Some("+15024592181".into()),
    };
    event.cart_value = Some("379.69".into());
    event.currency = Some("SAR".into());
    event.item_count = Some(3);
    event.recovery_url = Some("https://shop.example/recover/chk-1".into());
    event.occurred_at = Some("2026-11-02T10:00:00.250Z".into());
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_record_round_trips_and_matches_its_schema() {
        for event in [sample(), Event::new("zid", None, Bucket::Other)] {
            let record = Record {
                tenant_id: "acme".into(),
                delivery_id: "wh-1".into(),
                event,
            };
            let bytes = record.encode();
            super::super::assert_matches_schema("event.v1.json", &bytes);
            assert_eq!(Record::decode(&bytes).unwrap(), record);
        }
    }

    #[test]
    fn records_are_written_with_their_keys_in_alphabetical_order() {
        let mut odd = sample();
        odd.customer.name = Some("Zo\u{eb} \"Z\" \u{1f6d2}\n".into());
        odd.item_count = Some(u64::MAX);
        let empty = Event::new("zid", None, Bucket::Other);
        for event in [sample(), odd, empty] {
            let record = Record {
                tenant_id: "acme".into(),
                delivery_id: "wh-\u{1}".into(),
                event,
            };
            let sorted = serde_json::to_vec(&serde_json::to_value(&record).unwrap()).unwrap();
            assert_eq!(record.encode(), sorted);
        }
    }

    #[test]
    fn the_cartstream_id_is_tenant_provider_and_delivery_id_joined_by_slashes() {
        // Consumers of the events topic de-duplicate on this header: its shape is a contract.
        for (tenant, delivery, expected) in [
            ("acme", "wh-1", "acme/shopify/wh-1"),
            (
                "acme",
                "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                "acme/shopify/sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            ),
            ("\u{645}\u{62a}\u{62c}\u{631}", "a/b", "\u{645}\u{62a}\u{62c}\u{631}/shopify/a/b"),
        ] {
            let record = Record {
                tenant_id: tenant.into(),
                delivery_id: delivery.into(),
                event: sample(),
            };
            assert_eq!(record.id(), expected);
        }
    }

    #[test]
    fn an_event_record_is_the_event_with_its_tenant_and_delivery_id() {
        let record = Record {
            tenant_id: "acme".into(),
            delivery_id: "wh-1".into(),
            event: sample(),
        };
        let mut expected = serde_json::to_value(sample()).unwrap();
        expected["tenant_id"] = "acme".into();
        expected["delivery_id"] = "wh-1".into();
        assert_eq!(record.encode(), serde_json::to_vec(&expected).unwrap());
    }
}
