//! Operator actions asked through any instance's admin API and carried out by the delivery
//! worker they concern, wherever it runs: a retry, a redrive, a replay. They travel on
//! `<prefix>.delivery-commands.v1` (one partition; the records are
//! [`crate::topics::command`]), which every delivery worker reads from the end it had when the
//! worker started:
//!
//! - a **retry** concerns the worker whose store holds the delivery, so every worker answers
//!   whether it does, and the one that does makes it due at once: it is attempted exactly once
//!   more, by its owner;
//! - a **redrive** or a **replay** is carried out by one worker, the one whose claim comes first
//!   in the topic — every worker reads the same first claim, so exactly one carries it out.
//!
//! The instance that asked reads the topic from the end it had before it asked, until the
//! answer comes or its wait is over. [`Desk`] (the worker's) and [`Waiting`] (the asker's) are
//! the rules, pure; [`Relay`] and [`ask`] move the records.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::handle::{Error as HandleError, Handle};
use crate::clock::Clock;
use crate::kafka::{self, commands::Tail};
use crate::telemetry::error_chain;
use crate::topics::command::{Answer, Claim, Message, Record};

/// How long the instance that asks waits for the workers' answers to a retry.
pub const RETRY_WAIT: Duration = Duration::from_secs(10);
/// How long it waits for a worker to claim a redrive or a replay.
pub const CLAIM_WAIT: Duration = Duration::from_secs(5);
/// How long it waits for the claiming worker's report: the longest read, and room to schedule.
pub const REPORT_WAIT: Duration = Duration::from_secs(super::redrive::READ_TIME.as_secs() + 20);
/// How long a record may wait for its acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a worker keeps a redrive or replay that nobody has claimed yet.
const UNCLAIMED_MS: i64 = 10 * 60 * 1000;

/// What a worker does about one record of the topic.
#[derive(Debug, PartialEq)]
enum Step {
    /// Say whether it holds this delivery (and make it due if it does).
    Retry {
        command: String,
        retry: crate::topics::command::Retry,
    },
    /// Write a claim on this command.
    Claim {
        command: String,
    },
    /// Its claim came first: carry the command out.
    Carry {
        command: String,
        message: Message,
    },
    Nothing,
}

/// A worker's rules for the records it reads, pure: it claims each redrive and replay, and
/// carries out those whose first claim is its own.
#[derive(Debug)]
struct Desk {
    worker: String,
    /// The redrives and replays read and not claimed yet, with when they were read (Unix ms).
    unclaimed: HashMap<String, (Message, i64)>,
}

impl Desk {
    fn new(worker: String) -> Desk {
        Desk {
            worker,
            unclaimed: HashMap::new(),
        }
    }

    fn read(&mut self, record: Record, now_ms: i64) -> Step {
        self.unclaimed
            .retain(|_, (_, read_ms)| now_ms - *read_ms < UNCLAIMED_MS);
        match record.message {
            Message::Retry(retry) => Step::Retry {
                command: record.id,
                retry,
            },
            message @ (Message::Redrive(_) | Message::Replay(_)) => {
                self.unclaimed.insert(record.id.clone(), (message, now_ms));
                Step::Claim { command: record.id }
            }
            Message::Claim(Claim { command, worker }) => match self.unclaimed.remove(&command) {
                Some((message, _)) if worker == self.worker => Step::Carry { command, message },
                // Another worker's claim came first; a later claim finds nothing left.
                _ => Step::Nothing,
            },
            Message::Answer(_) => Step::Nothing,
        }
    }
}

/// The worker's side: reads the topic, claims, carries out, answers. Runs beside the worker
/// and acts on it through its [`Handle`], like the admin port of its own instance.
#[derive(Clone)]
pub struct Relay {
    handle: Handle,
    kafka: kafka::Config,
    producer: kafka::Producer,
    clock: Clock,
    worker: String,
}

impl Relay {
    pub(super) fn new(
        handle: Handle,
        kafka: kafka::Config,
        producer: kafka::Producer,
        clock: Clock,
    ) -> Relay {
        Relay {
            handle,
            kafka,
            producer,
            clock,
            worker: kafka::process_name(),
        }
    }

