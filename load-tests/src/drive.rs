//! Sends a scenario's requests to the ingress: phases at a fixed rate (or as fast as the
//! concurrency allows), keep-alive connections, a line of progress per second, and a record of
//! every attempt's outcome for the completeness check and the floor under it (`floor`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::floor::{Allowance, Answer, Span, Tally};
use crate::scenario::Scenario;
use crate::tenants::Tenant;
use crate::webhooks::{Kind, Request, Templates};

/// What the check needs to know about one delivery id.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    /// Attempts answered 2xx.
    pub acknowledged: u32,
    /// Attempts whose outcome is unknown (transport error, timeout, 5xx): each may or may not
    /// have been recorded. The floor excuses only some of them, in a stated disruption.
    pub uncertain: u32,
    /// Attempts sent with a bad signature (they must leave no trace).
    pub forged: u32,
    pub kind: Option<Kind>,
}

/// Everything the run observed.
pub struct Outcome {
    pub expected: HashMap<String, Expected>,
    /// Journeys whose checkout and order were both acknowledged: their cart token.
    pub journeys: Vec<String>,
    /// Abandonments whose checkout was acknowledged: their cart token.
    pub abandonments: Vec<String>,
    /// Transitions (`<bucket>:<cart>`) that may or may not happen, once: a journey whose order's
    /// outcome is unknown, an abandonment whose checkout's outcome is unknown.
    pub uncertain_transitions: Vec<String>,
    /// Every answer, against the floor.
    pub tally: Tally,
    pub statuses: BTreeMap<String, u64>,
    pub latency: hdrhistogram::Histogram<u64>,
    pub phases: Vec<PhaseResult>,
    pub timeline: Vec<Second>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseResult {
    pub name: String,
    pub target_rate: u32,
    pub seconds: f64,
    pub requests: u64,
    pub acknowledged: u64,
    pub acknowledged_per_second: f64,
    pub latency_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// One second of the run, for the progress line and the chart.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub at: u64,
    pub phase: String,
    pub requests: u64,
    pub acknowledged: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

struct Shared {
    expected: HashMap<String, Expected>,
    journeys: Vec<String>,
    abandonments: Vec<String>,
    uncertain_transitions: Vec<String>,
    tally: Tally,
    statuses: BTreeMap<String, u64>,
    latency: hdrhistogram::Histogram<u64>,
    phase: hdrhistogram::Histogram<u64>,
    second: hdrhistogram::Histogram<u64>,
    requests: u64,
    acknowledged: u64,
    phase_requests: u64,
    phase_acknowledged: u64,
}

fn histogram() -> hdrhistogram::Histogram<u64> {
    // Microseconds from 1 µs to 10 minutes, 3 significant digits.
    hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub struct Driver {
    pub scenario: Scenario,
    pub templates: Templates,
    pub ingress: String,
    pub run: String,
    /// What a stated disruption excuses.
    pub allowance: Allowance,
}

impl Driver {
    pub async fn run(self) -> anyhow::Result<Outcome> {
        let Driver {
            scenario,
            templates,
            ingress,
            run,
            allowance,
        } = self;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(scenario.concurrency)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let shared = Arc::new(Mutex::new(Shared {
            expected: HashMap::new(),
            journeys: Vec::new(),
            abandonments: Vec::new(),
            uncertain_transitions: Vec::new(),
            tally: Tally::default(),
            statuses: BTreeMap::new(),
            latency: histogram(),
            phase: histogram(),
            second: histogram(),
            requests: 0,
            acknowledged: 0,
            phase_requests: 0,
            phase_acknowledged: 0,
        }));
        let started = Instant::now();
        let context = Arc::new(Context {
            client,
            templates,
            ingress,
            run,
            scenario: scenario.clone(),
            shared: shared.clone(),
            started,
            allowance,
        });
        let limit = Arc::new(Semaphore::new(scenario.concurrency));
        let mut timeline = Vec::new();
        let mut phases = Vec::new();
        let mut operation: u64 = 0;
        let mut last_second = (0u64, 0u64);
        for phase in &scenario.phase {
            let phase_started = Instant::now();
            let deadline = phase_started + Duration::from_secs(phase.seconds);
            let mut tasks = JoinSet::new();
            let mut progress = tokio::time::interval_at(
                started + Duration::from_secs(timeline.len() as u64 + 1),
                Duration::from_secs(1),
            );
            progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut pace = (phase.rate > 0).then(|| {
                let mut i =
                    tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(phase.rate)));
                // Ticks missed while the timer slept are made up at once: the rate is kept.
                i.set_missed_tick_behavior(MissedTickBehavior::Burst);
                i
            });
            loop {
                tokio::select! {
                    biased;
                    _ = progress.tick() => {
                        let s = second(&shared, started, &phase.name, &mut last_second);
                        println!(
                            "{:>4} s  {:<8} {:>6} req/s {:>6} ok/s  p50 {:>7.1} ms  p99 {:>7.1} ms  in flight {}",
                            s.at, s.phase, s.requests, s.acknowledged, s.p50_ms, s.p99_ms,
                            scenario.concurrency - limit.available_permits()
                        );
                        timeline.push(s);
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                    permit = async {
                        if let Some(pace) = pace.as_mut() {
                            pace.tick().await;
                        }
                        limit.clone().acquire_owned().await
                    } => {
                        let permit = permit?;
                        operation += 1;
                        let context = context.clone();
                        let op = operation;
                        tasks.spawn(async move {
                            context.operation(op).await;
                            drop(permit);
                        });
                        // Keep the set from growing with finished tasks.
                        while tasks.try_join_next().is_some() {}
                    }
                }
            }
            while tasks.join_next().await.is_some() {}
            let took = phase_started.elapsed().as_secs_f64();
            let mut s = shared.lock().expect("not poisoned");
            phases.push(PhaseResult {
                name: phase.name.clone(),
                target_rate: phase.rate,
                seconds: took,
                requests: s.phase_requests,
                acknowledged: s.phase_acknowledged,
                acknowledged_per_second: s.phase_acknowledged as f64 / took,
                latency_ms: Percentiles::of(&s.phase),
            });
            s.phase.reset();
            s.phase_requests = 0;
            s.phase_acknowledged = 0;
        }
        // The context holds the other reference to the shared record.
        drop(context);
        let shared = Arc::try_unwrap(shared)
            .ok()
            .expect("every task has finished")
            .into_inner()
            .expect("not poisoned");
        Ok(Outcome {
            expected: shared.expected,
            journeys: shared.journeys,
            abandonments: shared.abandonments,
            uncertain_transitions: shared.uncertain_transitions,
            tally: shared.tally,
            statuses: shared.statuses,
            latency: shared.latency,
            phases,
            timeline,
        })
    }
}

fn second(shared: &Mutex<Shared>, started: Instant, phase: &str, last: &mut (u64, u64)) -> Second {
    let mut s = shared.lock().expect("not poisoned");
    let at = started.elapsed().as_secs_f64().round() as u64;
    let result = Second {
        at,
        phase: phase.to_string(),
        requests: s.requests - last.0,
        acknowledged: s.acknowledged - last.1,
        p50_ms: s.second.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: s.second.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: s.second.max() as f64 / 1000.0,
    };
    *last = (s.requests, s.acknowledged);
    s.second.reset();
    result
}

struct Context {
    client: HttpClient,
    templates: Templates,
    ingress: String,
    run: String,
    scenario: Scenario,
    shared: Arc<Mutex<Shared>>,
    /// The start of the first phase: the origin of the disruption window.
    started: Instant,
    allowance: Allowance,
}

/// What an attempt tells the check about its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Acknowledged,
    /// A definite refusal (4xx): nothing was produced.
    Refused,
    /// It may or may not have been produced.
    Unknown,
}

impl Context {
    /// One operation: a single delivery (perhaps re-sent), a forged one, a journey or an
    /// abandonment.
    async fn operation(&self, op: u64) {
        let s = &self.scenario;
        let tenant = Tenant((mix(op, 1) % s.tenants as u64) as usize);
        let roll = unit(mix(op, 2));
        if roll < s.invalid_signature_ratio {
            let provider = &s.providers[(mix(op, 3) % s.providers.len() as u64) as usize];
            let request =
                self.templates
                    .request(provider, Kind::Single, tenant, &self.run, op, false);
            self.send(&request, Kind::Single, false).await;
        } else if roll < s.invalid_signature_ratio + s.journey_ratio {
            let checkout =
                self.templates
                    .request("shopify", Kind::Checkout, tenant, &self.run, op, true);
            if self.send_maybe_twice(&checkout, Kind::Checkout, op).await == Sent::Acknowledged {
                let order =
                    self.templates
                        .request("shopify", Kind::Order, tenant, &self.run, op, true);
                let sent = self.send_maybe_twice(&order, Kind::Order, op).await;
                let cart = crate::webhooks::cart_token(&self.run, op);
                let mut shared = self.shared.lock().expect("not poisoned");
                match sent {
                    Sent::Acknowledged => shared.journeys.push(cart),
                    Sent::Unknown => shared
                        .uncertain_transitions
                        .push(format!("order_completed:{cart}")),
                    Sent::Refused => {}
                }
            }
        } else if roll < s.invalid_signature_ratio + s.journey_ratio + s.abandonment_ratio {
            let checkout =
                self.templates
                    .request("shopify", Kind::Abandonment, tenant, &self.run, op, true);
            let sent = self
                .send_maybe_twice(&checkout, Kind::Abandonment, op)
                .await;
            let cart = crate::webhooks::cart_token(&self.run, op);
            let mut shared = self.shared.lock().expect("not poisoned");
            match sent {
                Sent::Acknowledged => shared.abandonments.push(cart),
                Sent::Unknown => shared
                    .uncertain_transitions
                    .push(format!("abandoned_candidate:{cart}")),
                Sent::Refused => {}
            }
        } else {
            let provider = &s.providers[(op % s.providers.len() as u64) as usize];
            let request =
                self.templates
                    .request(provider, Kind::Single, tenant, &self.run, op, true);
            self.send_maybe_twice(&request, Kind::Single, op).await;
        }
    }

