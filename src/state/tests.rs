//! The state machine on a real RocksDB, with time given explicitly (the store never reads a
//! clock): the scenarios of SPEC §4.3.

use std::time::Duration;

use super::*;
use crate::topics::event::Customer;

const MINUTE: i64 = 60_000;
const WINDOW: i64 = 15 * MINUTE;
const T0: i64 = 1_700_000_000_000;

fn windows() -> Windows {
    Windows {
        dedup: Duration::from_secs(24 * 3600),
        contact_lookback: Duration::from_secs(7 * 24 * 3600),
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), windows()).expect("the store opens")
}

fn checkout(cart_token: &str) -> Event {
    let mut event = Event::new(
        "shopify",
        Some("checkouts/update"),
        Bucket::AbandonedCandidate,
    );
    event.resource_type = Some("checkout".into());
    event.cart_token = Some(cart_token.into());
    event.checkout_token = Some(format!("co-{cart_token}"));
    event.customer = Customer {
        name: Some("Bob Norman".into()),
        email: Some("bob@example.com".into()),
        phone: Some("+15024592181".into()),
    };
    event.cart_value = Some("379.69".into());
    event.currency = Some("USD".into());
    event.recovery_url = Some("https://shop.example/recover".into());
    event
}

fn order(cart_token: Option<&str>, email: Option<&str>) -> Event {
    let mut event = Event::new("shopify", Some("orders/create"), Bucket::OrderCompleted);
    event.resource_type = Some("order".into());
    event.order_id = Some("1001".into());
    event.cart_token = cart_token.map(str::to_string);
    event.customer.email = email.map(str::to_string);
    event
}

struct Feed {
    store: Store,
    offset: i64,
}

impl Feed {
    fn send(&mut self, delivery: &str, event: &Event, at_ms: i64) -> Applied {
        let applied = self
            .store
            .apply(Input {
                offset: self.offset,
                tenant: "acme",
                delivery_id: delivery,
                event,
                at_ms,
                received_ms: at_ms,
                window_ms: WINDOW,
            })
            .unwrap();
        self.offset += 1;
        applied
    }

    fn fire(&mut self, now_ms: i64) -> Vec<Transition> {
        self.store.fire_due(now_ms, 1000).unwrap()
    }
}

fn feed(dir: &tempfile::TempDir) -> Feed {
    Feed {
        store: open(dir),
        offset: 0,
    }
}

#[test]
fn silence_after_a_checkout_abandons_it_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0);
    assert!(
        feed.fire(T0 + WINDOW - 1).is_empty(),
        "not before the window"
    );
    let fired = feed.fire(T0 + WINDOW);
    assert_eq!(fired.len(), 1);
    let transition = &fired[0];
    assert_eq!(
        (transition.from, transition.to),
        (Phase::Active, Phase::Abandoned)
    );
    assert_eq!(transition.bucket, Bucket::AbandonedCandidate);
    assert_eq!(
        transition.event.recovery_url.as_deref(),
        Some("https://shop.example/recover")
    );
    assert_eq!(transition.at, "2023-11-14T22:28:20.000Z");
    assert!(feed.fire(T0 + 10 * WINDOW).is_empty(), "once per episode");
    assert_eq!(
        feed.store.cart("acme", "c1").unwrap().unwrap().phase,
        Phase::Abandoned
    );
}

#[test]
fn activity_within_the_window_rearms_the_timer() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0);
    feed.send("d2", &checkout("c1"), T0 + 10 * MINUTE);
    assert!(
        feed.fire(T0 + WINDOW).is_empty(),
        "the first deadline no longer counts"
    );
    assert_eq!(feed.fire(T0 + 10 * MINUTE + WINDOW).len(), 1);
}

