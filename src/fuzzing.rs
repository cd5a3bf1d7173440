//! The properties the fuzz targets check (`fuzz/`, run by `scripts/fuzz.sh`). Each function
//! takes the fuzzer's bytes, drives one surface that reads input from outside, and panics only
//! when a property fails. They live in the library so that a unit test replays every input that
//! once failed (`fuzz/regressions/`) on the stable toolchain.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::delivery::client::{host_address, is_public, parse_retry_after, RetryAfter};
use crate::ingress::route::{self, Route};
use crate::providers::{self, Keys, Request};
use crate::topics::event::Record;

/// A property over the fuzzer's bytes: returns when it holds, panics when it does not.
pub type Property = fn(&[u8]);

/// The fuzz targets, by the name of their folder under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Property)] = &[
    ("provider", provider),
    ("route", route),
    ("tenants", tenants),
    ("config", config),
    ("retry_after", retry_after),
    ("url_guard", url_guard),
    ("signal", signal),
    ("origin", origin),
];

/// One delivery to one provider. The input is a provider index byte, then a header block and
/// the body separated by a blank line: the block's first line is `secret now` (the secret the
/// integration is configured with and the verifier's clock in Unix seconds), the other lines
/// are `name: value` headers. Properties: inspecting, verifying and normalizing never panic,
/// the normalized event equals the DOM-based reference's (`providers::reference`, in fuzz and
/// test builds), and it survives its topic's encoding unchanged.
pub fn provider(data: &[u8]) {
    let Some((&index, rest)) = data.split_first() else {
        return;
    };
    let all: Vec<_> = providers::all().collect();
    let provider = all[usize::from(index) % all.len()];
    let (block, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (&[][..], rest),
    };
    let block = String::from_utf8_lossy(block);
    let mut lines = block.lines();
    let (secret, now) = match lines.next().unwrap_or_default().split_once(' ') {
        Some((secret, now)) => (secret.to_string(), now.trim().parse::<u64>().unwrap_or(0)),
        None => ("fuzzing-secret-0123456789".to_string(), 0),
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            headers.append(name, value);
        }
    }
    let request = Request::new(&headers, body);
    let Ok(seen) = provider.inspect(&request) else {
        return;
    };
    if let Ok(key) = provider.key(&secret) {
        let now = UNIX_EPOCH
            .checked_add(Duration::from_secs(now))
            .unwrap_or(UNIX_EPOCH);
        let verified = provider.verify(&request, &Keys::new(key, None), now);
        // What verifies with a secret must not verify with another: acceptance comes from the
        // secret, never from the request alone (the corpus holds the platforms' real vectors).
        if verified.is_ok() {
            let other = format!("{secret}-not-the-secret");
            if let Ok(other) = provider.key(&other) {
                assert!(
                    provider
                        .verify(&request, &Keys::new(other, None), now)
                        .is_err(),
                    "{}: a request that verifies with one secret verifies with another",
                    provider.slug()
                );
            }
        }
    }
    let event = provider.normalize(request.body, &seen);
    #[cfg(any(test, feature = "fuzzing"))]
    assert_eq!(
        event,
        providers::reference::normalize(provider, request.body, &seen),
        "the typed normalization differs from the reference"
    );
    let record = Record {
        tenant_id: "t".into(),
        delivery_id: "d".into(),
        event,
    };
    let decoded = Record::decode(&record.encode()).expect("an encoded event decodes");
    assert_eq!(decoded, record, "an event changed through its encoding");
}

/// A request path. Property: a webhook route is exactly `/api/webhooks/{provider}` or
/// `/api/webhooks/{provider}/{key}` (one trailing slash allowed), with non-empty segments; the
/// tracking route exactly `/api/tracking/cart`, with or without the slash.
pub fn route(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if route::parse(path) == Route::Tracking {
        assert_eq!(
            path.strip_suffix('/').unwrap_or(path),
            "/api/tracking/cart",
            "route of {path:?}"
        );
    }
    if let Route::Webhook { provider, key } = route::parse(path) {
        let mut rebuilt = format!("/api/webhooks/{provider}");
        if let Some(key) = key {
            assert!(!key.is_empty() && !key.contains('/'), "key {key:?}");
            rebuilt.push('/');
            rebuilt.push_str(key);
        }
        assert!(
            !provider.is_empty() && !provider.contains('/'),
            "provider {provider:?}"
        );
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        assert_eq!(trimmed, rebuilt, "route of {path:?}");
    }
}

/// A storefront signal's body (`POST /api/tracking/cart`). Properties: reading and normalizing
/// never panic; a body read as a signal is activity on the cart its token names, in the
/// webhooks' form (no `?`, 1 to 256 characters), and says nothing of a shopper, a link or a time;
/// a body not read as one tracks no cart. The event survives its topic's encoding unchanged.
pub fn signal(data: &[u8]) {
    use crate::providers::tracking::{cart_token, Signal, Tracking, EVENTS};
    use crate::providers::{Inspection, Provider};
    use crate::topics::event::Bucket;
    let read = Signal::read(data);
    let seen = Inspection {
        event_type: read.as_ref().ok().map(|signal| signal.event.clone()),
        ..Default::default()
    };
    let event = Tracking.normalize(data, &seen);
    match &read {
        Ok(signal) => {
            assert!(
                EVENTS.contains(&signal.event.as_ref()),
                "{:?}",
                signal.event
            );
            let token = cart_token(&signal.cart_token);
            assert!(
                !token.is_empty() && token.chars().count() <= 256 && !token.contains('?'),
                "{token:?}"
            );
            assert_eq!(event.event_bucket, Bucket::AbandonedCandidate);
            assert_eq!(event.cart_token.as_deref(), Some(token));
            assert_eq!(event.customer, Default::default());
            assert_eq!((&event.recovery_url, &event.occurred_at), (&None, &None));
        }
        Err(_) => {
            assert_eq!(event.event_bucket, Bucket::Other);
            assert_eq!(event.cart_token, None);
        }
    }
    let record = Record {
        tenant_id: "fuzz".to_string(),
        delivery_id: providers::body_hash_id(data),
        event,
    };
    let decoded = Record::decode(&record.encode()).expect("an encoded event decodes");
    assert_eq!(decoded, record, "an event changed through its encoding");
}

