//! A scenario file (`load-tests/scenarios/*.toml`): how many tenants, which providers, what share
//! of duplicates, bad signatures, checkout-then-order journeys and abandoned checkouts, and the
//! phases of the run.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Tenants in the generated registry; requests are spread over all of them.
    pub tenants: usize,
    /// Requests in flight at most (keep-alive connections are pooled up to this).
    pub concurrency: usize,
    /// Providers of single deliveries: `shopify`, `salla`, `zid`.
    pub providers: Vec<String>,
    /// Share of acknowledged deliveries sent a second time, byte for byte.
    #[serde(default)]
    pub duplicate_ratio: f64,
    /// Share of operations sent with a signature made with the wrong secret (expect 401).
    #[serde(default)]
    pub invalid_signature_ratio: f64,
    /// Share of operations that are a Shopify checkout followed, once acknowledged, by its order.
    #[serde(default)]
    pub journey_ratio: f64,
    /// Share of operations that are a Shopify checkout last updated longer ago than the tenant's
    /// inactivity window, and never ordered: its cart is due to be abandoned on arrival.
    #[serde(default)]
    pub abandonment_ratio: f64,
    pub phase: Vec<Phase>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    /// Operations started per second; 0 means as fast as `concurrency` allows.
    pub rate: u32,
    pub seconds: u64,
}

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the scenario {}", path.display()))?;
        let scenario: Scenario =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if self.tenants == 0 {
            problems.push("tenants must be at least 1".to_string());
        }
        if self.concurrency == 0 {
            problems.push("concurrency must be at least 1".to_string());
        }
        if self.providers.is_empty() {
            problems.push("providers must name at least one provider".to_string());
        }
        for provider in &self.providers {
            if !["shopify", "salla", "zid"].contains(&provider.as_str()) {
                problems.push(format!("unknown provider {provider:?}"));
            }
        }
        for (name, ratio) in [
            ("duplicate_ratio", self.duplicate_ratio),
            ("invalid_signature_ratio", self.invalid_signature_ratio),
            ("journey_ratio", self.journey_ratio),
            ("abandonment_ratio", self.abandonment_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                problems.push(format!("{name} must be between 0 and 1"));
            }
        }
        if self.invalid_signature_ratio + self.journey_ratio + self.abandonment_ratio > 1.0 {
            problems.push(
                "invalid_signature_ratio + journey_ratio + abandonment_ratio must not exceed 1"
                    .to_string(),
            );
        }
        if self.phase.is_empty() {
            problems.push("at least one [[phase]] is needed".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid scenario: {}", problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_scenario_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            seen += 1;
        }
        assert!(seen >= 2, "expected the shipped scenarios, found {seen}");
    }

    #[test]
    fn unknown_providers_and_bad_ratios_are_reported_together() {
        let scenario: Scenario = toml::from_str(
            r#"
            name = "x"
            tenants = 1
            concurrency = 1
            providers = ["nope"]
            duplicate_ratio = 2.0
            [[phase]]
            name = "p"
            rate = 1
            seconds = 1
            "#,
        )
        .unwrap();
        let error = scenario.validate().unwrap_err().to_string();
        assert!(error.contains("unknown provider"), "{error}");
        assert!(error.contains("duplicate_ratio"), "{error}");
    }
}
