//! The deployment's platform apps (`[platforms.shopify]`, `[platforms.salla]`, `[platforms.zid]`):
//! the app a merchant installs to connect a store. Every store connected through one app signs
//! its webhooks with that app's secret, so an integration of such a store names its shop and no
//! secret of its own ([`Apps::keys`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod connect;
mod http;
pub mod installation;
pub mod oauth;
mod salla;
mod shopify;
mod zid;

pub use connect::{Answer, Connect, COOKIE};

use crate::kafka::Property;
use crate::problems::Problems;
use crate::providers::{self, Keys, Provider};

/// The `[platforms]` section: one app per platform, each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shopify: Option<App>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salla: Option<App>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zid: Option<App>,
    /// The deployment's ShopiMind app, for its OAuth installations ("Type B"): ShopiMind sends
    /// the merchant's browser to `/api/oauth/shopimind/consent`, which ties the installation
    /// to the tenant whose install link the browser opened, and sends it back. Its webhooks
    /// verify with `ingress.shopimind_app_secret`, which it needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shopimind: Option<ShopimindApp>,
    /// Certificates (PEM) trusted for the platforms' APIs besides the system's roots: a
    /// private CA in front of them, or a test platform. Relative to the configuration file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// One platform app, as the platform's partner dashboard shows it. Each secret is the text, or
/// `{ env = "VARIABLE" }`, or `{ file = "path" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The app's public identifier (Shopify's API key, Salla's and Zid's client id).
    pub client_id: String,
    /// The secret the app exchanges authorization codes with.
    pub client_secret: Property,
    /// The secret the platform signs the app's webhooks with: Salla's "webhook secret"; for
    /// Shopify the client secret when unset. Zid signs none (each subscription carries
    /// credentials of its own), so it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<Property>,
    /// The webhook secret being rotated out: it verifies too, until it is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_webhook_secret: Option<Property>,
    /// The access OAuth connect asks for; the platform's documented default when unset
    /// (Shopify: `read_orders`, `read_customers`, `read_checkouts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Where the platform's API is, in place of its own (a proxy, or a test platform). For
    /// Shopify a template of the shop's admin, `https://{shop}` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// Where the platform's OAuth server is, in place of its own (Salla:
    /// `https://accounts.salla.sa`, Zid: `https://oauth.zid.sa`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts_url: Option<String>,
}

/// `[platforms.shopimind]`: where ShopiMind's OAuth installations start and end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopimindApp {
    /// Where the consent page may send the browser back to: each an absolute URL (ShopiMind's
    /// app, `https://app.shopimind.com/`), which a `redirect_uri` must start with (same scheme,
    /// host and port, its path under this one's). Any other is refused.
    pub return_urls: Vec<String>,
    /// Where the install link sends the merchant's browser once it is tied to the tenant: the
    /// app's page in ShopiMind, where the merchant installs it. Without it the link answers
    /// with what to do next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_url: Option<String>,
}

impl ShopimindApp {
    /// Whether the consent page may send the browser to `url`.
    pub fn returns_to(&self, url: &url::Url) -> bool {
        self.return_urls.iter().any(|allowed| {
            let Ok(allowed) = url::Url::parse(allowed) else {
                return false;
            };
            let path = allowed.path();
            let under = url.path().strip_prefix(path).is_some_and(|rest| {
                rest.is_empty() || path.ends_with('/') || rest.starts_with('/')
            });
            url.scheme() == allowed.scheme()
                && url.host_str() == allowed.host_str()
                && url.port_or_known_default() == allowed.port_or_known_default()
                && url.username().is_empty()
                && under
        })
    }

    fn check(&self, problems: &mut Problems) {
        if self.return_urls.is_empty() {
            problems.push("platforms.shopimind.return_urls: is empty".to_string());
        }
        let urls = self.return_urls.iter().map(|u| ("return_urls", u));
        for (field, url) in urls.chain(self.install_url.iter().map(|u| ("install_url", u))) {
            match url::Url::parse(url) {
                Ok(parsed) if matches!(parsed.scheme(), "https" | "http") && parsed.has_host() => {}
                _ => problems.push(format!(
                    "platforms.shopimind.{field}: {url:?} is not an absolute http(s) URL"
                )),
            }
        }
    }
}

