//! `GET /admin/v1/state/carts?tenant=…&by=…&value=…`: a cart as the processor holds it — by its
//! key, or by a cart or checkout token, an e-mail or a phone that leads to it — read from the
//! store of the inbound partition its tenant's records go to. That partition is on one instance at a time: another
//! instance's is answered 409 naming the member of the processors' group that has it.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::Response;

use super::{json, ApiError, Tenants};
use crate::processor::Inspected;
use crate::state::{AliasKind, Kept, Lookup};

/// What a look-up asks for: the tenant, and one way to the cart.
#[derive(Debug, PartialEq, Eq)]
struct Asked {
    tenant: String,
    /// The alias `value` is (`by`), or `None` when it is the cart's key (`by=cart`).
    kind: Option<AliasKind>,
    /// As the processor keeps it.
    value: String,
}

impl Asked {
    fn parse(query: Option<&str>) -> Result<Asked, ApiError> {
        let (mut tenant, mut way, mut value) = (None, None, None);
        for (name, given) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let slot = match &*name {
                "tenant" => &mut tenant,
                "by" => &mut way,
                "value" => &mut value,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "{other:?}: not a parameter of this route (tenant, by, value)"
                    )))
                }
            };
            if slot.replace(given.into_owned()).is_some() {
                return Err(ApiError::BadRequest(format!("{name}: given twice")));
            }
        }
        let required = |name: &str, given: Option<String>| {
            given
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ApiError::BadRequest(format!("{name}: missing")))
        };
        let tenant = required("tenant", tenant)?;
        let way = required("by", way)?;
        let value = required("value", value)?;
        let kind = match AliasKind::ALL.into_iter().find(|k| k.name() == way) {
            Some(kind) => Some(kind),
            None if way == "cart" => None,
            None => {
                return Err(ApiError::BadRequest(format!(
                    "by: one of cart, cart_token, checkout_token, email, phone, not {way:?}"
                )))
            }
        };
        // As the processor keeps them; a value that is not one leads to no cart.
        let value = match kind {
            Some(AliasKind::Email) => {
                crate::providers::normalize::email_address(Some(&value)).unwrap_or(value)
            }
            Some(AliasKind::Phone) => {
                crate::providers::normalize::phone(Some(value), None).unwrap_or_default()
            }
            _ => value,
        };
        Ok(Asked {
            tenant,
            kind,
            value,
        })
    }

    /// How `by` names the way to the cart.
    fn by(&self) -> &'static str {
        self.kind.map_or("cart", AliasKind::name)
    }

    fn lookup(&self) -> Lookup<'_> {
        match self.kind {
            Some(kind) => Lookup::Alias(kind, &self.value),
            None => Lookup::Cart(&self.value),
        }
    }
}

impl Tenants {
    /// `GET /admin/v1/state/carts?tenant=…&by=cart|cart_token|checkout_token|email|phone&value=…`.
    pub(super) async fn inspect_cart(
        &self,
        query: Option<&str>,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let asked = Asked::parse(query)?;
        let partition = self.partition_of(&asked.tenant).await?;
        let inspected = self
            .inspector
            .inspect(partition, &asked.tenant, asked.lookup());
        let (next_offset, found) = match inspected {
            Inspected::Owned { next_offset, found } => (next_offset, found),
            Inspected::NotHere => return Err(self.elsewhere(partition).await),
        };
        let found = found.map_err(|e| {
            ApiError::Unavailable(format!(
                "the store of partition {partition} cannot be read: {}",
                crate::telemetry::error_chain(&e)
            ))
        })?;
        let Some(found) = found else {
            return Err(ApiError::NotFound(format!(
                "cart of tenant {:?} by {} {:?} in partition {partition}",
                asked.tenant,
                asked.by(),
                asked.value
            )));
        };
        Ok(json(
            StatusCode::OK,
            view(&found, partition, next_offset).to_string(),
        ))
    }

