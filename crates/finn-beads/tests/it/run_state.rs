//! Run state (anchors.md §6.4): labels as a state machine, as typed atomic operations.

use finn_beads::{
    Bead, IssueType, RunState, SprintState, State, Status, derive_run_state, derive_sprint_state,
    labels, parse_same_issue, same_issue_label,
};

use crate::util::open;

fn l(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn derivations_follow_the_anchor_priorities() {
    assert_eq!(derive_run_state(&l(&[])), RunState::Ready);
    assert_eq!(derive_run_state(&l(&["run:current"])), RunState::Running);
    assert_eq!(
        derive_run_state(&l(&["run:current", "sprint:complete"])),
        RunState::Complete
    );
    assert_eq!(
        derive_run_state(&l(&["run:current", "sprint:complete", "circuit-breaker"])),
        RunState::Halted
    );
    assert_eq!(derive_sprint_state(&l(&[])), SprintState::Pending);
    assert_eq!(
        derive_sprint_state(&l(&["sprint:pending", "sprint:in_progress"])),
        SprintState::InProgress
    );
    assert_eq!(
        derive_sprint_state(&l(&["sprint:in_progress", "sprint:complete"])),
        SprintState::Complete
    );
    assert_eq!(same_issue_label(3), "same-issue-3x");
    assert_eq!(parse_same_issue("same-issue-3x"), Some(3));
    assert_eq!(parse_same_issue("same-issue-0x"), Some(0));
    assert_eq!(parse_same_issue("same-issue-x"), None);
    assert_eq!(parse_same_issue("same-issue-3"), None);
    assert_eq!(parse_same_issue("other"), None);
    assert_eq!(State::new().run_state(), RunState::Ready);
}

#[test]
fn run_lifecycle_start_sprints_halt_resume_complete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for id in ["s1", "s2"] {
        store.create(Bead::new(id, id)).unwrap();
    }
    assert_eq!(store.run_state(), RunState::Ready);
    // Invalid ids are refused before anything is written.
    let lsn = store.lsn();
    assert!(store.start_run(&["s1", "../x"]).is_err());
    assert_eq!(store.lsn(), lsn);

    let run = store.start_run(&["s1", "s2"]).unwrap();
    let epic = store.get(&run).unwrap();
    assert_eq!(epic.issue_type, IssueType::Epic);
    assert!(epic.title.starts_with("Run: "));
    assert!(epic.has_label(labels::RUN_CURRENT) && epic.has_label(labels::RUN_EPIC));
    let s1 = store.get("s1").unwrap();
    assert!(s1.has_label("sprint:1") && s1.has_label(labels::SPRINT_PENDING));
    assert!(s1.has_label(&format!("run:{run}")));
    assert_eq!(store.run_state(), RunState::Running);

    store.start_sprint("s1").unwrap();
    let s1 = store.get("s1").unwrap();
    assert!(!s1.has_label(labels::SPRINT_PENDING) && s1.has_label(labels::SPRINT_IN_PROGRESS));
    assert_eq!(
        store.read(|s| s.current_sprint().map(|b| b.id.clone())),
        Some("s1".into())
    );

    let cb = store.halt_run("tests keep failing").unwrap();
    assert_eq!(store.run_state(), RunState::Halted);
    let b = store.get(&cb).unwrap();
    assert_eq!(b.title, "Circuit Breaker: Sprint s1");
    assert_eq!(b.issue_type, IssueType::Debt);
    assert!(b.has_label("same-issue-1x"));
    assert_eq!(b.comments[0].text, "Triggered: tests keep failing");
    let cb2 = store.create_circuit_breaker("s1", "again", 3).unwrap();
    let active = store.read(|s| s.active_circuit_breakers());
    assert_eq!(active.len(), 2);
    assert_eq!(active.iter().map(|c| c.failure_count).max(), Some(3));
    // Resolving one breaker keeps the run halted while another is open.
    store.resolve_circuit_breaker(&cb).unwrap();
    assert_eq!(store.run_state(), RunState::Halted);
    let resumed = store.resume_run().unwrap();
    assert_eq!(resumed, std::slice::from_ref(&cb2));
    assert_eq!(store.get(&cb2).unwrap().status, Status::Closed);
    assert_eq!(store.run_state(), RunState::Running);

    store.complete_sprint("s1").unwrap();
    assert_eq!(store.get("s1").unwrap().status, Status::Closed);
    assert_eq!(store.run_state(), RunState::Running, "s2 still pending");
    store.start_sprint("s2").unwrap();
    store.complete_sprint("s2").unwrap();
    assert_eq!(store.run_state(), RunState::Complete);

    // A new run takes run:current from the previous one (the anchors never removed it).
    store.create(Bead::new("s3", "s3")).unwrap();
    let run2 = store.start_run(&["s3"]).unwrap();
    assert!(!store.get(&run).unwrap().has_label(labels::RUN_CURRENT));
    assert_eq!(
        store.read(|s| s.current_run().map(|b| b.id.clone())),
        Some(run2)
    );
    assert_eq!(store.run_state(), RunState::Running);
}
