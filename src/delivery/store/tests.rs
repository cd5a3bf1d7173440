//! The delivery store on a real RocksDB.

use super::*;

fn job(id: &str, event: &str, next_ms: i64) -> Job {
    Job {
        transition_id: id.to_string(),
        tenant: "acme".to_string(),
        endpoint: "crm".to_string(),
        event: event.to_string(),
        cart: "cart-1".to_string(),
        body: "{}".to_string(),
        occurred_ms: 0,
        created_ms: 0,
        attempts: 0,
        next_ms,
        last_status: None,
        last_error: None,
        superseded: false,
    }
}

fn record(id: &str) -> OutboxRecord {
    OutboxRecord {
        dead_letter: false,
        key: "acme".to_string(),
        id: id.to_string(),
        value: "{}".to_string(),
    }
}

#[test]
fn jobs_come_due_in_time_order_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path()).unwrap();
        let (a, b) = (
            job("a", "abandoned_candidate", 2_000),
            job("b", "order_completed", 1_000),
        );
        store
            .write(
                vec![Change::Schedule(a.clone()), Change::Schedule(b.clone())],
                &[a.key(), b.key()],
                Vec::new(),
                0,
            )
            .unwrap();
        assert_eq!(store.pending(), 2);
        let due: Vec<_> = store.due(1_500, 10, 100, |_| false).unwrap();
        assert_eq!(due, vec![b.clone()]);
    }
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.pending(), 2);
    let due: Vec<String> = store
        .due(5_000, 10, 100, |_| false)
        .unwrap()
        .into_iter()
        .map(|j| j.transition_id)
        .collect();
    assert_eq!(due, ["b", "a"]);
    assert!(store.seen(&key("acme", "crm", "a")).unwrap());
    assert_eq!(store.next_due().unwrap(), Some(1_000));
}

#[test]
fn rescheduling_moves_the_due_entry_and_finishing_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut a = job("a", "abandoned_candidate", 1_000);
    store
        .write(vec![Change::Schedule(a.clone())], &[a.key()], Vec::new(), 0)
        .unwrap();
    assert_eq!(
        store
            .pending_abandonments("acme", "crm", "cart-1")
            .unwrap()
            .len(),
        1
    );
    a.attempts = 1;
    a.next_ms = 60_000;
    store
        .write(vec![Change::Schedule(a.clone())], &[], Vec::new(), 0)
        .unwrap();
    assert!(store.due(59_999, 10, 100, |_| false).unwrap().is_empty());
    assert_eq!(
        store.due(60_000, 10, 100, |_| false).unwrap(),
        vec![a.clone()]
    );
    assert_eq!(store.failed(10).unwrap().len(), 1);
    store
        .write(
            vec![Change::Finish {
                job: a.clone(),
                dead: true,
            }],
            &[],
            Vec::new(),
            0,
        )
        .unwrap();
    assert_eq!(store.pending(), 0);
    assert!(store.due(i64::MAX, 10, 100, |_| false).unwrap().is_empty());
    assert!(store
        .pending_abandonments("acme", "crm", "cart-1")
        .unwrap()
        .is_empty());
    assert_eq!(store.dead(10).unwrap(), vec![a.clone()]);
    assert!(store.retry_now(&a.key(), 7_000).unwrap());
    assert!(store.dead(10).unwrap().is_empty());
    let again = store.due(7_000, 10, 100, |_| false).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 0);
    assert_eq!(store.pending(), 1);
}

#[test]
fn dead_letters_from_the_topic_are_redriven_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let letter = |id: &str, dead_ms: i64| DeadLetter {
        job: Job {
            attempts: 7,
            last_status: Some(500),
            ..job(id, "order_completed", 0)
        },
        dead_ms,
    };
    let first = store
        .adopt(vec![letter("a", 1_000), letter("b", 1_000)], 5_000)
        .unwrap();
    assert_eq!(first.redriven, 2);
    let due = store.due(5_000, 10, 100, |_| false).unwrap();
    assert_eq!(due.len(), 2);
    assert!(due
        .iter()
        .all(|j| j.attempts == 0 && j.occurred_ms == 5_000));

    // `a` is still pending; `b` was delivered. Read again, neither goes out again, and the
    // same dead letter twice in one read counts once.
    store
        .write(
            vec![Change::Finish {
                job: due[1].clone(),
                dead: false,
            }],
            &[],
            Vec::new(),
            6_000,
        )
        .unwrap();
    let again = store
        .adopt(
            vec![letter("a", 1_000), letter("b", 1_000), letter("b", 1_000)],
            7_000,
        )
        .unwrap();
    assert_eq!(
        again,
        Adopted {
            redriven: 0,
            already_pending: 1,
            already_redriven: 2
        }
    );

    // `b` died again later: that dead letter is a new one and is redriven.
    let later = store.adopt(vec![letter("b", 9_000)], 10_000).unwrap();
    assert_eq!(later.redriven, 1);
    assert_eq!(store.pending(), 2);
}

