//! The `tenants.toml` format and its validation. Every problem in the file is reported at once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{Endpoint, Integration, Registry, Secret, Tenant, DEFAULT_INACTIVITY_WINDOW};
use crate::problems::Problems;
use crate::providers::{self, scheme, Key, Keys, Provider, Scheme, SECRET_CLUE};
use crate::topics::event::Bucket;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default)]
    pub(super) tenant: Vec<TenantSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantSpec {
    pub(super) id: String,
    #[serde(default, with = "humantime_serde")]
    pub(super) inactivity_window: Option<Duration>,
    #[serde(default)]
    pub(super) allow_plain_http: bool,
    /// The public key of its storefront signals (`pk_` and 16 to 128 letters, digits, `_`
    /// or `-`).
    #[serde(default)]
    pub(super) publishable_key: Option<String>,
    /// Origins (`https://shop.example`) whose pages may send its storefront signals.
    #[serde(default)]
    pub(super) allowed_origins: Vec<String>,
    /// `false`: its deliveries and signals are refused and its endpoints get nothing until it
    /// is enabled again.
    #[serde(default = "enabled")]
    pub(super) enabled: bool,
    #[serde(default)]
    pub(super) integration: Vec<IntegrationSpec>,
    #[serde(default)]
    pub(super) endpoint: Vec<EndpointSpec>,
    /// What problems call it ([`Named`]).
    #[serde(skip)]
    pub(super) named: Named,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointSpec {
    pub(super) id: String,
    pub(super) url: String,
    pub(super) secret: SecretSpec,
    #[serde(default)]
    pub(super) previous_secret: Option<SecretSpec>,
    #[serde(default)]
    pub(super) events: Option<Vec<String>>,
    #[serde(default)]
    pub(super) retry_schedule: Option<Vec<String>>,
    /// `false`: nothing is delivered to it until it is enabled again.
    #[serde(default = "enabled")]
    pub(super) enabled: bool,
    #[serde(skip)]
    pub(super) named: Named,
}

fn enabled() -> bool {
    true
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
pub(super) struct IntegrationSpec {
    pub(super) provider: String,
    #[serde(default)]
    pub(super) shop_domain: Option<String>,
    #[serde(default)]
    pub(super) merchant_id: Option<String>,
    #[serde(default)]
    pub(super) store_id: Option<String>,
    #[serde(default)]
    pub(super) installation_id: Option<String>,
    #[serde(default)]
    pub(super) flexype_store: Option<String>,
    #[serde(default)]
    pub(super) integration_key: Option<String>,
    /// `None`: the deliveries are signed by the deployment's platform app
    /// ([`crate::platforms`]), as every shop connected through it.
    #[serde(default)]
    pub(super) secret: Option<SecretSpec>,
    #[serde(default)]
    pub(super) previous_secret: Option<SecretSpec>,
    #[serde(default)]
    pub(super) scheme: Option<scheme::Spec>,
    #[serde(default)]
    pub(super) event: Option<String>,
    #[serde(skip)]
    pub(super) named: Named,
}

/// How problems name a tenant, integration or endpoint: by its place in the file (`tenant[1]
/// (souq) integration[0] (salla)`), or by the record it was read from on the tenants topic.
#[derive(Default)]
pub(super) enum Named {
    #[default]
    InFile,
    Record(String),
}

impl Named {
    /// `in_file` unless it was read from a record.
    fn or(&self, in_file: impl FnOnce() -> String) -> String {
        match self {
            Named::InFile => in_file(),
            Named::Record(key) => format!("record {key}"),
        }
    }
}

impl IntegrationSpec {
    /// The clue fields set on this integration, by name.
    pub(super) fn clues(&self) -> impl Iterator<Item = (&'static str, &str)> {
        crate::topics::registry::clues([
            &self.shop_domain,
            &self.merchant_id,
            &self.store_id,
            &self.installation_id,
            &self.flexype_store,
        ])
    }
}

/// Where a secret comes from: inline (development), an environment variable, or a file.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum SecretSpec {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
}

impl SecretSpec {
    pub(super) fn resolve(
        &self,
        base: &Path,
        env: &HashMap<String, String>,
    ) -> Result<String, String> {
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
    validate(&read(text)?, base, env)
}

/// The file's tables, not validated yet.
pub(super) fn read(text: &str) -> Result<File, Problems> {
    toml::from_str(text).map_err(|e| Problems::one(crate::problems::toml_error(text, &e)))
}

/// The registry `file` describes, or every problem in it: the one validation of both the
/// file and the records of the tenants topic.
pub(super) fn validate(
    file: &File,
    base: &Path,
    env: &HashMap<String, String>,
) -> Result<Registry, Problems> {
    let mut parse = Parse {
        base,
        env,
        registry: Registry::default(),
        problems: Problems::default(),
        tenant_ids: HashSet::new(),
        clues: HashSet::new(),
        keys: HashSet::new(),
        secret_users: HashMap::new(),
    };
    for (t, spec) in file.tenant.iter().enumerate() {
        parse.tenant(t, spec);
    }
    parse.problems.into_result(parse.registry)
}

/// A file being read: the registry built and the problems found so far, and what must be
/// unique across the whole file.
struct Parse<'f> {
    /// Where secret files are found.
    base: &'f Path,
    env: &'f HashMap<String, String>,
    registry: Registry,
    problems: Problems,
    tenant_ids: HashSet<&'f str>,
    /// `(provider, clue)` of every integration.
    clues: HashSet<(&'static str, String)>,
    /// Every integration key.
    keys: HashSet<String>,
    /// Which integration first used each shared secret, to flag the ones used twice.
    secret_users: HashMap<[u8; 32], String>,
}

impl<'f> Parse<'f> {
    /// Reads one tenant with its integrations and endpoints.
    fn tenant(&mut self, t: usize, spec: &'f TenantSpec) {
        let at = spec.named.or(|| format!("tenant[{t}] ({})", spec.id));
        if !valid_id(&spec.id) {
            self.problems.push(format!(
                "{at}: id must be 1-128 characters of letters, digits, '-', '_' or '.'"
            ));
        }
        if !self.tenant_ids.insert(spec.id.as_str()) {
            self.problems.push(format!("{at}: duplicate tenant id"));
        }
        if spec.id == super::UNCLAIMED {
            self.problems.push(format!(
                "{at}: the id \"{}\" names installations no tenant has claimed; choose another",
                super::UNCLAIMED
            ));
        }
        let window = spec.inactivity_window.unwrap_or(DEFAULT_INACTIVITY_WINDOW);
        if window.is_zero() {
            self.problems
                .push(format!("{at}: inactivity_window must be positive"));
        }
        if let Some(key) = &spec.publishable_key {
            if let Err(why) = super::publishable_key(key) {
                self.problems.push(format!("{at}: publishable_key: {why}"));
            } else if self.registry.tenant_by_publishable_key(key).is_some() {
                self.problems.push(format!(
                    "{at}: publishable_key: another tenant has the same key"
                ));
            }
        }
        let mut allowed_origins = Vec::with_capacity(spec.allowed_origins.len());
        for origin in super::origins(&spec.allowed_origins) {
            match origin {
                Ok(origin) => allowed_origins.push(origin),
                Err((given, why)) => self
                    .problems
                    .push(format!("{at}: allowed_origins: {given:?}: {why}")),
            }
        }
        let tenant = Arc::new(Tenant {
            id: Arc::from(spec.id.as_str()),
            inactivity_window: window,
            allow_plain_http: spec.allow_plain_http,
            publishable_key: spec.publishable_key.clone(),
            allowed_origins,
            disabled: !spec.enabled,
        });

        for (i, spec) in spec.integration.iter().enumerate() {
            let at = spec
                .named
                .or(|| format!("{at} integration[{i}] ({})", spec.provider));
            self.integration(&at, &tenant, spec);
        }
        let mut endpoint_ids = HashSet::new();
        let first_endpoint = self.registry.endpoints.len();
        for (e, spec) in spec.endpoint.iter().enumerate() {
            let at = spec
                .named
                .or(|| format!("{at} endpoint[{e}] ({})", spec.id));
            let endpoint = endpoint(spec, &at, &tenant, self.base, self.env, &mut self.problems);
            if let Some(endpoint) = endpoint {
                if !endpoint_ids.insert(endpoint.id.clone()) {
                    self.problems
                        .push(format!("{at}: duplicate endpoint id in this tenant"));
                }
                self.registry.endpoints.push(endpoint);
            }
        }
        self.registry.insert_tenant(tenant, first_endpoint);
    }

    /// Reads one integration; it joins the registry when its current secret is usable.
    fn integration(&mut self, at: &str, tenant: &Arc<Tenant>, spec: &IntegrationSpec) {
        let Some(provider) = providers::find(&spec.provider) else {
            let known: Vec<_> = providers::all().map(|p| p.slug()).collect();
            self.problems.push(format!(
                "{at}: unknown provider; known providers: {}",
                known.join(", ")
            ));
            return;
        };
        let clue = self.clue(at, provider, spec);
        self.check_integration_key(at, spec);
        self.check_findable(at, provider, clue.as_deref(), spec);
        let scheme = self.scheme(at, provider, spec);
        let Some(secret) = &spec.secret else {
            return self.app_integration(at, tenant, provider, clue, spec);
        };
        let current = self.key(at, provider, "secret", secret);
        let previous = spec
            .previous_secret
            .as_ref()
            .and_then(|s| self.key(at, provider, "previous_secret", s));
        self.warn_of_shared_secrets(at, current.iter().chain(&previous));
        let integration_clues =
            self.integration_clues(at, provider, clue, current.iter().chain(&previous));
        if let Some((current, _)) = current {
            self.registry.insert(
                Integration {
                    tenant: tenant.clone(),
                    provider,
                    clue: integration_clues.first().cloned(),
                    key: spec.integration_key.clone(),
                    keys: Some(Keys::new(current, previous.map(|(key, _)| key))),
                    scheme,
                    event: spec.event.clone().filter(|e| !e.trim().is_empty()),
                    status: Default::default(),
                },
                integration_clues,
            );
        }
    }

    /// Reads an integration without a secret: its platform's app signs its deliveries, as
    /// every shop's connected through it, so only its clue (which the ingress checks for every
    /// delivery, even one that names the integration key) tells it from another shop.
    fn app_integration(
        &mut self,
        at: &str,
        tenant: &Arc<Tenant>,
        provider: &'static dyn Provider,
        clue: Option<String>,
        spec: &IntegrationSpec,
    ) {
        let slug = provider.slug();
        if !provider.app_signs_its_stores() {
            return self.problems.push(format!(
                "{at}: needs `secret` ({slug} has no platform app that signs its shops' deliveries)"
            ));
        }
        if spec.previous_secret.is_some() {
            self.problems.push(format!(
                "{at}: `previous_secret` without `secret` (the {slug} app's secrets are rotated in [platforms.{slug}])"
            ));
        }
        let Some(clue) = clue else {
            let field = provider.clue_field().unwrap_or("a clue");
            return self.problems.push(format!(
                "{at}: needs `{field}`: without `secret` it is signed with the {slug} app's secret, which every shop of the app shares"
            ));
        };
        let clues = self.integration_clues(at, provider, Some(clue), std::iter::empty());
        self.registry.insert(
            Integration {
                tenant: tenant.clone(),
                provider,
                clue: clues.first().cloned(),
                key: spec.integration_key.clone(),
                keys: None,
                scheme: None,
                event: spec.event.clone().filter(|e| !e.trim().is_empty()),
                status: Default::default(),
            },
            clues,
        );
    }

    /// The integration's clue, normalized as its provider's `inspect` returns it; a clue field
    /// of another provider is a problem.
    fn clue(
        &mut self,
        at: &str,
        provider: &dyn Provider,
        spec: &IntegrationSpec,
    ) -> Option<String> {
        let mut clue = None;
        for (field, value) in spec.clues() {
            if provider.clue_field() == Some(field) {
                clue = Some(provider.normalize_clue(value));
            } else {
                self.problems.push(format!(
                    "{at}: `{field}` does not apply to provider {}",
                    provider.slug()
                ));
            }
        }
        clue
    }

    /// An integration key is long enough, of the allowed characters, and used once in the file.
    fn check_integration_key(&mut self, at: &str, spec: &IntegrationSpec) {
        let Some(key) = &spec.integration_key else {
            return;
        };
        if key.len() < MIN_KEY_LEN || !valid_id(key) {
            self.problems.push(format!(
                "{at}: integration_key must be at least {MIN_KEY_LEN} characters of letters, digits, '-', '_' or '.'"
            ));
        } else if !self.keys.insert(key.clone()) {
            self.problems.push(format!(
                "{at}: integration_key is used by another integration"
            ));
        }
    }

    /// Deliveries can find the integration: by its clue, by its integration key, or by its
    /// secret where the secret is the clue.
    fn check_findable(
        &mut self,
        at: &str,
        provider: &dyn Provider,
        clue: Option<&str>,
        spec: &IntegrationSpec,
    ) {
        match (clue, &spec.integration_key, provider.clue_field()) {
            (_, _, Some(SECRET_CLUE)) => {}
            (None, None, Some(field)) => self.problems.push(format!(
                "{at}: needs `{field}` or `integration_key` to be found"
            )),
            (None, None, None) => self.problems.push(format!(
                "{at}: needs `integration_key` (deliveries from {} carry no tenant clue)",
                provider.slug()
            )),
            _ => {}
        }
    }

    /// The integration's generic scheme, where its provider takes one (and a warning when such
    /// a provider has none).
    fn scheme(
        &mut self,
        at: &str,
        provider: &dyn Provider,
        spec: &IntegrationSpec,
    ) -> Option<Scheme> {
        match &spec.scheme {
            Some(_) if !provider.accepts_scheme() => {
                self.problems.push(format!(
                    "{at}: `scheme` does not apply to provider {}",
                    provider.slug()
                ));
                None
            }
            Some(scheme) => Scheme::from_spec(scheme)
                .map_err(|errors| {
                    for error in errors {
                        self.problems.push(format!("{at}: {error}"));
                    }
                })
                .ok(),
            None => {
                if provider.accepts_scheme() {
                    self.registry.warnings.push(format!(
                        "{at}: has no `scheme`: every delivery is refused (401) until one is configured"
                    ));
                }
                None
            }
        }
    }

    /// One of the integration's secrets as its provider's key, with the secret's text; `None`
    /// (and a problem) when it cannot be read, is not a key, or is too short.
    fn key(
        &mut self,
        at: &str,
        provider: &dyn Provider,
        which: &str,
        secret: &SecretSpec,
    ) -> Option<(Key, String)> {
        let value = secret
            .resolve(self.base, self.env)
            .map_err(|e| self.problems.push(format!("{at}: {which}: {e}")))
            .ok()?;
        let key = provider
            .key(&value)
            .map_err(|e| self.problems.push(format!("{at}: {which}: {e}")))
            .ok()?;
        if let Some(problem) = key.secret_len().and_then(too_short) {
            self.problems.push(format!("{at}: {which}: {problem}"));
            return None;
        }
        Some((key, value))
    }

    /// Warns of each shared secret another integration already uses.
    fn warn_of_shared_secrets<'k>(
        &mut self,
        at: &str,
        secrets: impl Iterator<Item = &'k (Key, String)>,
    ) {
        for (key, _) in secrets {
            let Some(digest) = key.secret_digest() else {
                continue;
            };
            match self.secret_users.get(&digest) {
                Some(first) if first != at => self.registry.warnings.push(format!(
                    "{at}: shares its secret with {first}: whoever can sign for one can sign for the other, and where the platform does not sign the tenant clue a delivery for one can be presented as the other's; give each integration its own secret where the platform allows"
                )),
                Some(_) => {}
                None => {
                    self.secret_users.insert(digest, at.to_string());
                }
            }
        }
    }

    /// Every clue that finds the integration, each used once in the file: its clue, or, where
    /// the secret names the integration, each secret of a rotation.
    fn integration_clues<'k>(
        &mut self,
        at: &str,
        provider: &'static dyn Provider,
        clue: Option<String>,
        secrets: impl Iterator<Item = &'k (Key, String)>,
    ) -> Vec<String> {
        let mut clues: Vec<String> = if provider.clue_field() == Some(SECRET_CLUE) {
            secrets
                .map(|(_, value)| providers::secret_clue(value.as_bytes()))
                .collect()
        } else {
            clue.into_iter().collect()
        };
        clues.dedup();
        for clue in &clues {
            if !self.clues.insert((provider.slug(), clue.clone())) {
                self.problems.push(format!(
                    "{at}: another integration of {} already has this {}",
                    provider.slug(),
                    provider.clue_field().unwrap_or("clue")
                ));
            }
        }
        clues
    }
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
    let url = endpoint_url(&spec.url, at, problems);
    let secrets = endpoint_secrets(spec, at, base, env, problems);
    let events = endpoint_events(spec.events.as_deref(), at, problems);
    let retry_schedule = spec
        .retry_schedule
        .as_ref()
        .map(|steps| retry_schedule(steps, at, problems));
    (problems.len() == before).then(|| Endpoint {
        tenant: tenant.clone(),
        id: spec.id.clone(),
        url: url.expect("a valid endpoint has a URL"),
        secrets,
        events,
        retry_schedule,
        disabled: !spec.enabled,
    })
}

