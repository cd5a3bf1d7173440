//! OAuth connect, end to end: the install link the admin API issues, the redirect to the
//! platform's consent screen, and the callback that exchanges the code, subscribes the
//! webhooks and writes the integration to the tenants topic — or leaves nothing behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::installation;
use super::oauth::{self, Grant, Purpose};
use super::{salla, shopify, zid, Config, Failure};
use crate::clock::Clock;
use crate::providers::{self, Key, Provider};
use crate::tenants::{integration_id, seal_for, valid_clue, Records, Refused, Registrar};
use crate::topics::registry::{self as topic, Entity, Record};

/// The cookie that ties a consent to the browser that started it.
pub const COOKIE: &str = "cartstream_oauth";

/// How long a call to a platform's API may take.
const PLATFORM_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connect route answers, when it is not an error.
#[derive(Debug)]
pub struct Answer {
    /// 302 to `location`, else 200 with `body`.
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub body: serde_json::Value,
}

/// The deployment's OAuth connect: its apps, where platforms reach it, and the registry it
/// writes connected stores to.
pub struct Connect {
    platforms: Config,
    /// The keys of its apps: a store is connected only where they verify its deliveries.
    apps: Arc<super::Apps>,
    /// The ShopiMind app's secret and what claims held tokens, for its OAuth installations.
    shopimind: super::Shopimind,
    public_url: Option<String>,
    registrar: Arc<Registrar>,
    http: reqwest::Client,
    clock: Clock,
    /// States this instance took, until they expire: a state is taken once here, and a
    /// platform takes its code once (the other instances' guard).
    used: Mutex<HashMap<String, i64>>,
}

