//! The registry as the records of `<prefix>.tenants.v1` ([`crate::topics::registry`]): a
//! `tenants.toml` read into records with its secrets sealed ([`Records::from_toml`]), records
//! made into the [`Registry`] the roles use ([`Records::registry`]), and what
//! `cartstream tenants apply` writes so that the topic says what a file says ([`plan`]).
//!
//! Records become a registry through the file's own tables and validation, so what the topic
//! says is held to the rules of the file, and a file that loads gives records that load. The
//! vault opens secrets only to build a registry or to compare two of them; nothing here shows
//! one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::file::{self, EndpointSpec, File, IntegrationSpec, Named, SecretSpec, TenantSpec};
use super::Registry;
use crate::credentials::{self, Keyring, Vault};
use crate::problems::Problems;
use crate::providers::{self, Provider};
use crate::topics::registry::{self as topic, Entity, Key, Record, Sealed};

/// The latest record of each key of the tenants topic, as compaction keeps them: what the
/// registry is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records(BTreeMap<Key, Record>);

/// A message of the tenants topic that is not one of its records. Says which key, never what
/// the value holds (a secret written there in clear by mistake would be shown).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unreadable {
    #[error("key {0}: names no tenant, integration or endpoint")]
    Key(String),
    #[error(
        "record {key}: not a {} value ({what} at line {line}, column {column})",
        topic::SCHEMA
    )]
    Value {
        key: Key,
        what: &'static str,
        line: usize,
        column: usize,
    },
    #[error("record {key}: holds the record of {found}")]
    Misfiled { key: Key, found: Key },
}

/// The tenants topic as a reader reads it, message by message: the records, and the keys whose
/// latest message is not a registry record. The latest message of each key decides, so a key
/// is unreadable only until a later message of it replaces the unreadable one.
#[derive(Debug, Default)]
pub struct Reading {
    records: Records,
    unreadable: BTreeMap<Vec<u8>, Unreadable>,
}

impl Reading {
    /// Reads one message ([`Records::apply`]).
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        match self.records.apply(key, value) {
            Ok(()) => self.unreadable.remove(key),
            Err(e) => self.unreadable.insert(key.to_vec(), e),
        };
    }

    /// The records read.
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// Why each key whose latest message is not a registry record is not one.
    pub fn unreadable(&self) -> impl ExactSizeIterator<Item = &Unreadable> {
        self.unreadable.values()
    }
}

impl Records {
    /// The records of the registry file at `path`: [`Records::from_toml`] of its text.
    pub fn load(
        path: &Path,
        env: &HashMap<String, String>,
        vault: &Vault,
    ) -> Result<Records, Problems> {
        super::read_file(path, |text, base| {
            Records::from_toml(text, base, env, vault)
        })
    }

    /// The records of a registry file, its secrets (inline, or read from `env` or files under
    /// `base`) sealed with `vault`. A file the registry would refuse is refused with the same
    /// problems.
    pub fn from_toml(
        text: &str,
        base: &Path,
        env: &HashMap<String, String>,
        vault: &Vault,
    ) -> Result<Records, Problems> {
        let file = file::read(text)?;
        file::validate(&file, base, env)?;
        let mut import = Import {
            base,
            env,
            vault,
            records: Records::default(),
            problems: Problems::default(),
        };
        for tenant in &file.tenant {
            import.tenant(tenant);
        }
        import.problems.into_result(import.records)
    }

