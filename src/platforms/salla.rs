//! Salla's side of OAuth connect (its Custom Mode): the consent URL on its accounts server, the
//! code exchanged for the store's token, the store's merchant id, and webhook subscriptions
//! made (and undone) through the Merchant API. Salla signs the deliveries with the app's
//! webhook secret, so the integration is the app's.

use serde::Deserialize;
use serde_json::json;

use super::http::{authorization_code, send_json, with_json, Failure};

/// Salla's OAuth server, unless `platforms.salla.accounts_url` says otherwise.
pub const ACCOUNTS_URL: &str = "https://accounts.salla.sa";
/// Salla's Merchant API, unless `platforms.salla.api_url` says otherwise.
pub const API_URL: &str = "https://api.salla.dev";

/// The access asked for by default: `offline_access` for a refresh token, and what the events
/// and the subscriptions need.
pub const SCOPES: &[&str] = &[
    "offline_access",
    "carts.read",
    "orders.read",
    "customers.read",
    "webhooks.read_write",
];

/// The store events subscribed: the abandoned cart and its recovery, and new orders. The app's
/// own events (`app.uninstalled`) come through the app's webhook URL without a subscription.
pub const EVENTS: &[&str] = &[
    "abandoned.cart",
    "abandoned.cart.purchased",
    "order.created",
];

/// Where the merchant's browser is sent to consent.
pub fn authorize_url(
    accounts: &str,
    client_id: &str,
    scopes: &[String],
    redirect_uri: &str,
    state: &str,
) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", state)
        .finish();
    format!("{accounts}/oauth2/auth?{query}")
}

#[derive(Debug, Deserialize)]
pub struct Token {
    pub access_token: String,
    #[serde(default)]
    pub scope: String,
}

/// The code exchanged for the store's token.
pub async fn exchange(
    http: &reqwest::Client,
    accounts: &str,
    client: (&str, &str),
    code: &str,
    redirect_uri: &str,
) -> Result<Token, Failure> {
    let token_url = format!("{accounts}/oauth2/token");
    let value = authorization_code(http, token_url, client, code, redirect_uri).await?;
    serde_json::from_value(value)
        .map_err(|_| Failure::Platform("the token exchange answered no token".to_string()))
}

/// The merchant (store) id the token is for: the top-level `merchant` of its deliveries.
pub async fn merchant(
    http: &reqwest::Client,
    accounts: &str,
    token: &str,
) -> Result<String, Failure> {
    let request = http
        .get(format!("{accounts}/oauth2/user/info"))
        .bearer_auth(token);
    let value = send_json(request, "the store's user info").await?;
    // Documented with and without the `data` envelope.
    let user = value.get("data").unwrap_or(&value);
    match &user["merchant"]["id"] {
        serde_json::Value::Number(id) => Ok(id.to_string()),
        serde_json::Value::String(id) if !id.is_empty() => Ok(id.clone()),
        _ => Err(Failure::Platform(
            "the store's user info names no merchant".to_string(),
        )),
    }
}

/// Subscribes `url` to `event`, signed by the app: the subscription's id.
pub async fn subscribe(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    event: &str,
    url: &str,
) -> Result<String, Failure> {
    let body = json!({
        "name": format!("cartstream {event}"),
        "event": event,
        "url": url,
        "version": 2,
        "security_strategy": "signature",
    });
    let request = http
        .post(format!("{api}/admin/v2/webhooks/subscribe"))
        .bearer_auth(token);
    let request = with_json(request, &body);
    let value = send_json(request, &format!("subscribing to {event}")).await?;
    match &value["data"]["id"] {
        serde_json::Value::Number(id) => Ok(id.to_string()),
        serde_json::Value::String(id) => Ok(id.clone()),
        _ => Err(Failure::Platform(format!(
            "subscribing to {event}: no subscription was returned"
        ))),
    }
}

/// Removes the subscription `id`.
pub async fn unsubscribe(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    id: &str,
) -> Result<(), Failure> {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("id", id)
        .finish();
    let request = http
        .delete(format!("{api}/admin/v2/webhooks/unsubscribe?{query}"))
        .bearer_auth(token);
    send_json(request, "removing a subscription")
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consent_url_asks_for_a_code_with_space_separated_scopes() {
        let scopes: Vec<String> = SCOPES.iter().map(|s| s.to_string()).collect();
        let url = authorize_url(ACCOUNTS_URL, "app-id", &scopes, "https://h.example/cb", "s");
        assert_eq!(
            url,
            "https://accounts.salla.sa/oauth2/auth?client_id=app-id&response_type=code&redirect_uri=https%3A%2F%2Fh.example%2Fcb&scope=offline_access+carts.read+orders.read+customers.read+webhooks.read_write&state=s"
        );
    }
}