    /// Reads and carries out commands until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let (records, mut read) = mpsc::channel(64);
        let (kafka, stop) = (self.kafka.clone(), shutdown.clone());
        tokio::task::spawn_blocking(move || tail(&kafka, &stop, &records));
        let mut desk = Desk::new(self.worker.clone());
        tracing::info!(worker = %self.worker, "reading the delivery commands topic");
        loop {
            let bytes = tokio::select! {
                _ = shutdown.cancelled() => return,
                bytes = read.recv() => match bytes {
                    Some(bytes) => bytes,
                    None => return,
                },
            };
            let record = match Record::decode(&bytes) {
                Ok(record) => record,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a delivery command that cannot be read");
                    continue;
                }
            };
            match desk.read(record, self.clock.now_millis()) {
                Step::Nothing => {}
                Step::Claim { command } => {
                    let claim = Message::Claim(Claim {
                        command,
                        worker: self.worker.clone(),
                    });
                    self.send(claim).await;
                }
                Step::Retry { command, retry } => {
                    let held = self
                        .handle
                        .retry(retry.tenant_id, retry.endpoint_id, retry.transition_id)
                        .await;
                    let answer = self.answer(command);
                    let answer = match held {
                        Ok(held) => Answer {
                            held: Some(held),
                            ..answer
                        },
                        Err(e) => Answer {
                            error: Some(e.to_string()),
                            ..answer
                        },
                    };
                    self.send(Message::Answer(answer)).await;
                }
                Step::Carry { command, message } => {
                    // Off the loop: a redrive reads for up to 20 s, and retries go on meanwhile.
                    let relay = self.clone();
                    tokio::spawn(async move { relay.carry(command, message).await });
                }
            }
        }
    }

    /// Carries out a redrive or a replay this worker won, and answers with its report.
    async fn carry(self, command: String, message: Message) {
        let report = match message {
            Message::Redrive(request) => self
                .handle
                .redrive(request)
                .await
                .map(|report| serde_json::to_value(report).unwrap_or_default()),
            Message::Replay(request) => self
                .handle
                .replay(request)
                .await
                .map(|report| serde_json::to_value(report).unwrap_or_default()),
            _ => return,
        };
        let answer = self.answer(command);
        let answer = match report {
            Ok(report) => Answer {
                report: Some(report),
                ..answer
            },
            Err(e) => Answer {
                error: Some(e.to_string()),
                ..answer
            },
        };
        self.send(Message::Answer(answer)).await;
    }

    fn answer(&self, command: String) -> Answer {
        Answer {
            command,
            worker: self.worker.clone(),
            held: None,
            report: None,
            error: None,
        }
    }

    async fn send(&self, message: Message) {
        let record = Record::new(message, self.clock.now_millis());
        if let Err(e) = self
            .producer
            .send_command(&record.encode(), ACK_TIMEOUT)
            .await
        {
            tracing::warn!(error = %error_chain(&e), "a delivery command's claim or answer was not written");
        }
    }
}

/// Hands every record written to the topic after it is first read to `records`, until `stop`
/// (blocking). Retries every second while the topic cannot be read.
fn tail(kafka: &kafka::Config, stop: &CancellationToken, records: &mpsc::Sender<Vec<u8>>) {
    let mut warned = false;
    let tail = loop {
        if stop.is_cancelled() {
            return;
        }
        match Tail::from_end(kafka) {
            Ok(tail) => break tail,
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, topic = %kafka.topics().commands, "the delivery commands topic cannot be read yet; retry, redrive and replay through other instances wait for it");
                    warned = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    while !stop.is_cancelled() {
        let sent = match tail.next(Duration::from_millis(200)) {
            None => Ok(()),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "reading the delivery commands topic");
                Ok(())
            }
            Some(Ok(bytes)) => records.blocking_send(bytes),
        };
        // The relay stopped.
        if sent.is_err() {
            return;
        }
    }
}

