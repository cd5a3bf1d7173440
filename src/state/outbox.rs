//! Records waiting in the store until Kafka acknowledges them. Their ids are deterministic (an
//! event's names its tenant, provider and delivery id; a transition's is the transition id), so
//! producing one again after a crash repeats the same record.

use crate::topics::event::{self, Event};
use crate::topics::transition::Transition;

/// Which topic a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<prefix>.events.v1`
    Event,
    /// `<prefix>.transitions.v1`
    Transition,
}

/// One record for Kafka: key (the tenant id), its id, and the JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub key: String,
    pub id: String,
    pub value: Vec<u8>,
}

impl Record {
    /// The normalized event of one distinct delivery, with its tenant and delivery id.
    pub fn event(tenant: &str, delivery_id: &str, event: &Event) -> Self {
        let record = event::Record {
            tenant_id: tenant.to_string(),
            delivery_id: delivery_id.to_string(),
            event: event.clone(),
        };
        Record {
            kind: Kind::Event,
            key: tenant.to_string(),
            id: record.id(),
            value: record.encode(),
        }
    }

    pub fn transition(transition: &Transition) -> Self {
        Record {
            kind: Kind::Transition,
            key: transition.tenant_id.clone(),
            id: transition.id.clone(),
            value: transition.encode(),
        }
    }

    /// `kind (1) | key length (4, BE) | key | id length (4, BE) | id | value`.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(9 + self.key.len() + self.id.len() + self.value.len());
        bytes.push(match self.kind {
            Kind::Event => 0,
            Kind::Transition => 1,
        });
        for part in [self.key.as_bytes(), self.id.as_bytes()] {
            bytes.extend_from_slice(&(part.len() as u32).to_be_bytes());
            bytes.extend_from_slice(part);
        }
        bytes.extend_from_slice(&self.value);
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&kind, mut rest) = bytes.split_first()?;
        let kind = match kind {
            0 => Kind::Event,
            1 => Kind::Transition,
            _ => return None,
        };
        let mut parts = Vec::with_capacity(2);
        for _ in 0..2 {
            let (len, tail) = rest.split_at_checked(4)?;
            let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
            let (part, tail) = tail.split_at_checked(len)?;
            parts.push(String::from_utf8(part.to_vec()).ok()?);
            rest = tail;
        }
        let id = parts.pop()?;
        let key = parts.pop()?;
        Some(Record {
            kind,
            key,
            id,
            value: rest.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::event::Bucket;

    #[test]
    fn two_platforms_sending_the_same_delivery_id_give_events_different_ids() {
        let event = |provider| Event::new(provider, None, Bucket::Other);
        let shopify = Record::event("acme", "1001", &event("shopify"));
        let salla = Record::event("acme", "1001", &event("salla"));
        assert_ne!(shopify.id, salla.id);
        assert_eq!(shopify.id, "acme/shopify/1001");
        assert_eq!(salla.id, "acme/salla/1001");
        let globex = Record::event("globex", "1001", &event("shopify"));
        assert_ne!(globex.id, shopify.id);
    }
}
