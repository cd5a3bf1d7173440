//! The ingress port's routes, and the methods each answers.

use http::Method;

/// Every route [`parse`] serves, by its path as the port's OpenAPI document
/// (`docs/openapi-ingress.json`) writes it, with the methods it answers: any other is answered
/// 405 naming them. HEAD is GET without the body, which the document leaves implicit.
pub const ROUTES: &[(&str, &[Method])] = &[
    ("/api/webhooks/{provider}", &[Method::POST]),
    (
        "/api/webhooks/{provider}/{integration_key}",
        &[Method::POST],
    ),
    ("/healthz", &[Method::GET, Method::HEAD]),
    ("/readyz", &[Method::GET, Method::HEAD]),
    ("/api/tracking/cart", &[Method::POST, Method::OPTIONS]),
    ("/api/oauth/{provider}/install", &[Method::GET]),
    ("/api/oauth/{provider}/callback", &[Method::GET]),
    ("/api/oauth/{provider}/consent", &[Method::GET]),
];

/// A step of OAuth connect (`/api/oauth/{provider}/…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// From the admin API's install link to the platform's consent screen.
    Install,
    /// Back from the consent screen, with the code.
    Callback,
    /// The consent page a platform sends the merchant to (ShopiMind's OAuth installations).
    Consent,
}

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
    /// `/api/tracking/cart`: storefront signals.
    Tracking,
    /// `/api/oauth/{provider}/install`, `…/callback` or `…/consent`.
    Oauth {
        provider: &'a str,
        step: Step,
    },
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
            Route::Tracking => 4,
            Route::Oauth {
                step: Step::Install,
                ..
            } => 5,
            Route::Oauth {
                step: Step::Callback,
                ..
            } => 6,
            Route::Oauth {
                step: Step::Consent,
                ..
            } => 7,
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
const OAUTH: &str = "/api/oauth/";

/// Matches a request path (without its query string).
pub fn parse(path: &str) -> Route<'_> {
    match path {
        "/healthz" => return Route::Healthz,
        "/readyz" => return Route::Readyz,
        "/api/tracking/cart" | "/api/tracking/cart/" => return Route::Tracking,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix(OAUTH) {
        let step = |name| match name {
            "install" => Some(Step::Install),
            "callback" => Some(Step::Callback),
            "consent" => Some(Step::Consent),
            _ => None,
        };
        return match rest.split_once('/') {
            Some((provider, name)) if !provider.is_empty() => match step(name) {
                Some(step) => Route::Oauth { provider, step },
                None => Route::NotFound,
            },
            _ => Route::NotFound,
        };
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
    use std::collections::BTreeSet;

    use super::*;

    const OPENAPI: &str = include_str!("../../docs/openapi-ingress.json");

    fn document() -> serde_json::Value {
        serde_json::from_str(OPENAPI).expect("docs/openapi-ingress.json is JSON")
    }

    /// What `value` is, or the component it refers to.
    fn resolve<'d>(
        doc: &'d serde_json::Value,
        value: &'d serde_json::Value,
    ) -> &'d serde_json::Value {
        match value["$ref"].as_str() {
            Some(path) => doc.pointer(path.strip_prefix('#').unwrap()).expect(path),
            None => value,
        }
    }

    /// A request path for a listed path: each parameter given a value.
    fn instance(path: &str) -> String {
        path.replace("{provider}", "shopify")
            .replace("{integration_key}", "int_abc")
    }

    #[test]
    fn the_document_lists_exactly_the_routes_and_methods_served() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| *k != "parameters")
                    .map(move |method| (path.clone(), method.to_uppercase()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .iter()
                    .filter(|m| **m != Method::HEAD)
                    .map(move |m| (path.to_string(), m.as_str().to_string()))
            })
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn each_route_listed_is_the_one_its_path_reaches() {
        for entry in ROUTES {
            let path = instance(entry.0);
            assert_eq!(parse(&path).served(), Some(entry), "{path}");
        }
    }

    #[test]
    fn a_documented_405_names_the_methods_served() {
        let doc = document();
        for (path, methods) in ROUTES {
            for operation in doc["paths"][path].as_object().unwrap().values() {
                let answer = resolve(&doc, &operation["responses"]["405"]);
                let allow = &answer["headers"]["Allow"]["schema"]["const"];
                let served: Vec<&str> = methods.iter().map(Method::as_str).collect();
                assert_eq!(allow, &serde_json::json!(served.join(", ")), "{path}");
            }
        }
    }

    #[test]
    fn the_webhook_routes_name_every_provider_and_no_other() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        for (path, item) in paths.iter().filter(|(path, _)| path.starts_with(WEBHOOKS)) {
            for (method, operation) in item.as_object().unwrap() {
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let parameter = resolve(&doc, parameter);
                    if parameter["name"] != "provider" {
                        continue;
                    }
                    let documented: BTreeSet<&str> = parameter["schema"]["enum"]
                        .as_array()
                        .expect("the providers are an enum")
                        .iter()
                        .map(|slug| slug.as_str().unwrap())
                        .collect();
                    let known: BTreeSet<&str> = crate::providers::all().map(|p| p.slug()).collect();
                    assert_eq!(documented, known, "{method} {path}");
                }
            }
        }
    }

    #[test]
    fn every_documented_error_answer_is_an_error_object() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    let response = resolve(&doc, response);
                    if status.starts_with('4') || status.starts_with('5') {
                        let schema =
                            resolve(&doc, &response["content"]["application/json"]["schema"]);
                        assert_eq!(
                            schema["required"],
                            serde_json::json!(["error"]),
                            "{method} {path} {status}: {response}"
                        );
                    }
                }
            }
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