/// What became of a command, as the instance that asked learns it.
#[derive(Debug, Clone, PartialEq)]
pub enum Asked {
    /// A retry: `worker` holds the delivery and made it due.
    Retried { worker: String },
    /// A retry: every worker running answered, and none holds the delivery.
    NotHeld { answered: usize },
    /// A redrive or replay: `worker` carried it out.
    Reported {
        worker: String,
        report: serde_json::Value,
    },
    /// The worker concerned could not carry it out.
    Failed { worker: String, error: String },
    /// No worker claimed the redrive or replay in time: none is running, or none reads the
    /// commands topic.
    Unclaimed,
    /// The wait ended before the answer: `answered` of `members` workers (when known) answered
    /// a retry, or the claiming worker did not report.
    Unanswered {
        answered: usize,
        members: Option<usize>,
    },
}

/// The asker's rules, pure: what the records read so far say about its command.
#[derive(Debug)]
struct Waiting {
    command: String,
    /// A retry (answered by every worker) rather than a claimed command.
    retry: bool,
    /// The delivery group's members when the command was written (a retry's).
    members: Option<usize>,
    answered: Vec<String>,
    /// The worker whose claim came first.
    winner: Option<String>,
    /// A worker that answered a retry with an error, and the error.
    failed: Option<(String, String)>,
}

impl Waiting {
    fn new(command: &Record, members: Option<usize>) -> Waiting {
        Waiting {
            command: command.id.clone(),
            retry: matches!(command.message, Message::Retry(_)),
            members,
            answered: Vec::new(),
            winner: None,
            failed: None,
        }
    }

    /// The end, once `record` settles it.
    fn read(&mut self, record: &Record) -> Option<Asked> {
        match &record.message {
            Message::Claim(claim) if claim.command == self.command && self.winner.is_none() => {
                self.winner = Some(claim.worker.clone());
                None
            }
            Message::Answer(answer) if answer.command == self.command => self.answer(answer),
            _ => None,
        }
    }

    fn answer(&mut self, answer: &Answer) -> Option<Asked> {
        let worker = answer.worker.clone();
        if !self.retry {
            if self.winner.as_ref() != Some(&worker) {
                return None;
            }
            return Some(match (&answer.report, &answer.error) {
                (_, Some(error)) => Asked::Failed {
                    worker,
                    error: error.clone(),
                },
                (report, None) => Asked::Reported {
                    worker,
                    report: report.clone().unwrap_or_default(),
                },
            });
        }
        if answer.held == Some(true) {
            return Some(Asked::Retried { worker });
        }
        // A worker that could not look is remembered: another may still hold the delivery.
        if let Some(error) = &answer.error {
            self.failed = Some((worker.clone(), error.clone()));
        }
        if !self.answered.contains(&worker) {
            self.answered.push(worker);
        }
        let everyone = self.members.is_some_and(|n| self.answered.len() >= n);
        everyone.then(|| self.not_held())
    }

    /// A retry nobody said it holds: not held, unless a worker could not look.
    fn not_held(&mut self) -> Asked {
        match self.failed.take() {
            Some((worker, error)) => Asked::Failed { worker, error },
            None => Asked::NotHeld {
                answered: self.answered.len(),
            },
        }
    }

    /// The end when the wait is over.
    fn gave_up(mut self) -> Asked {
        if let Some((worker, error)) = self.failed.take() {
            return Asked::Failed { worker, error };
        }
        match (self.retry, self.winner) {
            (false, None) => Asked::Unclaimed,
            _ => Asked::Unanswered {
                answered: self.answered.len(),
                members: self.members,
            },
        }
    }
}

