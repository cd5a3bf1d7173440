//! The `tenants.toml` format and its validation. Every problem in the file is reported at once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{Endpoint, Integration, Registry, Secret, Tenant, DEFAULT_INACTIVITY_WINDOW};
use crate::problems::Problems;
use crate::providers::{self, scheme, Key, Keys, Scheme, SECRET_CLUE};
use crate::topics::event::Bucket;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tenant: Vec<TenantSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantSpec {
    id: String,
    #[serde(default, with = "humantime_serde")]
    inactivity_window: Option<Duration>,
    #[serde(default)]
    allow_plain_http: bool,
    #[serde(default)]
    integration: Vec<IntegrationSpec>,
    #[serde(default)]
    endpoint: Vec<EndpointSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointSpec {
    id: String,
    url: String,
    secret: SecretSpec,
    #[serde(default)]
    previous_secret: Option<SecretSpec>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    retry_schedule: Option<Vec<String>>,
}

/// The transition kinds an endpoint can subscribe to.
const ENDPOINT_EVENTS: [(&str, Bucket); 2] = [
    ("abandoned_candidate", Bucket::AbandonedCandidate),
    ("order_completed", Bucket::OrderCompleted),
];
/// Attempts an endpoint's own retry schedule may list.
const MAX_RETRY_STEPS: usize = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntegrationSpec {
    provider: String,
    #[serde(default)]
    shop_domain: Option<String>,
    #[serde(default)]
    merchant_id: Option<String>,
    #[serde(default)]
    store_id: Option<String>,
    #[serde(default)]
    installation_id: Option<String>,
    #[serde(default)]
    flexype_store: Option<String>,
    #[serde(default)]
    integration_key: Option<String>,
    secret: SecretSpec,
    #[serde(default)]
    previous_secret: Option<SecretSpec>,
    #[serde(default)]
    scheme: Option<scheme::Spec>,
    #[serde(default)]
    event: Option<String>,
}

impl IntegrationSpec {
    /// The clue fields set on this integration, by name.
    fn clues(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("shop_domain", &self.shop_domain),
            ("merchant_id", &self.merchant_id),
            ("store_id", &self.store_id),
            ("installation_id", &self.installation_id),
            ("flexype_store", &self.flexype_store),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
    }
}

/// Where a secret comes from: inline (development), an environment variable, or a file.
#[derive(Deserialize)]
#[serde(untagged)]
enum SecretSpec {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
}

impl SecretSpec {
    fn resolve(&self, base: &Path, env: &HashMap<String, String>) -> Result<String, String> {
        match self {
            SecretSpec::Inline(value) => Ok(value.clone()),
            SecretSpec::Env { env: name } => env
                .get(name)
                .cloned()
                .ok_or_else(|| format!("environment variable {name} is not set")),
            SecretSpec::File { file } => {
                let path = base.join(file);
                std::fs::read_to_string(&path)
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))
            }
        }
    }
}

const MIN_KEY_LEN: usize = 16;
/// The shortest shared secret accepted, in bytes after decoding: 128 bits if drawn at random.
/// Platforms generate longer ones; a short secret can be guessed by asking the ingress.
pub const MIN_SECRET_LEN: usize = 16;