    /// Reads one message of the topic: a value replaces its key's record, a tombstone removes
    /// it. A message that is not a record of its key is refused, and leaves its key without a
    /// record, as compaction will.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), Unreadable> {
        let key = Key::decode(key)
            .ok_or_else(|| Unreadable::Key(String::from_utf8_lossy(key).into_owned()))?;
        self.0.remove(&key);
        let Some(value) = value else {
            return Ok(());
        };
        let record = Record::decode(value).map_err(|e| Unreadable::Value {
            key: key.clone(),
            what: match e.classify() {
                serde_json::error::Category::Data => "a field missing or of the wrong type",
                serde_json::error::Category::Eof => "the value ends early",
                serde_json::error::Category::Syntax | serde_json::error::Category::Io => "not JSON",
            },
            line: e.line(),
            column: e.column(),
        })?;
        let found = record.key();
        if found != key {
            return Err(Unreadable::Misfiled { key, found });
        }
        self.0.insert(key, record);
        Ok(())
    }

    /// Whether the deployment's maintenance mode is on.
    pub fn maintenance(&self) -> bool {
        matches!(
            self.0.get(&Key::Maintenance).map(|r| &r.entity),
            Some(Entity::Maintenance(topic::Maintenance { on: true, .. }))
        )
    }

    /// The first moment after `now_ms` at which a previous secret's grace period ends, when
    /// one does: the registry changes then without a record changing.
    pub fn next_expiry(&self, now_ms: i64) -> Option<i64> {
        self.0
            .values()
            .filter_map(|record| match &record.entity {
                Entity::Integration(topic::Integration {
                    previous_secret: Some(_),
                    previous_secret_expires_at_ms,
                    ..
                })
                | Entity::Endpoint(topic::Endpoint {
                    previous_secret: Some(_),
                    previous_secret_expires_at_ms,
                    ..
                }) => *previous_secret_expires_at_ms,
                _ => None,
            })
            .filter(|&at| at > now_ms)
            .min()
    }

    /// The registry the records describe, their secrets opened with `keys`, or every problem,
    /// each naming its record: a secret that does not open (sealed with another key, or moved
    /// from another record or field) and whatever the registry file's validation finds. An
    /// integration or endpoint whose tenant has no record is left out with a warning: writers
    /// that do not see each other (a tenant deleted while an integration was added to it) can
    /// leave one, and it must not stop the registry. A previous secret whose grace period has
    /// ended by `now_ms` (Unix milliseconds) is left out: only the current one verifies and
    /// signs.
    pub fn registry(&self, keys: &Keyring, now_ms: i64) -> Result<Registry, Problems> {
        let mut problems = Problems::default();
        let mut orphans = Vec::new();
        let mut tenants: BTreeMap<&str, TenantSpec> = BTreeMap::new();
        // Tenants come first in key order, then what they own.
        for (key, record) in &self.0 {
            let named = Named::Record(key.to_string());
            let owner = match &record.entity {
                Entity::Tenant(t) => {
                    tenants.insert(&t.id, tenant_spec(t, named));
                    continue;
                }
                // The admin API's, or the deployment's (Records::maintenance), not a tenant's.
                Entity::ApiKey(_) | Entity::Maintenance(_) => continue,
                Entity::Integration(i) => &i.tenant,
                Entity::Endpoint(e) => &e.tenant,
            };
            let Some(tenant) = tenants.get_mut(owner.as_str()) else {
                orphans.push(format!(
                    "record {key}: left out: its tenant {owner:?} has no record"
                ));
                continue;
            };
            let mut opener = Opener {
                keys,
                key,
                now_ms,
                problems: &mut problems,
            };
            match &record.entity {
                Entity::Integration(i) => {
                    tenant.integration.extend(opener.integration(i, named));
                }
                Entity::Endpoint(e) => tenant.endpoint.extend(opener.endpoint(e, named)),
                Entity::Tenant(_) | Entity::ApiKey(_) | Entity::Maintenance(_) => {} // above
            }
        }
        let file = File {
            tenant: tenants.into_values().collect(),
        };
        // Every secret is inline: no file is read, no variable looked up. The records skipped
        // above are left out, and the others still checked, so every problem shows at once.
        match file::validate(&file, Path::new("."), &HashMap::new()) {
            Ok(mut registry) => {
                registry.warnings.extend(orphans);
                problems.into_result(registry)
            }
            Err(more) => {
                problems.extend(more);
                Err(problems)
            }
        }
    }
}

fn tenant_spec(t: &topic::Tenant, named: Named) -> TenantSpec {
    TenantSpec {
        id: t.id.clone(),
        inactivity_window: t.inactivity_window_ms.map(Duration::from_millis),
        allow_plain_http: t.allow_plain_http,
        publishable_key: t.publishable_key.clone(),
        allowed_origins: t.allowed_origins.clone(),
        enabled: !t.disabled,
        integration: Vec::new(),
        endpoint: Vec::new(),
        named,
    }
}

