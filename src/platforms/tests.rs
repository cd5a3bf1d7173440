use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::tenants::Registry;

fn text(value: &str) -> Property {
    Property::Text(value.to_string())
}

fn app(client_secret: &str) -> App {
    App {
        client_id: "app-client-id".to_string(),
        client_secret: text(client_secret),
        webhook_secret: None,
        previous_webhook_secret: None,
        scopes: None,
        api_url: None,
        accounts_url: None,
    }
}

/// `config` resolved against `env`, and its problems.
fn resolved(mut config: Config, env: &[(&str, &str)]) -> (Config, Vec<String>) {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut problems = Problems::default();
    config.resolve(&env, Path::new("."), &mut problems);
    (config, problems.iter().map(str::to_string).collect())
}

const APP_TENANTS: &str = r#"
[[tenant]]
id = "acme"
[[tenant.integration]]
provider = "shopify"
shop_domain = "acme.myshopify.com"

[[tenant]]
id = "globex"
[[tenant.integration]]
provider = "salla"
merchant_id = "1305146709"
[[tenant.integration]]
provider = "shopify"
shop_domain = "globex.myshopify.com"
secret = "globex-own-custom-app-secret"
"#;

fn registry() -> Registry {
    Registry::from_toml(APP_TENANTS, Path::new("."), &HashMap::new()).unwrap()
}

#[test]
fn a_shopify_app_signs_with_its_client_secret_unless_it_has_a_webhook_secret() {
    let config = Config {
        shopify: Some(app("shopify-client-secret-0001")),
        ..Config::default()
    };
    let keys = config.apps();
    let keys = keys.keys("shopify").unwrap();
    assert!(keys.matches_token(b"shopify-client-secret-0001"));

    let mut with_webhook_secret = app("shopify-client-secret-0001");
    with_webhook_secret.webhook_secret = Some(text("shopify-webhook-secret-0001"));
    with_webhook_secret.previous_webhook_secret = Some(text("shopify-webhook-secret-0000"));
    let config = Config {
        shopify: Some(with_webhook_secret),
        ..Config::default()
    };
    let apps = config.apps();
    let keys = apps.keys("shopify").unwrap();
    assert!(keys.matches_token(b"shopify-webhook-secret-0001"));
    assert!(keys.matches_token(b"shopify-webhook-secret-0000"));
    assert!(!keys.matches_token(b"shopify-client-secret-0001"));
}

#[test]
fn a_salla_app_verifies_nothing_without_its_webhook_secret_and_zid_never_does() {
    let config = Config {
        salla: Some(app("salla-client-secret-0001")),
        zid: Some(app("zid-client-secret-0001")),
        ..Config::default()
    };
    let apps = config.apps();
    assert!(!apps.signs("salla") && !apps.signs("zid") && !apps.signs("shopify"));

    let mut salla = app("salla-client-secret-0001");
    salla.webhook_secret = Some(text("salla-webhook-secret-0001"));
    let apps = Config {
        salla: Some(salla),
        ..Config::default()
    }
    .apps();
    assert!(apps
        .keys("salla")
        .unwrap()
        .matches_token(b"salla-webhook-secret-0001"));
}

