//! `bd ready` semantics on small graphs.

use std::time::Duration;

use finn_beads::{
    Bead, BlockReason, DepType, Dependency, Exclusion, FilterMiss, IssueType, Patch, Priority,
    ReadyQuery, SortPolicy, Status, Store,
};

use crate::util::{TestClock, open_with};

fn ids(store: &Store, q: &ReadyQuery, clock: &TestClock) -> Vec<String> {
    let now = clock.now();
    store.read(|s| s.ready(q, &now).iter().map(|b| b.id.clone()).collect())
}

fn bead(id: &str, p: u8) -> Bead {
    let mut b = Bead::new(id, id);
    b.priority = Priority(p);
    b
}

#[test]
fn blocking_edge_types_and_non_blocking_ones() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open_with(dir.path(), &clock);
    for id in ["blocker", "b", "r", "d", "c", "cond"] {
        store.create(bead(id, 2)).unwrap();
    }
    store
        .transact(|tx| {
            tx.add_dependency("b", "blocker", DepType::Blocks)?;
            tx.add_dependency("r", "blocker", DepType::Related)?;
            tx.add_dependency("d", "blocker", DepType::DiscoveredFrom)?;
            tx.add_dependency("cond", "blocker", DepType::ConditionalBlocks)?;
            Ok(())
        })
        .unwrap();
    let q = ReadyQuery::default();
    assert_eq!(ids(&store, &q, &clock), ["blocker", "c", "d", "r"]);
    // A successful close releases `blocks` but not `conditional-blocks` (runs only on failure).
    store
        .transact(|tx| Ok(tx.close("blocker", Some("done"))?))
        .unwrap();
    assert_eq!(ids(&store, &q, &clock), ["b", "c", "d", "r"]);
    store.read(|s| {
        let now = clock.now();
        let Some(Exclusion::Blocked { blockers }) = s.readiness(s.get("cond").unwrap(), &now)
        else {
            panic!("cond should stay blocked")
        };
        assert_eq!(blockers[0].reason, BlockReason::ConditionNotMet);
    });
    store.transact(|tx| Ok(tx.reopen("blocker")?)).unwrap();
    store
        .transact(|tx| Ok(tx.close("blocker", Some("Failed: tests timeout"))?))
        .unwrap();
    assert!(ids(&store, &q, &clock).contains(&"cond".to_owned()));
}

#[test]
fn waits_for_gates_on_the_spawners_children() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open_with(dir.path(), &clock);
    for id in ["spawner", "k1", "k2", "all"] {
        store.create(bead(id, 2)).unwrap();
    }
    store
        .transact(|tx| {
            tx.add_dependency("k1", "spawner", DepType::ParentChild)?;
            tx.add_dependency("k2", "spawner", DepType::ParentChild)?;
            tx.add_dependency("all", "spawner", DepType::WaitsFor)?;
            Ok(())
        })
        .unwrap();
    let mut any = Dependency::new("any", "spawner", DepType::WaitsFor);
    any.metadata = Some(serde_json::Value::String(
        r#"{"gate":"any-children"}"#.into(),
    ));
    store
        .transact(|tx| {
            let mut b = bead("any2", 2);
            b.dependencies.push(any);
            tx.create(b)?;
            Ok(())
        })
        .unwrap();
    let q = ReadyQuery::default();
    let r = ids(&store, &q, &clock);
    assert!(!r.contains(&"all".to_owned()) && !r.contains(&"any2".to_owned()));
    store.transact(|tx| Ok(tx.close("k1", None)?)).unwrap();
    let r = ids(&store, &q, &clock);
    assert!(
        !r.contains(&"all".to_owned()),
        "all-children gate opened early"
    );
    assert!(
        r.contains(&"any2".to_owned()),
        "any-children gate did not open"
    );
    store.transact(|tx| Ok(tx.close("k2", None)?)).unwrap();
    assert!(ids(&store, &q, &clock).contains(&"all".to_owned()));
}

#[test]
fn parent_child_blocking_is_transitive_and_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open_with(dir.path(), &clock);
    for id in ["gate", "epic", "story", "task", "free"] {
        store.create(bead(id, 2)).unwrap();
    }
    store
        .transact(|tx| {
            tx.add_dependency("story", "epic", DepType::ParentChild)?;
            tx.add_dependency("task", "story", DepType::ParentChild)?;
            Ok(())
        })
        .unwrap();
    let q = ReadyQuery::default();
    assert_eq!(ids(&store, &q, &clock).len(), 5);
    store
        .transact(|tx| Ok(tx.add_dependency("epic", "gate", DepType::Blocks)?))
        .unwrap();
    assert_eq!(ids(&store, &q, &clock), ["free", "gate"]);
    store.read(|s| {
        let blocked: Vec<_> = s.blocked().iter().map(|b| b.bead.id.clone()).collect();
        assert_eq!(blocked, ["epic", "story", "task"]);
    });
    // Removing the edge (not closing the blocker) unblocks the whole subtree.
    store
        .transact(|tx| Ok(tx.remove_dependency("epic", "gate", None)?))
        .unwrap();
    assert_eq!(ids(&store, &q, &clock).len(), 5);
    // A closed parent does not hold its children.
    store
        .transact(|tx| {
            tx.add_dependency("epic", "gate", DepType::Blocks)?;
            tx.close("story", None)?;
            Ok(())
        })
        .unwrap();
    assert!(ids(&store, &q, &clock).contains(&"task".to_owned()));
}

