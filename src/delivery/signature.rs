//! How a request to a tenant's endpoint is signed, and the helpers a receiver uses to verify
//! one.
//!
//! Every request carries two signatures over the exact body bytes:
//!
//! - `{prefix}-Signature`: hex HMAC-SHA256 of the body under the endpoint's current secret, with
//!   `{prefix}-Event` naming the event (`X-Cartstream-…` by default; a prefix such as
//!   `X-Flousify` lets receivers built for that pair work unchanged);
//! - Standard Webhooks: `webhook-id` (the transition id), `webhook-timestamp` (Unix seconds) and
//!   `webhook-signature`, one `v1,<base64>` per secret during a rotation, each an HMAC-SHA256 of
//!   `id.timestamp.body` (the key is the base64 after `whsec_` for such secrets, else the
//!   secret's bytes).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::providers::standard;
/// The signing secret type belongs to the tenants' registry, which loads it.
pub use crate::tenants::Secret;

type HmacSha256 = Hmac<Sha256>;

/// What a signed request carries besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `(name, value)` pairs, in a stable order.
    pub headers: Vec<(String, String)>,
}

/// Signs `body` for an endpoint: `secrets` is the current secret first, then any being rotated
/// out. `id` is the transition id, `timestamp` Unix seconds, `prefix` e.g. `X-Cartstream`.
pub fn sign(
    prefix: &str,
    event: &str,
    id: &str,
    timestamp: u64,
    body: &[u8],
    secrets: &[Secret],
) -> Signature {
    let mut headers = Vec::with_capacity(5);
    if let Some(current) = secrets.first() {
        headers.push((
            format!("{prefix}-Signature"),
            hex::encode(current.plain().sign(&[body])),
        ));
    }
    headers.push((format!("{prefix}-Event"), event.to_string()));
    headers.push(("webhook-id".to_string(), id.to_string()));
    headers.push(("webhook-timestamp".to_string(), timestamp.to_string()));
    let signatures: Vec<String> = secrets
        .iter()
        .map(|secret| standard::sign(secret.standard(), id, timestamp, body))
        .collect();
    headers.push(("webhook-signature".to_string(), signatures.join(" ")));
    Signature { headers }
}

/// For receivers: whether `signature` (the `{prefix}-Signature` header) is the hex HMAC-SHA256
/// of `body` under `secret`, compared in constant time.
pub fn verify_signature(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(tag) = hex::decode(signature.trim()) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// For receivers: whether the Standard Webhooks headers authenticate `body` under `secret`, and
/// the timestamp is within `tolerance_seconds` of `now` (Unix seconds) — replays are refused.
pub fn verify_standard(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: u64,
    tolerance_seconds: u64,
) -> bool {
    let Ok(sent) = timestamp.parse::<u64>() else {
        return false;
    };
    if sent.abs_diff(now) > tolerance_seconds {
        return false;
    }
    let Ok(secret) = Secret::new(secret) else {
        return false;
    };
    signatures.split(' ').any(|candidate| {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            return false;
        };
        let Ok(tag) = BASE64.decode(encoded) else {
            return false;
        };
        secret.standard().verify(
            &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
            &tag,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"event":"abandoned_candidate","id":"t1"}"#;
    const NOW: u64 = 1_790_000_000;

    fn header<'s>(signature: &'s Signature, name: &str) -> &'s str {
        &signature
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .1
    }

    /// HMAC-SHA256 computed here with the `hmac` crate directly, not through `Key`.
    fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    #[test]
    fn the_plain_signature_is_the_hex_hmac_of_the_body() {
        let secrets = [Secret::new("receiver-secret").unwrap()];
        let signed = sign(
            "X-Flousify",
            "abandoned_candidate",
            "t1",
            NOW,
            BODY,
            &secrets,
        );
        assert_eq!(
            header(&signed, "X-Flousify-Signature"),
            hex::encode(hmac(b"receiver-secret", BODY))
        );
        assert_eq!(header(&signed, "X-Flousify-Event"), "abandoned_candidate");
        assert!(verify_signature(
            "receiver-secret",
            BODY,
            header(&signed, "X-Flousify-Signature")
        ));
        assert!(!verify_signature(
            "other",
            BODY,
            header(&signed, "X-Flousify-Signature")
        ));
        assert!(!verify_signature("receiver-secret", b"{}", "not hex"));
    }

    #[test]
    fn every_secret_of_a_rotation_signs_the_standard_headers() {
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let secrets = [
            Secret::new("new-plain-secret").unwrap(),
            Secret::new(old).unwrap(),
        ];
        let signed = sign("X-Cartstream", "order_completed", "t2", NOW, BODY, &secrets);
        let signatures = header(&signed, "webhook-signature");
        assert_eq!(signatures.split(' ').count(), 2);
        let message = [b"t2.".as_slice(), NOW.to_string().as_bytes(), b".", BODY].concat();
        let decoded = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(signatures.contains(&BASE64.encode(hmac(&decoded, &message))));
        assert!(signatures.contains(&BASE64.encode(hmac(b"new-plain-secret", &message))));
        for secret in ["new-plain-secret", old] {
            assert!(verify_standard(
                secret,
                "t2",
                &NOW.to_string(),
                signatures,
                BODY,
                NOW + 60,
                300
            ));
        }
        assert!(
            !verify_standard(
                old,
                "t2",
                &NOW.to_string(),
                signatures,
                BODY,
                NOW + 301,
                300
            ),
            "outside the tolerance"
        );
        assert!(!verify_standard(
            old,
            "t3",
            &NOW.to_string(),
            signatures,
            BODY,
            NOW,
            300
        ));
    }
}
