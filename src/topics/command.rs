//! An operator action on the delivery workers, on `<prefix>.delivery-commands.v1`
//! (`schemas/delivery_command.v1.json`): asked through any instance's admin API and carried out
//! by the worker it concerns, wherever that runs.
//!
//! The topic has one partition, so every worker reads every record in the same order:
//! - a **retry** concerns the one worker whose store holds the delivery; every worker answers
//!   whether it does;
//! - a **redrive** or a **replay** is carried out by one worker: each one reading it writes a
//!   **claim**, and the first claim in the topic wins — every worker sees the same first;
//! - an **answer** tells the instance that asked what became of it.

use serde::{Deserialize, Serialize};

/// The schema name every record carries.
pub const SCHEMA: &str = "cartstream.delivery_command.v1";

/// One record of the topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub schema: String,
    /// This record's id (a UUID); answers and claims name the command's.
    pub id: String,
    /// When it was written (RFC 3339).
    pub at: String,
    #[serde(flatten)]
    pub message: Message,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    Retry(Retry),
    Redrive(Redrive),
    Replay(Replay),
    Claim(Claim),
    Answer(Answer),
}

/// One delivery, due at once on the worker that holds it: a pending one, or a dead-lettered
/// one with a fresh attempt budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    pub tenant_id: String,
    pub endpoint_id: String,
    pub transition_id: String,
}

/// Where a redrive starts reading the dead-letter topic.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// After the last dead letter an earlier redrive read (the shared position).
    #[default]
    Unredriven,
    /// At the oldest dead letter the topic still holds.
    Beginning,
}

/// Dead letters to deliver again (the body of a redrive request); every field is optional.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Redrive {
    #[serde(default)]
    pub from: Start,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    /// `exhausted`, `refused`, `expired`, `gone` or `endpoint_removed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Only dead letters dead-lettered at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only dead letters dead-lettered before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// At most this many dead letters are scheduled (default 10,000, at most 100,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// The transitions of a time range sent again to one endpoint, whatever became of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    pub tenant_id: String,
    pub endpoint_id: String,
    /// Transitions that happened at or after this time (RFC 3339).
    pub since: String,
    /// … and before this one (RFC 3339); now when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// At most this many are scheduled (default 10,000, at most 100,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// A worker offers to carry out a redrive or a replay; the first claim wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// The command's id.
    pub command: String,
    pub worker: String,
}

/// What a worker did with a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The command's id.
    pub command: String,
    pub worker: String,
    /// For a retry: whether this worker holds the delivery (and made it due).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<bool>,
    /// For a redrive or a replay: the worker's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    /// The command could not be carried out, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record {
    /// A new record with a fresh id, written at `at_ms`.
    pub fn new(message: Message, at_ms: i64) -> Record {
        Record {
            schema: SCHEMA.to_string(),
            id: uuid::Uuid::new_v4().to_string(),
            at: crate::clock::rfc3339(at_ms),
            message,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a command record serializes")
    }

    /// A record with exactly one message (serde alone would take the first of two).
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        use serde::de::Error as _;
        let value: serde_json::Value = serde_json::from_slice(bytes)?;
        let messages = ["retry", "redrive", "replay", "claim", "answer"]
            .iter()
            .filter(|name| value.get(**name).is_some())
            .count();
        if messages != 1 {
            return Err(serde_json::Error::custom(format!(
                "a command record holds exactly one message, not {messages}"
            )));
        }
        serde_json::from_value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_message() -> Vec<Message> {
        vec![
            Message::Retry(Retry {
                tenant_id: "acme".into(),
                endpoint_id: "crm".into(),
                transition_id: "0123456789abcdef0123456789abcdef".into(),
            }),
            Message::Redrive(Redrive::default()),
            Message::Redrive(Redrive {
                from: Start::Beginning,
                tenant_id: Some("acme".into()),
                endpoint_id: Some("crm".into()),
                reason: Some("exhausted".into()),
                since: Some("2026-12-07T10:00:00Z".into()),
                until: Some("2026-12-07T11:00:00Z".into()),
                limit: Some(5),
            }),
            Message::Replay(Replay {
                tenant_id: "acme".into(),
                endpoint_id: "crm".into(),
                since: "2026-12-07T10:00:00Z".into(),
                until: None,
                limit: Some(100),
            }),
            Message::Claim(Claim {
                command: "c".into(),
                worker: "w".into(),
            }),
            Message::Answer(Answer {
                command: "c".into(),
                worker: "w".into(),
                held: Some(true),
                report: None,
                error: None,
            }),
            Message::Answer(Answer {
                command: "c".into(),
                worker: "w".into(),
                held: None,
                report: Some(serde_json::json!({"replayed": 3})),
                error: Some("why".into()),
            }),
        ]
    }

    #[test]
    fn every_message_round_trips_and_matches_its_schema() {
        for message in every_message() {
            let record = Record::new(message, 1_796_637_600_000);
            let bytes = record.encode();
            super::super::assert_matches_schema("delivery_command.v1.json", &bytes);
            assert_eq!(Record::decode(&bytes).unwrap(), record);
        }
    }

    #[test]
    fn a_record_names_its_message_by_one_key() {
        let record = Record::new(every_message().swap_remove(4), 0);
        let value: serde_json::Value = serde_json::from_slice(&record.encode()).unwrap();
        assert_eq!(
            value["claim"],
            serde_json::json!({"command": "c", "worker": "w"})
        );
        assert_eq!(value["schema"], SCHEMA);
        assert_eq!(value["at"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_record_with_two_messages_or_an_unknown_field_in_one_is_refused() {
        let two = r#"{"schema":"cartstream.delivery_command.v1","id":"i","at":"t","claim":{"command":"c","worker":"w"},"retry":{"tenant_id":"a","endpoint_id":"b","transition_id":"c"}}"#;
        assert!(Record::decode(two.as_bytes()).is_err());
        let unknown = r#"{"schema":"cartstream.delivery_command.v1","id":"i","at":"t","claim":{"command":"c","worker":"w","extra":1}}"#;
        assert!(Record::decode(unknown.as_bytes()).is_err());
    }
}