#[test]
fn secrets_are_read_from_the_environment_and_every_problem_is_reported() {
    let mut shopify = app("unused");
    shopify.client_secret = Property::Env {
        env: "SHOPIFY_CLIENT_SECRET".to_string(),
    };
    let (config, problems) = resolved(
        Config {
            shopify: Some(shopify),
            ..Config::default()
        },
        &[("SHOPIFY_CLIENT_SECRET", "from-the-environment-0001")],
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert!(config
        .apps()
        .keys("shopify")
        .unwrap()
        .matches_token(b"from-the-environment-0001"));

    let mut salla = app(" ");
    salla.client_id = String::new();
    salla.previous_webhook_secret = Some(text("salla-old-webhook-secret"));
    let mut zid = app("zid-client-secret-0001");
    zid.webhook_secret = Some(Property::Env {
        env: "UNSET".to_string(),
    });
    let (_, problems) = resolved(
        Config {
            shopify: None,
            salla: Some(salla),
            zid: Some(zid),
            shopimind: Some(ShopimindApp {
                return_urls: vec!["app.shopimind.com/oauth".to_string()],
                install_url: Some("ftp://shopimind.example/apps".to_string()),
            }),
            ca_file: None,
        },
        &[],
    );
    assert_eq!(
        problems,
        [
            "platforms.shopimind.return_urls: \"app.shopimind.com/oauth\" is not an absolute http(s) URL",
            "platforms.shopimind.install_url: \"ftp://shopimind.example/apps\" is not an absolute http(s) URL",
            "platforms.salla.client_id: is empty",
            "platforms.salla.client_secret: is empty",
            "platforms.salla.previous_webhook_secret: set without platforms.salla.webhook_secret",
            "platforms.zid.webhook_secret: environment variable UNSET is not set",
            "platforms.zid.webhook_secret: zid signs no webhook with an app secret (each subscription carries credentials of its own)",
        ]
    );
}

#[test]
fn an_integration_without_a_secret_verifies_with_its_apps_keys_and_its_own_otherwise() {
    let registry = registry();
    let mut salla = app("salla-client-secret-0001");
    salla.webhook_secret = Some(text("salla-webhook-secret-0001"));
    let apps = Config {
        shopify: Some(app("shopify-client-secret-0001")),
        salla: Some(salla),
        zid: None,
        shopimind: None,
        ca_file: None,
    }
    .apps();
    let keys = |provider: &str, shop: &str| {
        let integration = registry.resolve(provider, None, Some(shop)).unwrap();
        keys_of(integration, &apps).unwrap()
    };
    assert!(keys("shopify", "acme.myshopify.com").matches_token(b"shopify-client-secret-0001"));
    assert!(keys("salla", "1305146709").matches_token(b"salla-webhook-secret-0001"));
    let own = keys("shopify", "globex.myshopify.com");
    assert!(own.matches_token(b"globex-own-custom-app-secret"));
    assert!(!own.matches_token(b"shopify-client-secret-0001"));

    let without_apps = Apps::default();
    let acme = registry
        .resolve("shopify", None, Some("acme.myshopify.com"))
        .unwrap();
    assert!(keys_of(acme, &without_apps).is_none());
}

#[test]
fn the_deployment_check_names_each_integration_whose_app_is_missing() {
    let mut problems = Problems::default();
    let apps = Config {
        salla: Some(app("salla-client-secret-0001")),
        ..Config::default()
    }
    .apps();
    check_apps(&apps, &registry(), &mut problems);
    let problems: Vec<&str> = problems.iter().collect();
    assert_eq!(
        problems,
        [
            "tenant acme integration acme.myshopify.com signs with the shopify app's secret, and [platforms.shopify] has no client_secret",
            "tenant globex integration 1305146709 signs with the salla app's secret, and [platforms.salla] has no webhook_secret",
        ]
    );

    let mut problems = Problems::default();
    let mut salla = app("salla-client-secret-0001");
    salla.webhook_secret = Some(text("salla-webhook-secret-0001"));
    let apps = Config {
        shopify: Some(app("shopify-client-secret-0001")),
        salla: Some(salla),
        zid: None,
        shopimind: None,
        ca_file: None,
    }
    .apps();
    check_apps(&apps, &registry(), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn the_platforms_whose_apps_sign_are_the_providers_that_say_so() {
    for (slug, signing) in PLATFORMS {
        let provider = providers::find(slug).unwrap();
        assert_eq!(
            provider.app_signs_its_stores(),
            signing != Signing::None,
            "{slug}"
        );
    }
    let others = providers::all().filter(|p| PLATFORMS.iter().all(|(s, _)| *s != p.slug()));
    for provider in others {
        assert!(!provider.app_signs_its_stores(), "{}", provider.slug());
    }
}

#[test]
fn the_shopimind_consent_page_sends_the_browser_back_only_under_a_return_url() {
    let app = ShopimindApp {
        return_urls: vec![
            "https://app.shopimind.com/oauth/return".to_string(),
            "https://admin.shopimind.example/".to_string(),
        ],
        install_url: None,
    };
    let back = |url: &str| app.returns_to(&url::Url::parse(url).unwrap());
    assert!(back("https://app.shopimind.com/oauth/return"));
    assert!(back("https://app.shopimind.com/oauth/return?id=7"));
    assert!(back("https://app.shopimind.com/oauth/return/step"));
    assert!(back("https://admin.shopimind.example/anything"));
    assert!(back("https://app.shopimind.com:443/oauth/return"));
    assert!(!back("https://app.shopimind.com/oauth/returned"));
    assert!(!back("https://app.shopimind.com/oauth"));
    assert!(!back("http://app.shopimind.com/oauth/return"));
    assert!(!back("https://app.shopimind.com:8443/oauth/return"));
    assert!(!back("https://app.shopimind.com.evil.example/oauth/return"));
    assert!(!back(
        "https://evil.example/https://app.shopimind.com/oauth/return"
    ));
    assert!(!back("https://user@app.shopimind.com/oauth/return"));
}
