//! The registry of tenants (merchant stores) and their integrations, read from `tenants.toml`.
//!
//! The ingress resolves a delivery to one integration — by the integration key in the URL, or
//! by the provider's clue (shop domain, merchant id, …) — and verifies it with that
//! integration's keys only. A clue in a payload never authenticates anything by itself.
//!
//! The same registry can be read from records of the tenants topic ([`Records`]), which a file
//! is also imported into ([`plan`]): both are validated alike.

mod claims;
mod file;
mod live;
mod records;
mod registrar;
mod secret;
mod status;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::credentials::{Keyring, Vault};
use crate::problems::Problems;
use crate::providers::{Keys, Provider, Scheme};

pub use claims::Claims;
pub use live::Live;
pub use records::{
    integration_id, plan, rotate, seal_for, secret_of, valid_clue, Plan, Reading, Records,
    Unreadable,
};
pub use registrar::{Check, Refused, Registrar};
pub use secret::Secret;
pub use status::{Seen, Status, Written};

/// The `[tenants]` section of the daemon's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the daemon reads its tenants: the file (read once, at start) or the tenants topic
    /// (read to its end at start, then followed: changes are in force while it runs).
    #[serde(default)]
    pub source: Source,
    /// Path of the tenant registry file, relative to the working directory.
    pub file: std::path::PathBuf,
    /// The key the secrets of the tenants topic are sealed with (32 bytes, base64): the text,
    /// or `{ env = "VARIABLE" }`, or `{ file = "path" }`. A key of its own, not
    /// `ingress.credentials_key`: whoever may read the platforms' tokens need not be able to
    /// read every tenant's webhook secrets, and each can be replaced without the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealing_key: Option<crate::kafka::Property>,
    /// Keys secrets were sealed with before `sealing_key` replaced them: they open what is
    /// still sealed under them and seal nothing (`cartstream tenants rekey` seals it again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_sealing_keys: Vec<crate::kafka::Property>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: Source::File,
            file: "config/tenants.example.toml".into(),
            sealing_key: None,
            previous_sealing_keys: Vec::new(),
        }
    }
}

/// Where the daemon reads its tenants (`tenants.source`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `tenants.file`, read once at start.
    #[default]
    File,
    /// `<prefix>.tenants.v1`, written by `cartstream tenants apply`: read to its end before the
    /// roles start, then followed.
    Topic,
}

impl Config {
    /// Reads `sealing_key` and `previous_sealing_keys` from where they are kept and checks each
    /// is a key, without showing it.
    pub fn resolve_sealing_key(
        &mut self,
        env: &HashMap<String, String>,
        base: &Path,
        problems: &mut Problems,
    ) {
        for (n, key) in self.previous_sealing_keys.iter_mut().enumerate() {
            if let Err(why) = resolve_key(key, env, base) {
                problems.push(format!("tenants.previous_sealing_keys[{n}]: {why}"));
            }
        }
        if self.sealing_key.is_none() && !self.previous_sealing_keys.is_empty() {
            problems.push("tenants.previous_sealing_keys: set without tenants.sealing_key");
        }
        let Some(key) = &mut self.sealing_key else {
            if self.source == Source::Topic {
                problems.push(
                    "tenants.sealing_key: must be set when tenants.source is \"topic\" (the topic's secrets are sealed with it)",
                );
            }
            return;
        };
        if let Err(why) = resolve_key(key, env, base) {
            problems.push(format!("tenants.sealing_key: {why}"));
        }
    }

    /// The keys of `sealing_key` (sealing and opening) and `previous_sealing_keys` (opening
    /// only), once resolved and checked.
    pub fn keyring(&self) -> Option<Keyring> {
        let vault = |key: &crate::kafka::Property| Vault::from_base64(key.text()?).ok();
        let previous = self
            .previous_sealing_keys
            .iter()
            .map(vault)
            .collect::<Option<_>>()?;
        Some(Keyring::new(vault(self.sealing_key.as_ref()?)?, previous))
    }
}