/// Makes the records of one key into the file's tables, their secrets opened. Each problem is
/// recorded where it is found, and the record left out (`None`).
struct Opener<'a> {
    keys: &'a Keyring,
    key: &'a Key,
    now_ms: i64,
    problems: &'a mut Problems,
}

impl Opener<'_> {
    fn integration(&mut self, i: &topic::Integration, named: Named) -> Option<IntegrationSpec> {
        let secret = match &i.secret {
            Some(sealed) => self.secret("secret", sealed).map(Some),
            None => Some(None),
        };
        let previous = self.previous(i.previous_secret.as_ref(), i.previous_secret_expires_at_ms);
        let scheme = i.scheme.as_ref().map(|scheme| {
            serde_json::to_value(scheme)
                .and_then(serde_json::from_value)
                .map_err(|e| {
                    self.problems
                        .push(format!("record {}: scheme: {e}", self.key))
                })
                .ok()
        });
        Some(IntegrationSpec {
            provider: i.provider.clone(),
            shop_domain: i.shop_domain.clone(),
            merchant_id: i.merchant_id.clone(),
            store_id: i.store_id.clone(),
            installation_id: i.installation_id.clone(),
            flexype_store: i.flexype_store.clone(),
            integration_key: i.integration_key.clone(),
            secret: secret?,
            previous_secret: previous?,
            scheme: match scheme {
                Some(scheme) => Some(scheme?),
                None => None,
            },
            event: i.event.clone(),
            named,
        })
    }

    fn endpoint(&mut self, e: &topic::Endpoint, named: Named) -> Option<EndpointSpec> {
        let secret = self.secret("secret", &e.secret);
        let previous = self.previous(e.previous_secret.as_ref(), e.previous_secret_expires_at_ms);
        Some(EndpointSpec {
            id: e.id.clone(),
            url: e.url.clone(),
            secret: secret?,
            previous_secret: previous?,
            events: e.events.clone(),
            retry_schedule: e
                .retry_schedule_ms
                .as_ref()
                .map(|steps| steps.iter().map(|ms| format!("{ms}ms")).collect()),
            enabled: !e.disabled,
            named,
        })
    }

    fn secret(&mut self, field: &str, sealed: &Sealed) -> Option<SecretSpec> {
        open(self.keys, self.key, field, sealed)
            .map(SecretSpec::Inline)
            .map_err(|problem| self.problems.push(problem))
            .ok()
    }

    /// `Some(None)` when there is no previous secret or its grace period ended by `now_ms`,
    /// `None` when it does not open.
    fn previous(
        &mut self,
        sealed: Option<&Sealed>,
        expires_at_ms: Option<i64>,
    ) -> Option<Option<SecretSpec>> {
        match sealed {
            Some(_) if expires_at_ms.is_some_and(|at| at <= self.now_ms) => Some(None),
            Some(sealed) => self.secret("previous_secret", sealed).map(Some),
            None => Some(None),
        }
    }
}

/// The secret sealed in `field` of the record `key`, opened with the key of `keys` that sealed
/// it, or the problem, naming the record and the field but not the value.
fn open(keys: &Keyring, key: &Key, field: &str, sealed: &Sealed) -> Result<String, String> {
    let problem = |e: credentials::Error| format!("record {key}: {field}: {e}");
    let bytes = keys
        .find(&sealed.key_id)
        .map_err(problem)?
        .open(key.sealing_context(field).as_bytes(), &sealed.sealed)
        .map_err(problem)?;
    String::from_utf8(bytes).map_err(|_| format!("record {key}: {field}: is not UTF-8 text"))
}

/// `value` sealed for `field` of the record `key` under the current key of `keys`.
pub fn seal_for(keys: &Keyring, key: &Key, field: &str, value: &str) -> Sealed {
    seal(keys.current(), key, field, value)
}