impl Connect {
    /// The connect flows of the deployment; the problem when its HTTP client cannot be made
    /// (an unreadable `platforms.ca_file`).
    pub fn new(
        platforms: &Config,
        apps: Arc<super::Apps>,
        shopimind: super::Shopimind,
        public_url: Option<String>,
        registrar: Arc<Registrar>,
        clock: Clock,
    ) -> anyhow::Result<Arc<Connect>> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PLATFORM_TIMEOUT)
            .https_only(true)
            .no_proxy()
            .user_agent(concat!("cartstream/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &platforms.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("platforms.ca_file {}: {e}", path.display()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("platforms.ca_file {}: {e}", path.display()))?;
            http = http.tls_certs_merge(roots);
        }
        Ok(Arc::new(Connect {
            platforms: platforms.clone(),
            apps,
            shopimind,
            public_url: public_url.map(|url| url.trim_end_matches('/').to_string()),
            registrar,
            http: http.build()?,
            clock,
            used: Mutex::default(),
        }))
    }

    /// The key links and states are signed with: derived from the tenants topic's sealing key.
    fn key(&self) -> &Key {
        self.registrar.keys().current().state_key()
    }

    fn public_url(&self) -> Result<&str, Failure> {
        self.public_url.as_deref().ok_or_else(|| {
            Failure::Unavailable(
                "ingress.public_url is not set: the platform cannot be sent back here".to_string(),
            )
        })
    }

    fn app(&self, provider: &str) -> Result<&super::App, Failure> {
        if !PLATFORMS.contains(&provider) {
            return Err(Failure::NotFound(format!(
                "no OAuth connect for {provider:?}: it is built for {}",
                PLATFORMS.join(", ")
            )));
        }
        let app = self.platforms.app(provider).ok_or_else(|| {
            Failure::NotFound(format!(
                "the deployment has no {provider} app ([platforms.{provider}])"
            ))
        })?;
        // A Salla store's deliveries are signed with the app's webhook secret.
        if provider == "salla" && !self.apps.signs(provider) {
            return Err(Failure::NotFound(
                "[platforms.salla] has no webhook_secret, which Salla signs the store's deliveries with"
                    .to_string(),
            ));
        }
        Ok(app)
    }

    /// A link that starts connecting `shop` of `provider` to `tenant`, for
    /// [`oauth::GRANT_TTL`]: `{public_url}/api/oauth/{provider}/install?link=…`.
    pub fn link(
        &self,
        tenant: &str,
        provider: &str,
        shop: Option<&str>,
    ) -> Result<String, Failure> {
        match provider {
            SHOPIMIND_SLUG => drop(self.shopimind_app()?),
            _ => drop(self.app(provider)?),
        }
        let shop = match (provider, shop) {
            ("shopify", shop) => Some(
                oauth::shopify_shop(shop.unwrap_or_default())
                    .map_err(|why| Failure::BadRequest(format!("shop: {why}")))?,
            ),
            (_, None) => None,
            (_, Some(_)) => {
                return Err(Failure::BadRequest(format!(
                    "shop: only for shopify; a {provider} store is the one that consents"
                )))
            }
        };
        let base = self.public_url()?;
        let records = self.registrar.live().records().unwrap_or_default();
        let tenant_key = topic::Key::Tenant {
            tenant: tenant.to_string(),
        };
        if records.get(&tenant_key).is_none() {
            return Err(Failure::NotFound(format!("tenant {tenant:?}")));
        }
        if let Some(shop) = &shop {
            self.another_tenants(&records, tenant, provider, shop)?;
        }
        let grant = Grant::new(
            Purpose::Link,
            tenant,
            provider,
            shop.as_deref(),
            self.now_ms(),
        );
        Ok(format!(
            "{base}/api/oauth/{provider}/install?link={}",
            grant.sign(self.key())
        ))
    }

    /// `GET /api/oauth/{provider}/install?link=…`: to the platform's consent screen, with a
    /// state for this browser only.
    pub fn install(&self, provider: &str, query: &str) -> Result<Answer, Failure> {
        if provider == SHOPIMIND_SLUG {
            return self.install_shopimind(query);
        }
        let app = self.app(provider)?;
        let query = pairs(query);
        let now = self.now_ms();
        let link = self.open(&query, "link", Purpose::Link, provider, now)?;
        let state = Grant::new(
            Purpose::State,
            &link.tenant,
            provider,
            link.shop.as_deref(),
            now,
        );
        let (redirect_uri, signed) = (self.callback_url(provider)?, state.sign(self.key()));
        let location = match provider {
            "shopify" => {
                let shop = link.shop.as_deref().unwrap_or_default();
                let admin = shopify::admin_url(&self.api_url(provider, app), shop);
                let scopes = self.scopes(provider, app);
                shopify::authorize_url(&admin, &app.client_id, &scopes, &redirect_uri, &signed)
            }
            "salla" => salla::authorize_url(
                &self.accounts_url(provider, app),
                &app.client_id,
                &self.scopes(provider, app),
                &redirect_uri,
                &signed,
            ),
            _ => zid::authorize_url(
                &self.accounts_url(provider, app),
                &app.client_id,
                &redirect_uri,
                &signed,
            ),
        };
        Ok(Answer {
            location: Some(location),
            set_cookie: Some(set_cookie(&state.nonce)),
            body: serde_json::json!({}),
        })
    }

    /// `GET /api/oauth/shopimind/install?link=…`: this browser tied to the link's tenant by a
    /// cookie holding a signed state, then on to the app's page in ShopiMind, where the
    /// merchant installs it (else an answer saying so).
    fn install_shopimind(&self, query: &str) -> Result<Answer, Failure> {
        let app = self.shopimind_app()?;
        let query = pairs(query);
        let now = self.now_ms();
        let link = self.open(&query, "link", Purpose::Link, SHOPIMIND_SLUG, now)?;
        let state = Grant::new(Purpose::State, &link.tenant, SHOPIMIND_SLUG, None, now);
        let expires_at = crate::clock::rfc3339(state.expires_at_ms);
        Ok(Answer {
            location: app.install_url.clone(),
            set_cookie: Some(set_cookie(&state.sign(self.key()))),
            body: serde_json::json!({
                "next": "install the app from ShopiMind in this browser: its consent step comes back here and connects the installation",
                "tenant": link.tenant,
                "expires_at": expires_at,
            }),
        })
    }

    /// `GET /api/oauth/shopimind/consent?installation_id=…&redirect_uri=…[&state=…]`: the
    /// consent page ShopiMind sends the merchant's browser to during an OAuth installation.
    /// The installation is tied to the tenant of the browser's install link (its integration
    /// written, signed with the app's secret; a token it sent before, held unclaimed, moved to
    /// the tenant), and the browser sent back to `redirect_uri` with `state` and
    /// `external_account_id` (the tenant).
    pub async fn consent(
        &self,
        provider: &str,
        query: &str,
        cookie: Option<&str>,
    ) -> Result<Answer, Failure> {
        if provider != SHOPIMIND_SLUG {
            return Err(Failure::NotFound(format!(
                "no consent page for {provider:?}: it is ShopiMind's ({SHOPIMIND_SLUG})"
            )));
        }
        let app = self.shopimind_app()?;
        let secret = self.shopimind.webhook_secret.clone().unwrap_or_default();
        let query = pairs(query);
        if let Ok(error) = param(&query, "error") {
            return Err(Failure::BadRequest(format!("ShopiMind said: {error}")));
        }
        let installation = param(&query, "installation_id")?;
        if !valid_clue(installation) {
            return Err(Failure::BadRequest(
                "installation_id: 1 to 255 of A-Z a-z 0-9 . _ - starting with a letter or a digit"
                    .to_string(),
            ));
        }
        let back = url::Url::parse(param(&query, "redirect_uri")?)
            .map_err(|e| Failure::BadRequest(format!("redirect_uri: {e}")))?;
        if !app.returns_to(&back) {
            return Err(Failure::BadRequest(
                "redirect_uri: is not one of platforms.shopimind.return_urls".to_string(),
            ));
        }
        let Some(cookie) = cookie else {
            return Err(Failure::Forbidden(
                "this browser has not opened an install link: open the one the admin API issued (POST /admin/v1/tenants/{id}/connect), then install from ShopiMind".to_string(),
            ));
        };
        let now = self.now_ms();
        let state = Grant::open(self.key(), cookie, Purpose::State, now).map_err(|why| {
            Failure::Forbidden(format!("the install link this browser opened {why}"))
        })?;
        if state.provider != SHOPIMIND_SLUG {
            return Err(Failure::Forbidden(format!(
                "this browser's install link is for {}, not {SHOPIMIND_SLUG}",
                state.provider
            )));
        }
        let tenant = state.tenant.clone();
        let installation = SHOPIMIND.normalize_clue(installation);
        let records = self.registrar.live().records().unwrap_or_default();
        let mut theirs = shopimind_integrations(&records, &installation).map(|(_, i)| &i.tenant);
        match theirs.next() {
            Some(other) if *other != tenant => {
                return Err(Failure::Conflict(format!(
                    "the installation {installation} is connected to another tenant"
                )))
            }
            Some(_) => {}
            None => {
                self.take(&state, now)?;
                let mut record = self.integration(
                    &tenant,
                    SHOPIMIND_SLUG,
                    ("installation_id", &installation),
                    None,
                );
                record.installation_id = Some(installation.clone());
                record.secret = Some(self.seal(&record, "secret", &secret));
                let key = topic::Key::Integration {
                    tenant: tenant.clone(),
                    id: record.id.clone(),
                };
                let written = self
                    .registrar
                    .write(
                        &records,
                        vec![(key, Some(Record::new(Entity::Integration(record))))],
                    )
                    .await;
                written.map_err(unwritten)?;
                tracing::info!(%tenant, %installation, "a ShopiMind installation connected through its consent page");
            }
        }
        // A token the installation sent before it was tied stays held (and readable with
        // `cartstream credentials --unclaimed`) when it cannot be moved now.
        if let Some(claims) = &self.shopimind.claims {
            if let Err(error) = claims.claim(&tenant, &SHOPIMIND, &installation, now).await {
                tracing::warn!(%tenant, %installation, %error, "an unclaimed installation's credentials could not be moved to its tenant");
            }
        }
        let mut back = back;
        {
            let mut pairs = back.query_pairs_mut();
            if let Ok(state) = param(&query, "state") {
                pairs.append_pair("state", state);
            }
            pairs
                .append_pair("installation_id", &installation)
                .append_pair("external_account_id", &tenant)
                .append_pair("external_account_name", &tenant);
        }
        Ok(Answer {
            location: Some(back.to_string()),
            set_cookie: Some(clear_cookie()),
            body: serde_json::json!({}),
        })
    }

    /// The grant of `purpose` for `provider` in the parameter `name`: signed by this
    /// deployment and unexpired at `now`; else a 400 naming the parameter.
    fn open(
        &self,
        query: &[(String, String)],
        name: &str,
        purpose: Purpose,
        provider: &str,
        now: i64,
    ) -> Result<Grant, Failure> {
        let grant = Grant::open(self.key(), param(query, name)?, purpose, now)
            .map_err(|why| Failure::BadRequest(format!("{name}: {why}")))?;
        match grant.provider == provider {
            true => Ok(grant),
            false => Err(Failure::BadRequest(format!(
                "{name}: is for {}, not {provider}",
                grant.provider
            ))),
        }
    }

    /// The ShopiMind app, with the secret its installations verify with.
    fn shopimind_app(&self) -> Result<&super::ShopimindApp, Failure> {
        match (&self.platforms.shopimind, &self.shopimind.webhook_secret) {
            (Some(app), Some(_)) => Ok(app),
            (None, _) => Err(Failure::NotFound(
                "the deployment has no shopimind app ([platforms.shopimind])".to_string(),
            )),
            (Some(_), None) => Err(Failure::NotFound(
                "the deployment has no ShopiMind app secret (ingress.shopimind_app_secret)"
                    .to_string(),
            )),
        }
    }

    /// `GET /api/oauth/{provider}/callback?…`: the consent's code exchanged for the store's
    /// token, its webhooks subscribed, and the integration written; on any failure, what was
    /// subscribed is removed and nothing is written.
    pub async fn callback(
        &self,
        provider: &str,
        query: &str,
        cookie: Option<&str>,
    ) -> Result<Answer, Failure> {
        let app = self.app(provider)?;
        let query = pairs(query);
        if let Ok(error) = param(&query, "error") {
            let said = param(&query, "error_description").unwrap_or(error);
            return Err(Failure::BadRequest(format!(
                "the store did not consent ({error}): {said}"
            )));
        }
        let now = self.now_ms();
        let state = self.open(&query, "state", Purpose::State, provider, now)?;
        if cookie != Some(state.nonce.as_str()) {
            return Err(Failure::Forbidden(
                "this connection was started in another browser: open the install link again"
                    .to_string(),
            ));
        }
        let client_secret = app.client_secret.text().unwrap_or_default().trim();
        if provider == "shopify" {
            if !oauth::shopify_query_authentic(&query, client_secret.as_bytes()) {
                return Err(Failure::Unauthorized(
                    "the callback is not signed by the app's platform (hmac)".to_string(),
                ));
            }
            let shop = oauth::shopify_shop(param(&query, "shop")?)
                .map_err(|why| Failure::BadRequest(format!("shop: {why}")))?;
            if state.shop.as_deref() != Some(shop.as_str()) {
                return Err(Failure::BadRequest(
                    "shop: is not the store the install link was for".to_string(),
                ));
            }
        }
        self.take(&state, now)?;
        let code = param(&query, "code")?;
        let records = self.registrar.live().records().unwrap_or_default();
        let store = match provider {
            "shopify" => self.shopify(app, &state, code, &records).await?,
            "salla" => self.salla(app, &state, code, &records).await?,
            _ => self.zid(app, &state, code).await?,
        };
        let id = store.record.id.clone();
        let key = topic::Key::Integration {
            tenant: state.tenant.clone(),
            id: id.clone(),
        };
        let record = Record::new(Entity::Integration(store.record));
        let written = self
            .registrar
            .write(&records, vec![(key, Some(record))])
            .await;
        if let Err(refused) = written {
            self.undo(store.subscribed).await;
            return Err(unwritten(refused));
        }
        tracing::info!(tenant = %state.tenant, provider, integration = %id, "a store connected through OAuth");
        Ok(Answer {
            location: None,
            set_cookie: Some(clear_cookie()),
            body: serde_json::json!({
                "connected": {
                    "tenant": state.tenant,
                    "provider": provider,
                    "integration": id,
                    "store": store.name,
                    "webhook_url": store.webhook_url,
                    "events": store.events,
                }
            }),
        })
    }

    /// A Shopify store: its offline token, the granted scopes checked, its topics subscribed.
    async fn shopify(
        &self,
        app: &super::App,
        state: &Grant,
        code: &str,
        records: &Records,
    ) -> Result<Store, Failure> {
        let shop = state.shop.clone().unwrap_or_default();
        self.another_tenants(records, &state.tenant, "shopify", &shop)?;
        let admin = shopify::admin_url(&self.api_url("shopify", app), &shop);
        let secret = app.client_secret.text().unwrap_or_default().trim();
        let token = shopify::exchange(&self.http, &admin, &app.client_id, secret, code).await?;
        let granted: Vec<&str> = token.scope.split(',').map(str::trim).collect();
        self.check_scopes(app, "shopify", &granted, &token.scope)?;
        let uri = format!("{}/api/webhooks/shopify", self.public_url()?);
        let mut created = Vec::new();
        for topic in shopify::TOPICS {
            match shopify::subscribe(&self.http, &admin, &token.access_token, topic, &uri).await {
                Ok(id) => created.push(id),
                // A store connected again: the subscription is there already.
                Err(Failure::Platform(why)) if why.contains("already been taken") => {}
                Err(failure) => {
                    self.undo(Subscribed::Shopify(admin, token.access_token, created))
                        .await;
                    return Err(failure);
                }
            }
        }
        let mut record = self.integration(&state.tenant, "shopify", ("shop_domain", &shop), None);
        record.shop_domain = Some(shop.clone());
        record.access_token = Some(self.seal(&record, "access_token", &token.access_token));
        Ok(Store {
            record,
            name: shop,
            webhook_url: uri,
            events: shopify::TOPICS.iter().map(|t| t.to_string()).collect(),
            subscribed: Subscribed::Shopify(admin, token.access_token, created),
        })
    }

    /// A Salla store: its token, its merchant id, its events subscribed (signed by the app).
    async fn salla(
        &self,
        app: &super::App,
        state: &Grant,
        code: &str,
        records: &Records,
    ) -> Result<Store, Failure> {
        let accounts = self.accounts_url("salla", app);
        let api = self.api_url("salla", app);
        let secret = app.client_secret.text().unwrap_or_default().trim();
        let redirect_uri = self.callback_url("salla")?;
        let client = (app.client_id.as_str(), secret);
        let token = salla::exchange(&self.http, &accounts, client, code, &redirect_uri).await?;
        let granted: Vec<&str> = token.scope.split_whitespace().collect();
        self.check_scopes(app, "salla", &granted, &token.scope)?;
        let merchant = salla::merchant(&self.http, &accounts, &token.access_token).await?;
        self.another_tenants(records, &state.tenant, "salla", &merchant)?;
        let url = format!("{}/api/webhooks/salla", self.public_url()?);
        // Salla answers a subscription made again with the one in force: a store connected
        // again keeps its subscriptions whatever happens to this connect.
        let again = records.iter().any(|(_, record)| match &record.entity {
            Entity::Integration(i) => {
                i.tenant == state.tenant
                    && i.provider == "salla"
                    && i.merchant_id.as_deref() == Some(merchant.as_str())
            }
            _ => false,
        });
        let mut created = Vec::new();
        for event in salla::EVENTS {
            match salla::subscribe(&self.http, &api, &token.access_token, event, &url).await {
                Ok(id) if !again => created.push(id),
                Ok(_) => {}
                Err(failure) => {
                    self.undo(Subscribed::Salla(api, token.access_token, created))
                        .await;
                    return Err(failure);
                }
            }
        }
        let mut record = self.integration(&state.tenant, "salla", ("merchant_id", &merchant), None);
        record.merchant_id = Some(merchant.clone());
        record.access_token = Some(self.seal(&record, "access_token", &token.access_token));
        Ok(Store {
            record,
            name: merchant,
            webhook_url: url,
            events: salla::EVENTS.iter().map(|e| e.to_string()).collect(),
            subscribed: Subscribed::Salla(api, token.access_token, created),
        })
    }

    /// A Zid store: its token pair, and its events subscribed to an integration key of its own
    /// with Basic credentials cartstream chose (Zid signs nothing): they are its secret.
    async fn zid(&self, app: &super::App, state: &Grant, code: &str) -> Result<Store, Failure> {
        let accounts = self.accounts_url("zid", app);
        let api = self.api_url("zid", app);
        let secret = app.client_secret.text().unwrap_or_default().trim();
        let redirect_uri = self.callback_url("zid")?;
        let client = (app.client_id.as_str(), secret);
        let token = zid::exchange(&self.http, &accounts, client, code, &redirect_uri).await?;
        let integration_key = format!("int_{}", oauth::random_token(12));
        let password = oauth::random_token(24);
        let target = format!("{}/api/webhooks/zid/{integration_key}", self.public_url()?);
        for event in zid::EVENTS {
            let credentials = ("cartstream", password.as_str());
            let made = zid::subscribe(
                &self.http,
                &api,
                &token,
                event,
                &target,
                &integration_key,
                credentials,
            )
            .await;
            if let Err(failure) = made {
                self.undo(Subscribed::Zid(api, token, integration_key))
                    .await;
                return Err(failure);
            }
        }
        let mut record = self.integration(&state.tenant, "zid", ("", ""), Some(&integration_key));
        record.integration_key = Some(integration_key.clone());
        let credentials = format!("cartstream:{password}");
        record.secret = Some(self.seal(&record, "secret", &credentials));
        let pair = serde_json::to_string(&token).expect("a token pair serializes");
        record.access_token = Some(self.seal(&record, "access_token", &pair));
        Ok(Store {
            record,
            name: integration_key.clone(),
            webhook_url: target,
            events: zid::EVENTS.iter().map(|e| e.to_string()).collect(),
            subscribed: Subscribed::Zid(api, token, integration_key),
        })
    }

    /// Refused when the store granted less than the app asks for.
    fn check_scopes(
        &self,
        app: &super::App,
        provider: &str,
        granted: &[&str],
        said: &str,
    ) -> Result<(), Failure> {
        let missing: Vec<String> = self
            .scopes(provider, app)
            .into_iter()
            .filter(|scope| !granted.contains(&scope.as_str()))
            .collect();
        match missing.is_empty() {
            true => Ok(()),
            false => Err(Failure::Platform(format!(
                "the store granted {said:?}, without {}",
                missing.join(", ")
            ))),
        }
    }

    /// The record of a store connected to `tenant`, signed by the app until told otherwise,
    /// its id from its clue (`field`, `value`) or its integration key.
    fn integration(
        &self,
        tenant: &str,
        provider: &str,
        (field, value): (&str, &str),
        integration_key: Option<&str>,
    ) -> topic::Integration {
        let provider = providers::find(provider).expect("connect is for known providers");
        let clue = (!field.is_empty()).then_some((field, value));
        let id = integration_id(provider, clue, integration_key, |_| false);
        topic::Integration {
            tenant: tenant.to_string(),
            id,
            provider: provider.slug().to_string(),
            shop_domain: None,
            merchant_id: None,
            store_id: None,
            installation_id: None,
            flexype_store: None,
            integration_key: None,
            secret: None,
            previous_secret: None,
            previous_secret_expires_at_ms: None,
            scheme: None,
            event: None,
            access_token: None,
            installation: None,
        }
    }

    /// `value` sealed for `field` of `record`.
    fn seal(&self, record: &topic::Integration, field: &str, value: &str) -> topic::Sealed {
        let key = topic::Key::Integration {
            tenant: record.tenant.clone(),
            id: record.id.clone(),
        };
        seal_for(self.registrar.keys(), &key, field, value)
    }

    /// Removes what a connect that failed subscribed; what cannot be removed is logged.
    async fn undo(&self, subscribed: Subscribed) {
        let left = match subscribed {
            Subscribed::Shopify(admin, token, ids) => {
                let mut left = Vec::new();
                for id in ids {
                    if let Err(why) = shopify::unsubscribe(&self.http, &admin, &token, &id).await {
                        left.push(format!("{id}: {why}"));
                    }
                }
                left
            }
            Subscribed::Salla(api, token, ids) => {
                let mut left = Vec::new();
                for id in ids {
                    if let Err(why) = salla::unsubscribe(&self.http, &api, &token, &id).await {
                        left.push(format!("{id}: {why}"));
                    }
                }
                left
            }
            Subscribed::Zid(api, token, original_id) => {
                match zid::unsubscribe(&self.http, &api, &token, &original_id).await {
                    Ok(()) => Vec::new(),
                    Err(why) => vec![format!("{original_id}: {why}")],
                }
            }
        };
        for left in left {
            tracing::warn!(subscription = %left, "a webhook subscription of a failed connect was left");
        }
    }

    /// The app's uninstall webhook was received for `shop` of `tenant`: the integration it
    /// made is removed, its sealed token with it, so the store's deliveries are refused.
    pub async fn uninstalled(&self, tenant: &str, provider: &str, shop: &str) {
        let records = self.registrar.live().records().unwrap_or_default();
        let found = records
            .iter()
            .find_map(|(key, record)| match &record.entity {
                Entity::Integration(i)
                    if i.tenant == tenant
                        && i.provider == provider
                        && store_of(i) == Some(shop)
                        && i.access_token.is_some() =>
                {
                    Some(key.clone())
                }
                _ => None,
            });
        let Some(key) = found else { return };
        match self.registrar.write(&records, vec![(key, None)]).await {
            Ok(_) => {
                tracing::info!(%tenant, provider, %shop, "the app was uninstalled: the store is disconnected")
            }
            Err(refused) => {
                tracing::warn!(%tenant, provider, %shop, ?refused, "the app was uninstalled, but the integration could not be removed")
            }
        }
    }

    /// What the signed ShopiMind lifecycle `event`, sent at `sent_at`, does to the installation
    /// `installation` of `tenant`; `None` when the registry has no such integration (an
    /// installation nobody has claimed).
    pub fn lifecycle(
        &self,
        tenant: &str,
        installation: &str,
        event: installation::Event,
        sent_at: i64,
    ) -> Option<installation::Outcome> {
        let records = self.registrar.live().records()?;
        let (_, integration) = shopimind_integration(&records, tenant, installation)?;
        Some(installation::apply(
            integration.installation,
            event,
            sent_at,
        ))
    }

    /// Writes `next` as the lifecycle of the installation `installation` of `tenant`.
    pub async fn record_lifecycle(
        &self,
        tenant: &str,
        installation: &str,
        next: installation::Installation,
    ) -> Result<(), Refused> {
        let records = self.registrar.live().records().unwrap_or_default();
        let Some((key, integration)) = shopimind_integration(&records, tenant, installation) else {
            return Ok(());
        };
        let mut integration = integration.clone();
        integration.installation = Some(next);
        let record = Record::new(Entity::Integration(integration));
        self.registrar
            .write(&records, vec![(key, Some(record))])
            .await
            .map(drop)
    }

    /// Refused when another tenant has `shop` of `provider`: its deliveries could not be told
    /// apart.
    fn another_tenants(
        &self,
        records: &crate::tenants::Records,
        tenant: &str,
        provider: &str,
        shop: &str,
    ) -> Result<(), Failure> {
        let taken = records.iter().any(|(_, record)| match &record.entity {
            Entity::Integration(i) => {
                i.provider == provider
                    && i.shop_domain.as_deref() == Some(shop)
                    && i.tenant != tenant
            }
            _ => false,
        });
        match taken {
            true => Err(Failure::Conflict(format!(
                "{shop} is connected to another tenant"
            ))),
            false => Ok(()),
        }
    }

    /// Takes `state` once on this instance; forgets the states that expired.
    fn take(&self, state: &Grant, now: i64) -> Result<(), Failure> {
        let mut used = self
            .used
            .lock()
            .expect("the used states are never poisoned");
        used.retain(|_, expires| *expires > now);
        match used.insert(state.nonce.clone(), state.expires_at_ms) {
            Some(_) => Err(Failure::BadRequest("state: was used already".to_string())),
            None => Ok(()),
        }
    }

    fn callback_url(&self, provider: &str) -> Result<String, Failure> {
        Ok(format!(
            "{}/api/oauth/{provider}/callback",
            self.public_url()?
        ))
    }

    /// The platform's API: Shopify's, a template of the shop's admin.
    fn api_url(&self, provider: &str, app: &super::App) -> String {
        let default = match provider {
            "shopify" => "https://{shop}",
            "salla" => salla::API_URL,
            _ => zid::API_URL,
        };
        let url = app.api_url.as_deref().unwrap_or(default);
        url.trim_end_matches('/').to_string()
    }

    /// The platform's OAuth server (Salla, Zid).
    fn accounts_url(&self, provider: &str, app: &super::App) -> String {
        let default = match provider {
            "salla" => salla::ACCOUNTS_URL,
            _ => zid::ACCOUNTS_URL,
        };
        let url = app.accounts_url.as_deref().unwrap_or(default);
        url.trim_end_matches('/').to_string()
    }

    /// The access asked for: the app's `scopes`, else the platform's default (none for Zid,
    /// whose apps have theirs set in its Partner Dashboard).
    fn scopes(&self, provider: &str, app: &super::App) -> Vec<String> {
        let default: &[&str] = match provider {
            "shopify" => shopify::SCOPES,
            "salla" => salla::SCOPES,
            _ => &[],
        };
        app.scopes
            .clone()
            .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_millis()
    }
}

