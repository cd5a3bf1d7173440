//! The ingress port's routes, and the methods each answers.

use http::Method;

/// Every route [`parse`] serves, by its path as OpenAPI writes it, with the methods it answers:
/// any other is answered 405 naming them.
pub const ROUTES: &[(&str, &[Method])] = &[
    ("/api/webhooks/{provider}", &[Method::POST]),
    (
        "/api/webhooks/{provider}/{integration_key}",
        &[Method::POST],
    ),
    ("/healthz", &[Method::GET, Method::HEAD]),
    ("/readyz", &[Method::GET, Method::HEAD]),
];

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

impl Route<'_> {
    /// Its entry in [`ROUTES`]; `None` where nothing is served.
    pub fn served(&self) -> Option<&'static (&'static str, &'static [Method])> {
        let index = match self {
            Route::Webhook { key: None, .. } => 0,
            Route::Webhook { key: Some(_), .. } => 1,
            Route::Healthz => 2,
            Route::Readyz => 3,
            Route::NotFound => return None,
        };
        Some(&ROUTES[index])
    }

    /// The methods it answers.
    pub fn methods(&self) -> &'static [Method] {
        self.served().map_or(&[], |(_, methods)| methods)
    }

    pub fn allows(&self, method: &Method) -> bool {
        self.methods().contains(method)
    }
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

    /// A request path for a listed path: each parameter given a value.
    fn instance(path: &str) -> String {
        path.replace("{provider}", "shopify")
            .replace("{integration_key}", "int_abc")
    }

    #[test]
    fn each_route_listed_is_the_one_its_path_reaches() {
        for entry in ROUTES {
            let path = instance(entry.0);
            assert_eq!(parse(&path).served(), Some(entry), "{path}");
        }
    }

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
