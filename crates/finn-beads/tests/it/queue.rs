//! The work queue: leases, handoffs, and many workers (threads, then processes) on one queue.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use finn_beads::{
    Bead, DepType, Error, Handoff, Options, Outcome, ReadyQuery, Sharing, Status, Store,
};
use finn_wal::{Lsn, Wal};

use crate::util::{TestClock, open, open_with};

const LEASE: Duration = Duration::from_secs(30);

#[test]
fn claim_takes_the_best_ready_bead_and_release_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(
        store.claim("w", LEASE, &ReadyQuery::default()).unwrap(),
        None
    );
    for (id, p) in [("low", 3), ("high", 0), ("mid", 1)] {
        let mut b = Bead::new(id, id);
        b.priority = finn_beads::Priority(p);
        store.create(b).unwrap();
    }
    let c = store
        .claim("w1", LEASE, &ReadyQuery::default())
        .unwrap()
        .unwrap();
    assert_eq!(c.bead_id, "high");
    let b = store.get("high").unwrap();
    assert_eq!(b.status, Status::InProgress);
    assert_eq!(b.assignee.as_deref(), Some("w1"));
    assert!(b.comments[0].text.starts_with("Claimed by session "));
    let c2 = store
        .claim("w2", LEASE, &ReadyQuery::default())
        .unwrap()
        .unwrap();
    assert_eq!(c2.bead_id, "mid");
    store.release(&c, Outcome::Done).unwrap();
    let b = store.get("high").unwrap();
    assert_eq!(b.status, Status::Closed);
    assert_eq!(b.close_reason.as_deref(), Some("done"));
    store
        .release(
            &c2,
            Outcome::Blocked {
                reason: "needs review".into(),
            },
        )
        .unwrap();
    let b = store.get("mid").unwrap();
    assert_eq!(b.status, Status::Blocked);
    assert!(
        b.comments
            .last()
            .unwrap()
            .text
            .contains("Blocked: needs review")
    );
    // Releasing twice is refused: the claim is gone.
    assert!(matches!(
        store.release(&c, Outcome::Done),
        Err(Error::LeaseLost { .. })
    ));
}

#[test]
fn stale_leases_expire_back_to_ready_and_the_old_holder_loses_its_claim() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open_with(dir.path(), &clock);
    let mut b = Bead::new("t", "t");
    b.assignee = Some("planner".into());
    store.create(b).unwrap();
    let c1 = store
        .claim("w1", LEASE, &ReadyQuery::default())
        .unwrap()
        .unwrap();
    clock.advance(Duration::from_secs(20));
    let c1 = store.heartbeat(&c1, LEASE).unwrap();
    clock.advance(Duration::from_secs(20));
    assert!(
        store.expire_stale().unwrap().is_empty(),
        "heartbeat did not extend the lease"
    );
    assert_eq!(
        store.claim("w2", LEASE, &ReadyQuery::default()).unwrap(),
        None
    );
    clock.advance(Duration::from_secs(11));
    // The next claim reclaims the stale lease first, then (next call) offers the bead again.
    assert_eq!(
        store.claim("w2", LEASE, &ReadyQuery::default()).unwrap(),
        None
    );
    let b = store.get("t").unwrap();
    assert_eq!(b.status, Status::Open);
    assert_eq!(b.assignee.as_deref(), Some("planner"));
    assert!(
        b.comments
            .last()
            .unwrap()
            .text
            .contains("STALE SESSION DETECTED")
    );
    let c2 = store
        .claim("w2", LEASE, &ReadyQuery::default())
        .unwrap()
        .unwrap();
    assert_eq!(c2.bead_id, "t");
    assert!(matches!(
        store.heartbeat(&c1, LEASE),
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        store.release(&c1, Outcome::Done),
        Err(Error::LeaseLost { .. })
    ));
    store.release(&c2, Outcome::Done).unwrap();
}

#[test]
fn handoffs_are_typed_labelled_and_the_most_recent_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create(Bead::new("t", "t")).unwrap();
    assert_eq!(store.previous_handoff("t"), None);
    let mut h = Handoff {
        session_id: "s1".into(),
        timestamp: None,
        files_changed: vec!["a.rs".into()],
        current_state: "started".into(),
        next_steps: vec!["finish".into()],
        tokens_used: 10,
    };
    store.record_handoff("t", &h).unwrap();
    h.session_id = "s2".into();
    h.current_state = "almost".into();
    store.record_handoff("t", &h).unwrap();
    let got = store.previous_handoff("t").unwrap();
    assert_eq!(got.session_id, "s2");
    assert_eq!(got.current_state, "almost");
    assert!(got.timestamp.is_some());
    let b = store.get("t").unwrap();
    assert!(b.has_label("handoff:s1") && b.has_label("handoff:s2"));
    // Invalid session ids never reach a label.
    h.session_id = "s 3; rm".into();
    assert!(matches!(
        store.record_handoff("t", &h),
        Err(Error::Validation(_))
    ));
}