/// The record of the ShopiMind integration of `tenant` for `installation`, and its key.
fn shopimind_integration<'r>(
    records: &'r Records,
    tenant: &str,
    installation: &str,
) -> Option<(topic::Key, &'r topic::Integration)> {
    shopimind_integrations(records, installation).find(|(_, i)| i.tenant == tenant)
}

/// The ShopiMind integrations, of any tenant, for `installation` (normalized), with their keys.
fn shopimind_integrations<'r, 'i>(
    records: &'r Records,
    installation: &'i str,
) -> impl Iterator<Item = (topic::Key, &'r topic::Integration)> + use<'r, 'i> {
    records
        .iter()
        .filter_map(move |(key, record)| match &record.entity {
            Entity::Integration(i)
                if i.provider == SHOPIMIND_SLUG
                    && i.installation_id
                        .as_deref()
                        .map(|id| SHOPIMIND.normalize_clue(id))
                        .as_deref()
                        == Some(installation) =>
            {
                Some((key.clone(), i))
            }
            _ => None,
        })
}

/// The cookie that ties a consent to this browser, holding `value`, for as long as the consent
/// may take.
fn set_cookie(value: &str) -> String {
    format!(
        "{COOKIE}={value}; Path=/api/oauth/; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        oauth::GRANT_TTL.as_secs()
    )
}

