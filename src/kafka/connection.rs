//! What a client learns about its connection. librdkafka reports a cluster that refuses this
//! client — wrong credentials, a TLS handshake that fails — to a callback, not to the call that
//! suffers it (which only times out). [`Connection`] keeps that refusal so that start-up can fail
//! with it at once and `/readyz` can say why it is not ready.

use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// A client context that logs librdkafka's errors and remembers the last refusal.
#[derive(Clone, Default)]
pub struct Connection {
    refused: Arc<Mutex<Option<Refusal>>>,
}

/// Why the cluster refuses this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A short, fixed reason (for `/readyz`).
    pub reason: &'static str,
    /// librdkafka's own words (for the log and the start-up error).
    pub detail: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl Connection {
    /// The refusal last reported, unless a request went through since.
    pub fn refused(&self) -> Option<Refusal> {
        self.lock().clone()
    }

    /// A request went through: whatever was refused before is over.
    pub fn answered(&self) {
        if self.lock().take().is_some() {
            tracing::info!("Kafka accepts the connection again");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Refusal>> {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The refusal an error means, if it is one.
fn refusal(error: &KafkaError, reason: &str) -> Option<Refusal> {
    let why = match error.rdkafka_error_code()? {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            "kafka refused the credentials"
        }
        RDKafkaErrorCode::SSL => "the TLS handshake with kafka failed",
        _ => return None,
    };
    Some(Refusal {
        reason: why,
        detail: reason.to_string(),
    })
}

impl ClientContext for Connection {
    fn error(&self, error: KafkaError, reason: &str) {
        match refusal(&error, reason) {
            Some(refusal) => {
                let mut last = self.lock();
                // librdkafka repeats it at every reconnection: log it when it changes.
                if last.as_ref() != Some(&refusal) {
                    tracing::error!(error = %refusal, "Kafka refuses the connection; check kafka.client");
                }
                *last = Some(refusal);
            }
            None => tracing::warn!(error = %error, reason, "Kafka client error"),
        }
    }
}

/// Plain consumers of this connection (the start-up probe) take no part in a group.
impl rdkafka::consumer::ConsumerContext for Connection {}

#[cfg(test)]
mod tests {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    use super::refusal;

    #[test]
    fn an_authentication_failure_is_a_refusal_and_a_timeout_is_not() {
        let refused = refusal(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: Authentication failed",
        )
        .unwrap();
        assert_eq!(refused.reason, "kafka refused the credentials");
        assert!(refused.to_string().contains("Authentication failed"));
        assert!(refusal(
            &KafkaError::Global(RDKafkaErrorCode::OperationTimedOut),
            "timed out"
        )
        .is_none());
    }
}