#[test]
fn a_retried_dead_letter_is_not_redriven_from_the_topic_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let dead = job("a", "order_completed", 0);
    store
        .write(
            vec![Change::Finish {
                job: dead.clone(),
                dead: true,
            }],
            &[],
            Vec::new(),
            1_000,
        )
        .unwrap();
    assert!(store.retry_now(&dead.key(), 2_000).unwrap());
    assert!(store.dead(10).unwrap().is_empty());
    let due = store.due(2_000, 10, 100, |_| false).unwrap();
    store
        .write(
            vec![Change::Finish {
                job: due[0].clone(),
                dead: false,
            }],
            &[],
            Vec::new(),
            3_000,
        )
        .unwrap();
    let read_back = DeadLetter {
        job: dead,
        dead_ms: 1_000,
    };
    let adopted = store.adopt(vec![read_back], 4_000).unwrap();
    assert_eq!(adopted.already_redriven, 1);
    assert_eq!(store.pending(), 0);
}

#[test]
fn a_key_names_its_endpoint() {
    assert_eq!(endpoint_of(&key("acme", "crm", "ab12")), b"acme\0crm");
}

#[test]
fn outbox_records_wait_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path()).unwrap();
        store
            .write(Vec::new(), &[], vec![record("1"), record("2")], 0)
            .unwrap();
        let sequences: Vec<u64> = store.outbox(10).unwrap().iter().map(|r| r.0).collect();
        store.acknowledge(&sequences[..1]).unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    let left = store.outbox(10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1.id, "2");
    store.write(Vec::new(), &[], vec![record("3")], 0).unwrap();
    let ids: Vec<String> = store
        .outbox(10)
        .unwrap()
        .into_iter()
        .map(|r| r.1.id)
        .collect();
    assert_eq!(ids, ["2", "3"]);
}

#[test]
fn a_job_scheduled_earlier_than_every_other_is_still_found_after_scans() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let (late, early) = (
        job("late", "order_completed", 9_000),
        job("early", "order_completed", 1_000),
    );
    let schedule = |store: &mut Store, job: &Job| {
        store
            .write(vec![Change::Schedule(job.clone())], &[], Vec::new(), 0)
            .unwrap()
    };
    schedule(&mut store, &late);
    assert!(store.due(2_000, 10, 100, |_| false).unwrap().is_empty());
    schedule(&mut store, &early);
    let due = store.due(2_000, 10, 100, |_| false).unwrap();
    assert_eq!(due, std::slice::from_ref(&early));

    // Both end; nothing is due; a new job before both is found.
    for job in [&late, &early] {
        let finish = Change::Finish {
            job: job.clone(),
            dead: false,
        };
        store.write(vec![finish], &[], Vec::new(), 0).unwrap();
    }
    assert_eq!(store.next_due().unwrap(), None);
    let earliest = job("earliest", "order_completed", 500);
    schedule(&mut store, &earliest);
    assert_eq!(store.next_due().unwrap(), Some(500));
    assert_eq!(store.due(600, 10, 100, |_| false).unwrap(), [earliest]);
}