/// Reads `key` from where it is kept and checks it is a key; why not, without showing it.
fn resolve_key(
    key: &mut crate::kafka::Property,
    env: &HashMap<String, String>,
    base: &Path,
) -> Result<(), String> {
    key.resolve(env, base)?;
    Vault::from_base64(key.text().unwrap_or_default())
        .map(drop)
        .map_err(|e| e.to_string())
}

/// What `parse` makes of the registry file at `path` and its folder (where secret files are
/// found), its problems prefixed with the path.
fn read_file<T>(
    path: &Path,
    parse: impl FnOnce(&str, &Path) -> Result<T, Problems>,
) -> Result<T, Problems> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problems::one(format!("tenants file {}: cannot read: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|problems| problems.prefixed(&path.display().to_string()))
}

/// Why `key` cannot be a publishable key: `pk_` and 16 to 128 letters, digits, `_` or `-`.
pub fn publishable_key(key: &str) -> Result<(), &'static str> {
    let rest = key.strip_prefix("pk_").ok_or("must start with \"pk_\"")?;
    let fits = (16..=128).contains(&rest.len())
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    fits.then_some(())
        .ok_or("must be \"pk_\" and 16 to 128 letters, digits, '_' or '-'")
}

/// What an allowed origin may be: `http` or `https`, a host name (whose last label starts with
/// a letter) or an IPv4 address, an optional port, an optional `/`. The documents give the same
/// pattern (docs/openapi.json, schemas/tenants.v1.json), so what they call valid is taken.
pub const ORIGIN_PATTERN: &str = concat!(
    r"^https?://(",
    r"((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])",
    r"|([A-Za-z0-9]+(-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*",
    r")(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0))?/?$",
);

/// An origin as browsers send it in `Origin` (`https://shop.example`, `http://localhost:3000`):
/// the host lower-cased, the port only when not the scheme's default; why not, for anything
/// [`ORIGIN_PATTERN`] does not match (a path, a query, a user, another scheme, `*`, `null`).
pub fn origin(given: &str) -> Result<String, &'static str> {
    const FORM: &str =
        "must be a scheme, a host and an optional port, such as \"https://shop.example\"";
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let pattern =
        PATTERN.get_or_init(|| regex::Regex::new(ORIGIN_PATTERN).expect("a valid pattern"));
    if !pattern.is_match(given) {
        return Err(FORM);
    }
    let url = url::Url::parse(given).map_err(|_| FORM)?;
    Ok(url.origin().ascii_serialization())
}

