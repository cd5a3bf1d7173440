//! A real browser against a running daemon and a real broker: Debian's Chromium, driven by
//! playwright-core (`tests/browser/pages.cjs`), opens a shop's page that runs the storefront
//! snippet of `docs/tracking.md` — read from the document, so that the document stays true — and
//! a fetch with a JSON body, which the browser preflights. From an origin the tenant allows both
//! arrive; from another, the browser's CORS stops the fetch and the ingress refuses the beacon.

use std::convert::Infallible;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::support::{eventually, read_topic, TestDaemon};

/// The code block after the marker in `docs/tracking.md`.
fn documented_snippet() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tracking.md");
    let text = std::fs::read_to_string(path).unwrap();
    let after = text
        .split("<!-- tested by tests/browser: the code block below -->")
        .nth(1)
        .expect("docs/tracking.md marks its tested snippet");
    let block = after.split("```js\n").nth(1).expect("a js code block");
    block.split("```").next().unwrap().to_string()
}

/// The shop's page: the documented snippet sends a beacon, then a fetch with a JSON body (key
/// in the URL) is sent and its answer kept. Cart tokens start with the page's host name, so
/// each signal says where it came from.
fn page(snippet: &str, endpoint: &str, key: &str) -> String {
    format!(
        r#"<!doctype html><meta charset="utf-8"><title>shop</title>
<script>
{snippet}
window.signalResults = {{}};
(async function () {{
  var endpoint = {endpoint:?}, key = {key:?}, host = location.hostname;
  cartstreamSignal(endpoint, key, 'add_to_cart',
    {{ token: host + '-beacon', total_price: 4250, currency: 'SAR', item_count: 2 }});
  try {{
    var answer = await fetch(endpoint + '?key=' + encodeURIComponent(key), {{
      method: 'POST', headers: {{ 'content-type': 'application/json' }},
      body: JSON.stringify({{ event: 'cart_viewed', cart_token: host + '-fetch' }})
    }});
    window.signalResults.fetch = {{ status: answer.status, body: await answer.json() }};
  }} catch (e) {{
    window.signalResults.fetch = {{ error: String(e) }};
  }}
  window.signalsDone = true;
}})();
</script>"#
    )
}

/// Serves `page` at every path on a loopback port (reached as `127.0.0.1` and `localhost`,
/// two origins), once it is set.
async fn shop_server(page: Arc<OnceLock<String>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_: http::Request<hyper::body::Incoming>| {
                    let body = page.get().cloned().unwrap_or_default();
                    async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "text/html; charset=utf-8")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    port
}

/// What Chromium saw of each page ([`tests/browser/pages.cjs`]).
fn open_in_chromium(urls: &[String]) -> Value {
    let modules = std::env::var("CARTSTREAM_BROWSER_MODULES").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap();
        format!("{home}/.cache/cartstream/playwright-1.65.2/node_modules")
    });
    assert!(
        Path::new(&modules).join("playwright-core").is_dir(),
        "playwright-core is not in {modules}: run scripts/install.sh"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/pages.cjs");
    let output = Command::new("node")
        .arg(script)
        .args(urls)
        .env("NODE_PATH", &modules)
        .output()
        .expect("node runs (scripts/install.sh installs it)");
    assert!(
        output.status.success(),
        "the browser failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sends_the_documented_signals_from_an_allowed_origin_and_no_other() {
    let page_text = Arc::new(OnceLock::new());
    let port = shop_server(page_text.clone()).await;
    let allowed = format!("http://127.0.0.1:{port}");
    let tenants = format!(
        r#"
[[tenant]]
id = "acme"
publishable_key = "pk_acme_browser_0123456789"
allowed_origins = ["{allowed}"]
"#
    );
    let daemon = TestDaemon::builder("tracking-browser")
        .tenants(&tenants)
        .config(|c| c.ingress.ack_timeout = Duration::from_secs(20))
        .start()
        .await;
    let endpoint = daemon.url("/api/tracking/cart");
    page_text
        .set(page(
            &documented_snippet(),
            &endpoint,
            "pk_acme_browser_0123456789",
        ))
        .unwrap();

    // Another origin first (the same page, reached by another host name), then the shop's.
    let other = format!("http://localhost:{port}/");
    let shop = format!("{allowed}/");
    let seen = tokio::task::spawn_blocking({
        let urls = [other.clone(), shop.clone()];
        move || open_in_chromium(&urls)
    })
    .await
    .unwrap();

    let from_shop = &seen[&shop];
    assert_eq!(
        from_shop["results"]["fetch"]["status"], 202,
        "the preflighted fetch: {from_shop}"
    );
    assert_eq!(from_shop["results"]["fetch"]["body"]["ok"], true);
    let beacons = from_shop["beacons"].as_array().unwrap();
    assert_eq!(beacons.len(), 1, "{from_shop}");
    assert_eq!(beacons[0]["status"], 202, "the beacon: {from_shop}");

    let from_other = &seen[&other];
    let refused = from_other["results"]["fetch"]["error"].as_str();
    assert!(
        refused.is_some_and(|e| e.contains("Failed to fetch")),
        "CORS stops the fetch from another origin: {from_other}"
    );
    let beacons = from_other["beacons"].as_array().unwrap();
    assert_eq!(beacons.len(), 1, "{from_other}");
    assert_eq!(
        beacons[0]["status"], 403,
        "the ingress refuses a beacon from another origin: {from_other}"
    );

    // On the inbound topic: the shop's two signals, as Chromium sent them, and nothing else.
    let records = eventually("the shop's signals", Duration::from_secs(30), || {
        let records = read_topic(&daemon.brokers, &daemon.topics.inbound);
        (records.len() >= 2).then_some(records)
    })
    .await;
    let mut tokens: Vec<String> = records
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.value).unwrap();
            body["cart_token"].as_str().unwrap().to_string()
        })
        .collect();
    tokens.sort();
    assert_eq!(tokens, ["127.0.0.1-beacon", "127.0.0.1-fetch"]);
    let beacon = records
        .iter()
        .find(|r| r.headers["content-type"].starts_with("text/plain"))
        .expect("the beacon came as text/plain");
    let body: Value = serde_json::from_slice(&beacon.value).unwrap();
    assert_eq!(body["event"], "add_to_cart");
    assert_eq!(body["cart_value"], "42.50");
    assert!(body["event_id"].is_string(), "crypto.randomUUID: {body}");
    assert_eq!(
        beacon.headers["cartstream-delivery-id"],
        body["event_id"].as_str().unwrap()
    );
    daemon.stop().await;
}