#[test]
fn each_endpoint_counts_its_pending_jobs_across_writes_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let at = |endpoint: &str, id: &str| Job {
        endpoint: endpoint.to_string(),
        ..job(id, "order_completed", 1_000)
    };
    let (a, b, c) = (at("crm", "a"), at("crm", "b"), at("erp", "c"));
    {
        let mut store = Store::open(dir.path()).unwrap();
        let changes = [&a, &b, &c]
            .into_iter()
            .map(|j| Change::Schedule(j.clone()))
            .collect();
        store.write(changes, &[], Vec::new(), 0).unwrap();
        // Scheduled again (a retry): still one job.
        let retry = Job {
            attempts: 1,
            next_ms: 9_000,
            ..a.clone()
        };
        store
            .write(vec![Change::Schedule(retry)], &[], Vec::new(), 0)
            .unwrap();
        assert_eq!(store.pending_at(b"acme\0crm"), 2);
        assert_eq!(store.pending_at(b"acme\0erp"), 1);
        let finish = Change::Finish {
            job: b.clone(),
            dead: true,
        };
        store.write(vec![finish], &[], Vec::new(), 0).unwrap();
        assert_eq!(store.pending_at(b"acme\0crm"), 1);
    }
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.pending_at(b"acme\0crm"), 1);
    assert_eq!(store.pending_at(b"acme\0erp"), 1);
    assert_eq!(store.pending_at(b"acme\0none"), 0);
    // A dead letter put back is pending again.
    assert!(store.retry_now(&b.key(), 2_000).unwrap());
    assert_eq!(store.pending_at(b"acme\0crm"), 2);
}

#[test]
fn only_a_pending_job_marked_superseded_reads_as_superseded() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let (plain, marked) = (
        job("plain", "abandoned_candidate", 1_000),
        Job {
            superseded: true,
            ..job("marked", "abandoned_candidate", 1_000)
        },
    );
    let changes = vec![
        Change::Schedule(plain.clone()),
        Change::Schedule(marked.clone()),
    ];
    store.write(changes, &[], Vec::new(), 0).unwrap();
    assert!(!store.superseded(&plain.key()).unwrap());
    assert!(store.superseded(&marked.key()).unwrap());
    assert!(!store.superseded(&key("acme", "crm", "none")).unwrap());
}

#[test]
fn a_scan_told_to_stop_ends_before_that_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let jobs: Vec<Job> = (1..=4)
        .map(|i| job(&i.to_string(), "order_completed", i * 100))
        .collect();
    let changes = jobs.iter().cloned().map(Change::Schedule).collect();
    store.write(changes, &[], Vec::new(), 0).unwrap();
    let mut visited = Vec::new();
    let due = store
        .due_scan(1_000, 10, 100, |_, pending_at| {
            visited.push(pending_at);
            match visited.len() {
                1 => Visit::Pass,
                2 => Visit::Take,
                _ => Visit::Stop,
            }
        })
        .unwrap();
    assert_eq!(due, [jobs[1].clone()]);
    assert_eq!(visited, [4, 4, 4]);
    // The scan started at the first entry, so nothing was skipped for later scans.
    assert_eq!(store.due(1_000, 10, 100, |_| false).unwrap(), jobs);
}

#[test]
fn outbox_records_acknowledged_out_of_order_leave_the_rest_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let records = ["1", "2", "3", "4"].map(record).to_vec();
    store.write(Vec::new(), &[], records, 0).unwrap();
    let ids = |store: &mut Store| -> Vec<String> {
        store
            .outbox(10)
            .unwrap()
            .into_iter()
            .map(|r| r.1.id)
            .collect()
    };
    assert_eq!(ids(&mut store), ["1", "2", "3", "4"]);
    store.acknowledge(&[1, 3]).unwrap();
    assert_eq!(ids(&mut store), ["1", "3"]);
    store.acknowledge(&[0, 2]).unwrap();
    assert!(ids(&mut store).is_empty());
    store.write(Vec::new(), &[], vec![record("5")], 0).unwrap();
    assert_eq!(ids(&mut store), ["5"]);
}

#[test]
fn a_replay_schedules_fresh_jobs_and_leaves_pending_ones_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut pending = job("pending", "abandoned_candidate", 9_000);
    pending.attempts = 3;
    store
        .write(vec![Change::Schedule(pending.clone())], &[], Vec::new(), 0)
        .unwrap();
    let mut delivered = job("delivered", "order_completed", 0);
    delivered.attempts = 2;
    delivered.last_status = Some(200);
    let twice = vec![delivered.clone(), pending.clone(), delivered.clone()];
    assert_eq!(store.replay(twice, 5_000).unwrap(), (1, 2));
    let replayed = store.job(&delivered.key()).unwrap().unwrap();
    assert_eq!((replayed.attempts, replayed.next_ms), (0, 5_000));
    assert_eq!(replayed.last_status, None);
    assert_eq!(
        replayed.occurred_ms, 5_000,
        "its deadlines count from the replay"
    );
    assert_eq!(store.job(&pending.key()).unwrap().unwrap(), pending);
    assert_eq!(store.pending(), 2);
}
