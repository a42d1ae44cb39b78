//! The cascade with in-process sources, and the anchors' recovery scenarios.
//!
//! Every scenario of `anchors.md` §11.3 and §12 (f), and where its equivalent lives:
//!
//! | anchors scenario | finn test |
//! |---|---|
//! | cascades through sources until one succeeds (mount null, git wins, template not called) | `cascades_through_sources_until_one_succeeds` |
//! | falls through unavailable sources to template (`default.json` = "{}") | `falls_through_unavailable_sources_to_template` (DEGRADED in finn: a template is not the agent's state) |
//! | detects recovery loop after N failures in window (3 in 1000 ms, +100 ms, 4th LOOP_DETECTED) | `detects_a_loop_after_three_failed_boots_in_the_window`, `boot_loop::*` (real processes) |
//! | enters DEGRADED when all sources fail (`all_sources_failed`) | `all_remote_sources_fail_template_is_degraded`, `nothing_at_all_is_all_sources_failed_with_every_reason` |
//! | ManifestSigner round trip; changing `version` fails | `tamper::modified_manifest_entry_is_refused`, finn-checkpoint `manifest::every_byte_is_covered` |
//! | generates Ed25519 key pairs (PEM); verify-only signer cannot sign | finn-checkpoint `sign::pem_raw_and_hex_round_trip` (a `VerifyingKey` has no signing method at all) |
//! | integration: mount unavailable (restore not called), git null (called), template wins; events | `falls_through_to_template_when_mount_fails_with_events` |
//! | integration: DEGRADED when all fail, then recovers on next try via git | `degraded_then_recovers_on_next_boot` |
//! | integration: circuit breaker OPEN makes the source unavailable | `an_open_breaker_makes_the_object_store_unavailable` (end_to_end; finn-checkpoint's `Remote` goes through finn-breaker) |
//! | finn: falls back to template when R2/git unavailable (BEAUVOIR.md created) | `end_to_end::both_gone_template_degraded` |
//! | finn: detects existing local WAL and replays (source local, 2 entries) | `existing_local_state_and_wal_are_kept` |
//! | cascade: selects highest-priority available source | `sources_run_by_tier_then_in_order_added` |
//! | cascade: skips unavailable sources / source that throws on restore | `falls_through_to_template_when_mount_fails_with_events`, `cascades_through_sources_until_one_succeeds` |
//! | cascade: skips source that fails validation / passes when valid | `validators_refuse_a_source_and_accept_the_next` |
//! | cascade: SYN_001 when all fail / on empty sources | `nothing_at_all_is_all_sources_failed_with_every_reason` |
//! | cascade: per-source timeout (slow source loses, "timed out") | `a_hanging_source_times_out_and_the_next_wins` |
//! | cascade: total budget enforced | `overall_deadline_falls_back_to_template` |
//! | cascade: FR-5.1 WAL corrupt, R2 available → R2 selected | `corrupt_local_wal_is_set_aside_and_remote_restores` |
//! | cascade: records attempt durations | `report_records_phase_durations` |
//! | security: KeyManager generate / retire / revoke / unknown key | `tamper::revoked_key_is_refused`, `tamper::unknown_key_is_refused`, `tamper::retired_but_trusted_key_still_verifies` |
//! | security: AuditLogger chain | not a recovery concern in finn: the WAL's CRC-framed `Kind::Audit` records replace it (finn-wal) |
//! | §12 (f) R2 restore of a multi-batch history reproduces every entry | `end_to_end::lose_data_dir_restores_from_object_store_and_shipped_wal` (many batches) |

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use finn_recovery::{
    Cascade, CascadeError, DegradedReason, Event, Layout, LoopPolicy, Mode, SourceKind, State,
    TemplateSource, Timeouts, Validators, Warning,
};
use finn_wal::{Kind, NewRecord, Wal};

use crate::util::*;

fn template() -> TemplateSource {
    TemplateSource::bundled("template")
        .with_file("default.json", b"{}".to_vec())
        .unwrap()
}

