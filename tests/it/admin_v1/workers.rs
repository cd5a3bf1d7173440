//! Retry, replay and redrive asked through an instance that runs no delivery worker, carried out
//! by the worker of another instance over the commands topic; the dead letters listed from their
//! topic.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cartstream::app::Roles;
use http_body_util::Full;
use hyper::service::service_fn;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::*;

pub(super) const RETRY: &str = "/admin/v1/deliveries/retry";
pub(super) const DEAD_LETTERS: &str = "/admin/v1/dead-letters";
pub(super) const REDRIVE: &str = "/admin/v1/dead-letters/redrive";
pub(super) const REPLAY: &str = "/admin/v1/tenants/{id}/endpoints/{endpoint}/replay";
const WORKERS_REPLAY: &str = "/admin/v1/tenants/workers/endpoints/crm/replay";

/// Each route of this part, once.
pub(super) const CALLS: [(&str, &str, &str); 4] = [
    ("POST", RETRY, RETRY),
    ("GET", DEAD_LETTERS, DEAD_LETTERS),
    ("POST", REDRIVE, REDRIVE),
    ("POST", REPLAY, WORKERS_REPLAY),
];

/// A receiver on 127.0.0.1 that answers every request 500, and counts them.
async fn failing_receiver() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(500)
                                .body(Full::new(Bytes::from_static(b"down")))
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
    (url, count)
}