#[test]
fn an_order_after_abandonment_is_a_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0);
    feed.fire(T0 + WINDOW);
    let applied = feed.send("d2", &order(Some("c1"), None), T0 + 2 * WINDOW);
    assert_eq!(applied.transitions.len(), 1);
    let recovery = &applied.transitions[0];
    assert_eq!(
        (recovery.from, recovery.to),
        (Phase::Abandoned, Phase::Recovered)
    );
    assert_eq!(recovery.bucket, Bucket::OrderCompleted);
    assert!(recovery.recovered);
    assert_eq!(recovery.event.order_id.as_deref(), Some("1001"));
    assert_eq!(
        recovery.event.customer.email.as_deref(),
        Some("bob@example.com"),
        "kept from the cart"
    );
}

#[test]
fn an_order_before_the_window_completes_and_nothing_is_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0);
    let applied = feed.send("d2", &order(Some("c1"), None), T0 + MINUTE);
    assert_eq!(applied.transitions.len(), 1);
    assert_eq!(applied.transitions[0].to, Phase::Completed);
    assert!(!applied.transitions[0].recovered);
    assert!(
        feed.fire(T0 + 100 * WINDOW).is_empty(),
        "the timer was cancelled"
    );
    assert_eq!(feed.store.next_deadline().unwrap(), None);
}

#[test]
fn a_duplicate_delivery_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0);
    feed.fire(T0 + WINDOW);
    let first = feed.send("d2", &order(Some("c1"), None), T0 + 2 * WINDOW);
    let again = feed.send("d2", &order(Some("c1"), None), T0 + 2 * WINDOW);
    assert_eq!(first.transitions.len(), 1);
    assert!(again.duplicate);
    assert!(again.transitions.is_empty());
    // One event per distinct delivery in the outbox: d1, d2 — and the two transitions.
    let outbox = feed.store.outbox(100).unwrap();
    let events = outbox
        .iter()
        .filter(|(_, r)| r.kind == OutboxKind::Event)
        .count();
    assert_eq!(events, 2);
    assert_eq!(outbox.len(), 4);
    assert_eq!(
        feed.store.next_offset().unwrap(),
        Some(3),
        "the duplicate's offset is consumed"
    );
}

#[test]
fn a_late_older_update_neither_rearms_nor_regresses() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0 + 5 * MINUTE);
    feed.send("d0", &checkout("c1"), T0);
    let cart = feed.store.cart("acme", "c1").unwrap().unwrap();
    assert_eq!(cart.last_activity_ms, T0 + 5 * MINUTE);
    assert_eq!(
        feed.store.next_deadline().unwrap(),
        Some(T0 + 5 * MINUTE + WINDOW)
    );
    // After abandonment, a late update from before it does not reopen the cart.
    feed.fire(T0 + 5 * MINUTE + WINDOW);
    feed.send("d-late", &checkout("c1"), T0 + 6 * MINUTE);
    assert_eq!(
        feed.store.cart("acme", "c1").unwrap().unwrap().phase,
        Phase::Abandoned
    );
}

#[test]
fn orders_find_their_cart_by_checkout_token_or_customer_contact() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0);
    let mut by_checkout = order(None, None);
    by_checkout.checkout_token = Some("co-c1".into());
    assert_eq!(
        feed.send("d2", &by_checkout, T0 + MINUTE).transitions.len(),
        1
    );

    feed.send("d3", &checkout("c2"), T0);
    let by_email = feed.send("d4", &order(None, Some("bob@example.com")), T0 + MINUTE);
    assert_eq!(by_email.transitions.len(), 1);
    assert_eq!(by_email.transitions[0].cart, "c2");

    // Outside the look-back window, a contact no longer finds the cart.
    feed.send("d5", &checkout("c3"), T0);
    let much_later = T0 + 8 * 24 * 3600 * 1000;
    let mut stranger = order(None, Some("bob@example.com"));
    stranger.order_id = Some("2002".into());
    assert!(feed
        .send("d6", &stranger, much_later)
        .transitions
        .is_empty());
}