fn builder(data: &std::path::Path) -> finn_recovery::CascadeBuilder {
    Cascade::builder(Layout::new(data)).wal_options(wal_options())
}

#[tokio::test]
async fn cascades_through_sources_until_one_succeeds() {
    let data = tempfile::tempdir().unwrap();
    let mount = Arc::new(
        FakeSource::new("mount", SourceKind::ObjectStore, state("m", 2))
            .behaving(Behaviour::FailStage),
    );
    let mut git_files = std::collections::BTreeMap::new();
    git_files.insert("notes.md".to_string(), b"from git".to_vec());
    let git = Arc::new(FakeSource::new("git", SourceKind::Git, git_files.clone()));
    let tpl = Arc::new(FakeSource::new(
        "template",
        SourceKind::Template,
        state("t", 1),
    ));
    let recovery = builder(data.path())
        .shared_source(tpl.clone())
        .shared_source(git.clone())
        .shared_source(mount.clone())
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report();
    assert_eq!(report.state, State::Running);
    assert_eq!(report.source.as_ref().unwrap().name, "git");
    assert_eq!(report.files_restored, 1);
    assert_eq!(read_tree(&data.path().join("state")), git_files);
    assert_eq!(mount.stage_calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        tpl.stage_calls.load(Ordering::SeqCst),
        0,
        "template.restore not called"
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| matches!(w, Warning::CandidateSkipped { source, .. } if source == "mount"))
    );
}

#[tokio::test]
async fn falls_through_unavailable_sources_to_template() {
    let data = tempfile::tempdir().unwrap();
    let mount = FakeSource::new("mount", SourceKind::ObjectStore, state("m", 2))
        .behaving(Behaviour::Unavailable);
    let git =
        FakeSource::new("git", SourceKind::Git, state("g", 2)).behaving(Behaviour::Unavailable);
    let recovery = builder(data.path())
        .source(mount)
        .source(git)
        .source(template())
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report();
    assert_eq!(report.state, State::Degraded);
    assert_eq!(report.degraded, Some(DegradedReason::TemplateOnly));
    assert_eq!(
        report.source.as_ref().unwrap().kind,
        Some(SourceKind::Template)
    );
    assert_eq!(
        std::fs::read(data.path().join("state/default.json")).unwrap(),
        b"{}"
    );
}

