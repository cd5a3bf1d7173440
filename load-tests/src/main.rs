//! `cartstream-load`: a load generator for cartstream's ingress with a completeness check.
//!
//! - `tenants` writes the registry for a scenario's tenants (give it to the daemon), with an
//!   outbound endpoint per tenant at the run's receiver when asked.
//! - `run` sends the scenario's signed webhooks (`drive`), holds every answer to the floor —
//!   valid requests acknowledged, forged ones refused, nothing excused outside a stated
//!   disruption (`floor`) — then proves from Kafka that every acknowledged delivery is there
//!   exactly once and every transition the run made due happened once (`check`) — and, with
//!   `--receiver`, that each was delivered to the local receiver (`receiver`) — and writes
//!   `result.json` and `latency.svg` (`report`). Exits 1 when the floor or the check fails.
//! - `ceiling` measures a plain producer against the same broker (`ceiling`) and adds the
//!   ingress-to-ceiling ratio to a run's `result.json`.

mod ceiling;
mod check;
mod drive;
mod floor;
mod receiver;
mod report;
mod scenario;
mod tenants;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};

use crate::floor::{Allowance, Window};
use crate::scenario::Scenario;
use crate::tenants::Tenant;
use crate::webhooks::{Kind, Templates};

#[derive(Parser)]
#[command(
    version,
    about = "Load generator and completeness check for cartstream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the tenant registry (`tenants.file`) for a scenario's tenants.
    Tenants {
        #[arg(long)]
        scenario: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Subscribe every tenant to `<URL>/hooks/<tenant id>` (the receiver of `run --receiver`).
        #[arg(long, value_name = "URL")]
        receiver: Option<String>,
    },
    /// Send a scenario to the ingress, check Kafka, write result.json and latency.svg.
    Run {
        #[arg(long)]
        scenario: PathBuf,
        /// The ingress's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        ingress: String,
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// The daemon's `kafka.topic_prefix`; its topics must hold this run's records only.
        #[arg(long)]
        prefix: String,
        /// The processor runs too (`cartstream all`): check events and transitions.
        #[arg(long)]
        processor: bool,
        /// Run the endpoint the tenants subscribe (`tenants --receiver`) on this address and check
        /// that every transition was delivered to it (the daemon runs the delivery role too).
        #[arg(long, value_name = "ADDRESS", requires = "processor")]
        receiver: Option<SocketAddr>,
        /// How long to wait for the processor when no new record arrives, e.g. "60s".
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        patience: Duration,
        /// Once everything expected has arrived, how long to go on watching the topics and the
        /// receiver for a late duplicate or a stray record.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        quiet: Duration,
        /// A disruption the run causes (e.g. a broker killed and restarted), in time from the
        /// start of the first phase, e.g. "4s..30s": requests overlapping it may be answered
        /// 503, 504 or not in time, up to --max-disrupted-share of them. Outside it, and
        /// without it, every valid request must be acknowledged and every forged one refused.
        #[arg(long, value_name = "FROM..TO", requires = "max_disrupted_share")]
        disruption: Option<Window>,
        /// The largest share (0 to 1) of the requests overlapping --disruption that may be
        /// answered 503, 504 or not in time instead of as they deserve.
        #[arg(long, value_name = "SHARE", requires = "disruption")]
        max_disrupted_share: Option<f64>,
        /// The most validly signed requests the receiver may get for one transition: 1, unless
        /// the run makes at-least-once delivery send some twice.
        #[arg(long, default_value_t = 1, requires = "receiver")]
        max_receipts: u32,
        #[arg(long, default_value = "tests/fixtures/providers")]
        fixtures: PathBuf,
        /// Folder for result.json and latency.svg.
        #[arg(long, default_value = "load-tests/results")]
        out: PathBuf,
    },
    /// Measure a plain acks=all producer against the broker; add the ratio to a run's report.
    Ceiling {
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value = "tests/fixtures/providers")]
        fixtures: PathBuf,
        /// The record body (a webhook body, as the ingress would produce it); by default a
        /// Shopify checkout of the run's first tenant, made from the fixtures.
        #[arg(long)]
        body: Option<PathBuf>,
        /// The record key and `cartstream-tenant` header; by default the run's first tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// A run's result.json to add the ceiling and the ratio to.
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cartstream-load: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Tenants {
            scenario,
            out,
            receiver,
        } => {
            let scenario = Scenario::load(&scenario)?;
            let registry = tenants::registry_toml(scenario.tenants, receiver.as_deref())?;
            std::fs::write(&out, registry).with_context(|| format!("writing {}", out.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            scenario: path,
            ingress,
            brokers,
            prefix,
            processor,
            receiver,
            patience,
            quiet,
            disruption,
            max_disrupted_share,
            max_receipts,
            fixtures,
            out,
        } => {
            let scenario = Scenario::load(&path)?;
            let allowance = match disruption {
                None => Allowance::NONE,
                window => Allowance {
                    window,
                    max_share: max_disrupted_share.unwrap_or(0.0),
                },
            };
            anyhow::ensure!(
                (0.0..=1.0).contains(&allowance.max_share),
                "--max-disrupted-share must be between 0 and 1"
            );
            anyhow::ensure!(max_receipts >= 1, "--max-receipts must be at least 1");
            let templates = Templates::load(&fixtures)?;
            // A run id from the clock, so that ids differ between runs on the same topics.
            let run = format!(
                "{:x}",
                (cartstream::clock::Clock::System.now_millis() / 1000) % 0xffff_ffff
            );
            let receiver = match receiver {
                Some(listen) => Some(receiver::Receiver::start(listen).await?),
                None => None,
            };
            println!(
                "scenario {} ({}): {} tenants, {} in flight at most, providers {:?}",
                scenario.name,
                path.display(),
                scenario.tenants,
                scenario.concurrency,
                scenario.providers
            );
            match allowance.window {
                Some(w) => println!(
                    "disruption stated from {:?} to {:?}: at most {} of the requests overlapping it may be answered 503, 504 or not in time",
                    w.from, w.to, allowance.max_share
                ),
                None => println!("no disruption stated: every valid request must be acknowledged"),
            }
            let outcome = drive::Driver {
                scenario: scenario.clone(),
                templates,
                ingress,
                run: run.clone(),
                allowance,
            }
            .run()
            .await?;
            println!("checking {prefix}.* topics on {brokers} …");
            let checked = check::run(
                check::Topics {
                    brokers,
                    prefix,
                    processor,
                    patience,
                    quiet,
                    receiver: receiver.as_ref().map(receiver::Receiver::log),
                    max_receipts,
                },
                &outcome,
            )
            .await?;
            let report = report::build(&scenario, &run, &outcome, &allowance, &checked)?;
            std::fs::create_dir_all(&out)?;
            report.write(&out.join("result.json"))?;
            report::chart(
                &out.join("latency.svg"),
                &format!("cartstream ingress latency — scenario {}", scenario.name),
                &outcome.timeline,
            )?;
            print_summary(&report, &outcome, &allowance, &checked);
            println!("wrote {0}/result.json and {0}/latency.svg", out.display());
            let problems = outcome.tally.problems(&allowance);
            for problem in &problems {
                eprintln!("FAILED: {problem}");
            }
            if !report.completeness_passed {
                eprintln!("FAILED: the completeness check found missing, extra or late records");
            }
            if !problems.is_empty() || !report.completeness_passed {
                return Ok(ExitCode::FAILURE);
            }
            println!("floor and completeness: PASSED");
            Ok(ExitCode::SUCCESS)
        }
        Command::Ceiling {
            brokers,
            topic,
            in_flight,
            seconds,
            fixtures,
            body,
            tenant,
            report,
        } => {
            let body = match body {
                Some(path) => Bytes::from(
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                ),
                None => {
                    Templates::load(&fixtures)?
                        .request("shopify", Kind::Checkout, Tenant(0), "ceiling", 0, true)
                        .body
                }
            };
            let tenant = tenant.unwrap_or_else(|| Tenant(0).id());
            let ceiling = ceiling::run(&brokers, &topic, &tenant, body, in_flight, seconds).await?;
            println!(
                "plain producer: {} records acknowledged, {} failed, in {:.1} s: {:.0} records/s ({} in flight)",
                ceiling.acknowledged,
                ceiling.failed,
                ceiling.seconds,
                ceiling.records_per_second,
                ceiling.in_flight
            );
            if let Some(path) = report {
                let mut report = report::Report::read(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                report.add_ceiling(&ceiling)?;
                report.write(&path)?;
                if let (Some(phase), Some(ratio)) =
                    (report.fastest_phase(), report.ingress_to_ceiling)
                {
                    println!(
                        "ingress ({} phase): {:.0} acknowledged requests/s = {:.2} × the plain producer's {:.0} records/s",
                        phase.name, phase.acknowledged_per_second, ratio, ceiling.records_per_second
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_summary(
    report: &report::Report,
    outcome: &drive::Outcome,
    allowance: &Allowance,
    checked: &check::Checked,
) {
    println!(
        "\n{} requests, {} acknowledged; {} distinct acknowledged deliveries, {} duplicate re-sends, {} forged, {} journeys, {} abandonments",
        report.requests,
        report.acknowledged,
        report.distinct_delivery_ids,
        report.duplicate_resends,
        report.forged,
        report.journeys_acknowledged,
        report.abandonments_acknowledged
    );
    println!("statuses: {:?}", report.statuses);
    let t = &outcome.tally;
    println!(
        "{} floor: {} of {} valid requests acknowledged, {} of {} forged refused with 401; {} requests below the floor {:?}",
        if report.floor_passed { "ok  " } else { "FAIL" },
        t.acknowledged,
        t.valid,
        t.forged_refused,
        t.forged,
        t.broken.values().sum::<u64>(),
        t.broken
    );
    if let Some(w) = allowance.window {
        println!(
            "       disruption {:?}..{:?}: {} requests overlap it, {} excused (answered 503, 504 or not in time; the stated share {} allows {:.0}){}",
            w.from,
            w.to,
            t.in_window,
            t.excused,
            allowance.max_share,
            (allowance.max_share * t.in_window as f64).floor(),
            match (t.excused_from_s, t.excused_to_s) {
                (Some(from), Some(to)) => format!(", sent from {from:.1} s to {to:.1} s"),
                _ => String::new(),
            }
        );
    }
    println!(
        "transitions due: {} order_completed (journeys), {} abandoned_candidate (abandonments), {} uncertain (at most once each)",
        outcome.journeys.len(),
        outcome.abandonments.len(),
        outcome.uncertain_transitions.len()
    );
    if let Some(r) = &checked.receipts {
        println!(
            "receipts per transition (validly signed, at most {}): {:?}; {} badly signed, {} for unknown transitions, {} failed attempts",
            r.max_per_transition, r.per_transition, r.invalid, r.unknown, r.failed_attempts
        );
    }
    println!(
        "quiet period {:.1} s after everything expected arrived: late records {:?}, late receipts {}",
        checked.quiet.seconds, checked.quiet.late_records, checked.quiet.late_receipts
    );
    for phase in &outcome.phases {
        let l = &phase.latency_ms;
        println!(
            "phase {:<8} target {:>5}/s: {:>6} requests, {:>8.1} acknowledged/s; latency ms p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}",
            phase.name, phase.target_rate, phase.requests, phase.acknowledged_per_second,
            l.p50, l.p90, l.p99, l.p999, l.max
        );
    }
    for c in &checked.topics {
        println!(
            "{} {}: {} records, {} expected, {} missing, {} duplicated, {} unexpected",
            if c.passed() { "ok  " } else { "FAIL" },
            c.topic,
            c.records,
            c.expected,
            c.missing,
            c.duplicated,
            c.unexpected
        );
        for example in &c.examples {
            println!("       {example}");
        }
    }
}
