//! Calls to the platforms' APIs: JSON answers, or a [`Failure`] that says what was being done
//! and what the platform said, without the URL or a secret.

pub(super) use super::Failure;

/// `request` with `pairs` as its form-encoded body.
pub(super) fn form(
    request: reqwest::RequestBuilder,
    pairs: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    request
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
}

/// `request` with `value` as its JSON body.
pub(super) fn with_json(
    request: reqwest::RequestBuilder,
    value: &serde_json::Value,
) -> reqwest::RequestBuilder {
    request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(value.to_string())
}

/// The authorization code grant (RFC 6749, 4.1.3): `code` exchanged at `token_url`, the client's
/// credentials in the form body; the token's JSON.
pub(super) async fn authorization_code(
    http: &reqwest::Client,
    token_url: String,
    client: (&str, &str),
    code: &str,
    redirect_uri: &str,
) -> Result<serde_json::Value, Failure> {
    let body = [
        ("grant_type", "authorization_code"),
        ("client_id", client.0),
        ("client_secret", client.1),
        ("code", code),
        ("redirect_uri", redirect_uri),
    ];
    send_json(form(http.post(token_url), &body), "the token exchange").await
}

/// Sends `request`: its JSON answer when 2xx; else a failure of `what`.
pub(super) async fn send_json(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<serde_json::Value, Failure> {
    let response = request
        .send()
        .await
        .map_err(|e| Failure::Platform(format!("{what} failed: {}", reason(&e))))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(Failure::Platform(format!(
            "{what} was answered {status}: {}",
            excerpt(&text)
        )));
    }
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&text)
        .map_err(|_| Failure::Platform(format!("{what} answered no JSON: {}", excerpt(&text))))
}

/// Why a request got no answer, without the URL.
fn reason(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "no answer in time"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut causes = Vec::new();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    match causes.is_empty() {
        true => kind.to_string(),
        false => format!("{kind} ({})", causes.join(": ")),
    }
}

/// The start of an answer, for an error message.
pub(super) fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
}
