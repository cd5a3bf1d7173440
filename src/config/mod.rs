//! The configuration tree and its layered loading.
//!
//! Layers, later ones winning: the documented defaults embedded from `config/default.toml`, the
//! `--config` file, then `CARTSTREAM__SECTION__KEY` environment variables. Each module owns the
//! type of its section; this module assembles them, and reports every problem at once —
//! unreadable values, unknown keys and failed validations alike.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use figment::error::Kind;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::problems::Problems;

use crate::{admin, delivery, ingress, kafka, platforms, processor, telemetry, tenants};

/// The documented defaults; every key the daemon reads is in this file.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The prefix of environment overrides: `CARTSTREAM__INGRESS__MAX_BODY_BYTES=2097152`.
pub const ENV_PREFIX: &str = "CARTSTREAM__";

/// The whole configuration of one process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub ingress: ingress::Config,
    pub admin: admin::Config,
    pub kafka: kafka::Config,
    pub processor: processor::Config,
    pub delivery: delivery::Config,
    pub tenants: tenants::Config,
    pub telemetry: telemetry::Config,
    #[serde(default)]
    pub platforms: platforms::Config,
}

const SECTIONS: &[&str] = &[
    "ingress",
    "admin",
    "kafka",
    "processor",
    "delivery",
    "tenants",
    "telemetry",
    "platforms",
];

impl Config {
    /// Loads defaults, then `file` (if any), then the `CARTSTREAM__…` entries of `env`, and
    /// validates the result.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, Problems> {
        let (config, problems) = Self::load_lenient(file, env);
        problems.into_result(config)
    }

    /// Like [`Config::load`], but also returns the configuration when there are problems, with
    /// documented defaults in place of the bad values (so `check-config` can go on to check the
    /// tenant file the configuration names).
    pub fn load_lenient(file: Option<&Path>, env: &HashMap<String, String>) -> (Config, Problems) {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        let mut unreadable = Problems::default();
        if let Some(path) = file {
            if !path.is_file() {
                return (
                    Config::default(),
                    Problems::one(format!("config file {}: not found", path.display())),
                );
            }
            match File::read(path) {
                Ok(layer) => figment = figment.merge(layer),
                Err(problem) => unreadable.push(problem),
            }
        }
        let mut overrides: Vec<_> = env
            .iter()
            .filter_map(|(name, value)| {
                let path = name.strip_prefix(ENV_PREFIX)?;
                Some((path.to_ascii_lowercase().replace("__", "."), name, value))
            })
            .collect();
        overrides.sort();
        for (path, name, value) in overrides {
            if escape_after_non_ascii(value) {
                unreadable.push(format!(
                    "{name}: a backslash escape after a non-ASCII character cannot be read; write that character as \\u{{…}} too"
                ));
                continue;
            }
            let value =
                figment::value::Value::from_str(value).unwrap_or_else(|never| match never {});
            figment = figment.merge((path, value));
        }
        let (mut config, mut problems) = Self::extract(&figment);
        problems.extend(unreadable);
        config.resolve_paths(&figment);
        // Paths in the configuration are relative to its file's folder.
        let base = file.and_then(Path::parent).unwrap_or(Path::new("."));
        config.kafka.resolve_client(env, base, &mut problems);
        config
            .ingress
            .resolve_credentials_key(env, base, &mut problems);
        config
            .ingress
            .resolve_shopimind_app_secret(env, base, &mut problems);
        config.tenants.resolve_sealing_key(env, base, &mut problems);
        config.platforms.resolve(env, base, &mut problems);
        if config.platforms.shopimind.is_some() && config.ingress.shopimind_app_secret.is_none() {
            problems.push(
                "platforms.shopimind: needs ingress.shopimind_app_secret, which the installations it ties verify with"
                    .to_string(),
            );
        }
        (config, problems)
    }

    /// A relative path set in the config file is relative to that file's folder, so the
    /// daemon and `check-config` read the same files from any working directory; one from the
    /// defaults or an environment override stays relative to the working directory.
    fn resolve_paths(&mut self, figment: &Figment) {
        let paths = [
            ("tenants.file", &mut self.tenants.file),
            ("processor.state_dir", &mut self.processor.state_dir),
            ("delivery.state_dir", &mut self.delivery.state_dir),
        ];
        for (key, path) in paths {
            let source = figment.find_metadata(key).and_then(|m| m.source.as_ref());
            if let (Some(figment::Source::File(file)), false) = (source, path.is_absolute()) {
                if let Some(folder) = file.parent() {
                    *path = folder.join(&*path);
                }
            }
        }
    }

    /// Extracts section by section so that a bad value in one section does not hide the
    /// problems of the others.
    fn extract(figment: &Figment) -> (Config, Problems) {
        let mut problems = Problems::default();
        match figment.extract::<HashMap<String, figment::value::Value>>() {
            Ok(root) => {
                for key in root.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
                    problems.push(format!(
                        "unknown section `{key}`; known sections: {}",
                        SECTIONS.join(", ")
                    ));
                }
            }
            Err(e) => {
                for error in e {
                    problems.push(error.to_string());
                }
            }
        }
        let config = Config {
            ingress: section(figment, "ingress", &mut problems),
            admin: section(figment, "admin", &mut problems),
            kafka: section(figment, "kafka", &mut problems),
            processor: section(figment, "processor", &mut problems),
            delivery: section(figment, "delivery", &mut problems),
            tenants: section(figment, "tenants", &mut problems),
            telemetry: section(figment, "telemetry", &mut problems),
            platforms: section(figment, "platforms", &mut problems),
        };
        config.ingress.validate(&mut problems);
        config.admin.validate(&mut problems);
        config.kafka.validate(&mut problems);
        config.processor.validate(&mut problems);
        config.delivery.validate(&mut problems);
        config.telemetry.validate(&mut problems);
        if config.admin.listen == config.ingress.listen && config.admin.listen.port() != 0 {
            problems.push("admin.listen: must differ from ingress.listen".to_string());
        }
        (config, problems)
    }
}