/// Waits until `count` reaches `n` (30 s at most).
async fn until_count(count: &AtomicUsize, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "{what}: {count:?} requests, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The outcome records of `transition` as `daemon` lists them, once there are `n`.
async fn attempts(api: &Api, daemon: &TestDaemon, transition: &str, n: usize) -> Vec<Value> {
    let path = format!("/admin/v1/deliveries?tenant=workers&transition={transition}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = api
            .admin(daemon, ("GET", "/admin/v1/deliveries", &path), Bytes::new())
            .await;
        assert_eq!(found.status, 200, "{:?}", found.body);
        let records = found.json()["deliveries"].as_array().unwrap().clone();
        if records.len() >= n {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{n} outcomes never listed: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `a` and `b` run no delivery worker; a third instance does. Every command goes through `a`.
pub(super) async fn exercise(api: &Api, a: &TestDaemon, b: &TestDaemon, prefix: &str) {
    let (url, received) = failing_receiver().await;
    let tenant = api
        .admin(
            a,
            ("POST", "/admin/v1/tenants", "/admin/v1/tenants"),
            r#"{"id":"workers","allow_plain_http":true}"#,
        )
        .await;
    assert_eq!(tenant.status, 201, "{:?}", tenant.body);
    let endpoints = (
        "POST",
        "/admin/v1/tenants/{id}/endpoints",
        "/admin/v1/tenants/workers/endpoints",
    );
    let endpoint = format!(r#"{{"id":"crm","url":"{url}","retry_schedule_ms":[0,3600000]}}"#);
    let endpoint = api.admin(a, endpoints, endpoint).await;
    assert_eq!(endpoint.status, 201, "{:?}", endpoint.body);
    let transition_id = uuid::Uuid::new_v4().simple().to_string();
    let retry_body = format!(
        r#"{{"tenant_id":"workers","endpoint_id":"crm","transition_id":"{transition_id}"}}"#
    );
    let replay = ("POST", REPLAY, WORKERS_REPLAY);
    let hour_ago = cartstream::clock::rfc3339(Clock::System.now_millis() - 3_600_000);
    let replay_body = format!(r#"{{"since":"{hour_ago}"}}"#);

    // No delivery worker runs yet: a retry is refused at once, a redrive or replay once nobody
    // claimed it.
    let (retry, redrive, replayed) = tokio::join!(
        api.admin(a, CALLS[0], retry_body.clone()),
        api.admin(a, CALLS[2], Bytes::new()),
        api.admin(a, replay, replay_body.clone()),
    );
    for answer in [retry, redrive, replayed] {
        assert_eq!(answer.status, 503, "{:?}", answer.body);
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .contains("no delivery worker"),
            "{:?}",
            answer.body
        );
    }

    // The worker runs on an instance of its own.
    let worker = TestDaemon::builder("admin-v1-worker")
        .brokers(&a.brokers)
        .topic_prefix(prefix)
        .tenants_from_topic(SEALING_KEY)
        .roles(Roles::DELIVERY)
        .config(|c| {
            c.delivery.allow_private_networks = vec!["127.0.0.0/8".to_string()];
            // One deployment: the group `a` asks about.
            c.delivery.group_id = a.config.delivery.group_id.clone();
        })
        .start()
        .await;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .create()
        .unwrap();
    let now = Clock::System.now_millis();
    let transition = json!({
        "schema": "cartstream.transition.v1",
        "id": transition_id,
        "tenant_id": "workers",
        "cart": "cart-1",
        "from": "active",
        "to": "abandoned",
        "bucket": "abandoned_candidate",
        "recovered": false,
        "at": cartstream::clock::rfc3339(now),
        "event": {"provider": "shopify"}
    })
    .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    // The worker reads the registry before it takes the transition: until it knows the
    // endpoint, a transition has nobody to go to. Sent again until it is attempted.
    while received.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the transition was never attempted"
        );
        producer
            .send(
                FutureRecord::to(&worker.topics.transitions)
                    .key("workers")
                    .payload(&transition),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let first = attempts(api, b, &transition_id, 1).await;
    assert_eq!(first[0]["outcome"], "failed", "{first:?}");

    // Retried through `a`: the worker that holds it attempts it exactly once more, now (its
    // schedule said in an hour), and that attempt exhausts the schedule.
    let retried = api.admin(a, CALLS[0], retry_body.clone()).await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    assert_eq!(retried.json()["retried"], true);
    assert!(retried.json()["worker"].is_string());
    until_count(&received, 2, "the retry").await;
    let on_b = attempts(api, b, &transition_id, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        received.load(Ordering::SeqCst),
        2,
        "attempted once more, not twice"
    );
    let on_a = attempts(api, a, &transition_id, 2).await;
    assert_eq!(on_a, on_b, "every instance's log shows the same attempts");
    assert_eq!(
        on_a.iter()
            .map(|r| r["attempt"].clone())
            .collect::<Vec<_>>(),
        [json!(1), json!(2)]
    );
    assert_eq!(on_a[1]["outcome"], "dead_lettered");
    let unknown = format!(
        r#"{{"tenant_id":"workers","endpoint_id":"crm","transition_id":"{}"}}"#,
        uuid::Uuid::new_v4().simple()
    );
    let not_held = api.admin(a, CALLS[0], unknown).await;
    assert_eq!(not_held.status, 404, "{:?}", not_held.body);

    // The dead letter, listed from its topic.
    let listed = ("GET", DEAD_LETTERS, "/admin/v1/dead-letters?tenant=workers");
    let deadline = Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let answer = api.admin(b, listed, Bytes::new()).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let letters = answer.json()["dead_letters"].as_array().unwrap().clone();
        if !letters.is_empty() {
            break letters;
        }
        assert!(
            Instant::now() < deadline,
            "the dead letter was never listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["transition_id"], transition_id.as_str());
    assert_eq!(letters[0]["reason"], "exhausted");
    assert_eq!(letters[0]["attempts"], 2);
    assert!(letters[0].get("body").is_none());

    // Replayed through `a`: sent again with a fresh budget, pending once more after it fails.
    let replayed = api.admin(a, replay, replay_body.clone()).await;
    assert_eq!(replayed.status, 200, "{:?}", replayed.body);
    let report = replayed.json();
    assert_eq!(
        (
            report["replayed"].clone(),
            report["already_pending"].clone()
        ),
        (json!(1), json!(0)),
        "{report}"
    );
    assert_eq!(report["complete"], true);
    until_count(&received, 3, "the replay").await;

    // Redriven through `a`: the dead letter's delivery is pending again, so it is left alone.
    let redriven = api
        .admin(a, CALLS[2], r#"{"from":"beginning","tenant_id":"workers"}"#)
        .await;
    assert_eq!(redriven.status, 200, "{:?}", redriven.body);
    let report = redriven.json();
    assert_eq!(report["already_pending"], 1, "{report}");
    assert_eq!(report["redriven"], 0, "{report}");
    assert!(report["worker"].is_string());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(received.load(Ordering::SeqCst), 3, "nothing more was sent");

    // What each route refuses.
    for (call, body) in [
        (CALLS[0], r#"{"tenant_id":"workers"}"#.to_string()),
        (
            CALLS[0],
            r#"{"tenant_id":"","endpoint_id":"crm","transition_id":"t"}"#.to_string(),
        ),
        (CALLS[2], r#"{"reason":"bored"}"#.to_string()),
        (CALLS[2], r#"{"limit":0}"#.to_string()),
        (replay, r#"{"since":"yesterday"}"#.to_string()),
        (replay, "{}".to_string()),
        (
            ("GET", DEAD_LETTERS, "/admin/v1/dead-letters?reason=bored"),
            String::new(),
        ),
    ] {
        let refused = api.admin(a, call, body.clone()).await;
        assert_eq!(refused.status, 400, "{call:?} {body}: {:?}", refused.body);
    }
    let nowhere = (
        "POST",
        REPLAY,
        "/admin/v1/tenants/workers/endpoints/nowhere/replay",
    );
    assert_eq!(api.admin(a, nowhere, replay_body.clone()).await.status, 404);
    for call in [CALLS[0], CALLS[2], replay] {
        let large = api.admin(a, call, vec![b' '; 17 * 1024]).await;
        assert_eq!(large.status, 413, "{call:?}");
    }
    for call in CALLS {
        assert_eq!(api.call(a, call, None, "{}").await.status, 401, "{call:?}");
    }
    let keys = ("POST", "/admin/v1/keys", "/admin/v1/keys");
    let reader = api.admin(a, keys, r#"{"scopes":["read"]}"#).await;
    let acme = api
        .admin(a, keys, r#"{"scopes":["read","write"],"tenant":"acme"}"#)
        .await;
    let (reader, acme) = (
        reader.json()["key"].as_str().unwrap().to_string(),
        acme.json()["key"].as_str().unwrap().to_string(),
    );
    let acme_letters = ("GET", DEAD_LETTERS, "/admin/v1/dead-letters?tenant=acme");
    // The keys work on `a` once it has read them back.
    until_status("the tenant key", 200, || async {
        api.call(a, acme_letters, Some(&acme), "")
            .await
            .status
            .as_u16()
    })
    .await;
    for (call, key, body) in [
        (CALLS[0], &reader, retry_body.clone()),
        (CALLS[0], &acme, retry_body.clone()),
        (CALLS[1], &acme, String::new()),
        (CALLS[2], &acme, "{}".to_string()),
        (replay, &acme, replay_body.clone()),
    ] {
        let refused = api.call(a, call, Some(key), body).await;
        assert_eq!(refused.status, 403, "{call:?}: {:?}", refused.body);
    }
    worker.stop().await;
}