    /// Sends `request`; once acknowledged, re-sends it byte for byte with the scenario's
    /// duplicate ratio. What the first attempt told.
    async fn send_maybe_twice(&self, request: &Request, kind: Kind, op: u64) -> Sent {
        let sent = self.send(request, kind, true).await;
        let salt = if kind == Kind::Order { 5 } else { 4 };
        if sent == Sent::Acknowledged && unit(mix(op, salt)) < self.scenario.duplicate_ratio {
            self.send(request, kind, true).await;
        }
        sent
    }

    async fn send(&self, request: &Request, kind: Kind, valid: bool) -> Sent {
        let mut builder = http::Request::post(format!(
            "{}/api/webhooks/{}",
            self.ingress, request.provider
        ));
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        let http_request = builder
            .body(Full::new(request.body.clone()))
            .expect("valid request parts");
        let started = Instant::now();
        let answer = match tokio::time::timeout(Duration::from_secs(30), async {
            let response = self.client.request(http_request).await?;
            let status = response.status();
            // Read the whole answer so the connection goes back to the pool.
            response.into_body().collect().await?;
            Ok::<_, anyhow::Error>(status)
        })
        .await
        {
            Ok(Ok(status)) => Answer::Status(status.as_u16()),
            Ok(Err(error)) => Answer::Failed(error.to_string()),
            Err(_) => Answer::TimedOut,
        };
        let span = Span {
            sent: started - self.started,
            answered: self.started.elapsed(),
        };
        let micros = started.elapsed().as_micros().max(1) as u64;
        let acknowledged = answer.acknowledged();
        let mut shared = self.shared.lock().expect("not poisoned");
        let shared = &mut *shared;
        for h in [&mut shared.latency, &mut shared.phase, &mut shared.second] {
            h.saturating_record(micros);
        }
        shared.requests += 1;
        shared.phase_requests += 1;
        if acknowledged {
            shared.acknowledged += 1;
            shared.phase_acknowledged += 1;
        }
        *shared.statuses.entry(answer.label()).or_default() += 1;
        shared.tally.note(&self.allowance, valid, span, &answer);
        let expected = shared
            .expected
            .entry(request.delivery_id.clone())
            .or_default();
        expected.kind = Some(kind);
        let sent = match answer {
            _ if acknowledged => Sent::Acknowledged,
            Answer::Status(400..=499) => Sent::Refused,
            _ => Sent::Unknown,
        };
        match sent {
            _ if !valid => expected.forged += 1,
            Sent::Acknowledged => expected.acknowledged += 1,
            Sent::Refused => {}
            Sent::Unknown => expected.uncertain += 1,
        }
        sent
    }
}

/// A well-mixed hash of the operation number (splitmix64), so the scenario's mix is
/// deterministic and spread evenly without a random number generator.
fn mix(op: u64, salt: u64) -> u64 {
    let mut z = op
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(salt.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_spreads_evenly() {
        let below = (0..10_000).filter(|&op| unit(mix(op, 2)) < 0.1).count();
        assert!((800..1200).contains(&below), "{below} of 10000 under 0.1");
    }
}