/// A tenant's `allowed_origins` as browsers send them ([`origin`]: `https://Shop.example/` is
/// `https://shop.example`), each once; one that is no origin is the text given and why.
pub fn origins(given: &[String]) -> Vec<Result<String, (&str, &'static str)>> {
    let mut origins = Vec::with_capacity(given.len());
    for text in given {
        let origin = origin(text).map_err(|why| (text.as_str(), why));
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    origins
}

/// The default inactivity window of a tenant's carts.
pub const DEFAULT_INACTIVITY_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The owner of what an installation nobody has claimed yet sent (ShopiMind installs): the
/// tenant id of its inbound record and sealed credentials. No tenant may take this id.
pub const UNCLAIMED: &str = "unclaimed";

/// One merchant store.
#[derive(Debug)]
pub struct Tenant {
    pub id: Arc<str>,
    /// How long a cart may stay idle before it counts as abandoned.
    pub inactivity_window: Duration,
    /// Whether its endpoints may be plain `http://` URLs.
    pub allow_plain_http: bool,
    /// The public key its storefront signals name it by (`pk_…`).
    pub publishable_key: Option<String>,
    /// The origins whose pages may send its storefront signals, as [`origin`] writes them.
    pub allowed_origins: Vec<String>,
    /// Disabled by the operator (`enabled = false`): the ingress refuses its deliveries and
    /// signals as an unknown tenant's (401), and its endpoints get nothing (`skipped_disabled`).
    pub disabled: bool,
}

/// One tenant's connection to one platform.
#[derive(Debug)]
pub struct Integration {
    pub tenant: Arc<Tenant>,
    pub provider: &'static dyn Provider,
    /// The normalized clue (shop domain, merchant id, …), when the provider has one. For
    /// providers whose secret is the clue, the [`secret_clue`](crate::providers::secret_clue)
    /// of the current secret (the previous one finds the integration too).
    pub clue: Option<String>,
    /// The opaque key of `/api/webhooks/{provider}/{integration_key}`, when configured.
    pub key: Option<String>,
    /// The current secret, then the previous one during a rotation; `None` when the
    /// deployment's platform app signs its deliveries ([`crate::platforms::keys_of`]).
    pub keys: Option<Keys>,
    /// The generic scheme that authenticates and inspects this integration's deliveries in
    /// place of the provider's own conventions (Vendera).
    pub scheme: Option<Scheme>,
    /// The event type of this integration's deliveries when the delivery names none (a Zid
    /// subscription is per event, and its payloads may not say which).
    pub event: Option<String>,
    /// What the ingress saw of it lately, on this instance (kept across registries by
    /// [`Live`]).
    pub status: Arc<Status>,
}

/// One of a tenant's outbound webhook destinations (SPEC §3, §6).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub tenant: Arc<Tenant>,
    /// Unique within the tenant; names the endpoint in outcomes and operator actions.
    pub id: String,
    /// `http` or `https`, with a host.
    pub url: http::Uri,
    /// The signing secrets: the current one first, then the one being rotated out. Every one
    /// of them signs (Standard Webhooks), so receivers may hold either.
    pub secrets: Vec<Secret>,
    /// The transition kinds delivered to it.
    pub events: Vec<crate::topics::event::Bucket>,
    /// The endpoint's own retry schedule, in place of the global one.
    pub retry_schedule: Option<Vec<Duration>>,
    /// Disabled by the operator (`enabled = false`): its transitions end `skipped_disabled`
    /// without an attempt until it is enabled again.
    pub disabled: bool,
}

/// Every tenant, integration and endpoint, indexed for the ingress's and the delivery worker's
/// look-ups.
#[derive(Debug, Default)]
pub struct Registry {
    tenants: Vec<Arc<Tenant>>,
    by_id: HashMap<Arc<str>, usize>,
    integrations: Vec<Integration>,
    /// Each tenant's endpoints are contiguous: these.
    endpoints: Vec<Endpoint>,
    endpoints_of: HashMap<Arc<str>, std::ops::Range<usize>>,
    by_clue: HashMap<(&'static str, String), usize>,
    by_key: HashMap<String, usize>,
    /// Tenants by their publishable key.
    by_publishable_key: HashMap<String, usize>,
    /// Every origin some tenant allows, for preflights that name no key.
    origins: HashSet<String>,
    warnings: Vec<String>,
}

impl Registry {
    /// Reads and validates a registry file. Secrets given as `{ env = "NAME" }` are looked up
    /// in `env`; `{ file = "PATH" }` paths are relative to the registry file's folder.
    pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Registry, Problems> {
        read_file(path, |text, base| file::parse(text, base, env))
    }