#[test]
fn activity_that_names_no_cart_is_keyed_on_the_shoppers_contact_and_an_order_recovers_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    // A FlexyPe recovery event without a checkout session: only the shopper names the cart.
    let acr = |value: &str| {
        let mut event = Event::new("flexype", Some("ACR_CHECKOUT"), Bucket::AbandonedCandidate);
        event.customer.email = Some("asha@example.com".into());
        event.customer.phone = Some("+919876543210".into());
        event.cart_value = Some(value.into());
        event
    };
    let first = feed.send("evt-1", &acr("10.00"), T0);
    let second = feed.send("evt-2", &acr("12.00"), T0 + MINUTE);
    assert!(first.transitions.is_empty() && second.transitions.is_empty());
    let fired = feed.fire(T0 + MINUTE + WINDOW);
    assert_eq!(fired.len(), 1, "one cart for both events: {fired:?}");
    let key = fired[0].cart.clone();
    assert!(key.starts_with("shopper:"), "{key}");
    assert!(
        !key.contains("asha"),
        "the key does not spell the contact out"
    );
    assert_eq!(fired[0].event.cart_value.as_deref(), Some("12.00"));

    // Keyed by phone when there is no e-mail, and by nothing when there is no contact either.
    let mut by_phone = acr("5.00");
    by_phone.customer.email = None;
    feed.send("evt-3", &by_phone, T0);
    let mut nobody = acr("1.00");
    nobody.customer = Customer::default();
    feed.send("evt-4", &nobody, T0);
    assert_eq!(
        feed.fire(T0 + 2 * WINDOW).len(),
        1,
        "the phone's cart, and none for the event that names nobody"
    );

    // An order from another platform with the same e-mail recovers the abandoned cart.
    let recovered = feed.send(
        "o-1",
        &order(None, Some("asha@example.com")),
        T0 + 3 * WINDOW,
    );
    assert_eq!(recovered.transitions.len(), 1, "{recovered:?}");
    assert_eq!(recovered.transitions[0].cart, key);
    assert!(recovered.transitions[0].recovered);
}

#[test]
fn a_new_episode_gets_its_own_transition_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0);
    let first = feed.fire(T0 + WINDOW);
    feed.send("d2", &checkout("c1"), T0 + 2 * WINDOW);
    let second = feed.fire(T0 + 3 * WINDOW);
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(first[0].id, second[0].id);
}

#[test]
fn state_timers_offsets_and_outbox_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let ids_before = {
        let mut feed = feed(&dir);
        feed.send("d1", &checkout("c1"), T0);
        feed.send("d2", &checkout("c2"), T0 + MINUTE);
        feed.store
            .outbox(10)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.id)
            .collect::<Vec<_>>()
    };
    let mut store = open(&dir);
    assert_eq!(store.next_offset().unwrap(), Some(2));
    assert_eq!(store.next_deadline().unwrap(), Some(T0 + WINDOW));
    let outbox: Vec<_> = store.outbox(10).unwrap();
    assert_eq!(
        outbox.iter().map(|(_, r)| r.id.clone()).collect::<Vec<_>>(),
        ids_before
    );
    // Timers that came due while the store was closed fire once, in deadline order.
    let fired = store.fire_due(T0 + 10 * WINDOW, 10).unwrap();
    assert_eq!(
        fired.iter().map(|t| t.cart.as_str()).collect::<Vec<_>>(),
        ["c1", "c2"]
    );
    assert!(store.fire_due(T0 + 10 * WINDOW, 10).unwrap().is_empty());
    // Acknowledged records leave the outbox; new ones keep counting up.
    let sequences: Vec<u64> = store
        .outbox(100)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    store.acknowledge(&sequences).unwrap();
    assert!(store.outbox(100).unwrap().is_empty());
}

