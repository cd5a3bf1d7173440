//! The ingress port's routes.

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/api/webhooks/{provider}` or `/api/webhooks/{provider}/{integration_key}`.
    Webhook {
        provider: &'a str,
        key: Option<&'a str>,
    },
    Healthz,
    Readyz,
    NotFound,
}

const WEBHOOKS: &str = "/api/webhooks/";

/// Matches a request path (without its query string).
pub fn parse(path: &str) -> Route<'_> {
    match path {
        "/healthz" => return Route::Healthz,
        "/readyz" => return Route::Readyz,
        _ => {}
    }
    let Some(rest) = path.strip_prefix(WEBHOOKS) else {
        return Route::NotFound;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut segments = rest.split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some(provider), None, None) if !provider.is_empty() => Route::Webhook {
            provider,
            key: None,
        },
        (Some(provider), Some(key), None) if !provider.is_empty() && !key.is_empty() => {
            Route::Webhook {
                provider,
                key: Some(key),
            }
        }
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_routes_with_and_without_key() {
        assert_eq!(
            parse("/api/webhooks/shopify"),
            Route::Webhook {
                provider: "shopify",
                key: None
            }
        );
        assert_eq!(
            parse("/api/webhooks/standard/int_abc/"),
            Route::Webhook {
                provider: "standard",
                key: Some("int_abc")
            }
        );
        assert_eq!(parse("/healthz"), Route::Healthz);
        assert_eq!(parse("/readyz"), Route::Readyz);
    }

    #[test]
    fn anything_else_is_not_found() {
        for path in [
            "/",
            "/api/webhooks",
            "/api/webhooks/",
            "/api/webhooks//k",
            "/api/webhooks/a/b/c",
            "/api/other/shopify",
        ] {
            assert_eq!(parse(path), Route::NotFound, "{path}");
        }
    }
}