/// An absolute `http://` or `https://` URL with a host, the host not an address spelled in
/// an unusual way.
fn endpoint_url(text: &str, at: &str, problems: &mut Problems) -> Option<http::Uri> {
    match text.parse::<http::Uri>() {
        Ok(url)
            if matches!(url.scheme_str(), Some("http" | "https"))
                && url.host().is_some_and(|h| !h.is_empty()) =>
        {
            match unusual_address(text, &url) {
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
    }
}

/// The endpoint's signing secrets, current then previous, each readable and long enough.
fn endpoint_secrets(
    spec: &EndpointSpec,
    at: &str,
    base: &Path,
    env: &HashMap<String, String>,
    problems: &mut Problems,
) -> Vec<Secret> {
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
    secrets
}

/// The transition kinds the endpoint subscribes to: those `names` lists, or every one.
fn endpoint_events(names: Option<&[String]>, at: &str, problems: &mut Problems) -> Vec<Bucket> {
    let Some(names) = names else {
        return ENDPOINT_EVENTS.iter().map(|(_, bucket)| *bucket).collect();
    };
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

/// An endpoint's own retry schedule: 1 to [`MAX_RETRY_STEPS`] delays, each a duration.
fn retry_schedule(steps: &[String], at: &str, problems: &mut Problems) -> Vec<Duration> {
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