/// Seeds `n` beads; every fifth depends on the previous one, so claims unlock more work.
fn seed(store: &Store, n: usize) {
    store
        .transact(|tx| {
            for i in 0..n {
                let id = tx.create(Bead::new(format!("q{i:03}"), format!("task {i}")))?;
                if i % 5 == 4 {
                    tx.add_dependency(&id, &format!("q{:03}", i - 1), DepType::Blocks)?;
                }
            }
            Ok(())
        })
        .unwrap();
}

/// Walks the WAL in LSN order: no claim while held, every bead released done exactly once.
fn check_history(wal_dir: &std::path::Path, n: usize) {
    let wal = Wal::open_read_only(wal_dir, finn_wal::Options::default()).unwrap();
    let mut held: HashSet<String> = HashSet::new();
    let mut done: HashMap<String, usize> = HashMap::new();
    for r in wal.iter_from(Lsn::new(1)).unwrap() {
        let r = r.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        let Some(id) = v["bead"]["id"].as_str() else {
            continue;
        };
        for c in v["changes"].as_array().into_iter().flatten() {
            match c["op"].as_str() {
                Some("claim") => assert!(held.insert(id.to_owned()), "{id} claimed twice"),
                Some("release") => {
                    assert!(held.remove(id), "{id} released unheld");
                    if c["outcome"] == "done" {
                        *done.entry(id.to_owned()).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
    }
    assert!(held.is_empty());
    assert_eq!(done.len(), n);
    assert!(done.values().all(|&c| c == 1), "a bead was done twice");
}

/// One worker: claim, release done, until every bead is closed.
fn work(store: &Store, worker: &str) -> usize {
    let mut finished = 0;
    loop {
        match store.claim(worker, LEASE, &ReadyQuery::default()).unwrap() {
            Some(c) => {
                store.release(&c, Outcome::Done).unwrap();
                finished += 1;
            }
            None => {
                store.refresh().unwrap();
                if store.read(|s| s.beads().all(|b| b.status == Status::Closed)) {
                    return finished;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

#[test]
fn eight_threads_never_hold_the_same_bead_and_finish_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    seed(&store, 120);
    let holding = Arc::new(Mutex::new(HashSet::new()));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let holding = holding.clone();
            std::thread::spawn(move || {
                let worker = format!("t{t}");
                let mut n = 0;
                while let Some(c) = store.claim(&worker, LEASE, &ReadyQuery::default()).unwrap() {
                    assert!(holding.lock().unwrap().insert(c.bead_id.clone()));
                    std::thread::yield_now();
                    assert!(holding.lock().unwrap().remove(&c.bead_id));
                    store.release(&c, Outcome::Done).unwrap();
                    n += 1;
                }
                n + work(&store, &worker)
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 120);
    drop(store);
    check_history(&dir.path().join(finn_beads::WAL_DIR), 120);
}

const CHILD_ENV: &str = "FINN_BEADS_QUEUE_CHILD";

/// Child side of the 4-process test (does nothing unless started by it).
#[test]
fn queue_process_child_entry() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let worker = format!("p{}", std::process::id());
    let options = Options {
        sharing: Sharing::MultiProcess,
        ..Options::default()
    };
    let store = Store::open(&dir, options).unwrap();
    let n = work(&store, &worker);
    println!("FINISHED {n}");
}

#[test]
fn four_processes_never_hold_the_same_bead_and_finish_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        sharing: Sharing::MultiProcess,
        ..Options::default()
    };
    {
        let store = Store::open(dir.path(), options.clone()).unwrap();
        seed(&store, 60);
    }
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", "queue::queue_process_child_entry", "--nocapture"])
                .env(CHILD_ENV, dir.path())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "child failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let n: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("FINISHED "))
            .expect("child reported")
            .trim()
            .parse()
            .unwrap();
        total += n;
    }
    assert_eq!(total, 60);
    let store = Store::open(dir.path(), options).unwrap();
    assert!(store.read(|s| s.beads().all(|b| b.status == Status::Closed)));
    drop(store);
    check_history(&dir.path().join(finn_beads::WAL_DIR), 60);
}