#[test]
fn firing_is_bounded_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    for i in 0..10 {
        feed.send(&format!("d{i}"), &checkout(&format!("c{i}")), T0 + i);
    }
    assert_eq!(feed.store.fire_due(T0 + 2 * WINDOW, 4).unwrap().len(), 4);
    assert_eq!(feed.store.fire_due(T0 + 2 * WINDOW, 100).unwrap().len(), 6);
}

#[test]
fn timers_left_by_a_limit_or_armed_since_are_known_to_be_due() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    let late = T0 + 2 * WINDOW;
    assert!(feed.store.may_have_due_timers(late), "never fired: unknown");
    for i in 0..3 {
        feed.send(&format!("d{i}"), &checkout(&format!("c{i}")), T0 + i);
    }
    feed.store.fire_due(late, 2).unwrap();
    assert!(
        feed.store.may_have_due_timers(late),
        "one left by the limit"
    );
    feed.store.fire_due(late, 2).unwrap();
    assert!(!feed.store.may_have_due_timers(late), "every one fired");

    feed.send("d3", &checkout("c3"), T0 + WINDOW);
    assert!(!feed.store.may_have_due_timers(T0 + 2 * WINDOW - 1));
    assert!(feed.store.may_have_due_timers(T0 + 2 * WINDOW));
}

#[test]
fn replaying_the_same_input_yields_the_same_transition_ids() {
    let run = || {
        let dir = tempfile::tempdir().unwrap();
        let mut feed = feed(&dir);
        feed.send("d1", &checkout("c1"), T0);
        let mut ids: Vec<String> = feed.fire(T0 + WINDOW).into_iter().map(|t| t.id).collect();
        ids.extend(
            feed.send("d2", &order(Some("c1"), None), T0 + 2 * WINDOW)
                .transitions
                .into_iter()
                .map(|t| t.id),
        );
        ids
    };
    assert_eq!(run(), run());
}

#[test]
fn outbox_records_round_trip() {
    let record = OutboxRecord::transition(
        &cart::on_timer(
            cart::on_event("acme", "c1", None, &checkout("c1"), T0, WINDOW)
                .cart
                .unwrap(),
            T0 + WINDOW,
        )
        .transitions[0],
    );
    assert_eq!(OutboxRecord::decode(&record.encode()), Some(record));
    assert_eq!(OutboxRecord::decode(&[7]), None);
}

/// Validators for the two schemas the outbox records must match.
fn schemas() -> (jsonschema::Validator, jsonschema::Validator) {
    let read = |name: &str| -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let event = read("event.v1.json");
    let registry = jsonschema::Registry::new()
        .add(
            "https://cartstream.dev/schemas/event.v1.json",
            event.clone(),
        )
        .unwrap()
        .prepare()
        .unwrap();
    let events = jsonschema::validator_for(&event).unwrap();
    let transitions = jsonschema::options()
        .with_registry(&registry)
        .build(&read("transition.v1.json"))
        .unwrap();
    (events, transitions)
}

#[test]
fn every_outbox_record_matches_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0);
    feed.fire(T0 + WINDOW);
    feed.send("d2", &order(Some("c1"), None), T0 + 2 * WINDOW);
    feed.send("d3", &checkout("c2"), T0);
    feed.send("d4", &order(Some("c2"), None), T0 + MINUTE);
    let (events, transitions) = schemas();
    let records = feed.store.outbox(100).unwrap();
    assert_eq!(records.len(), 4 + 3);
    for (_, record) in records {
        let value: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
        let validator = match record.kind {
            OutboxKind::Event => &events,
            OutboxKind::Transition => &transitions,
        };
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{value}: {errors:?}");
    }
}

#[test]
fn a_record_arriving_after_a_deadline_fires_the_timer_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0);
    // The order arrives after the deadline: the cart was abandoned by then, so it is recovered.
    let applied = feed.send("d2", &order(Some("c1"), None), T0 + WINDOW + MINUTE);
    assert_eq!(applied.fired.len(), 1);
    assert_eq!(applied.fired[0].to, Phase::Abandoned);
    assert_eq!(applied.transitions.len(), 1);
    assert!(applied.transitions[0].recovered);
    assert_eq!(feed.store.watermark(), T0 + WINDOW + MINUTE);
}