/// The same cookie, removed.
fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/api/oauth/; Max-Age=0")
}

/// Why an integration could not be written to the registry, as the connect route answers it.
fn unwritten(refused: Refused) -> Failure {
    match refused {
        Refused::Invalid(problems) => Failure::Unavailable(format!(
            "the integration cannot be written: {}",
            problems.iter().collect::<Vec<_>>().join("; ")
        )),
        Refused::Unavailable(why) => Failure::Unavailable(why),
    }
}

/// The store an integration connected through OAuth names in its deliveries.
fn store_of(integration: &topic::Integration) -> Option<&str> {
    integration
        .shop_domain
        .as_deref()
        .or(integration.merchant_id.as_deref())
}

const SHOPIMIND: crate::providers::shopimind::Shopimind = crate::providers::shopimind::Shopimind;
const SHOPIMIND_SLUG: &str = "shopimind";

/// The platforms OAuth connect is built for.
const PLATFORMS: [&str; 3] = ["shopify", "salla", "zid"];

/// A store that consented, before its integration is written: the record, and what was
/// subscribed for it, to be removed if the record cannot be written.
struct Store {
    record: topic::Integration,
    /// How the answer names the store: its shop, merchant id or integration key.
    name: String,
    webhook_url: String,
    events: Vec<String>,
    subscribed: Subscribed,
}

/// What a connect subscribed at a platform, with the token that removes it.
enum Subscribed {
    /// The shop's admin, the token, the subscriptions' ids.
    Shopify(String, String, Vec<String>),
    /// The API, the token, the subscriptions' ids.
    Salla(String, String, Vec<String>),
    /// The API, the token pair, the `original_id` naming every subscription.
    Zid(String, super::zid::Token, String),
}

/// The query's parameters, decoded.
fn pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The parameter `name`; a 400 naming it when absent or empty.
fn param<'q>(query: &'q [(String, String)], name: &str) -> Result<&'q str, Failure> {
    query
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| Failure::BadRequest(format!("{name}: missing")))
}
