//! Operator actions on a running delivery worker (SPEC §6), sent to its loop over a bounded
//! channel so that every change to the store still happens in one place.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::redrive::{self, Report, Request, Source};
use super::replay;
use super::store::{Adopted, DeadLetter, Job};
use crate::telemetry::error_chain;

/// What the admin port may ask of the worker.
pub(super) enum Command {
    List {
        dead: bool,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<Job>, String>>,
    },
    Retry {
        tenant: String,
        endpoint: String,
        transition: String,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    /// Schedule transitions read back for a replay: how many were, and how many were pending.
    Replay {
        jobs: Vec<Job>,
        reply: oneshot::Sender<Result<(usize, usize), String>>,
    },
    /// Schedule dead letters read back from the dead-letter topic.
    Adopt {
        letters: Vec<DeadLetter>,
        reply: oneshot::Sender<Result<Adopted, String>>,
    },
    Enable {
        tenant: String,
        endpoint: String,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    Test {
        tenant: String,
        endpoint: String,
        reply: oneshot::Sender<Result<Tested, String>>,
    },
}

/// The answer to a test delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Tested {
    pub id: String,
    pub status_code: Option<u16>,
    pub status_class: &'static str,
    pub latency_ms: f64,
    pub error: Option<String>,
}

/// A delivery as the operator sees it (the body left out).
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub transition_id: String,
    pub tenant_id: String,
    pub endpoint_id: String,
    pub event: String,
    pub cart: String,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
}

/// Why an action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the delivery worker is not running")]
    Stopped,
    #[error("the delivery worker did not answer in time")]
    Timeout,
    /// The action was refused or failed for a reason the operator can act on.
    #[error("{0}")]
    Failed(String),
    /// Something the action needs (Kafka) is not available now.
    #[error("{0}")]
    Unavailable(String),
}

/// Cheap to clone; talks to one worker.
#[derive(Clone)]
pub struct Handle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) dead_letters: Arc<Source>,
    /// The worker's clock: what a replay's end defaults to.
    pub(super) clock: crate::clock::Clock,
}

/// How long an action may take (a test delivery waits for the endpoint).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

impl Handle {
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Command,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(_)) => Err(Error::Stopped),
            Ok(Ok(result)) => result.map_err(Error::Failed),
        }
    }

    /// Pending deliveries that failed at least once (`dead` false), or dead-lettered ones.
    pub async fn list(&self, dead: bool, limit: usize) -> Result<Vec<Listed>, Error> {
        let jobs = self
            .ask(|reply| Command::List { dead, limit, reply })
            .await?;
        Ok(jobs
            .into_iter()
            .map(|job| Listed {
                next_attempt_at: (!dead).then(|| crate::clock::rfc3339(job.next_ms)),
                transition_id: job.transition_id,
                tenant_id: job.tenant,
                endpoint_id: job.endpoint,
                event: job.event,
                cart: job.cart,
                attempts: job.attempts,
                last_status_code: job.last_status,
                last_error: job.last_error,
            })
            .collect())
    }

    /// Makes one delivery due now: a pending one, or a dead-lettered one with a fresh budget.
    /// Whether it was found.
    pub async fn retry(
        &self,
        tenant: String,
        endpoint: String,
        transition: String,
    ) -> Result<bool, Error> {
        self.ask(|reply| Command::Retry {
            tenant,
            endpoint,
            transition,
            reply,
        })
        .await
    }

    /// Reads dead letters back from the dead-letter topic and schedules them on this worker,
    /// due now with a fresh attempt budget (see [`redrive`]).
    pub async fn redrive(&self, request: Request) -> Result<Report, Error> {
        let source = self.dead_letters.clone();
        let reading = tokio::task::spawn_blocking(move || source.read(request))
            .await
            .map_err(|e| Error::Failed(e.to_string()))?
            .map_err(redrive_error)?;
        let (letters, reading) = reading.take_letters();
        let adopted = match self.ask(|reply| Command::Adopt { letters, reply }).await {
            Ok(adopted) => adopted,
            Err(e) => {
                // Closing the reader talks to the broker: not on the runtime's threads.
                tokio::task::spawn_blocking(move || drop(reading));
                return Err(e);
            }
        };
        let topic = self.dead_letters.topic.clone();
        tokio::task::spawn_blocking(move || reading.finish(adopted, &topic))
            .await
            .map_err(|e| Error::Failed(e.to_string()))?
            .map_err(redrive_error)
    }

    /// Reads the transitions of a time range back from their topic and schedules them for one
    /// endpoint on this worker, due now with a fresh attempt budget (see [`replay`]).
    pub async fn replay(&self, request: replay::Request) -> Result<replay::Report, Error> {
        let (kafka, registry) = (
            self.dead_letters.kafka.clone(),
            self.dead_letters.registry.current(),
        );
        let now = self.clock.now_millis();
        let selection = replay::check(&request, now).map_err(Error::Failed)?;
        if registry
            .endpoint(&request.tenant_id, &request.endpoint_id)
            .is_none()
        {
            return Err(Error::Failed(format!(
                "no endpoint {:?} for tenant {:?}",
                request.endpoint_id, request.tenant_id
            )));
        }
        let (jobs, mut report) =
            tokio::task::spawn_blocking(move || selection.read(&kafka, &registry, now))
                .await
                .map_err(|e| Error::Failed(e.to_string()))?
                .map_err(Error::Unavailable)?;
        let (replayed, pending) = self.ask(|reply| Command::Replay { jobs, reply }).await?;
        report.replayed = replayed;
        report.already_pending = pending;
        Ok(report)
    }

    /// Enables an endpoint disabled by a 410. Whether it was disabled.
    pub async fn enable(&self, tenant: String, endpoint: String) -> Result<bool, Error> {
        self.ask(|reply| Command::Enable {
            tenant,
            endpoint,
            reply,
        })
        .await
    }

    /// Sends a signed `test` event to an endpoint now and reports its answer.
    pub async fn test(&self, tenant: String, endpoint: String) -> Result<Tested, Error> {
        self.ask(|reply| Command::Test {
            tenant,
            endpoint,
            reply,
        })
        .await
    }
}

fn redrive_error(e: redrive::Error) -> Error {
    match e {
        redrive::Error::Request(reason) => Error::Failed(reason),
        other => Error::Unavailable(error_chain(&other)),
    }
}