/// The current secret of `record` (an integration or an endpoint), opened with `keys`; the
/// problem when there is none or it does not open.
pub fn secret_of(record: &Record, keys: &Keyring) -> Result<String, String> {
    let key = record.key();
    match record.secrets().first() {
        Some((field, Some(sealed))) => open(keys, &key, field, sealed),
        _ => Err(format!("record {key}: has no secret")),
    }
}

/// `record` (an integration or an endpoint) with `secret` as its secret and the secret it had
/// as its previous one, both sealed under the current key of `keys`: both verify (or sign)
/// until `expires_at_ms` (Unix milliseconds), or the next rotation when `None`. The problem when
/// its secret does not open.
pub fn rotate(
    record: &Record,
    secret: &str,
    keys: &Keyring,
    expires_at_ms: Option<i64>,
) -> Result<Record, String> {
    let key = record.key();
    let mut rotated = record.clone();
    let no_secret = || format!("record {key}: has no secret to rotate");
    let (current, previous, expires) = match &mut rotated.entity {
        Entity::Tenant(_) | Entity::ApiKey(_) | Entity::Maintenance(_) => return Err(no_secret()),
        Entity::Integration(topic::Integration {
            secret,
            previous_secret,
            previous_secret_expires_at_ms,
            ..
        }) => (
            secret.as_mut().ok_or_else(no_secret)?,
            previous_secret,
            previous_secret_expires_at_ms,
        ),
        Entity::Endpoint(topic::Endpoint {
            secret,
            previous_secret,
            previous_secret_expires_at_ms,
            ..
        }) => (secret, previous_secret, previous_secret_expires_at_ms),
    };
    let was = open(keys, &key, "secret", current)?;
    *previous = Some(seal(keys.current(), &key, "previous_secret", &was));
    *expires = expires_at_ms;
    *current = seal(keys.current(), &key, "secret", secret);
    Ok(rotated)
}

/// `value` sealed for `field` of the record `key`.
fn seal(vault: &Vault, key: &Key, field: &str, value: &str) -> Sealed {
    Sealed {
        key_id: vault.key_id().to_string(),
        sealed: vault.seal(key.sealing_context(field).as_bytes(), value.as_bytes()),
    }
}

/// Whole milliseconds, rounded up: a positive window stays positive.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// A validated file being made into records.
struct Import<'a> {
    base: &'a Path,
    env: &'a HashMap<String, String>,
    vault: &'a Vault,
    records: Records,
    problems: Problems,
}

