//! The result of a run: a JSON file (everything measured and checked) and an SVG chart of the
//! latency percentiles and acknowledged requests per second over the run.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ceiling::Ceiling;
use crate::check::Checked;
use crate::drive::{Percentiles, PhaseResult, Second};
use crate::floor::Allowance;
use crate::scenario::Scenario;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub scenario: Scenario,
    pub run: String,
    pub requests: u64,
    /// Valid requests answered 2xx.
    pub acknowledged: u64,
    pub statuses: BTreeMap<String, u64>,
    pub distinct_delivery_ids: u64,
    pub duplicate_resends: u64,
    pub forged: u64,
    pub journeys_acknowledged: u64,
    #[serde(default)]
    pub abandonments_acknowledged: u64,
    /// The answers against the floor (`floor::Tally`), what the run excused (`floor::Allowance`)
    /// and why they fall below it.
    #[serde(default)]
    pub floor: serde_json::Value,
    #[serde(default)]
    pub floor_passed: bool,
    pub latency_ms: serde_json::Value,
    pub phases: serde_json::Value,
    pub timeline: serde_json::Value,
    pub checks: serde_json::Value,
    /// What the receiver counted per transition (`check::Receipts`).
    #[serde(default)]
    pub receipts: serde_json::Value,
    /// What arrived during the quiet period (`check::Quiet`).
    #[serde(default)]
    pub quiet: serde_json::Value,
    pub completeness_passed: bool,
    /// Set by `cartstream-load ceiling --report`.
    #[serde(default)]
    pub ceiling: Option<serde_json::Value>,
    /// The fastest phase's acknowledged requests per second over the ceiling's records per second.
    #[serde(default)]
    pub ingress_to_ceiling: Option<f64>,
}

pub fn build(
    scenario: &Scenario,
    run: &str,
    outcome: &crate::drive::Outcome,
    allowance: &Allowance,
    checked: &Checked,
) -> anyhow::Result<Report> {
    let requests = outcome.statuses.values().sum();
    let problems = outcome.tally.problems(allowance);
    let e = &outcome.expected;
    Ok(Report {
        scenario: scenario.clone(),
        run: run.to_string(),
        requests,
        acknowledged: outcome.tally.acknowledged,
        statuses: outcome.statuses.clone(),
        distinct_delivery_ids: e.values().filter(|e| e.acknowledged > 0).count() as u64,
        duplicate_resends: e
            .values()
            .map(|e| u64::from(e.acknowledged.saturating_sub(1)))
            .sum(),
        forged: e.values().map(|e| u64::from(e.forged)).sum(),
        journeys_acknowledged: outcome.journeys.len() as u64,
        abandonments_acknowledged: outcome.abandonments.len() as u64,
        floor: serde_json::json!({
            "tally": outcome.tally,
            "allowance": allowance,
            "problems": problems,
        }),
        floor_passed: problems.is_empty(),
        latency_ms: serde_json::to_value(Percentiles::of(&outcome.latency))?,
        phases: serde_json::to_value(&outcome.phases)?,
        timeline: serde_json::to_value(&outcome.timeline)?,
        checks: serde_json::to_value(&checked.topics)?,
        receipts: serde_json::to_value(&checked.receipts)?,
        quiet: serde_json::to_value(&checked.quiet)?,
        completeness_passed: checked.passed(),
        ceiling: None,
        ingress_to_ceiling: None,
    })
}

impl Report {
    pub fn fastest_phase(&self) -> Option<PhaseResult> {
        let phases: Vec<PhaseResult> = serde_json::from_value(self.phases.clone()).ok()?;
        phases.into_iter().max_by(|a, b| {
            a.acknowledged_per_second
                .total_cmp(&b.acknowledged_per_second)
        })
    }

    pub fn add_ceiling(&mut self, ceiling: &Ceiling) -> anyhow::Result<()> {
        self.ingress_to_ceiling = self
            .fastest_phase()
            .map(|p| p.acknowledged_per_second / ceiling.records_per_second);
        self.ceiling = Some(serde_json::to_value(ceiling)?);
        Ok(())
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")?;
        Ok(())
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
    }
}

/// Latency p50/p99/max per second (left axis, ms) over the run.
pub fn chart(path: &Path, title: &str, timeline: &[Second]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let seconds = timeline.last().map_or(1, |s| s.at.max(1));
    let top = timeline.iter().map(|s| s.max_ms).fold(1.0_f64, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0u64..seconds, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the run")
        .y_desc("latency (ms)")
        .draw()?;
    type Series = (&'static str, RGBColor, fn(&Second) -> f64);
    let series: [Series; 3] = [
        ("p50", BLUE, |s| s.p50_ms),
        ("p99", RED, |s| s.p99_ms),
        ("max", BLACK, |s| s.max_ms),
    ];
    for (name, color, value) in series {
        chart
            .draw_series(LineSeries::new(
                timeline.iter().map(|s| (s.at, value(s))),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}
