//! What a client learns about its connection. librdkafka reports a cluster that refuses this
//! client — wrong credentials, a TLS handshake that fails — to a callback, not to the call that
//! suffers it (which only times out). [`Connection`] keeps that refusal so that start-up can fail
//! with it at once and `/readyz` can say why it is not ready. It also keeps librdkafka's word
//! that every broker connection is down, so that the ingress can answer 503 at once instead of
//! holding each request for the whole ack timeout.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// A client context that logs librdkafka's errors and remembers the last refusal, and whether
/// all brokers are down.
#[derive(Clone, Default)]
pub struct Connection {
    refused: Arc<Mutex<Option<Refusal>>>,
    /// Set while every broker is down: when the next request may go through to find out
    /// whether one is back.
    next_probe: Arc<Mutex<Option<Instant>>>,
}

/// While every broker is down, one request per this long asks a broker for metadata before it
/// is answered: an answer says Kafka is back.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// What [`Connection::reach`] says about the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Up,
    /// Every broker connection is down.
    Down,
    /// Down, and it is time to ask again.
    Probe,
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

    /// A request went through: whatever was refused before is over, and a broker is up.
    pub fn answered(&self) {
        if self.lock().take().is_some() {
            tracing::info!("Kafka accepts the connection again");
        }
        let was_down = self
            .next_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some();
        if was_down {
            tracing::info!("a Kafka broker answers again");
        }
    }

    /// Whether the brokers can be reached, as far as librdkafka said: while every broker is
    /// down, a request should be refused at once — except one per second, which should first
    /// find out whether they are back ([`Reach::Probe`]).
    pub fn reach(&self, now: Instant) -> Reach {
        let mut next_probe = self
            .next_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *next_probe {
            None => Reach::Up,
            Some(next) if now < next => Reach::Down,
            Some(_) => {
                *next_probe = Some(now + PROBE_EVERY);
                Reach::Probe
            }
        }
    }

    fn brokers_down(&self) {
        let mut next_probe = self
            .next_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if next_probe.is_none() {
            *next_probe = Some(Instant::now() + PROBE_EVERY);
            tracing::warn!(
                "every Kafka broker connection is down: webhooks are answered 503 until one is back"
            );
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
            None => {
                if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
                    self.brokers_down();
                }
                tracing::warn!(error = %error, reason, "Kafka client error")
            }
        }
    }
}

/// Plain consumers of this connection (the start-up probe) take no part in a group.
impl rdkafka::consumer::ConsumerContext for Connection {}

#[cfg(test)]
mod tests {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    use super::{refusal, Connection, Duration, Instant, Reach, PROBE_EVERY};

    #[test]
    fn with_every_broker_down_requests_are_refused_but_one_a_second_probes() {
        let connection = Connection::default();
        let t = Instant::now();
        assert_eq!(
            connection.reach(t),
            Reach::Up,
            "up until librdkafka says otherwise"
        );
        connection.brokers_down();
        assert_eq!(connection.reach(t), Reach::Down);
        assert_eq!(
            connection.reach(t + Duration::from_millis(500)),
            Reach::Down
        );
        let probe = t + Duration::from_millis(1100);
        assert_eq!(connection.reach(probe), Reach::Probe);
        assert_eq!(connection.reach(probe), Reach::Down, "one probe at a time");
        assert_eq!(connection.reach(probe + PROBE_EVERY), Reach::Probe);
        connection.answered();
        assert_eq!(connection.reach(probe + PROBE_EVERY), Reach::Up);
    }

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