impl Import<'_> {
    fn tenant(&mut self, spec: &TenantSpec) {
        let tenant = topic::Tenant {
            id: spec.id.clone(),
            inactivity_window_ms: spec.inactivity_window.map(millis),
            allow_plain_http: spec.allow_plain_http,
            publishable_key: spec.publishable_key.clone(),
            allowed_origins: spec.allowed_origins.clone(),
            disabled: !spec.enabled,
        };
        self.insert(Entity::Tenant(tenant));
        for integration in &spec.integration {
            self.integration(&spec.id, integration);
        }
        for endpoint in &spec.endpoint {
            self.endpoint(&spec.id, endpoint);
        }
    }

    fn integration(&mut self, tenant: &str, spec: &IntegrationSpec) {
        let provider = providers::find(&spec.provider).expect("the file was validated");
        let id = integration_id(
            provider,
            spec.clues().next(),
            spec.integration_key.as_deref(),
            |id| self.records.0.contains_key(&integration_key(tenant, id)),
        );
        let key = integration_key(tenant, &id);
        let secret = match &spec.secret {
            Some(secret) => match self.seal(&key, "secret", Some(secret)) {
                Some(sealed) => Some(sealed),
                None => return,
            },
            None => None,
        };
        let previous_secret = self.seal(&key, "previous_secret", spec.previous_secret.as_ref());
        self.insert(Entity::Integration(topic::Integration {
            tenant: tenant.to_string(),
            id,
            provider: provider.slug().to_string(),
            shop_domain: spec.shop_domain.clone(),
            merchant_id: spec.merchant_id.clone(),
            store_id: spec.store_id.clone(),
            installation_id: spec.installation_id.clone(),
            flexype_store: spec.flexype_store.clone(),
            integration_key: spec.integration_key.clone(),
            secret,
            previous_secret,
            previous_secret_expires_at_ms: None,
            scheme: spec.scheme.as_ref().map(|scheme| {
                serde_json::to_value(scheme)
                    .and_then(serde_json::from_value)
                    .expect("a scheme table is the record's scheme")
            }),
            event: spec.event.clone(),
            access_token: None,
            installation: None,
        }));
    }

    fn endpoint(&mut self, tenant: &str, spec: &EndpointSpec) {
        let key = Key::Endpoint {
            tenant: tenant.to_string(),
            id: spec.id.clone(),
        };
        let (Some(secret), previous_secret) = (
            self.seal(&key, "secret", Some(&spec.secret)),
            self.seal(&key, "previous_secret", spec.previous_secret.as_ref()),
        ) else {
            return;
        };
        self.insert(Entity::Endpoint(topic::Endpoint {
            tenant: tenant.to_string(),
            id: spec.id.clone(),
            url: spec.url.clone(),
            secret,
            previous_secret,
            previous_secret_expires_at_ms: None,
            events: spec.events.clone(),
            retry_schedule_ms: spec.retry_schedule.as_ref().map(|steps| {
                steps
                    .iter()
                    .map(|step| {
                        millis(humantime::parse_duration(step).expect("the file was validated"))
                    })
                    .collect()
            }),
            disabled: !spec.enabled,
        }));
    }

    /// The secret `spec` refers to, sealed for `field` of the record `key`. The file was
    /// validated with the same references, but a secret file may have gone since.
    fn seal(&mut self, key: &Key, field: &str, spec: Option<&SecretSpec>) -> Option<Sealed> {
        match spec?.resolve(self.base, self.env) {
            Ok(value) => Some(seal(self.vault, key, field, &value)),
            Err(e) => {
                self.problems.push(format!("record {key}: {field}: {e}"));
                None
            }
        }
    }

    fn insert(&mut self, entity: Entity) {
        let record = Record::new(entity);
        self.records.0.insert(record.key(), record);
    }
}