#[test]
fn counts_follow_the_carts_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut feed = feed(&dir);
        feed.send("d1", &checkout("c1"), T0);
        feed.send("d2", &checkout("c2"), T0);
        feed.send("d3", &checkout("c3"), T0);
        feed.send("d4", &order(Some("c1"), None), T0 + MINUTE);
        feed.fire(T0 + WINDOW);
        feed.send("d5", &order(Some("c2"), None), T0 + WINDOW + MINUTE);
        let counts = feed.store.counts();
        assert_eq!(
            (
                counts.active,
                counts.abandoned,
                counts.completed,
                counts.recovered
            ),
            (0, 1, 1, 1)
        );
    }
    let store = open(&dir);
    assert_eq!(store.counts().get(Phase::Abandoned), 1);
    assert_eq!(store.counts().get(Phase::Completed), 1);
    assert_eq!(store.outbox_len(), 5 + 4);
}

#[test]
fn garbage_collection_removes_closed_carts_and_old_markers_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    let day = 24 * 60 * MINUTE;
    feed.send("d1", &checkout("c1"), T0);
    feed.send("d2", &order(Some("c1"), None), T0 + MINUTE);
    feed.send("d3", &checkout("c2"), T0 + 3 * day);
    let retention = Duration::from_secs(2 * 24 * 3600);

    let nothing = feed
        .store
        .collect_garbage(T0 + day, retention, 100)
        .unwrap();
    assert_eq!(nothing, Collected::default(), "nothing is old enough yet");

    let collected = feed
        .store
        .collect_garbage(T0 + 3 * day, retention, 100)
        .unwrap();
    assert_eq!(collected.carts, 1);
    assert_eq!(collected.dedup_markers, 2, "d1 and d2 are past the window");
    assert_eq!(feed.store.cart("acme", "c1").unwrap(), None);
    assert!(
        feed.store.cart("acme", "c2").unwrap().is_some(),
        "still active"
    );
    assert_eq!(feed.store.counts().completed, 0);
    // The closed cart's aliases are gone: a late order for it finds nothing.
    let late = feed.send("d9", &order(Some("c1"), None), T0 + 3 * day);
    assert!(late.transitions.is_empty());
    // d3's marker is within the window and still de-duplicates.
    assert!(feed.send("d3", &checkout("c2"), T0 + 3 * day).duplicate);
}

#[test]
fn an_abandoned_cart_never_recovered_is_collected_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    let day = 24 * 60 * MINUTE;
    let retention = Duration::from_secs(2 * 24 * 3600);
    feed.send("d1", &checkout("gone"), T0);
    feed.send("d2", &checkout("back"), T0);
    assert_eq!(feed.fire(T0 + WINDOW).len(), 2, "both abandoned");
    // "back" comes back to life a day later and is abandoned again.
    feed.send("d3", &checkout("back"), T0 + day);
    assert_eq!(feed.fire(T0 + day + WINDOW).len(), 1);

    let nothing = feed
        .store
        .collect_garbage(T0 + WINDOW + day, retention, 100)
        .unwrap();
    assert_eq!(nothing.carts, 0, "not yet two days after the abandonment");

    let collected = feed
        .store
        .collect_garbage(T0 + WINDOW + 2 * day + 1, retention, 100)
        .unwrap();
    assert_eq!(collected.carts, 1, "only the cart abandoned two days ago");
    assert_eq!(feed.store.cart("acme", "gone").unwrap(), None);
    assert_eq!(
        feed.store.cart("acme", "back").unwrap().unwrap().phase,
        Phase::Abandoned,
        "its first abandonment no longer describes it"
    );
    assert_eq!(feed.store.counts().get(Phase::Abandoned), 1);
    // The collected cart's aliases are gone: a late order for it finds nothing to recover.
    let late = feed.send("d9", &order(Some("gone"), None), T0 + 3 * day);
    assert!(late.transitions.is_empty());

    let later = feed
        .store
        .collect_garbage(T0 + day + WINDOW + 2 * day + 1, retention, 100)
        .unwrap();
    assert_eq!(
        later.carts, 1,
        "the second abandonment's retention ran out too"
    );
    assert_eq!(feed.store.cart("acme", "back").unwrap(), None);
}

