//! A fake Shopify on loopback, to connect a store through OAuth without one: its consent screen
//! consents at once, its code is exchanged once for a token, its Admin API keeps webhook
//! subscriptions — the same fake the tests connect shops to (`tests/it/fake_shopify.rs`), over
//! HTTPS with a CA of its own. Once `SHOP` has subscribed `checkouts/create`, it sends the shop's
//! first webhook there, a checkout from Shopify's own samples signed with the app's secret as
//! Shopify signs it. `scripts/connect-demo.sh` runs it.
//!
//! ```text
//! cargo run --example fake_shopify -- CLIENT_ID CLIENT_SECRET CA_FILE SHOP
//! ```
//!
//! Writes the CA's PEM to `CA_FILE`, prints its address (`https://localhost:PORT`; the shop's
//! admin is `https://localhost:PORT/{shop}`) on the first line, then the webhook it sent and the
//! answer; serves until stopped.

// A fake platform keeps time as the platform does, by the wall clock (as in the tests).
#![allow(clippy::disallowed_methods)]

#[allow(dead_code, unused_imports)]
#[path = "../tests/it/fake_tls.rs"]
mod fake_tls;

#[allow(dead_code, unused_imports)]
#[path = "../tests/it/fake_shopify.rs"]
mod fake_shopify;

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};

/// A checkout as Shopify sends `checkouts/create` (docs: the REST Admin API's sample).
const CHECKOUT: &[u8] = include_bytes!(
    "../tests/fixtures/providers/shopify/derived_checkouts_create_body_from_sdkjs_2024-04.json"
);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [client_id, client_secret, ca_file, shop] = &args[..] else {
        bail!("usage: fake_shopify CLIENT_ID CLIENT_SECRET CA_FILE SHOP");
    };
    let fake = fake_shopify::FakeShopify::start(client_id, client_secret).await;
    std::fs::write(ca_file, &fake.ca_pem).with_context(|| format!("writing {ca_file}"))?;
    println!("{}", fake.base);
    std::io::stdout().flush()?;

    let uri = loop {
        let subscribed = fake.subscriptions(shop).into_iter();
        if let Some((_, uri)) = subscribed
            .into_iter()
            .find(|(topic, _)| topic == "CHECKOUTS_CREATE")
        {
            break uri;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let signature = cartstream::providers::shopify::sign(client_secret.as_bytes(), CHECKOUT);
    let answer = reqwest::Client::new()
        .post(&uri)
        .header("content-type", "application/json")
        .header("x-shopify-topic", "checkouts/create")
        .header("x-shopify-shop-domain", shop.as_str())
        .header("x-shopify-webhook-id", "fake-shopify-first-webhook")
        .header("x-shopify-hmac-sha256", signature)
        .body(CHECKOUT)
        .send()
        .await
        .with_context(|| format!("POST {uri}"))?;
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    println!("sent checkouts/create for {shop} to {uri}: {status} {body}");
    std::io::stdout().flush()?;
    std::future::pending::<()>().await;
    Ok(())
}