/// A store as a clue field names it (a shop, a merchant, an installation): what the admin API's
/// document allows.
pub fn valid_clue(value: &str) -> bool {
    value.len() <= 255
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The id of an integration imported from a file, stable across imports of the file and unique
/// in its tenant, and of one created through the admin API: `{provider}:{field}={value}` by its
/// clue, else by its integration key (the file allows one of each per provider), else
/// `{provider}`, or the first of `{provider}#2`, … not `taken` (EasyOrders, whose secret names
/// it: numbered in file order).
pub fn integration_id(
    provider: &dyn Provider,
    clue: Option<(&str, &str)>,
    integration_key: Option<&str>,
    taken: impl Fn(&str) -> bool,
) -> String {
    let slug = provider.slug();
    if let Some((field, value)) = clue {
        return format!("{slug}:{field}={}", provider.normalize_clue(value));
    }
    if let Some(key) = integration_key {
        return format!("{slug}:integration_key={key}");
    }
    std::iter::once(slug.to_string())
        .chain((2..).map(|n| format!("{slug}#{n}")))
        .find(|id| !taken(id))
        .expect("some number is free")
}

fn integration_key(tenant: &str, id: &str) -> Key {
    Key::Integration {
        tenant: tenant.to_string(),
        id: id.to_string(),
    }
}

impl Records {
    /// The record of `key`.
    pub fn get(&self, key: &Key) -> Option<&Record> {
        self.0.get(key)
    }

    /// Every record in key order: the tenants, then the integrations, then the endpoints.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Record)> {
        self.0.iter()
    }

    /// The keys of `tenant`'s records, what it owns (its integrations, endpoints and the API
    /// keys limited to it) before the tenant itself: the order in which their tombstones leave
    /// no record without its tenant.
    pub fn keys_of(&self, tenant: &str) -> Vec<Key> {
        self.0
            .iter()
            .rev()
            .filter(|(_, record)| record.owner() == Some(tenant))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// These records as writing `record` under `key` (a tombstone for `None`) leaves them.
    pub fn with(&self, key: &Key, record: Option<Record>) -> Records {
        let mut records = self.clone();
        match record {
            Some(record) => records.0.insert(key.clone(), record),
            None => records.0.remove(key),
        };
        records
    }
}

impl Records {
    /// What `cartstream tenants rekey` writes: every record holding a secret sealed under a key
    /// other than the current one of `keys`, its secrets opened and sealed again under the
    /// current key; the others are left as they are. Every secret that opens with no key of
    /// `keys` is a problem, and then nothing is planned.
    pub fn rekey(&self, keys: &Keyring) -> Result<Plan, Problems> {
        let current = keys.current();
        let mut problems = Problems::default();
        let mut changes = Vec::new();
        for (key, record) in &self.0 {
            let stale: Vec<String> = record
                .secrets()
                .into_iter()
                .filter_map(|(field, sealed)| {
                    let sealed = sealed?;
                    (sealed.key_id != current.key_id())
                        .then(|| format!("{field} (sealed under {}: sealed again)", sealed.key_id))
                })
                .collect();
            if stale.is_empty() {
                continue;
            }
            let mut resealed = record.clone();
            let mut reseal = |field: &str, sealed: &mut Sealed| match open(keys, key, field, sealed)
            {
                Ok(value) => *sealed = seal(current, key, field, &value),
                Err(problem) => problems.push(problem),
            };
            match &mut resealed.entity {
                Entity::Tenant(_) | Entity::ApiKey(_) | Entity::Maintenance(_) => {}
                Entity::Integration(topic::Integration {
                    secret,
                    previous_secret,
                    access_token,
                    ..
                }) => {
                    let fields = [
                        ("secret", secret),
                        ("previous_secret", previous_secret),
                        ("access_token", access_token),
                    ];
                    for (field, sealed) in fields {
                        if let Some(sealed) = sealed {
                            reseal(field, sealed);
                        }
                    }
                }
                Entity::Endpoint(topic::Endpoint {
                    secret,
                    previous_secret,
                    ..
                }) => {
                    reseal("secret", secret);
                    if let Some(previous) = previous_secret {
                        reseal("previous_secret", previous);
                    }
                }
            }
            changes.push(Change {
                key: key.clone(),
                action: Action::Update(resealed, stale),
            });
        }
        problems.into_result(Plan { changes })
    }
}

/// What `cartstream tenants apply` writes to the topic so that it says what the file says:
/// the records to create and to update, and the tombstones of those to delete. Deletions come
/// first, what a tenant owns before the tenant, then creations and updates, tenants before
/// what they own, so a registry read in the middle has neither orphans nor a clue twice.
#[derive(Debug, Default)]
pub struct Plan {
    changes: Vec<Change>,
}

#[derive(Debug)]
struct Change {
    key: Key,
    action: Action,
}

#[derive(Debug)]
enum Action {
    Create(Record),
    /// The record, and the names of the fields that change.
    Update(Record, Vec<String>),
    Delete,
}

/// The plan that makes `current` into `desired`. Secrets are compared opened, not as sealed
/// (sealing is randomized): the same file applied twice plans nothing. A current secret that
/// this vault cannot open counts as changed, to be sealed again; a desired one is a problem.
/// API keys stay, but for those limited to a tenant `desired` does not have, and so does
/// maintenance mode; so do the integrations of stores connected through OAuth (those with an
/// `access_token`), while their tenant stays.
pub fn plan(current: &Records, desired: &Records, keys: &Keyring) -> Result<Plan, Problems> {
    let mut problems = Problems::default();
    // API keys are made through the admin API, not in a file: a file leaves them as they
    // are, but for a key limited to a tenant the file removes.
    let tenant_stays = |record: &Record| {
        record.owner().is_none_or(|tenant| {
            desired.0.contains_key(&Key::Tenant {
                tenant: tenant.to_string(),
            })
        })
    };
    let kept = |key: &Key, record: &Record| match &record.entity {
        Entity::Maintenance(_) => true,
        Entity::ApiKey(_) => tenant_stays(record),
        // A store a merchant connected through OAuth is not the file's to disconnect: it stays
        // while its tenant does.
        Entity::Integration(i) if i.access_token.is_some() => {
            desired.0.contains_key(key) || tenant_stays(record)
        }
        _ => desired.0.contains_key(key),
    };
    let mut changes: Vec<Change> = current
        .0
        .iter()
        .rev()
        .filter(|(key, record)| !kept(key, record))
        .map(|(key, _)| Change {
            key: key.clone(),
            action: Action::Delete,
        })
        .collect();
    for (key, record) in &desired.0 {
        let action = match current.0.get(key) {
            None => Action::Create(record.clone()),
            Some(now) => match changed_fields(key, now, &inherited(now, record), keys) {
                Ok(fields) if fields.is_empty() => continue,
                Ok(fields) => Action::Update(inherited(now, record), fields),
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            },
        };
        changes.push(Change {
            key: key.clone(),
            action,
        });
    }
    problems.into_result(Plan { changes })
}

/// `desired` with what no file says but the platforms gave the integration `current` is: its
/// OAuth token and its installation's lifecycle.
fn inherited(current: &Record, desired: &Record) -> Record {
    let mut record = desired.clone();
    if let (Entity::Integration(now), Entity::Integration(wanted)) =
        (&current.entity, &mut record.entity)
    {
        wanted.access_token = wanted.access_token.take().or(now.access_token.clone());
        wanted.installation = wanted.installation.or(now.installation);
    }
    record
}

/// The names of the fields of the record `key` that differ from `current` to `desired`, in
/// order; a secret that changes, by name only.
fn changed_fields(
    key: &Key,
    current: &Record,
    desired: &Record,
    keys: &Keyring,
) -> Result<Vec<String>, String> {
    let secrets = desired.secrets();
    let fields = |record: &Record| match serde_json::to_value(record) {
        Ok(serde_json::Value::Object(mut fields)) => {
            for (name, _) in &secrets {
                fields.remove(*name);
            }
            fields
        }
        _ => unreachable!("a record is a JSON object"),
    };
    let (now, wanted) = (fields(current), fields(desired));
    let mut changed: BTreeSet<String> = now
        .keys()
        .chain(wanted.keys())
        .filter(|name| now.get(*name) != wanted.get(*name))
        .cloned()
        .collect();
    for ((field, now), (_, wanted)) in current.secrets().into_iter().zip(secrets) {
        let wanted = wanted.map(|s| open(keys, key, field, s)).transpose()?;
        match now.map(|s| open(keys, key, field, s)).transpose() {
            Ok(now) if now == wanted => {}
            Ok(_) => {
                changed.insert(field.to_string());
            }
            Err(_) => {
                changed.insert(format!(
                    "{field} (not readable with this key: sealed again)"
                ));
            }
        }
    }
    Ok(changed.into_iter().collect())
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The Kafka key and value (`None`: a tombstone) of each record to write, in order.
    pub fn messages(&self) -> impl Iterator<Item = (String, Option<Vec<u8>>)> + '_ {
        self.changes.iter().map(|change| {
            let value = match &change.action {
                Action::Create(record) | Action::Update(record, _) => Some(record.encode()),
                Action::Delete => None,
            };
            (change.key.encode(), value)
        })
    }
}

/// One line per change, naming the record and, for an update, the fields that change (never a
/// value: a secret's may not be shown, and the others are in the file); then the counts.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts = [0; 3];
        for change in &self.changes {
            match &change.action {
                Action::Create(_) => {
                    counts[0] += 1;
                    writeln!(f, "create {}", change.key)?;
                }
                Action::Update(_, fields) => {
                    counts[1] += 1;
                    writeln!(f, "update {}: {}", change.key, fields.join(", "))?;
                }
                Action::Delete => {
                    counts[2] += 1;
                    writeln!(f, "delete {}", change.key)?;
                }
            }
        }
        match counts {
            [0, 0, 0] => write!(f, "no changes"),
            [create, update, delete] => write!(
                f,
                "{create} to create, {update} to update, {delete} to delete"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
