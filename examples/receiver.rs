//! A webhook receiver for trying the delivery role: listens on 127.0.0.1:9000, checks both
//! signatures of every request with `cartstream::delivery`'s receiver helpers, prints the
//! verdicts and the body, and answers 200 (or 401 when a signature does not verify).
//!
//!     cargo run --release --example receiver -- [ADDRESS] [SECRET]
//!
//! The defaults match the endpoint `crm` of tenant `acme` in `config/tenants.example.toml`.

use std::convert::Infallible;

use bytes::Bytes;
use cartstream::clock::Clock;
use cartstream::delivery::{verify_signature, verify_standard};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use tokio::net::TcpListener;

/// Standard Webhooks' recommended tolerance for `webhook-timestamp`.
const TOLERANCE_SECONDS: u64 = 300;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:9000".to_string());
    let secret = args
        .next()
        .unwrap_or_else(|| "whsec_YWNtZS1jcm0tZGV2LXNpZ25pbmcta2V5LTAwMDAx".to_string());
    let listener = TcpListener::bind(&address).await?;
    println!("receiving on http://{address}/ …");
    loop {
        let (stream, _) = listener.accept().await?;
        let secret = secret.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let secret = secret.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let header = |name: &str| {
                        parts
                            .headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                    };
                    let now = (Clock::System.now_millis() / 1000).max(0) as u64;
                    let hex_ok = verify_signature(&secret, &body, header("x-cartstream-signature"));
                    let standard_ok = verify_standard(
                        &secret,
                        header("webhook-id"),
                        header("webhook-timestamp"),
                        header("webhook-signature"),
                        &body,
                        now,
                        TOLERANCE_SECONDS,
                    );
                    println!(
                        "{} {} event={} id={} X-Cartstream-Signature={} webhook-signature={}\n{}",
                        parts.method,
                        parts.uri,
                        header("x-cartstream-event"),
                        header("webhook-id"),
                        if hex_ok { "valid" } else { "INVALID" },
                        if standard_ok { "valid" } else { "INVALID" },
                        String::from_utf8_lossy(&body),
                    );
                    let status = if hex_ok && standard_ok { 200 } else { 401 };
                    Ok::<_, Infallible>(
                        http::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .expect("static response parts are valid"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