#[test]
fn deferral_sort_policies_filters_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open_with(dir.path(), &clock);
    // Old beads first (created 10 days ago), then recent ones.
    store.create(bead("old-p3", 3)).unwrap();
    clock.advance(Duration::from_secs(1));
    store.create(bead("old-p1", 1)).unwrap();
    clock.advance(Duration::from_secs(10 * 86400));
    store.create(bead("new-p2", 2)).unwrap();
    clock.advance(Duration::from_secs(1));
    let mut b = bead("new-p0", 0);
    b.labels = vec!["backend".into(), "urgent".into()];
    b.assignee = Some("alice".into());
    b.issue_type = IssueType::Bug;
    store.create(b).unwrap();
    let by = |sort| ReadyQuery {
        sort,
        ..ReadyQuery::default()
    };
    assert_eq!(
        ids(&store, &by(SortPolicy::Priority), &clock),
        ["new-p0", "old-p1", "new-p2", "old-p3"]
    );
    assert_eq!(
        ids(&store, &by(SortPolicy::Oldest), &clock),
        ["old-p3", "old-p1", "new-p2", "new-p0"]
    );
    assert_eq!(
        ids(&store, &by(SortPolicy::Hybrid), &clock),
        ["new-p0", "new-p2", "old-p3", "old-p1"]
    );
    let q = |f: &dyn Fn(&mut ReadyQuery)| {
        let mut q = ReadyQuery::default();
        f(&mut q);
        ids(&store, &q, &clock)
    };
    assert_eq!(q(&|q| q.assignee = Some("alice".into())), ["new-p0"]);
    assert_eq!(q(&|q| q.unassigned = true).len(), 3);
    assert_eq!(
        q(&|q| q.labels_all = vec!["backend".into(), "urgent".into()]),
        ["new-p0"]
    );
    assert!(q(&|q| q.labels_all = vec!["backend".into(), "nope".into()]).is_empty());
    assert_eq!(
        q(&|q| q.labels_any = vec!["nope".into(), "urgent".into()]),
        ["new-p0"]
    );
    assert_eq!(q(&|q| q.labels_exclude = vec!["urgent".into()]).len(), 3);
    assert_eq!(q(&|q| q.types = vec![IssueType::Bug]), ["new-p0"]);
    assert_eq!(
        q(&|q| q.priorities = vec![Priority(1), Priority(3)]),
        ["old-p1", "old-p3"]
    );
    assert_eq!(q(&|q| q.limit = Some(2)), ["new-p0", "old-p1"]);

    // Deferred until later: out now, back once the time passes.
    let until = finn_beads::Timestamp::from_system_time(
        clock.now().to_system_time() + Duration::from_secs(60),
    );
    store
        .transact(|tx| Ok(tx.defer("new-p0", Some(until))?))
        .unwrap();
    assert!(!q(&|_| {}).contains(&"new-p0".to_owned()));
    clock.advance(Duration::from_secs(61));
    assert!(q(&|_| {}).contains(&"new-p0".to_owned()));

    // Explain names the filter that excluded each bead.
    let now = clock.now();
    store.read(|s| {
        let query = ReadyQuery {
            assignee: Some("alice".into()),
            ..ReadyQuery::default()
        };
        let e = s.explain(&query, &now);
        assert_eq!(e.ready.len(), 1);
        assert!(e.excluded.iter().all(|x| x.reason
            == Exclusion::Filter {
                filter: FilterMiss::Assignee
            }));
    });
}

#[test]
fn parent_filter_status_and_epic_progress() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let store = open_with(dir.path(), &clock);
    let mut epic = bead("epic", 1);
    epic.issue_type = IssueType::Epic;
    store.create(epic).unwrap();
    for id in ["t1", "t2", "t3", "t4"] {
        let mut b = bead(id, 2);
        b.dependencies
            .push(Dependency::new(id, "epic", DepType::ParentChild));
        store.create(b).unwrap();
    }
    store.create(bead("other", 0)).unwrap();
    store
        .transact(|tx| {
            tx.close("t1", None)?;
            tx.set_status("t2", Status::InProgress)?;
            tx.add_dependency("t3", "t4", DepType::Blocks)?;
            tx.update(
                "t4",
                Patch {
                    title: Some("renamed".into()),
                    ..Patch::default()
                },
            )?;
            Ok(())
        })
        .unwrap();
    let q = ReadyQuery {
        parent: Some("epic".into()),
        ..ReadyQuery::default()
    };
    assert_eq!(ids(&store, &q, &clock), ["t4"]);
    let now = clock.now();
    store.read(|s| {
        let p = s.epic_progress("epic", &now);
        assert_eq!(
            (p.total, p.closed, p.in_progress, p.blocked, p.ready),
            (4, 1, 1, 1, 1)
        );
        assert_eq!(p.percent, 25);
    });
}