/// The problem with a shared secret of `len` bytes, if it is too short.
fn too_short(len: usize) -> Option<String> {
    (len < MIN_SECRET_LEN).then(|| {
        format!("{len} bytes long; at least {MIN_SECRET_LEN} are required (use the secret the platform generated, or 32 random bytes)")
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub(super) fn parse(
    text: &str,
    base: &Path,
    env: &HashMap<String, String>,
) -> Result<Registry, Problems> {
    let file: File = toml::from_str(text).map_err(|e| Problems::one(e.to_string()))?;
    let mut problems = Problems::default();
    let mut registry = Registry::default();
    let mut tenant_ids = HashSet::new();
    let mut clues = HashSet::new();
    let mut keys = HashSet::new();
    // Which integration first used each shared secret, to flag the ones used twice.
    let mut secret_users: HashMap<[u8; 32], String> = HashMap::new();

    for (t, spec) in file.tenant.iter().enumerate() {
        let at = format!("tenant[{t}] ({})", spec.id);
        if !valid_id(&spec.id) {
            problems.push(format!(
                "{at}: id must be 1-128 characters of letters, digits, '-', '_' or '.'"
            ));
        }
        if !tenant_ids.insert(spec.id.as_str()) {
            problems.push(format!("{at}: duplicate tenant id"));
        }
        let window = spec.inactivity_window.unwrap_or(DEFAULT_INACTIVITY_WINDOW);
        if window.is_zero() {
            problems.push(format!("{at}: inactivity_window must be positive"));
        }
        let tenant = Arc::new(Tenant {
            id: Arc::from(spec.id.as_str()),
            inactivity_window: window,
            allow_plain_http: spec.allow_plain_http,
        });

        for (i, spec) in spec.integration.iter().enumerate() {
            let at = format!("{at} integration[{i}] ({})", spec.provider);
            let Some(provider) = providers::find(&spec.provider) else {
                let known: Vec<_> = providers::all().map(|p| p.slug()).collect();
                problems.push(format!(
                    "{at}: unknown provider; known providers: {}",
                    known.join(", ")
                ));
                continue;
            };
            let secret_is_clue = provider.clue_field() == Some(SECRET_CLUE);
            let mut clue = None;
            for (field, value) in spec.clues() {
                if provider.clue_field() == Some(field) {
                    clue = Some(provider.normalize_clue(value));
                } else {
                    problems.push(format!(
                        "{at}: `{field}` does not apply to provider {}",
                        provider.slug()
                    ));
                }
            }
            if let Some(key) = &spec.integration_key {
                if key.len() < MIN_KEY_LEN || !valid_id(key) {
                    problems.push(format!(
                        "{at}: integration_key must be at least {MIN_KEY_LEN} characters of letters, digits, '-', '_' or '.'"
                    ));
                } else if !keys.insert(key.clone()) {
                    problems.push(format!(
                        "{at}: integration_key is used by another integration"
                    ));
                }
            }
            match (&clue, &spec.integration_key, provider.clue_field()) {
                (_, _, Some(SECRET_CLUE)) => {}
                (None, None, Some(field)) => problems.push(format!(
                    "{at}: needs `{field}` or `integration_key` to be found"
                )),
                (None, None, None) => problems.push(format!(
                    "{at}: needs `integration_key` (deliveries from {} carry no tenant clue)",
                    provider.slug()
                )),
                _ => {}
            }
            let scheme = match &spec.scheme {
                Some(_) if !provider.accepts_scheme() => {
                    problems.push(format!(
                        "{at}: `scheme` does not apply to provider {}",
                        provider.slug()
                    ));
                    None
                }
                Some(scheme) => Scheme::from_spec(scheme)
                    .map_err(|errors| {
                        for error in errors {
                            problems.push(format!("{at}: {error}"));
                        }
                    })
                    .ok(),
                None => {
                    if provider.accepts_scheme() {
                        registry.warnings.push(format!(
                            "{at}: has no `scheme`: every delivery is refused (401) until one is configured"
                        ));
                    }
                    None
                }
            };
            let key = |which: &str,
                       secret: &SecretSpec,
                       problems: &mut Problems|
             -> Option<(Key, String)> {
                let value = secret
                    .resolve(base, env)
                    .map_err(|e| problems.push(format!("{at}: {which}: {e}")))
                    .ok()?;
                let key = provider
                    .key(&value)
                    .map_err(|e| problems.push(format!("{at}: {which}: {e}")))
                    .ok()?;
                if let Some(problem) = key.secret_len().and_then(too_short) {
                    problems.push(format!("{at}: {which}: {problem}"));
                    return None;
                }
                Some((key, value))
            };
            let current = key("secret", &spec.secret, &mut problems);
            let previous = spec
                .previous_secret
                .as_ref()
                .and_then(|s| key("previous_secret", s, &mut problems));
            for (key, _) in current.iter().chain(&previous) {
                let Some(digest) = key.secret_digest() else {
                    continue;
                };
                match secret_users.get(&digest) {
                    Some(first) if *first != at => registry.warnings.push(format!(
                        "{at}: shares its secret with {first}: whoever can sign for one can sign for the other, and where the platform does not sign the tenant clue a delivery for one can be presented as the other's; give each integration its own secret where the platform allows"
                    )),
                    Some(_) => {}
                    None => {
                        secret_users.insert(digest, at.clone());
                    }
                }
            }
            // Where the secret names the integration, each secret of a rotation is a clue.
            let mut integration_clues: Vec<String> = if secret_is_clue {
                let secrets = current.iter().chain(&previous);
                secrets
                    .map(|(_, value)| providers::secret_clue(value.as_bytes()))
                    .collect()
            } else {
                clue.iter().cloned().collect()
            };
            integration_clues.dedup();
            for clue in &integration_clues {
                if !clues.insert((provider.slug(), clue.clone())) {
                    problems.push(format!(
                        "{at}: another integration of {} already has this {}",
                        provider.slug(),
                        provider.clue_field().unwrap_or("clue")
                    ));
                }
            }
            if let Some((current, _)) = current {
                registry.insert(
                    Integration {
                        tenant: tenant.clone(),
                        provider,
                        clue: integration_clues.first().cloned(),
                        key: spec.integration_key.clone(),
                        keys: Keys::new(current, previous.map(|(key, _)| key)),
                        scheme,
                        event: spec.event.clone().filter(|e| !e.trim().is_empty()),
                    },
                    integration_clues,
                );
            }
        }
        let mut endpoint_ids = HashSet::new();
        for (e, spec) in spec.endpoint.iter().enumerate() {
            let at = format!("{at} endpoint[{e}] ({})", spec.id);
            if let Some(endpoint) = endpoint(spec, &at, &tenant, base, env, &mut problems) {
                if !endpoint_ids.insert(endpoint.id.clone()) {
                    problems.push(format!("{at}: duplicate endpoint id in this tenant"));
                }
                registry.endpoints.push(endpoint);
            }
        }
        registry.insert_tenant(tenant);
    }
    problems.into_result(registry)
}

/// Validates one endpoint; every problem is recorded, `None` when it is unusable.
fn endpoint(
    spec: &EndpointSpec,
    at: &str,
    tenant: &Arc<Tenant>,
    base: &Path,
    env: &HashMap<String, String>,
    problems: &mut Problems,
) -> Option<Endpoint> {
    let before = problems.len();
    if !valid_id(&spec.id) {
        problems.push(format!(
            "{at}: id must be 1-128 characters of letters, digits, '-', '_' or '.'"
        ));
    }
    let url = match spec.url.parse::<http::Uri>() {
        Ok(url)
            if matches!(url.scheme_str(), Some("http" | "https"))
                && url.host().is_some_and(|h| !h.is_empty()) =>
        {
            match unusual_address(&spec.url, &url) {
                None => Some(url),
                Some(canonical) => {
                    problems.push(format!(
                        "{at}: url host {:?} is the address {canonical} spelled another way; write {canonical}",
                        url.host().unwrap_or_default()
                    ));
                    None
                }
            }
        }
        _ => {
            problems.push(format!(
                "{at}: url must be an absolute http:// or https:// URL with a host"
            ));
            None
        }
    };
    let mut secrets = Vec::new();
    for (which, secret) in [
        ("secret", Some(&spec.secret)),
        ("previous_secret", spec.previous_secret.as_ref()),
    ] {
        let Some(secret) = secret else { continue };
        match secret
            .resolve(base, env)
            .map_err(|e| e.to_string())
            .and_then(|value| Secret::new(&value).map_err(str::to_string))
        {
            Ok(secret) => match too_short(secret.len()) {
                Some(problem) => problems.push(format!("{at}: {which}: {problem}")),
                None => secrets.push(secret),
            },
            Err(e) => problems.push(format!("{at}: {which}: {e}")),
        }
    }
    let events = match &spec.events {
        None => ENDPOINT_EVENTS.iter().map(|(_, bucket)| *bucket).collect(),
        Some(names) => {
            let mut events = Vec::new();
            for name in names {
                match ENDPOINT_EVENTS.iter().find(|(known, _)| known == name) {
                    Some((_, bucket)) if !events.contains(bucket) => events.push(*bucket),
                    Some(_) => {}
                    None => problems.push(format!(
                        "{at}: unknown event `{name}`; known events: abandoned_candidate, order_completed"
                    )),
                }
            }
            if names.is_empty() {
                problems.push(format!("{at}: events must name at least one event"));
            }
            events
        }
    };
    let retry_schedule = spec.retry_schedule.as_ref().map(|steps| {
        if steps.is_empty() || steps.len() > MAX_RETRY_STEPS {
            problems.push(format!(
                "{at}: retry_schedule must list 1 to {MAX_RETRY_STEPS} delays"
            ));
        }
        steps
            .iter()
            .filter_map(|step| {
                humantime::parse_duration(step)
                    .map_err(|e| problems.push(format!("{at}: retry_schedule: `{step}`: {e}")))
                    .ok()
            })
            .collect()
    });
    (problems.len() == before).then(|| Endpoint {
        tenant: tenant.clone(),
        id: spec.id.clone(),
        url: url.expect("a valid endpoint has a URL"),
        secrets,
        events,
        retry_schedule,
    })
}

/// The canonical form of an address host written another way (`127.1`, `2130706433`,
/// `0x7f000001`, `127.0.0.1.`), which the HTTP client would read as that address: such a URL
/// is refused, so that what the file says is what is delivered to. `None` for a name, a
/// canonical address, or a URL the client cannot parse (refused when delivering).
fn unusual_address(text: &str, url: &http::Uri) -> Option<String> {
    let canonical = match url::Url::parse(text).ok()?.host()? {
        url::Host::Ipv4(v4) => v4.to_string(),
        url::Host::Ipv6(v6) => v6.to_string(),
        url::Host::Domain(_) => return None,
    };
    let written = url.host()?.trim_start_matches('[').trim_end_matches(']');
    (written != canonical).then_some(canonical)
}