/// What OAuth connect needs of the deployment's ShopiMind app besides `[platforms.shopimind]`.
#[derive(Clone, Default)]
pub struct Shopimind {
    /// `ingress.shopimind_app_secret`: the installations it ties verify with it.
    pub webhook_secret: Option<String>,
    /// What moves the token an installation sent before it was tied to the tenant.
    pub claims: Option<crate::tenants::Claims>,
}

/// Why a connect route did not connect: each becomes its HTTP answer at the ingress.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A parameter is missing or wrong, the state expired or was used, or the store declined.
    #[error("{0}")]
    BadRequest(String),
    /// The callback is not the platform's.
    #[error("{0}")]
    Unauthorized(String),
    /// The consent was started in another browser.
    #[error("{0}")]
    Forbidden(String),
    /// No such tenant, or no app or connect for the platform.
    #[error("{0}")]
    NotFound(String),
    /// The store is another tenant's.
    #[error("{0}")]
    Conflict(String),
    /// The platform refused the code or a subscription, or did not answer.
    #[error("{0}")]
    Platform(String),
    /// The registry cannot be written now, or the deployment lacks what connect needs.
    #[error("{0}")]
    Unavailable(String),
}

/// How a platform's app signs webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signing {
    /// With `webhook_secret`, else the client secret (Shopify).
    ClientSecretByDefault,
    /// With `webhook_secret`, which the app must have to take webhooks (Salla).
    WebhookSecret,
    /// Not with any app secret (Zid).
    None,
}

/// The platforms that have apps, by the slug of their provider.
const PLATFORMS: [(&str, Signing); 3] = [
    ("shopify", Signing::ClientSecretByDefault),
    ("salla", Signing::WebhookSecret),
    ("zid", Signing::None),
];

fn signing(provider: &str) -> Option<Signing> {
    PLATFORMS
        .iter()
        .find(|(slug, _)| *slug == provider)
        .map(|&(_, signing)| signing)
}

impl Config {
    /// The app of the platform `provider`, when configured.
    pub fn app(&self, provider: &str) -> Option<&App> {
        match provider {
            "shopify" => self.shopify.as_ref(),
            "salla" => self.salla.as_ref(),
            "zid" => self.zid.as_ref(),
            _ => None,
        }
    }

    fn apps_mut(&mut self) -> impl Iterator<Item = (&'static str, &mut App)> {
        [
            ("shopify", self.shopify.as_mut()),
            ("salla", self.salla.as_mut()),
            ("zid", self.zid.as_mut()),
        ]
        .into_iter()
        .filter_map(|(slug, app)| Some((slug, app?)))
    }

    /// Reads every secret from where it is kept and checks each app: its secrets are not
    /// empty, and a webhook secret is where the platform signs with one.
    pub fn resolve(&mut self, env: &HashMap<String, String>, base: &Path, problems: &mut Problems) {
        if let Some(path) = &mut self.ca_file {
            *path = base.join(&*path);
            if let Err(e) = std::fs::read(&*path) {
                problems.push(format!("platforms.ca_file: {}: {e}", path.display()));
            }
        }
        if let Some(shopimind) = &self.shopimind {
            shopimind.check(problems);
        }
        for (slug, app) in self.apps_mut() {
            let at = format!("platforms.{slug}");
            if app.client_id.trim().is_empty() {
                problems.push(format!("{at}.client_id: is empty"));
            }
            let secrets = [
                ("client_secret", Some(&mut app.client_secret)),
                ("webhook_secret", app.webhook_secret.as_mut()),
                (
                    "previous_webhook_secret",
                    app.previous_webhook_secret.as_mut(),
                ),
            ];
            for (field, secret) in secrets {
                let Some(secret) = secret else { continue };
                let checked = secret.resolve(env, base).and_then(|()| {
                    match secret.text().unwrap_or_default().trim().is_empty() {
                        true => Err("is empty".to_string()),
                        false => Ok(()),
                    }
                });
                if let Err(why) = checked {
                    problems.push(format!("{at}.{field}: {why}"));
                }
            }
            let signing = signing(slug).expect("every app is of a platform");
            if signing == Signing::None && app.webhook_secret.is_some() {
                problems.push(format!(
                    "{at}.webhook_secret: {slug} signs no webhook with an app secret (each subscription carries credentials of its own)"
                ));
            }
            if app.previous_webhook_secret.is_some()
                && signing != Signing::ClientSecretByDefault
                && app.webhook_secret.is_none()
            {
                problems.push(format!(
                    "{at}.previous_webhook_secret: set without {at}.webhook_secret"
                ));
            }
        }
    }