/// Asks the delivery workers of `group` to carry out `message` through the commands topic, and
/// waits for what became of it. Fails when Kafka cannot take the command.
pub async fn ask(
    kafka: &kafka::Config,
    producer: &kafka::Producer,
    group: &str,
    message: Message,
    now_ms: i64,
) -> Result<Asked, HandleError> {
    let unavailable = |e: String| HandleError::Unavailable(e);
    let topic = kafka.topics().commands;
    let command = Record::new(message, now_ms);
    let retry = matches!(command.message, Message::Retry(_));
    let (config, group) = (kafka.clone(), group.to_string());
    // Read from the end the topic has before the command is written, so no answer is missed.
    let (tail, members) = tokio::task::spawn_blocking(move || {
        let tail = Tail::from_end(&config)?;
        let members = retry
            .then(|| kafka::commands::members(&config, &group).ok())
            .flatten();
        Ok::<_, rdkafka::error::KafkaError>((tail, members))
    })
    .await
    .map_err(|e| unavailable(e.to_string()))?
    .map_err(|e| unavailable(format!("reading {topic}: {e}")))?;
    if retry && members == Some(0) {
        // Nobody to ask: the group has no member.
        return Ok(Asked::Unanswered {
            answered: 0,
            members,
        });
    }
    producer
        .send_command(&command.encode(), ACK_TIMEOUT)
        .await
        .map_err(|e| unavailable(format!("writing to {topic}: {}", error_chain(&e))))?;
    let mut waiting = Waiting::new(&command, members);
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            let wait = match (waiting.retry, &waiting.winner) {
                (true, _) => RETRY_WAIT,
                (false, None) => CLAIM_WAIT,
                (false, Some(_)) => REPORT_WAIT,
            };
            if started.elapsed() >= wait {
                return waiting.gave_up();
            }
            let Some(Ok(bytes)) = tail.next(Duration::from_millis(100)) else {
                continue;
            };
            if let Ok(record) = Record::decode(&bytes) {
                if let Some(asked) = waiting.read(&record) {
                    return asked;
                }
            }
        }
    })
    .await
    .map_err(|e| unavailable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::command::{Redrive, Retry};

    fn record(message: Message) -> Record {
        Record::new(message, 0)
    }

    fn retry() -> Message {
        Message::Retry(Retry {
            tenant_id: "acme".into(),
            endpoint_id: "crm".into(),
            transition_id: "t".into(),
        })
    }

    fn claim(command: &Record, worker: &str) -> Record {
        record(Message::Claim(Claim {
            command: command.id.clone(),
            worker: worker.into(),
        }))
    }

    fn answer(command: &Record, worker: &str, held: Option<bool>) -> Record {
        record(Message::Answer(Answer {
            command: command.id.clone(),
            worker: worker.into(),
            held,
            report: (!matches!(command.message, Message::Retry(_)))
                .then(|| serde_json::json!({"redriven": 1})),
            error: None,
        }))
    }

    #[test]
    fn every_worker_is_asked_about_a_retry_and_claims_nothing() {
        let mut desk = Desk::new("w1".into());
        let command = record(retry());
        let step = desk.read(command.clone(), 0);
        assert!(matches!(step, Step::Retry { command: id, .. } if id == command.id));
        assert!(desk.unclaimed.is_empty());
    }

    #[test]
    fn the_worker_whose_claim_comes_first_carries_a_redrive_out_and_no_other_does() {
        let command = record(Message::Redrive(Redrive::default()));
        let (mut w1, mut w2) = (Desk::new("w1".into()), Desk::new("w2".into()));
        for desk in [&mut w1, &mut w2] {
            let step = desk.read(command.clone(), 0);
            assert_eq!(
                step,
                Step::Claim {
                    command: command.id.clone()
                }
            );
        }
        // Both read the claims in the topic's order: w2's first.
        let (first, second) = (claim(&command, "w2"), claim(&command, "w1"));
        assert_eq!(w1.read(first.clone(), 1), Step::Nothing);
        assert_eq!(w1.read(second.clone(), 2), Step::Nothing);
        assert!(matches!(w2.read(first, 1), Step::Carry { .. }));
        assert_eq!(w2.read(second, 2), Step::Nothing, "carried out once");
    }

    #[test]
    fn a_worker_that_started_after_a_command_ignores_its_claims() {
        let command = record(Message::Redrive(Redrive::default()));
        let mut late = Desk::new("w3".into());
        assert_eq!(late.read(claim(&command, "w3"), 0), Step::Nothing);
    }

    #[test]
    fn an_unclaimed_command_is_forgotten_after_ten_minutes() {
        let command = record(Message::Redrive(Redrive::default()));
        let mut desk = Desk::new("w1".into());
        desk.read(command.clone(), 0);
        assert_eq!(
            desk.read(claim(&command, "w1"), UNCLAIMED_MS),
            Step::Nothing
        );
    }

    #[test]
    fn a_retry_is_settled_by_the_worker_that_holds_it() {
        let command = record(retry());
        let mut waiting = Waiting::new(&command, Some(3));
        assert_eq!(waiting.read(&answer(&command, "w1", Some(false))), None);
        let other = record(retry());
        assert_eq!(waiting.read(&answer(&other, "w2", Some(true))), None);
        assert_eq!(
            waiting.read(&answer(&command, "w2", Some(true))),
            Some(Asked::Retried {
                worker: "w2".into()
            })
        );
    }

    #[test]
    fn a_retry_nobody_holds_is_settled_once_every_worker_answered() {
        let command = record(retry());
        let mut waiting = Waiting::new(&command, Some(2));
        assert_eq!(waiting.read(&answer(&command, "w1", Some(false))), None);
        assert_eq!(
            waiting.read(&answer(&command, "w1", Some(false))),
            None,
            "one worker answering twice is one answer"
        );
        assert_eq!(
            waiting.read(&answer(&command, "w2", Some(false))),
            Some(Asked::NotHeld { answered: 2 })
        );
    }

    #[test]
    fn a_worker_that_could_not_look_does_not_hide_the_one_that_holds_the_delivery() {
        let command = record(retry());
        let failed = |worker: &str| {
            record(Message::Answer(Answer {
                command: command.id.clone(),
                worker: worker.into(),
                held: None,
                report: None,
                error: Some("the delivery worker is not running".into()),
            }))
        };
        let mut waiting = Waiting::new(&command, Some(2));
        assert_eq!(waiting.read(&failed("w1")), None);
        assert_eq!(
            waiting.read(&answer(&command, "w2", Some(true))),
            Some(Asked::Retried {
                worker: "w2".into()
            })
        );
        let mut nobody = Waiting::new(&command, Some(2));
        assert_eq!(nobody.read(&failed("w1")), None);
        assert_eq!(
            nobody.read(&answer(&command, "w2", Some(false))),
            Some(Asked::Failed {
                worker: "w1".into(),
                error: "the delivery worker is not running".into()
            }),
            "not a 404: w1 may hold it"
        );
    }

    #[test]
    fn a_retry_whose_workers_are_not_known_waits_for_its_time() {
        let command = record(retry());
        let mut waiting = Waiting::new(&command, None);
        assert_eq!(waiting.read(&answer(&command, "w1", Some(false))), None);
        assert_eq!(
            waiting.gave_up(),
            Asked::Unanswered {
                answered: 1,
                members: None
            }
        );
    }

    #[test]
    fn a_redrive_is_settled_by_the_report_of_the_first_claimer_only() {
        let command = record(Message::Redrive(Redrive::default()));
        let mut waiting = Waiting::new(&command, None);
        assert_eq!(waiting.read(&claim(&command, "w2")), None);
        assert_eq!(waiting.read(&claim(&command, "w1")), None);
        assert_eq!(waiting.read(&answer(&command, "w1", None)), None);
        assert_eq!(
            waiting.read(&answer(&command, "w2", None)),
            Some(Asked::Reported {
                worker: "w2".into(),
                report: serde_json::json!({"redriven": 1})
            })
        );
    }

    #[test]
    fn a_redrive_nobody_claims_is_unclaimed_and_one_claimed_but_unreported_is_unanswered() {
        let command = record(Message::Redrive(Redrive::default()));
        assert_eq!(Waiting::new(&command, None).gave_up(), Asked::Unclaimed);
        let mut claimed = Waiting::new(&command, None);
        claimed.read(&claim(&command, "w1"));
        assert!(matches!(claimed.gave_up(), Asked::Unanswered { .. }));
    }
}
