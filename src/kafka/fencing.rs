//! A static group member fenced out of its group.
//!
//! The processor and the delivery worker join their groups with a static `group.instance.id`
//! (see [`super::static_instance_id`]). A broker that answers a member's join after the member
//! has already given up waiting for it — a coordinator frozen or lost mid-rebalance — sees the
//! retried join as a second member with the same instance id, and fences the first: librdkafka
//! reports `FencedInstanceId` as a fatal error and the consumer never reads again. The member
//! fenced is this very process, so it rejoins with a new consumer. A second process that really
//! shares the instance id would be fenced and rejoin in turn, forever: a few rejoins in a short
//! time mean that, and the role stops with an error naming the setting.
//!
//! [`Rejoins`] keeps that count; time is passed in.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use rdkafka::client::{Client, ClientContext};
use rdkafka::types::RDKafkaErrorCode;

/// The fatal error a consumer is in, if it is a fence: librdkafka's description of it.
pub fn fenced<C: ClientContext>(client: &Client<C>) -> Option<String> {
    match client.fatal_error() {
        Some((RDKafkaErrorCode::FencedInstanceId, reason)) => Some(reason),
        _ => None,
    }
}

/// The rejoins of one member.
#[derive(Debug, Default)]
pub struct Rejoins {
    recent: VecDeque<Instant>,
}

impl Rejoins {
    /// Rejoins allowed within [`Rejoins::WINDOW`].
    pub const LIMIT: usize = 3;
    pub const WINDOW: Duration = Duration::from_secs(600);

    /// Whether the member fenced at `now` may rejoin: fewer than [`Rejoins::LIMIT`] rejoins in
    /// the [`Rejoins::WINDOW`] before.
    pub fn allow(&mut self, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|&at| now.duration_since(at) >= Self::WINDOW)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= Self::LIMIT {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

/// The error of a role fenced too often.
pub fn too_often(role: &str, reason: &str) -> String {
    format!(
        "the {role} was fenced out of its consumer group {} times in {} minutes ({reason}): \
         another process uses the same group.instance.id; give each its own \
         {role}.consumer.\"group.instance.id\" or state folder",
        Rejoins::LIMIT + 1,
        Rejoins::WINDOW.as_secs() / 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::Rejoins;

    #[test]
    fn a_member_fenced_now_and_then_always_rejoins() {
        let mut rejoins = Rejoins::default();
        let start = Instant::now();
        for hour in 0..10 {
            assert!(rejoins.allow(start + Duration::from_secs(3600 * hour)));
        }
    }

    #[test]
    fn a_member_fenced_again_and_again_stops_rejoining() {
        let mut rejoins = Rejoins::default();
        let start = Instant::now();
        for second in 0..Rejoins::LIMIT as u64 {
            assert!(rejoins.allow(start + Duration::from_secs(second)));
        }
        assert!(!rejoins.allow(start + Duration::from_secs(60)));
        // Once the window has passed over the early ones, it may rejoin again.
        assert!(rejoins.allow(start + Rejoins::WINDOW + Duration::from_secs(1)));
    }
}