/// The `--config` file as a layer. Read here rather than by figment's `Toml`, whose errors are
/// the `toml` crate's text, which quotes the offending line — and a line of this file may hold
/// a secret (`[kafka.client]`'s passwords): a syntax error names its line and column only.
struct File {
    path: PathBuf,
    values: Dict,
}

impl File {
    fn read(path: &Path) -> Result<File, String> {
        let at = format!("config file {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| format!("{at}: cannot read: {e}"))?;
        let values = toml::from_str(&text)
            .map_err(|e| format!("{at}: {}", crate::problems::toml_error(&text, &e)))?;
        Ok(File {
            path: path.to_path_buf(),
            values,
        })
    }
}

impl Provider for File {
    /// As figment's `Toml::file_exact` names it: [`Config::resolve_paths`] reads the path.
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", self.path.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// Extracts one section. On a bad value it records the problem, puts the documented default in
/// its place (or drops an unknown key) and tries again, so every bad key of the section is
/// reported, not only the first one serde meets.
fn section<T: DeserializeOwned + Default>(
    figment: &Figment,
    name: &str,
    problems: &mut Problems,
) -> T {
    let defaults = Figment::from(Toml::string(DEFAULT_TOML));
    let mut dict = match figment.find_value(name) {
        Ok(Value::Dict(_, dict)) => dict,
        Ok(_) => {
            problems.push(format!("{name}: must be a table"));
            return T::default();
        }
        Err(_) => Dict::new(),
    };
    // Each round fixes at least one key, so the number of keys bounds the rounds.
    for _ in 0..=count_keys(&dict) {
        let errors = match Figment::from(Serialized::defaults(&dict)).extract::<T>() {
            Ok(value) => return value,
            Err(errors) => errors,
        };
        for error in errors {
            let mut path = error.path.clone();
            let unknown = if let Kind::UnknownField(field, _) = &error.kind {
                if path.last() != Some(field) {
                    path.push(field.clone());
                }
                true
            } else {
                false
            };
            problems.push(format!("{name}.{}: {}", path.join("."), error.kind));
            let default = if unknown {
                None
            } else {
                defaults
                    .find_value(&format!("{name}.{}", path.join(".")))
                    .ok()
            };
            if !repair(&mut dict, &path, default) {
                return T::default();
            }
        }
    }
    T::default()
}

fn count_keys(dict: &Dict) -> usize {
    dict.values()
        .map(|value| match value {
            Value::Dict(_, inner) => 1 + count_keys(inner),
            _ => 1,
        })
        .sum()
}

/// Replaces the value at `path` with `default`, or removes it. `false` when nothing changed.
fn repair(dict: &mut Dict, path: &[String], default: Option<Value>) -> bool {
    match path {
        [] => false,
        [key] => match default {
            Some(default) => dict.insert(key.clone(), default.clone()).as_ref() != Some(&default),
            None => dict.remove(key).is_some(),
        },
        [key, rest @ ..] => match dict.get_mut(key) {
            Some(Value::Dict(_, inner)) => repair(inner, rest, default),
            _ => false,
        },
    }
}

/// Reads the process environment into the map [`Config::load`] takes.
pub fn process_env() -> HashMap<String, String> {
    std::env::vars().collect()
}

#[cfg(test)]
mod tests;

/// Whether an environment value has a backslash after a non-ASCII character: figment's reading of
/// quoted strings (0.10) slices such a value at a character count taken for a byte offset and
/// panics. Found by the `config` fuzz target; refused with a problem instead.
fn escape_after_non_ascii(value: &str) -> bool {
    value
        .find(|c: char| !c.is_ascii())
        .is_some_and(|first| value[first..].contains('\\'))
}