    /// The inbound partition `tenant`'s records go to.
    async fn partition_of(&self, tenant: &str) -> Result<i32, ApiError> {
        let (kafka, timeout) = (self.kafka.clone(), self.kafka_timeout);
        let topic = kafka.topics().inbound;
        let counted = tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::BaseConsumer;
            let consumer: BaseConsumer = kafka.client_config().create()?;
            crate::kafka::topic_partitions(&consumer, &topic, timeout).map(|p| p.len())
        })
        .await
        .map_err(|e| ApiError::Unavailable(format!("reading the inbound topic: {e}")))?;
        let partitions = counted.map_err(|e| {
            ApiError::Unavailable(format!(
                "the inbound topic's partitions cannot be read: {e}"
            ))
        })?;
        crate::kafka::partition_of(&self.kafka, tenant.as_bytes(), partitions as i32)
            .map_err(ApiError::Unavailable)
    }

    /// The answer for a partition this instance does not process: 409 naming the member of the
    /// processors' group that does; 503 when none does now.
    async fn elsewhere(&self, partition: i32) -> ApiError {
        let (kafka, timeout) = (self.kafka.clone(), self.kafka_timeout);
        let group = self.processor_group.clone();
        let topic = kafka.topics().inbound;
        let owner = tokio::task::spawn_blocking(move || {
            crate::kafka::group::owner(&kafka, &group, &topic, partition, timeout)
        })
        .await;
        match owner {
            Ok(Ok(Some(owner))) => ApiError::Elsewhere {
                partition,
                owner: serde_json::to_value(&owner).expect("an owner serializes"),
            },
            Ok(Ok(None)) => ApiError::Unavailable(format!(
                "no processor has partition {partition} now (none runs, or the group is rebalancing)"
            )),
            Ok(Err(e)) => ApiError::Unavailable(format!(
                "partition {partition} is not this instance's, and the processors' group cannot be read: {e}"
            )),
            Err(e) => ApiError::Unavailable(format!("reading the processors' group: {e}")),
        }
    }
}

/// A cart as the route answers it.
fn view(found: &Kept, partition: i32, next_offset: Option<i64>) -> serde_json::Value {
    let cart = &found.cart;
    let time = |ms: i64| crate::clock::rfc3339(ms);
    let phase = serde_json::to_value(cart.phase).expect("a phase serializes");
    let deadline = (cart.phase == crate::state::Phase::Active).then(|| time(cart.deadline_ms()));
    let aliases: Vec<_> = found
        .aliases
        .iter()
        .map(|(kind, value)| serde_json::json!({"kind": kind.name(), "value": value}))
        .collect();
    serde_json::json!({
        "tenant": cart.tenant,
        "cart": cart.key,
        "phase": phase,
        "episode": cart.episode,
        "last_activity_at": time(cart.last_activity_ms),
        "inactivity_window_ms": cart.window_ms,
        "next_deadline": deadline,
        "closed_at": cart.closed_at_ms.map(time),
        "aliases": aliases,
        "partition": partition,
        // The offset of the last inbound record the store reflects.
        "offset": next_offset.map(|next| next - 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(query: &str) -> Result<(String, &'static str, String), String> {
        match Asked::parse(Some(query)) {
            Ok(asked) => Ok((asked.tenant.clone(), asked.by(), asked.value)),
            Err(ApiError::BadRequest(why)) => Err(why),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_look_up_names_its_tenant_and_one_way_to_the_cart() {
        let ok = |t: &str, way: &'static str, v: &str| Ok((t.to_string(), way, v.to_string()));
        assert_eq!(
            asked("tenant=acme&by=cart&value=c1"),
            ok("acme", "cart", "c1")
        );
        assert_eq!(
            asked("value=c1&by=cart_token&tenant=acme"),
            ok("acme", "cart_token", "c1")
        );
        assert_eq!(
            asked("tenant=acme&by=checkout_token&value=co-1"),
            ok("acme", "checkout_token", "co-1")
        );
        assert_eq!(
            asked("tenant=acme&by=email&value=Bob%40Example.COM"),
            ok("acme", "email", "bob@example.com"),
            "as the processor keeps it"
        );
        assert_eq!(
            asked("tenant=acme&by=phone&value=%2B1%20502-459-2181"),
            ok("acme", "phone", "+15024592181")
        );
        assert_eq!(
            asked("tenant=acme&by=email&value=nobody"),
            ok("acme", "email", "nobody"),
            "which leads to no cart"
        );
        for (query, said) in [
            ("by=cart&value=c1", "tenant: missing"),
            ("tenant=&by=cart&value=c1", "tenant: missing"),
            ("tenant=acme&value=c1", "by: missing"),
            ("tenant=acme&by=cart", "value: missing"),
            ("tenant=acme&by=cart&value=", "value: missing"),
            ("tenant=acme&by=shop&value=x", "by: one of cart"),
            (
                "tenant=acme&by=cart&value=c1&value=c2",
                "value: given twice",
            ),
            ("tenant=acme&by=cart&value=c1&shop=x", "not a parameter"),
        ] {
            let why = asked(query).unwrap_err();
            assert!(why.contains(said), "{query}: {why}");
        }
    }
}