/// An allowed origin, as an operator writes it or a browser sends it in `Origin`. Properties:
/// never a panic; an origin taken is taken again unchanged (it is already as browsers send it)
/// and has no path, query, user or trailing slash.
pub fn origin(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(origin) = crate::tenants::origin(text) {
        assert_eq!(
            crate::tenants::origin(&origin).as_deref(),
            Ok(origin.as_str()),
            "{text:?}"
        );
        let rest = origin.split_once("://").map_or("", |(_, rest)| rest);
        assert!(
            !rest.contains(['/', '?', '#', '@']),
            "{text:?} -> {origin:?}"
        );
    }
}

/// A tenants file. Property: loading never panics, whatever the text.
pub fn tenants(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/nonexistent/cartstream-fuzz");
    let env = HashMap::from([("FUZZ_SECRET".to_string(), "x".repeat(40))]);
    if let Ok(registry) = crate::tenants::Registry::from_toml(text, base, &env) {
        let _ = registry.warnings();
    }
}

/// Configuration from the environment: each input line is `NAME=VALUE`, read as
/// `CARTSTREAM__NAME`. Property: loading never panics, whatever the values.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let env: HashMap<String, String> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (format!("CARTSTREAM__{name}"), value.to_string()))
        .collect();
    let _ = crate::config::Config::load(None, &env);
}

/// A `Retry-After` value and the worker's clock (the first 8 bytes, Unix ms). Properties: never
/// a panic; every digit string that fits is a delay of that many seconds, and nothing else is
/// one; a date has whole seconds, and its delay from the clock is the time left to it (none
/// once it has passed) to the millisecond.
pub fn retry_after(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let now_ms = i64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let Ok(value) = std::str::from_utf8(&data[8..]) else {
        return;
    };
    let text = value.trim();
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    // The seconds a digit string says, read here digit by digit: `None` past u64.
    let seconds = digits
        .then(|| {
            text.bytes().try_fold(0u64, |n, b| {
                n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
            })
        })
        .flatten();
    match parse_retry_after(value) {
        Some(RetryAfter::Delay(delay)) => {
            assert!(digits, "{value:?} read as a delay");
            assert_eq!(Some(delay), seconds.map(Duration::from_secs), "{value:?}");
        }
        Some(at @ RetryAfter::At(when)) => {
            assert!(!digits, "{value:?}: digits read as a date");
            let when_ms = when
                .duration_since(UNIX_EPOCH)
                .expect("an HTTP date is after 1970")
                .as_millis() as i128;
            assert_eq!(
                when_ms % 1000,
                0,
                "{value:?}: an HTTP date has whole seconds"
            );
            let left = (when_ms - i128::from(now_ms.max(0))).max(0);
            assert_eq!(
                at.delay_from(now_ms).as_millis() as i128,
                left,
                "{value:?} at {now_ms}"
            );
        }
        None => assert!(
            seconds.is_none(),
            "{value:?}: a delay that fits was not read"
        ),
    }
}

/// An endpoint URL as a tenants file gives it. Property: when the HTTP client would connect to
/// the host as a literal address (without asking the resolver, which filters what it returns),
/// the guard sees that same address, so it is judged before any connection.
pub fn url_guard(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = text.parse::<http::Uri>() else {
        return;
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return;
    }
    // What the delivery client does with an endpoint's URI before posting.
    let Ok(url) = url::Url::parse(&uri.to_string()) else {
        return;
    };
    let guarded = host_address(&url);
    // What the connector does with the URL it is given: a host that reads as an address is
    // connected to directly.
    let Ok(sent) = url.as_str().parse::<http::Uri>() else {
        return;
    };
    let Some(host) = sent.host() else {
        return;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let direct = host
        .parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .or_else(|_| host.parse::<Ipv6Addr>().map(IpAddr::V6))
        .ok();
    if let Some(direct) = direct {
        assert_eq!(
            guarded.map(|ip| ip.to_canonical()),
            Some(direct.to_canonical()),
            "{text:?}: the client connects to {direct} directly but the guard saw {guarded:?}"
        );
        if direct.to_canonical().is_loopback() || direct.is_unspecified() {
            assert!(!is_public(direct), "{text:?}: {direct} counted as public");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TARGETS;

    /// Every input that once failed a property (`fuzz/regressions/`) is replayed through the
    /// same property on every test run; the corpus (`fuzz/corpus/`, thousands of inputs) is
    /// replayed by `scripts/fuzz.sh`, which CI runs, in an optimized build.
    #[test]
    fn every_input_that_once_failed_now_holds_its_property() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut replayed = 0;
        for (target, property) in TARGETS {
            let corpus = std::fs::read_dir(root.join("corpus").join(target))
                .map_or(0, |entries| entries.count());
            assert!(corpus > 0, "{target}: no corpus in fuzz/corpus/{target}");
            let Ok(entries) = std::fs::read_dir(root.join("regressions").join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a readable folder").path();
                let input = std::fs::read(&path).expect("a readable input");
                let outcome = std::panic::catch_unwind(|| property(&input));
                assert!(outcome.is_ok(), "{target}: {} fails", path.display());
                replayed += 1;
            }
        }
        assert!(replayed >= 2, "the regressions are gone: {replayed}");
    }
}