    /// The keys each configured app signs its shops' webhooks with.
    pub fn apps(&self) -> Apps {
        let mut keys = HashMap::new();
        for (slug, signing) in PLATFORMS {
            let Some(app) = self.app(slug) else { continue };
            let current = match (signing, &app.webhook_secret) {
                (Signing::None, _) | (Signing::WebhookSecret, None) => continue,
                (_, Some(secret)) => secret,
                (Signing::ClientSecretByDefault, None) => &app.client_secret,
            };
            let provider = providers::find(slug).expect("every platform is a provider");
            let key = |secret: &Property| provider.key(secret.text()?.trim()).ok();
            let Some(current) = key(current) else {
                continue;
            };
            let previous = app.previous_webhook_secret.as_ref().and_then(key);
            keys.insert(slug, Keys::new(current, previous));
        }
        Apps { keys }
    }
}

/// Every integration signed by a platform app the deployment cannot verify is a problem: its
/// deliveries would all be refused.
pub fn check_apps(apps: &Apps, registry: &crate::tenants::Registry, problems: &mut Problems) {
    for integration in registry.integrations() {
        if integration.keys.is_some() {
            continue;
        }
        if let Some(missing) = missing_app(integration.provider, apps) {
            problems.push(format!(
                "tenant {} integration {} {missing}",
                integration.tenant.id,
                integration
                    .clue
                    .as_deref()
                    .unwrap_or(integration.provider.slug()),
            ));
        }
    }
}

/// The keys of the deployment's platform apps, by provider.
#[derive(Debug, Default)]
pub struct Apps {
    keys: HashMap<&'static str, Keys>,
}

impl Apps {
    /// The keys the app of `provider` signs webhooks with, when the deployment has that app
    /// (with the secret it signs with).
    pub fn keys(&self, provider: &str) -> Option<&Keys> {
        self.keys.get(provider)
    }

    /// Whether the deployment can verify the webhooks of `provider`'s app.
    pub fn signs(&self, provider: &str) -> bool {
        self.keys.contains_key(provider)
    }
}

/// The keys an integration's deliveries verify with: its own, else its platform app's; `None`
/// when it has neither (an app integration of a platform the deployment has no app for).
pub fn keys_of<'k>(
    integration: &'k crate::tenants::Integration,
    apps: &'k Apps,
) -> Option<&'k Keys> {
    integration
        .keys
        .as_ref()
        .or_else(|| apps.keys(integration.provider.slug()))
}

/// What a provider's app integrations need in `[platforms]`: the problem, when `apps` cannot
/// verify them.
pub fn missing_app(provider: &dyn Provider, apps: &Apps) -> Option<String> {
    let slug = provider.slug();
    (!apps.signs(slug)).then(|| {
        let needs = match signing(slug) {
            Some(Signing::WebhookSecret) => "webhook_secret",
            _ => "client_secret",
        };
        format!("signs with the {slug} app's secret, and [platforms.{slug}] has no {needs}")
    })
}

#[cfg(test)]
mod tests;