#[tokio::test]
async fn falls_through_to_template_when_mount_fails_with_events() {
    let data = tempfile::tempdir().unwrap();
    let events = Events::default();
    let mount = Arc::new(
        FakeSource::new("mount", SourceKind::ObjectStore, state("m", 2))
            .behaving(Behaviour::Unavailable),
    );
    let git = Arc::new(
        FakeSource::new("git", SourceKind::Git, state("g", 2)).behaving(Behaviour::FailStage),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let recovery = builder(data.path())
        .shared_source(mount.clone())
        .shared_source(git.clone())
        .source(template())
        .on_event(events.callback())
        .events_to(tx)
        .build()
        .run()
        .await
        .unwrap();
    assert_eq!(recovery.report().state, State::Degraded);
    assert_eq!(
        mount.stage_calls.load(Ordering::SeqCst),
        0,
        "unavailable: restore not called"
    );
    assert_eq!(
        git.stage_calls.load(Ordering::SeqCst),
        1,
        "git restore called"
    );
    let all = events.all();
    assert!(
        all.iter()
            .any(|e| matches!(e, Event::SourceUnavailable { source, .. } if source == "mount"))
    );
    assert!(
        all.iter()
            .any(|e| matches!(e, Event::SourceFailed { source, .. } if source == "git"))
    );
    assert!(
        all.iter()
            .any(|e| matches!(e, Event::Staged { source, .. } if source == "template"))
    );
    assert!(matches!(
        all.last(),
        Some(Event::Finished {
            state: State::Degraded
        })
    ));
    assert_eq!(
        events.transitions(),
        [
            "CHECK_INTEGRITY",
            "RESTORE_OBJECT_STORE",
            "RESTORE_GIT",
            "RESTORE_TEMPLATE",
            "VERIFY",
            "REPLAY_WAL",
            "DEGRADED"
        ]
    );
    // The channel saw the same sequence.
    let mut from_channel = Vec::new();
    while let Ok(e) = rx.try_recv() {
        from_channel.push(e);
    }
    assert_eq!(from_channel, all);
}

#[tokio::test]
async fn detects_a_loop_after_three_failed_boots_in_the_window() {
    // anchors: max 3, window 1000 ms, clock +100 ms between runs: 3 failing runs, 4th LOOP_DETECTED.
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(1_700_000_000_000);
    let policy = LoopPolicy {
        max_failures: 3,
        window: Duration::from_millis(1000),
    };
    let remote = Arc::new(
        FakeSource::new("remote", SourceKind::ObjectStore, state("r", 2))
            .behaving(Behaviour::FailStage),
    );
    let cascade = || {
        builder(data.path())
            .loop_policy(policy)
            .clock(clock.clone())
            .shared_source(remote.clone())
    };
    for _ in 0..3 {
        let err = cascade().build().run().await.unwrap_err();
        assert!(
            matches!(err, CascadeError::AllSourcesFailed { .. }),
            "{err}"
        );
        clock.advance(Duration::from_millis(100));
    }
    let calls = remote.stage_calls.load(Ordering::SeqCst);
    let recovery = cascade().source(template()).build().run().await.unwrap();
    let report = recovery.report();
    assert_eq!(report.state, State::LoopDetected);
    assert!(matches!(
        report.degraded,
        Some(DegradedReason::BootLoop { failures: 3, .. })
    ));
    assert_eq!(
        remote.stage_calls.load(Ordering::SeqCst),
        calls,
        "no remote restore in a loop"
    );
    assert_eq!(
        report.source.as_ref().unwrap().kind,
        Some(SourceKind::Template)
    );
    drop(recovery);
    // After the window the failures have aged out: remote sources are tried again.
    clock.advance(Duration::from_millis(1000));
    remote.set(Behaviour::Good);
    let recovery = cascade().build().run().await.unwrap();
    assert_eq!(recovery.report().state, State::Running);
    assert_eq!(recovery.report().source.as_ref().unwrap().name, "remote");
}

#[tokio::test]
async fn strict_mode_refuses_a_boot_loop_and_a_template() {
    let data = tempfile::tempdir().unwrap();
    let err = builder(data.path())
        .mode(Mode::Strict)
        .source(template())
        .build()
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CascadeError::StrictRefused {
                reason: DegradedReason::TemplateOnly,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        !data.path().join("state").exists(),
        "strict mode installed nothing"
    );
    assert_eq!(err.report().unwrap().state, State::Failed);
}

#[tokio::test]
async fn all_remote_sources_fail_template_is_degraded() {
    let data = tempfile::tempdir().unwrap();
    let a =
        FakeSource::new("a", SourceKind::ObjectStore, state("a", 2)).behaving(Behaviour::FailStage);
    let b = FakeSource::new("b", SourceKind::Git, state("b", 2)).behaving(Behaviour::WrongHash);
    let recovery = builder(data.path())
        .source(a)
        .source(b)
        .source(template())
        .build()
        .run()
        .await
        .unwrap();
    assert_eq!(recovery.report().state, State::Degraded);
    let skipped: Vec<_> = recovery
        .report()
        .warnings
        .iter()
        .filter_map(|w| match w {
            Warning::CandidateSkipped { source, reason, .. } => {
                Some((source.clone(), reason.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped[1].1.contains("does not match its hash"),
        "{skipped:?}"
    );
}

#[tokio::test]
async fn nothing_at_all_is_all_sources_failed_with_every_reason() {
    let data = tempfile::tempdir().unwrap();
    let err = builder(data.path()).build().run().await.unwrap_err();
    assert!(
        matches!(&err, CascadeError::AllSourcesFailed { failures, .. } if failures.is_empty()),
        "{err}"
    );
    let a = FakeSource::new("a", SourceKind::ObjectStore, state("a", 2))
        .behaving(Behaviour::Unavailable);
    let t = TemplateSource::bundled("empty-template");
    let err = builder(data.path())
        .source(a)
        .source(t)
        .build()
        .run()
        .await
        .unwrap_err();
    match err {
        CascadeError::AllSourcesFailed { failures, report } => {
            let names: Vec<_> = failures.iter().map(|f| f.source.as_str()).collect();
            assert_eq!(names, ["a", "empty-template"]);
            assert_eq!(report.state, State::Failed);
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn existing_local_state_and_wal_are_kept() {
    let data = tempfile::tempdir().unwrap();
    let layout = Layout::new(data.path());
    write_tree(layout.state_dir(), &state("local", 3));
    {
        let (wal, _) = Wal::open(layout.wal_dir(), wal_options()).unwrap();
        wal.append(NewRecord::put(Kind::Session, "s1", "a"))
            .unwrap();
        wal.append(NewRecord::put(Kind::Session, "s2", "b"))
            .unwrap();
    }
    let remote = Arc::new(FakeSource::new(
        "remote",
        SourceKind::ObjectStore,
        state("r", 2),
    ));
    let recovery = builder(data.path())
        .shared_source(remote.clone())
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report();
    assert_eq!(report.state, State::Running);
    assert_eq!(report.source.as_ref().unwrap().name, "local");
    assert_eq!(report.wal_last_lsn.get(), 2);
    assert_eq!(report.wal_first_lsn.map(|l| l.get()), Some(1));
    assert_eq!(remote.available_calls.load(Ordering::SeqCst), 0);
    assert_eq!(read_tree(layout.state_dir()), state("local", 3));
    assert_eq!(recovery.wal().last_lsn().get(), 2);
}

#[tokio::test]
async fn degraded_then_recovers_on_next_boot() {
    let data = tempfile::tempdir().unwrap();
    let git = Arc::new(
        FakeSource::new("git", SourceKind::Git, state("g", 2)).behaving(Behaviour::Unavailable),
    );
    let cascade = || {
        builder(data.path())
            .shared_source(git.clone())
            .source(template())
    };
    let first = cascade().build().run().await.unwrap();
    assert_eq!(first.report().state, State::Degraded);
    drop(first);
    // Still unavailable: the template-derived local state is kept, still degraded, not re-templated.
    let second = cascade().build().run().await.unwrap();
    assert_eq!(second.report().state, State::Degraded);
    assert_eq!(second.report().source.as_ref().unwrap().name, "local");
    drop(second);
    git.set(Behaviour::Good);
    let third = cascade().build().run().await.unwrap();
    assert_eq!(third.report().state, State::Running);
    assert_eq!(third.report().source.as_ref().unwrap().name, "git");
    assert_eq!(read_tree(&data.path().join("state")), state("g", 2));
    // The template-derived state was kept aside, not deleted.
    let kept = third
        .report()
        .set_aside
        .iter()
        .find(|p| p.to_string_lossy().ends_with("replaced-state"))
        .unwrap();
    assert_eq!(std::fs::read(kept.join("default.json")).unwrap(), b"{}");
    drop(third);
    // And now the local state is the real one: kept without asking anyone.
    let fourth = cascade().build().run().await.unwrap();
    assert_eq!(fourth.report().source.as_ref().unwrap().name, "local");
    assert_eq!(fourth.report().state, State::Running);
}

#[tokio::test]
async fn sources_run_by_tier_then_in_order_added() {
    let data = tempfile::tempdir().unwrap();
    let first = FakeSource::new("first", SourceKind::ObjectStore, state("1", 1));
    let second = FakeSource::new("second", SourceKind::ObjectStore, state("2", 1));
    let git = FakeSource::new("git", SourceKind::Git, state("g", 1));
    let recovery = builder(data.path())
        .source(git)
        .source(first)
        .source(second)
        .build()
        .run()
        .await
        .unwrap();
    assert_eq!(recovery.report().source.as_ref().unwrap().name, "first");
}

#[tokio::test]
async fn validators_refuse_a_source_and_accept_the_next() {
    let data = tempfile::tempdir().unwrap();
    let mut bad = std::collections::BTreeMap::new();
    bad.insert("config.json".to_string(), b"{not json".to_vec());
    let mut good = std::collections::BTreeMap::new();
    good.insert("config.json".to_string(), b"{\"ok\":true}".to_vec());
    let validators = Validators::new().file("config.json", |b: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(b).map(drop)
    });
    let recovery = builder(data.path())
        .validators(validators)
        .source(FakeSource::new("bad", SourceKind::ObjectStore, bad))
        .source(FakeSource::new("good", SourceKind::Git, good.clone()))
        .build()
        .run()
        .await
        .unwrap();
    assert_eq!(recovery.report().source.as_ref().unwrap().name, "good");
    assert_eq!(read_tree(&data.path().join("state")), good);
    assert!(recovery.report().warnings.iter().any(
        |w| matches!(w, Warning::CandidateSkipped { source, reason, .. } if source == "bad" && reason.contains("failed validation"))
    ));
}

#[tokio::test]
async fn a_template_that_fails_its_validators_is_never_installed() {
    // anchors §4.5-8: the templates the engines wrote did not parse.
    let data = tempfile::tempdir().unwrap();
    let tpl = TemplateSource::bundled("broken")
        .with_file("identity.json", b"{".to_vec())
        .unwrap();
    let validators = Validators::new().file("identity.json", |b: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(b).map(drop)
    });
    let err = builder(data.path())
        .validators(validators)
        .source(tpl)
        .build()
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, CascadeError::AllSourcesFailed { .. }));
    assert!(!data.path().join("state").exists());
}

#[tokio::test]
async fn a_hanging_source_times_out_and_the_next_wins() {
    let data = tempfile::tempdir().unwrap();
    let slow = FakeSource::new("slow", SourceKind::ObjectStore, state("s", 3))
        .behaving(Behaviour::HangStage);
    let fast = FakeSource::new("fast", SourceKind::Git, state("f", 2));
    let timeouts = Timeouts {
        restore: Duration::from_millis(200),
        ..Timeouts::default()
    };
    let recovery = builder(data.path())
        .timeouts(timeouts)
        .source(slow)
        .source(fast)
        .build()
        .run()
        .await
        .unwrap();
    assert_eq!(recovery.report().source.as_ref().unwrap().name, "fast");
    assert!(recovery.report().warnings.iter().any(
        |w| matches!(w, Warning::SourceFailed { source, reason } if source == "slow" && reason.contains("timed out"))
    ));
    // The cancelled source's partial staging directory is gone; the state is exactly `fast`'s.
    assert_eq!(read_tree(&data.path().join("state")), state("f", 2));
    assert_eq!(
        std::fs::read_dir(data.path().join("recovery/staging"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn overall_deadline_falls_back_to_template() {
    let data = tempfile::tempdir().unwrap();
    let hang = FakeSource::new("hang", SourceKind::ObjectStore, state("h", 1))
        .behaving(Behaviour::HangAvailable);
    let never = Arc::new(FakeSource::new("never", SourceKind::Git, state("n", 1)));
    let timeouts = Timeouts {
        overall: Duration::from_millis(150),
        ..Timeouts::default()
    };
    let recovery = builder(data.path())
        .timeouts(timeouts)
        .source(hang)
        .shared_source(never.clone())
        .source(template())
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report();
    assert_eq!(report.state, State::Degraded);
    assert_eq!(report.degraded, Some(DegradedReason::DeadlineExceeded));
    assert_eq!(
        never.available_calls.load(Ordering::SeqCst),
        0,
        "deadline passed: not tried"
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| matches!(w, Warning::DeadlineExceeded { .. }))
    );
}

#[tokio::test]
async fn corrupt_local_wal_is_set_aside_and_remote_restores() {
    let data = tempfile::tempdir().unwrap();
    let layout = Layout::new(data.path());
    write_tree(layout.state_dir(), &state("local", 2));
    {
        let (wal, _) = Wal::open(layout.wal_dir(), wal_options()).unwrap();
        for i in 0..20 {
            wal.append(NewRecord::put(Kind::State, format!("k{i}"), vec![7u8; 100]))
                .unwrap();
        }
    }
    // Flip bytes in the middle of the first segment: interior damage, not a torn tail.
    let segment = std::fs::read_dir(layout.wal_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 1000)
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let mid = bytes.len() / 3;
    for b in &mut bytes[mid..mid + 8] {
        *b ^= 0xff;
    }
    std::fs::write(&segment, bytes).unwrap();

    let remote = FakeSource::new("r2", SourceKind::ObjectStore, state("r2", 2));
    let recovery = builder(data.path())
        .source(remote)
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report();
    assert_eq!(report.source.as_ref().unwrap().name, "r2", "{report:#?}");
    assert_eq!(read_tree(layout.state_dir()), state("r2", 2));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| matches!(w, Warning::LocalIntegrity { .. }))
    );
    let kept_wal = report
        .set_aside
        .iter()
        .find(|p| p.to_string_lossy().ends_with("corrupt-wal"))
        .unwrap();
    assert!(
        kept_wal.join(segment.file_name().unwrap()).exists(),
        "corrupt WAL kept, not deleted"
    );
}

#[tokio::test]
async fn report_records_phase_durations() {
    let data = tempfile::tempdir().unwrap();
    let recovery = builder(data.path())
        .source(FakeSource::new("r", SourceKind::ObjectStore, state("r", 2)))
        .build()
        .run()
        .await
        .unwrap();
    let phases: Vec<_> = recovery.report().phases.iter().map(|p| p.state).collect();
    assert_eq!(
        phases,
        [
            State::Start,
            State::CheckIntegrity,
            State::RestoreObjectStore,
            State::Verify,
            State::ReplayWal
        ]
    );
    assert!(recovery.report().total >= recovery.report().phase(State::Verify));
}

#[tokio::test]
async fn shipped_records_after_the_base_are_restored_into_the_local_wal() {
    let data = tempfile::tempdir().unwrap();
    let shipped = records(1, 30);
    let remote =
        FakeSource::new("r", SourceKind::ObjectStore, state("r", 2)).at_lsn(10, shipped.clone());
    let recovery = builder(data.path())
        .source(remote)
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report().clone();
    assert_eq!(report.state, State::Running);
    assert_eq!(report.replay_from.map(|l| l.get()), Some(11));
    assert_eq!(report.wal_records_restored, 20);
    let lsn = recovery
        .wal()
        .append(NewRecord::event(Kind::Session, "next"))
        .unwrap();
    assert_eq!(
        lsn.get(),
        31,
        "the WAL continues above the restored records"
    );
    drop(recovery);
    let local = wal_records(&data.path().join("wal"));
    assert_eq!(
        &local[..20],
        &shipped[10..],
        "restored verbatim: LSN, id, timestamp, payload"
    );
}

#[tokio::test]
async fn a_hole_in_the_shipped_wal_is_degraded_and_reported() {
    let data = tempfile::tempdir().unwrap();
    let mut shipped = records(1, 30);
    shipped.retain(|r| r.lsn.get() != 20);
    // The source knows the lineage and follows its chain, so it reports the hole itself (a
    // jump in a verified chain is a fork's history, not a hole).
    let remote = FakeSource::new("r", SourceKind::ObjectStore, state("r", 2))
        .at_lsn(10, shipped)
        .of_lineage(finn_checkpoint::LineageId::generate());
    let recovery = builder(data.path())
        .source(remote)
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report();
    assert_eq!(report.state, State::Degraded);
    assert!(matches!(
        report.degraded,
        Some(DegradedReason::WalIncomplete { last_lsn, missing_from }) if last_lsn.get() == 19 && missing_from.get() == 20
    ));
    assert_eq!(recovery.wal().last_lsn().get(), 19);
}

#[tokio::test]
async fn clean_mode_keeps_everything_aside_and_starts_from_the_template() {
    let data = tempfile::tempdir().unwrap();
    let layout = Layout::new(data.path());
    write_tree(layout.state_dir(), &state("old", 3));
    {
        let (wal, _) = Wal::open(layout.wal_dir(), wal_options()).unwrap();
        wal.append(NewRecord::event(Kind::Session, "old")).unwrap();
    }
    let remote = Arc::new(FakeSource::new("r", SourceKind::ObjectStore, state("r", 1)));
    let recovery = builder(data.path())
        .mode(Mode::Clean)
        .shared_source(remote.clone())
        .source(template())
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report();
    assert_eq!(report.state, State::Running);
    assert_eq!(remote.available_calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        read_tree(layout.state_dir()).keys().collect::<Vec<_>>(),
        ["default.json"]
    );
    assert_eq!(recovery.wal().last_lsn().get(), 0);
    let old_state = report
        .set_aside
        .iter()
        .find(|p| p.to_string_lossy().ends_with("clean-state"))
        .unwrap();
    assert_eq!(read_tree(old_state), state("old", 3));
    assert!(
        report
            .set_aside
            .iter()
            .any(|p| p.to_string_lossy().ends_with("clean-wal"))
    );
}

#[tokio::test]
async fn a_symlink_in_the_local_state_fails_integrity_and_is_kept_aside() {
    let data = tempfile::tempdir().unwrap();
    let layout = Layout::new(data.path());
    write_tree(layout.state_dir(), &state("local", 2));
    std::os::unix::fs::symlink("/etc/passwd", layout.state_dir().join("evil")).unwrap();
    let recovery = builder(data.path())
        .source(FakeSource::new("r", SourceKind::ObjectStore, state("r", 2)))
        .build()
        .run()
        .await
        .unwrap();
    assert_eq!(recovery.report().source.as_ref().unwrap().name, "r");
    assert_eq!(read_tree(layout.state_dir()), state("r", 2));
}

#[tokio::test]
async fn a_second_concurrent_cascade_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let hang = FakeSource::new("hang", SourceKind::ObjectStore, state("h", 1))
        .behaving(Behaviour::HangAvailable);
    let slow = builder(data.path()).source(hang).build();
    let quick = builder(data.path()).source(template()).build();
    let slow_run = tokio::spawn(async move { slow.run().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = quick.run().await.unwrap_err();
    assert!(matches!(err, CascadeError::Busy { .. }), "{err}");
    slow_run.abort();
}

#[tokio::test]
async fn deferred_confirmation_counts_an_unconfirmed_boot_as_failed() {
    use finn_recovery::BootConfirmation;
    let data = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(1_700_000_000_000);
    let policy = LoopPolicy {
        max_failures: 2,
        window: Duration::from_secs(600),
    };
    let cascade = || {
        builder(data.path())
            .clock(clock.clone())
            .loop_policy(policy)
            .boot_confirmation(BootConfirmation::Deferred)
            .source(FakeSource::new("r", SourceKind::ObjectStore, state("r", 1)))
    };
    // Two boots recover but the application dies before confirming: a crash loop after recovery.
    for _ in 0..2 {
        let recovery = cascade().build().run().await.unwrap();
        assert_eq!(recovery.report().state, State::Running);
        drop(recovery);
    }
    let mut third = cascade().source(template()).build().run().await.unwrap();
    assert_eq!(third.report().state, State::LoopDetected);
    third.confirm_boot().unwrap();
    drop(third);
    // A confirmed boot is not a failure; after the window the next boot is normal, and a
    // confirmed RUNNING boot clears the journal.
    clock.advance(Duration::from_secs(601));
    let mut fourth = cascade().build().run().await.unwrap();
    assert_eq!(fourth.report().state, State::Running);
    fourth.confirm_boot().unwrap();
    drop(fourth);
    let journal: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.path().join("recovery/boot-journal.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(journal["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(journal["attempts"][0]["outcome"], "running");
}
