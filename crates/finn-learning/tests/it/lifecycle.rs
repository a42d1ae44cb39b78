//! The lifecycle, its audit trail, effectiveness and ranking.

use finn_learning::{Action, Status, Target};

use crate::util::{good, good_about, open};

#[test]
fn full_lifecycle_is_audited_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let (store, _) = open(dir.path());
        let id = store.add(good(Target::Loa)).unwrap().id;
        store.approve(&id, "alice").unwrap();
        store.activate(&id, "alice").unwrap();
        assert_eq!(store.find_matching("deploy build error", 5).len(), 1);
        store.archive(&id, "bob").unwrap();
        assert!(store.find_matching("deploy build error", 5).is_empty());
        store
            .transition(&id, Action::Restore, "carol", Some("still relevant"))
            .unwrap();
        id
    };
    let (store, _) = open(dir.path());
    let h = store.history(&id);
    let steps: Vec<_> = h
        .iter()
        .map(|t| (t.seq, t.from, t.to, t.by.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            (1, Status::Pending, Status::Approved, "alice"),
            (2, Status::Approved, Status::Active, "alice"),
            (3, Status::Active, Status::Archived, "bob"),
            (4, Status::Archived, Status::Active, "carol"),
        ]
    );
    assert!(h.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(h[3].reason.as_deref(), Some("still relevant"));
    assert_eq!(store.get(&id).unwrap().status, Status::Active);
    assert_eq!(
        store.find_matching("deploy build error", 5).len(),
        1,
        "index rebuilt on open"
    );
}

#[test]
fn unknown_ids_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let ghost = finn_learning::LearningId::generate();
    assert!(matches!(
        store.approve(&ghost, "x"),
        Err(finn_learning::TransitionError::NotFound { .. })
    ));
    assert!(matches!(
        store.record_application(&ghost, true),
        Err(finn_learning::TransitionError::NotFound { .. })
    ));
}

#[test]
fn effectiveness_reorders_retrieval_and_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let a = store.add(good_about("redis", Target::Openclaw)).unwrap().id;
    let b = store.add(good_about("nginx", Target::Openclaw)).unwrap().id;
    // Both match equally well on the shared words; ties go by id (a was created first).
    let ctx = "the service step fails with an error";
    let order = |s: &finn_learning::LearningStore| -> Vec<_> {
        s.find_matching(ctx, 5)
            .into_iter()
            .map(|f| f.learning.id)
            .collect()
    };
    assert_eq!(order(&store), [a.clone(), b.clone()]);
    for _ in 0..3 {
        store.record_application(&a, false).unwrap();
        store.record_application(&b, true).unwrap();
    }
    assert_eq!(order(&store), [b.clone(), a.clone()]);
    assert_eq!(store.ranked(1)[0].id, b);
    // The order holds after a restart (weights come from the WAL).
    drop(store);
    let (store, _) = open(dir.path());
    assert_eq!(order(&store), [b, a]);
}

#[test]
fn stats_count_by_status_and_target() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store.add(good(Target::Loa)).unwrap();
    store.add(good_about("redis", Target::Openclaw)).unwrap();
    store
        .add(good_about("nginx", Target::Devcontainer))
        .unwrap();
    let s = store.stats();
    assert_eq!(s.total, 3);
    assert_eq!(s.pending, 1);
    assert_eq!(s.by_status[&Status::Active], 2);
    assert_eq!(s.by_target["openclaw"], 1);
    assert_eq!(store.by_target(Target::Loa).len(), 1);
}

#[test]
fn add_refuses_malformed_tags_and_huge_text() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let err = store
        .add(good(Target::Openclaw).with_tags(["Bad Tag"]))
        .unwrap_err();
    assert!(matches!(
        err,
        finn_learning::AddError::Invalid { field: "tags", .. }
    ));
    let mut huge = good(Target::Openclaw);
    huge.solution = "x".repeat(finn_learning::MAX_TEXT_LEN + 1);
    assert!(matches!(
        store.add(huge),
        Err(finn_learning::AddError::Invalid {
            field: "solution",
            ..
        })
    ));
    assert!(store.is_empty());
}
