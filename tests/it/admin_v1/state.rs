//! A cart as the processor holds it, read through the admin API: from the instance whose
//! processor has the tenant's partition, and from any other (409 naming it); every answer of
//! the route.

use cartstream::app::Roles;

use super::*;

pub(super) const CARTS: &str = "/admin/v1/state/carts";

/// The cart token and e-mail of the checkout fixture.
const CART_TOKEN: &str = "68778783ad298f1c80c3bafcddeea02f";
const EMAIL: &str = "bob.norman@mail.example.com";

fn carts(query: &str) -> String {
    format!("{CARTS}?{query}")
}

/// Asks both processors until one answers 200 and the other 409 in the same round: both are in
/// the group and the partition has settled on one of them. The 200's body and its daemon's
/// index.
async fn owner(api: &Api, daemons: [&TestDaemon; 2], path: &str) -> (Value, usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut statuses = Vec::new();
        for daemon in daemons {
            statuses.push(api.admin(daemon, ("GET", CARTS, path), Bytes::new()).await);
        }
        match (statuses[0].status.as_u16(), statuses[1].status.as_u16()) {
            (200, 409) => return (statuses[0].json(), 0),
            (409, 200) => return (statuses[1].json(), 1),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the processors never settled on {path}: {:?} {:?}",
            statuses[0].body,
            statuses[1].body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `a` runs no processor. Before any does, nobody has the partition (503); then two processors
/// share the group, and the one with the tenant's partition answers the cart, the other 409.
pub(super) async fn exercise(api: &Api, a: &TestDaemon, brokers: &str, prefix: &str) {
    let by_token = carts(&format!("tenant=state&by=cart_token&value={CART_TOKEN}"));
    let nobody = api.admin(a, ("GET", CARTS, &by_token), Bytes::new()).await;
    assert_eq!(nobody.status, 503, "{:?}", nobody.body);
    assert!(nobody.json()["error"]
        .as_str()
        .unwrap()
        .contains("no processor"));

    let tenants = ("POST", "/admin/v1/tenants", "/admin/v1/tenants");
    assert_eq!(api.admin(a, tenants, r#"{"id":"state"}"#).await.status, 201);
    let integrations = (
        "POST",
        "/admin/v1/tenants/{id}/integrations",
        "/admin/v1/tenants/state/integrations",
    );
    let shop = r#"{"provider":"shopify","shop_domain":"state.myshopify.com","secret":"state-shopify-secret"}"#;
    assert_eq!(api.admin(a, integrations, shop).await.status, 201);
    let http = Http::http1();
    until_status("the state tenant's checkout", 200, || {
        shopify_webhook(&http, a, ("state-shopify-secret", "state.myshopify.com"))
    })
    .await;

    let processor = |name: &'static str| {
        TestDaemon::builder(name)
            .brokers(brokers)
            .topic_prefix(prefix)
            .tenants_from_topic(SEALING_KEY)
            .roles(Roles::PROCESSOR)
            .config(|c| {
                c.admin.token = Some(serde_json::from_value(json!(TOKEN)).unwrap());
                // One group, the one `a` names the owners from.
                c.processor.group_id = a.config.processor.group_id.clone();
            })
            .start()
    };
    let (p1, p2) = tokio::join!(processor("admin-v1-state-1"), processor("admin-v1-state-2"));
    let (cart, i) = owner(api, [&p1, &p2], &by_token).await;
    let (owning, other) = if i == 0 { (&p1, &p2) } else { (&p2, &p1) };
    assert_eq!(cart["tenant"], "state");
    assert_eq!(cart["cart"], CART_TOKEN);
    assert_eq!(cart["episode"], 0);
    assert_eq!(cart["closed_at"], Value::Null);
    // The checkout is from 2012: its inactivity window is long past, and the processor
    // abandons it by the wall clock once it has read its partition to the end.
    let deadline = Instant::now() + Duration::from_secs(30);
    let cart = loop {
        let answer = api
            .admin(owning, ("GET", CARTS, &by_token), Bytes::new())
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let cart = answer.json();
        if cart["phase"] == "abandoned" {
            break cart;
        }
        assert_eq!(cart["phase"], "active", "{cart}");
        assert_eq!(cart["next_deadline"], "2012-10-12T11:20:27.000Z", "{cart}");
        assert!(Instant::now() < deadline, "never abandoned: {cart}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(cart["next_deadline"], Value::Null, "{cart}");
    assert_eq!(
        cart["last_activity_at"], "2012-10-12T11:05:27.000Z",
        "{cart}"
    );
    assert_eq!(cart["inactivity_window_ms"], 900_000, "{cart}");
    let aliases = cart["aliases"].as_array().unwrap();
    assert!(
        aliases.contains(&json!({"kind": "cart_token", "value": CART_TOKEN})),
        "{cart}"
    );
    assert!(
        aliases.contains(&json!({"kind": "email", "value": EMAIL})),
        "{cart}"
    );
    // The partition the route computed is the one the ingress produced the checkout to.
    let inbound = read_topic(brokers, &a.topics.inbound);
    let produced = inbound
        .iter()
        .find(|r| r.headers["cartstream-tenant"] == "state")
        .expect("the checkout is on the inbound topic");
    assert_eq!(cart["partition"], produced.partition, "{cart}");
    assert!(cart["offset"].as_i64().unwrap() >= 0, "{cart}");

    // The same cart by the shopper's e-mail, as typed.
    let by_email = carts("tenant=state&by=email&value=Bob.Norman%40Mail.Example.com");
    let found = api
        .admin(owning, ("GET", CARTS, &by_email), Bytes::new())
        .await;
    assert_eq!(found.status, 200, "{:?}", found.body);
    assert_eq!(found.json()["cart"], CART_TOKEN);
    let missing = carts("tenant=state&by=cart&value=no-such-cart");
    let none = api
        .admin(owning, ("GET", CARTS, &missing), Bytes::new())
        .await;
    assert_eq!(none.status, 404, "{:?}", none.body);

    // Any other instance names the member that has the partition.
    for elsewhere in [other, a] {
        let answer = api
            .admin(elsewhere, ("GET", CARTS, &by_token), Bytes::new())
            .await;
        assert_eq!(answer.status, 409, "{:?}", answer.body);
        let said = answer.json();
        assert_eq!(said["partition"], cart["partition"], "{said}");
        assert_eq!(said["owner"]["client_id"], "cartstream-processor", "{said}");
        assert!(
            said["owner"]["host"]
                .as_str()
                .unwrap()
                .contains("127.0.0.1"),
            "{said}"
        );
        assert!(
            !said["owner"]["member_id"].as_str().unwrap().is_empty(),
            "{said}"
        );
    }

    for query in [
        "tenant=state&by=shop&value=x",
        "tenant=state&by=cart",
        "by=cart&value=x",
    ] {
        let refused = api
            .admin(a, ("GET", CARTS, &carts(query)), Bytes::new())
            .await;
        assert_eq!(refused.status, 400, "{query}: {:?}", refused.body);
    }
    assert_eq!(
        api.call(a, ("GET", CARTS, &by_token), None, "")
            .await
            .status,
        401
    );
    let keys = ("POST", "/admin/v1/keys", "/admin/v1/keys");
    let acme = api
        .admin(a, keys, r#"{"scopes":["read"],"tenant":"acme"}"#)
        .await;
    let acme = acme.json()["key"].as_str().unwrap().to_string();
    until_status(
        "a key limited to acme, on another tenant's cart",
        403,
        || async {
            api.call(a, ("GET", CARTS, &by_token), Some(&acme), "")
                .await
                .status
                .as_u16()
        },
    )
    .await;
    tokio::join!(p1.stop(), p2.stop());
}