/// Rewrites the stored record of cart `key` in the JSON form carts were first stored in.
fn store_as_json(store: &Store, key: &str) {
    let cart = store.cart("acme", key).unwrap().unwrap();
    let json = serde_json::to_vec(&cart).unwrap();
    store
        .db
        .put_cf(cf(&store.db, CARTS), keys::cart("acme", key), json)
        .unwrap();
}

fn stored_cart_bytes(store: &Store, key: &str) -> Vec<u8> {
    store
        .db
        .get_cf(cf(&store.db, CARTS), keys::cart("acme", key))
        .unwrap()
        .unwrap()
}

#[test]
fn a_cart_stored_as_json_is_read_fired_and_rewritten_in_the_binary_form() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0);
    let before = feed.store.cart("acme", "c1").unwrap().unwrap();
    store_as_json(&feed.store, "c1");
    assert_eq!(stored_cart_bytes(&feed.store, "c1")[0], b'{');
    assert_eq!(feed.store.cart("acme", "c1").unwrap(), Some(before));

    let fired = feed.fire(T0 + WINDOW);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].event.cart_token.as_deref(), Some("c1"));
    assert_ne!(stored_cart_bytes(&feed.store, "c1")[0], b'{');
    assert_eq!(
        feed.store.cart("acme", "c1").unwrap().unwrap().phase,
        Phase::Abandoned
    );
}

#[test]
fn an_order_finds_and_recovers_a_cart_stored_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0);
    feed.fire(T0 + WINDOW);
    store_as_json(&feed.store, "c1");
    let applied = feed.send("d2", &order(Some("c1"), None), T0 + 2 * WINDOW);
    assert_eq!(applied.transitions.len(), 1);
    assert!(applied.transitions[0].recovered);
    assert_eq!(
        applied.transitions[0].event.customer.email.as_deref(),
        Some("bob@example.com")
    );
    assert_ne!(stored_cart_bytes(&feed.store, "c1")[0], b'{');
}

#[test]
fn timers_fired_together_come_out_in_deadline_order_whatever_their_carts_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    for (i, name) in ["zz", "mm", "aa"].into_iter().enumerate() {
        feed.send(&format!("d{i}"), &checkout(name), T0 + i as i64);
    }
    let fired = feed.fire(T0 + 2 * WINDOW);
    assert_eq!(
        fired.iter().map(|t| t.cart.as_str()).collect::<Vec<_>>(),
        ["zz", "mm", "aa"]
    );
    assert_eq!(feed.store.counts().abandoned, 3);
}

#[test]
fn a_stale_timer_fired_with_the_current_one_abandons_the_cart_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0);
    // A timer that no longer matches the cart's deadline, and one whose cart is gone.
    for key in [
        keys::timer(T0 + WINDOW + 1, "acme", "c1"),
        keys::timer(T0 + WINDOW, "acme", "gone"),
    ] {
        feed.store
            .db
            .put_cf(cf(&feed.store.db, TIMERS), key, [])
            .unwrap();
    }
    let fired = feed.fire(T0 + 2 * WINDOW);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].at, "2023-11-14T22:28:20.000Z");
    assert_eq!(feed.store.counts().abandoned, 1);
    assert_eq!(
        feed.store.next_deadline().unwrap(),
        None,
        "every timer consumed"
    );
}

