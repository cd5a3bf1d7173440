//! Shopify's side of OAuth connect: the consent URL, the code exchanged for an offline access
//! token, and the app's webhook subscriptions made (and undone) through the Admin GraphQL API.

use serde::Deserialize;
use serde_json::json;

use super::http::{excerpt, send_json, with_json, Failure};

/// The Admin API version the subscriptions are made with.
pub const API_VERSION: &str = "2025-10";

/// The access the app asks for by default: abandoned checkouts need `read_orders`, customers'
/// contacts `read_customers`, carts and checkouts `read_checkouts`.
pub const SCOPES: &[&str] = &["read_orders", "read_customers", "read_checkouts"];

/// The topics subscribed, as the GraphQL enum names them: the cart, checkout and order events
/// the processor reads, and the app's uninstall, which disconnects the store.
pub const TOPICS: &[&str] = &[
    "CHECKOUTS_CREATE",
    "CHECKOUTS_UPDATE",
    "CARTS_CREATE",
    "CARTS_UPDATE",
    "ORDERS_CREATE",
    "ORDERS_PAID",
    "APP_UNINSTALLED",
];

/// The shop's admin, from the `api_url` template (`https://{shop}` unless configured).
pub fn admin_url(template: &str, shop: &str) -> String {
    template
        .replace("{shop}", shop)
        .trim_end_matches('/')
        .to_string()
}

/// Where the merchant's browser is sent to consent.
pub fn authorize_url(
    admin: &str,
    client_id: &str,
    scopes: &[String],
    redirect_uri: &str,
    state: &str,
) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("scope", &scopes.join(","))
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", state)
        .finish();
    format!("{admin}/admin/oauth/authorize?{query}")
}

/// An offline access token and the scopes it was granted.
#[derive(Debug, Deserialize)]
pub struct Token {
    pub access_token: String,
    #[serde(default)]
    pub scope: String,
}

/// The code of a callback exchanged for the shop's token.
pub async fn exchange(
    http: &reqwest::Client,
    admin: &str,
    client_id: &str,
    client_secret: &str,
    code: &str,
) -> Result<Token, Failure> {
    let body = json!({ "client_id": client_id, "client_secret": client_secret, "code": code });
    let request = with_json(
        http.post(format!("{admin}/admin/oauth/access_token")),
        &body,
    );
    let value = send_json(request, "the token exchange").await?;
    serde_json::from_value(value)
        .map_err(|_| Failure::Platform("the token exchange answered no token".to_string()))
}

/// One GraphQL call with the shop's token, for `what`: its `data`, or why not.
async fn graphql(
    http: &reqwest::Client,
    (admin, token): (&str, &str),
    what: &str,
    query: &str,
    variables: serde_json::Value,
) -> Result<serde_json::Value, Failure> {
    let request = http
        .post(format!("{admin}/admin/api/{API_VERSION}/graphql.json"))
        .header("x-shopify-access-token", token);
    let body = json!({ "query": query, "variables": variables });
    let value = send_json(with_json(request, &body), what).await?;
    if let Some(errors) = value.get("errors") {
        return Err(Failure::Platform(format!(
            "{what}: errors: {}",
            excerpt(&errors.to_string())
        )));
    }
    Ok(value["data"].clone())
}

const CREATE: &str = "mutation webhookSubscriptionCreate($topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!) { webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) { webhookSubscription { id } userErrors { field message } } }";

const DELETE: &str = "mutation webhookSubscriptionDelete($id: ID!) { webhookSubscriptionDelete(id: $id) { deletedWebhookSubscriptionId userErrors { field message } } }";

/// Subscribes `uri` to `topic`: the subscription's id.
pub async fn subscribe(
    http: &reqwest::Client,
    admin: &str,
    token: &str,
    topic: &str,
    uri: &str,
) -> Result<String, Failure> {
    let variables = json!({ "topic": topic, "webhookSubscription": { "uri": uri } });
    let what = format!("subscribing to {topic}");
    let failed = |why: String| Failure::Platform(format!("{what}: {why}"));
    let data = graphql(http, (admin, token), &what, CREATE, variables).await?;
    let created = &data["webhookSubscriptionCreate"];
    if let Some(message) = created["userErrors"][0]["message"].as_str() {
        return Err(failed(message.to_string()));
    }
    created["webhookSubscription"]["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| failed("no subscription was returned".to_string()))
}

/// Removes the subscription `id`.
pub async fn unsubscribe(
    http: &reqwest::Client,
    admin: &str,
    token: &str,
    id: &str,
) -> Result<(), Failure> {
    let what = "removing a subscription";
    let data = graphql(http, (admin, token), what, DELETE, json!({ "id": id })).await?;
    match data["webhookSubscriptionDelete"]["userErrors"][0]["message"].as_str() {
        Some(message) => Err(Failure::Platform(format!("{what}: {message}"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consent_url_is_the_shops_with_the_scopes_the_callback_and_the_state() {
        let admin = admin_url("https://{shop}", "acme.myshopify.com");
        let scopes: Vec<String> = SCOPES.iter().map(|s| s.to_string()).collect();
        let url = authorize_url(
            &admin,
            "app-client-id",
            &scopes,
            "https://hooks.example.com/api/oauth/shopify/callback",
            "a.b",
        );
        assert_eq!(
            url,
            "https://acme.myshopify.com/admin/oauth/authorize?client_id=app-client-id&scope=read_orders%2Cread_customers%2Cread_checkouts&redirect_uri=https%3A%2F%2Fhooks.example.com%2Fapi%2Foauth%2Fshopify%2Fcallback&state=a.b"
        );
    }
}
