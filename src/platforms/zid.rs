//! Zid's side of OAuth connect: the consent URL on its OAuth server, the code exchanged for the
//! store's token pair, and webhook subscriptions made (and undone) through the Merchant API.
//! Zid signs no delivery: each subscription carries Basic credentials cartstream chooses, which
//! are the integration's secret, and its target is the integration key's URL.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::http::{authorization_code, send_json, with_json, Failure};

/// Zid's OAuth server, unless `platforms.zid.accounts_url` says otherwise.
pub const ACCOUNTS_URL: &str = "https://oauth.zid.sa";
/// Zid's Merchant API, unless `platforms.zid.api_url` says otherwise.
pub const API_URL: &str = "https://api.zid.sa";

/// The store events subscribed: the abandoned cart and its recovery, new and paid orders.
pub const EVENTS: &[&str] = &[
    "abandoned_cart.created",
    "abandoned_cart.completed",
    "order.create",
    "order.payment_status.update",
];

/// Where the merchant's browser is sent to consent. Zid takes no scope: the app's are set in
/// its Partner Dashboard.
pub fn authorize_url(accounts: &str, client_id: &str, redirect_uri: &str, state: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("state", state)
        .finish();
    format!("{accounts}/oauth/authorize?{query}")
}

/// The two tokens every Merchant API call needs: `authorization` (a bearer token) and
/// `access_token` (the `X-Manager-Token`). Sealed together as the integration's token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub authorization: String,
    pub access_token: String,
}

/// The code exchanged for the store's tokens.
pub async fn exchange(
    http: &reqwest::Client,
    accounts: &str,
    client: (&str, &str),
    code: &str,
    redirect_uri: &str,
) -> Result<Token, Failure> {
    let token_url = format!("{accounts}/oauth/token");
    let value = authorization_code(http, token_url, client, code, redirect_uri).await?;
    serde_json::from_value(value)
        .map_err(|_| Failure::Platform("the token exchange answered no token pair".to_string()))
}

fn authorized(request: reqwest::RequestBuilder, token: &Token) -> reqwest::RequestBuilder {
    request
        .bearer_auth(&token.authorization)
        .header("x-manager-token", &token.access_token)
}

/// Subscribes `target_url` to `event`, with the Basic credentials `user:password` and
/// `original_id` naming every subscription of the integration.
pub async fn subscribe(
    http: &reqwest::Client,
    api: &str,
    token: &Token,
    event: &str,
    target_url: &str,
    original_id: &str,
    credentials: (&str, &str),
) -> Result<(), Failure> {
    let body = json!({
        "event": event,
        "target_url": target_url,
        "original_id": original_id,
        "username": credentials.0,
        "password": credentials.1,
    });
    let request = authorized(http.post(format!("{api}/v1/managers/webhooks")), token);
    let request = with_json(request, &body);
    send_json(request, &format!("subscribing to {event}"))
        .await
        .map(drop)
}

/// Removes every subscription named `original_id`.
pub async fn unsubscribe(
    http: &reqwest::Client,
    api: &str,
    token: &Token,
    original_id: &str,
) -> Result<(), Failure> {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("original_id", original_id)
        .finish();
    let request = authorized(
        http.delete(format!("{api}/v1/managers/webhooks?{query}")),
        token,
    );
    send_json(request, "removing the subscriptions")
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consent_url_asks_for_a_code_and_names_no_scope() {
        let url = authorize_url(ACCOUNTS_URL, "42", "https://h.example/cb", "s");
        assert_eq!(
            url,
            "https://oauth.zid.sa/oauth/authorize?client_id=42&redirect_uri=https%3A%2F%2Fh.example%2Fcb&response_type=code&state=s"
        );
    }
}