/// A family's name and its keys and values.
type Family = (&'static str, Vec<(Box<[u8]>, Box<[u8]>)>);

/// Every key and value the store holds, family by family.
fn contents(store: &Store) -> Vec<Family> {
    FAMILIES
        .iter()
        .map(|&name| {
            let rows = store
                .db
                .iterator_cf(cf(&store.db, name), IteratorMode::Start)
                .map(|row| row.unwrap())
                .collect();
            (name, rows)
        })
        .collect()
}

/// One step of a generated run: a record (with a commit after it or not), or a wall-clock
/// firing.
#[derive(Debug, Clone)]
enum Step {
    Record {
        delivery: u8,
        event: Box<Event>,
        advance_ms: i64,
        commit: bool,
    },
    Fire {
        advance_ms: i64,
    },
}

fn steps() -> impl proptest::strategy::Strategy<Value = Vec<Step>> {
    use proptest::prelude::*;
    let cart = 0u8..5;
    let contact = 0u8..3;
    let event = prop_oneof![
        3 => (cart.clone(), contact.clone()).prop_map(|(cart, contact)| {
            let mut event = checkout(&format!("c{cart}"));
            event.customer.email = Some(format!("buyer{contact}@example.com"));
            event
        }),
        1 => (proptest::option::of(cart), proptest::option::of(contact)).prop_map(
            |(cart, contact)| {
                order(
                    cart.map(|c| format!("c{c}")).as_deref(),
                    contact.map(|c| format!("buyer{c}@example.com")).as_deref(),
                )
            }
        ),
    ];
    // Gaps from nothing to past a window, so timers come due within a run.
    let gap = prop_oneof![Just(0i64), 0..MINUTE, WINDOW / 2..2 * WINDOW];
    let step = prop_oneof![
        8 => (0u8..40, event, gap.clone(), proptest::bool::weighted(0.2)).prop_map(
            |(delivery, event, advance_ms, commit)| Step::Record { delivery, event: Box::new(event), advance_ms, commit }
        ),
        1 => gap.prop_map(|advance_ms| Step::Fire { advance_ms }),
    ];
    proptest::collection::vec(step, 1..60)
}

/// Runs `steps` on a new store, applying each record at once (`staged: false`) or staging
/// records and committing where the step says (`staged: true`); what each step returned,
/// and the store.
fn run_steps(
    dir: &tempfile::TempDir,
    steps: &[Step],
    staged: bool,
) -> (Vec<Applied>, Vec<Vec<Transition>>, Store) {
    let mut store = open(dir);
    let (mut applied, mut fired) = (Vec::new(), Vec::new());
    let mut now = T0;
    for (offset, step) in steps.iter().enumerate() {
        match step {
            Step::Record {
                delivery,
                event,
                advance_ms,
                commit,
            } => {
                now += advance_ms;
                let input = Input {
                    offset: offset as i64,
                    tenant: "acme",
                    delivery_id: &format!("d{delivery}"),
                    event,
                    at_ms: now,
                    received_ms: now,
                    window_ms: WINDOW,
                };
                if staged {
                    applied.push(store.stage(input).unwrap());
                    if *commit {
                        store.commit().unwrap();
                    }
                } else {
                    applied.push(store.apply(input).unwrap());
                }
            }
            Step::Fire { advance_ms } => {
                now += advance_ms;
                fired.push(store.fire_due(now, 1000).unwrap());
            }
        }
    }
    store.commit().unwrap();
    (applied, fired, store)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Staging reads what was staged before it (a repeated delivery, an order finding a cart
    /// created a few records earlier), fires timers from what is stored, and writes in one
    /// commit what applying the records one by one writes.
    #[test]
    fn staged_records_decide_and_store_what_records_applied_one_by_one_do(steps in steps()) {
        let (one_dir, staged_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (one_applied, one_fired, one) = run_steps(&one_dir, &steps, false);
        let (staged_applied, staged_fired, staged) = run_steps(&staged_dir, &steps, true);
        proptest::prop_assert_eq!(one_applied, staged_applied);
        proptest::prop_assert_eq!(one_fired, staged_fired);
        proptest::prop_assert_eq!(one.counts(), staged.counts());
        proptest::prop_assert_eq!(contents(&one), contents(&staged));
    }
}

#[test]
fn records_staged_and_not_committed_leave_nothing_behind_and_are_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut feed = feed(&dir);
        feed.send("d1", &checkout("c1"), T0);
        let mut store = feed.store;
        for (offset, (delivery, cart)) in [("d2", "c2"), ("d3", "c3")].into_iter().enumerate() {
            let applied = store
                .stage(Input {
                    offset: 1 + offset as i64,
                    tenant: "acme",
                    delivery_id: delivery,
                    event: &checkout(cart),
                    at_ms: T0 + MINUTE,
                    received_ms: T0 + MINUTE,
                    window_ms: WINDOW,
                })
                .unwrap();
            assert!(!applied.duplicate);
        }
        assert_eq!(
            store.cart("acme", "c3").unwrap().unwrap().phase,
            Phase::Active
        );
        // The process ends here, before the commit.
    }
    let mut store = open(&dir);
    assert_eq!(store.next_offset().unwrap(), Some(1));
    assert_eq!(store.cart("acme", "c2").unwrap(), None);
    assert_eq!(store.outbox(10).unwrap().len(), 1, "only d1's event");
    assert_eq!(store.counts().active, 1);
    let applied = store
        .apply(Input {
            offset: 1,
            tenant: "acme",
            delivery_id: "d2",
            event: &checkout("c2"),
            at_ms: T0 + MINUTE,
            received_ms: T0 + MINUTE,
            window_ms: WINDOW,
        })
        .unwrap();
    assert!(!applied.duplicate, "d2 was never stored");
    assert_eq!(store.next_offset().unwrap(), Some(2));
}

#[test]
fn a_cart_is_found_by_its_key_or_any_alias_that_still_leads_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut feed = feed(&dir);
    feed.send("d1", &checkout("c1"), T0);
    let find = |store: &Store, lookup| store.find("acme", lookup).unwrap();
    let by_key = find(&feed.store, Lookup::Cart("c1")).expect("the cart");
    assert_eq!(by_key.cart.phase, Phase::Active);
    assert_eq!(by_key.cart.deadline_ms(), T0 + WINDOW);
    assert_eq!(
        by_key.aliases,
        [
            (AliasKind::CartToken, "c1".to_string()),
            (AliasKind::CheckoutToken, "co-c1".to_string()),
            (AliasKind::Email, "bob@example.com".to_string()),
            (AliasKind::Phone, "+15024592181".to_string()),
        ]
    );
    for (kind, value) in &by_key.aliases {
        assert_eq!(
            find(&feed.store, Lookup::Alias(*kind, value)).as_ref(),
            Some(&by_key)
        );
    }
    // A second cart of the same shopper takes the contact aliases: the first keeps its tokens.
    feed.send("d2", &checkout("c2"), T0 + MINUTE);
    let first = find(&feed.store, Lookup::Cart("c1")).unwrap();
    assert_eq!(
        first.aliases,
        [
            (AliasKind::CartToken, "c1".to_string()),
            (AliasKind::CheckoutToken, "co-c1".to_string()),
        ]
    );
    let by_email = find(
        &feed.store,
        Lookup::Alias(AliasKind::Email, "bob@example.com"),
    );
    assert_eq!(by_email.unwrap().cart.key, "c2");
    assert_eq!(find(&feed.store, Lookup::Cart("c9")), None);
    assert_eq!(
        find(&feed.store, Lookup::Alias(AliasKind::CartToken, "c9")),
        None
    );
    assert_eq!(
        feed.store.find("globex", Lookup::Cart("c1")).unwrap(),
        None,
        "another tenant's"
    );
}
