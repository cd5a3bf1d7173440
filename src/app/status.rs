//! Each ingress's view of its integrations, written to `<prefix>.integration-status.v1` when it
//! changed, so that the admin API of any instance answers an integration's status as every
//! instance's ingress saw it (`tenants.source = "topic"` only).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::kafka::Producer;
use crate::telemetry::error_chain;
use crate::tenants::{Live, Written};

/// How often the changed views are written: an integration's status on another instance is at
/// most this much older than on the instance that saw it, and a busy integration costs one
/// record per instance this often.
pub const EVERY: Duration = Duration::from_secs(2);

/// How long a record may wait for its acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes the views that changed every [`EVERY`] until `shutdown`.
pub(super) async fn publish(live: Live, producer: Producer, shutdown: CancellationToken) {
    let instance = crate::kafka::process_name();
    let mut written = Written::default();
    let mut warned = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        let records = written.changes(&live.current(), &instance);
        let mut records = records.iter();
        for record in records.by_ref() {
            let sent = producer
                .send_status(&record.key(), &record.encode(), ACK_TIMEOUT)
                .await;
            if let Err(e) = sent {
                // Kafka is away: this one and the rest wait for the next round.
                written.unwritten(record);
                if !warned {
                    tracing::warn!(error = %error_chain(&e), "integrations' status cannot be written to the status topic; trying again");
                    warned = true;
                }
                break;
            }
        }
        for record in records {
            written.unwritten(record);
        }
    }
}
