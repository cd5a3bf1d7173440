//! The worker's side of operator actions (`super::super::handle`): each runs on the loop, so
//! it changes the store like everything else there.

use tokio::sync::oneshot;

use super::Worker;
use crate::delivery::handle::{Command, Tested};
use crate::delivery::store;
use crate::delivery::test_send::Tester;
use crate::telemetry::error_chain;

impl Worker {
    /// Carries out an operator action; a failure is the operator's answer, not the worker's end.
    pub(super) fn command(&mut self, command: Command) {
        let now = self.clock.now_millis();
        let text = |e: store::Error| error_chain(&e);
        match command {
            Command::List { dead, limit, reply } => {
                let jobs = match dead {
                    true => self.store.dead(limit),
                    false => self.store.failed(limit),
                };
                let _ = reply.send(jobs.map_err(text));
            }
            Command::Retry {
                tenant,
                endpoint,
                transition,
                reply,
            } => {
                let key = store::key(&tenant, &endpoint, &transition);
                let _ = reply.send(self.store.retry_now(&key, now).map_err(text));
            }
            Command::Replay { jobs, reply } => {
                let _ = reply.send(self.store.replay(jobs, now).map_err(text));
            }
            Command::Adopt { letters, reply } => {
                let _ = reply.send(self.store.adopt(letters, now).map_err(text));
            }
            Command::Enable {
                tenant,
                endpoint,
                reply,
            } => {
                let _ = reply.send(self.enable(&tenant, &endpoint).map_err(text));
            }
            Command::Test {
                tenant,
                endpoint,
                reply,
            } => self.test(&tenant, &endpoint, reply, now),
        }
    }

    /// Takes a disabled endpoint back into service; whether it was disabled.
    fn enable(&mut self, tenant: &str, endpoint: &str) -> Result<bool, store::Error> {
        let was = self
            .disabled
            .remove(&(tenant.to_string(), endpoint.to_string()));
        self.store.enable(tenant, endpoint).map(|()| was)
    }

    /// Sends an endpoint a signed `test` event, outside its schedule and its limits; the
    /// answer goes to `reply`.
    fn test(
        &self,
        tenant: &str,
        endpoint: &str,
        reply: oneshot::Sender<Result<Tested, String>>,
        now: i64,
    ) {
        let Some(target) = self.endpoint(tenant, endpoint) else {
            let _ = reply.send(Err(format!(
                "no endpoint {endpoint:?} for tenant {tenant:?}"
            )));
            return;
        };
        let tester = Tester::new(self.client.clone(), self.config.header_prefix.clone());
        let target = target.clone();
        self.tracker.spawn(async move {
            let tested = tester.send(&target, now).await;
            let _ = reply.send(Ok(tested));
        });
    }
}