    /// Parses a registry from TOML text (file references resolve against `base`).
    pub fn from_toml(
        text: &str,
        base: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Registry, Problems> {
        file::parse(text, base, env)
    }

    /// Adds a tenant, whose endpoints are those added since `first_endpoint`.
    fn insert_tenant(&mut self, tenant: Arc<Tenant>, first_endpoint: usize) {
        if let Some(key) = &tenant.publishable_key {
            self.by_publishable_key
                .insert(key.clone(), self.tenants.len());
        }
        self.origins.extend(tenant.allowed_origins.iter().cloned());
        self.by_id.insert(tenant.id.clone(), self.tenants.len());
        self.endpoints_of
            .insert(tenant.id.clone(), first_endpoint..self.endpoints.len());
        self.tenants.push(tenant);
    }

    /// Adds an integration, found by each of `clues` (several when each secret of a rotation
    /// is a clue) and by its integration key.
    fn insert(&mut self, integration: Integration, clues: Vec<String>) {
        let index = self.integrations.len();
        for clue in clues {
            self.by_clue
                .insert((integration.provider.slug(), clue), index);
        }
        if let Some(key) = &integration.key {
            self.by_key.insert(key.clone(), index);
        }
        self.integrations.push(integration);
    }

    /// The integration a delivery belongs to: by `key` when the URL has one (the clue, when
    /// present too, must agree with it), else by the provider's clue.
    pub fn resolve(
        &self,
        provider: &str,
        key: Option<&str>,
        clue: Option<&str>,
    ) -> Option<&Integration> {
        let by_clue = |clue: &str| self.by_clue.get(&(provider, clue.to_string())).copied();
        let integration = match key {
            Some(key) => {
                let index = *self.by_key.get(key)?;
                let found = &self.integrations[index];
                match clue {
                    Some(given) if found.clue.is_some() && by_clue(given) != Some(index) => {
                        return None
                    }
                    _ => found,
                }
            }
            None => &self.integrations[by_clue(clue?)?],
        };
        (integration.provider.slug() == provider).then_some(integration)
    }

    /// The integration a platform's test delivery comes from: named by the URL's integration
    /// `key`, while the payload's `clue` (a sample store) names no integration at all. Only a
    /// delivery whose secret then verifies with this integration's keys is taken, as a test.
    pub fn resolve_sample(
        &self,
        provider: &str,
        key: Option<&str>,
        clue: Option<&str>,
    ) -> Option<&Integration> {
        let found = &self.integrations[*self.by_key.get(key?)?];
        let unknown_clue = !self.by_clue.contains_key(&(provider, clue?.to_string()));
        (found.provider.slug() == provider && found.clue.is_some() && unknown_clue).then_some(found)
    }

    /// What is allowed but unwise in the file (two integrations sharing a secret): reported by
    /// `check-config` and logged at start.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The tenant with this id.
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.by_id.get(id).map(|&index| &*self.tenants[index])
    }

    /// The tenant whose publishable key this is.
    pub fn tenant_by_publishable_key(&self, key: &str) -> Option<&Arc<Tenant>> {
        self.by_publishable_key
            .get(key)
            .map(|&index| &self.tenants[index])
    }

    /// Whether some tenant allows pages of `origin` (as [`origin`] writes it) to send signals.
    pub fn origin_allowed_by_any(&self, origin: &str) -> bool {
        self.origins.contains(origin)
    }

    pub fn tenants(&self) -> &[Arc<Tenant>] {
        &self.tenants
    }

    pub fn integrations(&self) -> &[Integration] {
        &self.integrations
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The endpoints of `tenant`.
    pub fn endpoints_of(&self, tenant: &str) -> &[Endpoint] {
        self.endpoints_of
            .get(tenant)
            .map_or(&[], |range| &self.endpoints[range.clone()])
    }

    /// The endpoint `id` of `tenant`.
    pub fn endpoint(&self, tenant: &str, id: &str) -> Option<&Endpoint> {
        self.endpoints_of(tenant).iter().find(|e| e.id == id)
    }

    /// The endpoints of `tenant` subscribed to `event`.
    pub fn endpoints_for<'r>(
        &'r self,
        tenant: &'r str,
        event: crate::topics::event::Bucket,
    ) -> impl Iterator<Item = &'r Endpoint> {
        self.endpoints_of(tenant)
            .iter()
            .filter(move |e| e.events.contains(&event))
    }
}

#[cfg(test)]
mod tests;
