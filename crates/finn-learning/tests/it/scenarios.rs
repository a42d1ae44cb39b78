//! One test per learning scenario of the anchors (anchors.md §11.4), named after it.

use finn_learning::memory::gates::{self, GateConfig, MemoryGate};
use finn_learning::memory::{
    Extractor, ExtractorConfig, ExtractorRejection, MemoryEntry, PatternMiner, TaskOutcome,
};
use finn_learning::trajectory::{self, Candidate, Trajectory, TrajectoryEntry, TrajectoryLog};
use finn_learning::{
    AddError, CompoundCycle, CycleOptions, Gate, HeuristicScorer, Scorer, Status, Target,
    Thresholds, Timestamp,
};
use serde_json::json;

use crate::util::{good, open};

// ---- learning.test.ts -------------------------------------------------------------------------

#[test]
fn adds_and_retrieves_a_learning() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let l = store.add(good(Target::Openclaw)).unwrap();
    assert!(
        ulid::Ulid::from_string(l.id.as_str()).is_ok(),
        "new ids are ULIDs"
    );
    assert!(l.created.is_some());
    assert_eq!(l.status, Status::Active, "non-loa target starts active");
    assert_eq!(
        store.get(&l.id).unwrap().trigger,
        good(Target::Openclaw).trigger
    );
}

#[test]
fn sends_loa_target_learnings_to_pending() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let l = store.add(good(Target::Loa)).unwrap();
    assert_eq!(l.status, Status::Pending);
    assert_eq!(store.pending().len(), 1);
    assert!(store.list(Some(Status::Active)).is_empty());
}

#[test]
fn records_effectiveness_tracking() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let l = store.add(good(Target::Openclaw)).unwrap();
    for ok in [true, true, false] {
        store.record_application(&l.id, ok).unwrap();
    }
    let e = store.get(&l.id).unwrap().effectiveness.unwrap();
    assert_eq!((e.applications, e.successes, e.failures), (3, 2, 1));
    assert!(e.last_applied.is_some());
}

#[test]
fn finds_matching_learnings_by_keyword() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store.add(good(Target::Openclaw)).unwrap();
    let found = store.find_matching("deploying build fails timeout", 10);
    assert!(!found.is_empty());
    assert!(found[0].hits >= 2);
}

#[test]
fn scores_a_high_quality_learning_above_thresholds() {
    let card = HeuristicScorer.score((&good(Target::Devcontainer)).into());
    let eval = Thresholds::default().evaluate(&card);
    for v in &eval.gates {
        assert!(v.passed, "{} {} < {}", v.gate, v.score, v.threshold);
    }
    assert!(eval.total >= 18);
    assert!(eval.passed);
}

#[test]
fn rejects_a_low_quality_learning() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let mut bad = good(Target::Openclaw);
    bad.trigger.clear();
    let Err(AddError::Rejected(r)) = store.add(bad) else {
        panic!("empty trigger must be rejected")
    };
    let clarity = r
        .evaluation
        .gates
        .iter()
        .find(|g| g.gate == Gate::TriggerClarity)
        .unwrap();
    assert_eq!(clarity.score, 0);
    assert!(!clarity.passed);
    assert!(store.is_empty());
}

#[test]
fn default_scorer_implements_the_scorer_trait() {
    let scorer: &dyn Scorer = &HeuristicScorer;
    let card = scorer.score((&good(Target::Openclaw)).into());
    assert!(card.discovery_depth.score > 0);
    assert!(Thresholds::default().evaluate(&card).passed);
}

/// The anchors wrote `learnings.json` directly when no WAL hook was wired. finn always writes the
/// WAL; the equivalent is that the anchors' file layout can still be produced from the store.
#[test]
fn anchor_layout_is_written_without_a_wal_hook() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir.path().join("store"));
    let active = store.add(good(Target::Openclaw)).unwrap();
    let pending = store.add(good(Target::Loa)).unwrap();
    let out = dir.path().join("grimoires");
    store.export_anchor_dir(&out).unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("learnings.json")).unwrap()).unwrap();
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["learnings"][0]["id"], active.id.as_str());
    assert!(
        out.join(format!("pending-self/{}.json", pending.id))
            .exists()
    );
}

// ---- compound-cycle.test.ts -------------------------------------------------------------------

fn bash_recovery(session: &str) -> Vec<TrajectoryEntry> {
    vec![
        TrajectoryEntry::tool_start(session, "bash", json!({"cmd": "cargo build"})),
        TrajectoryEntry::tool_end(
            session,
            "bash",
            json!({"cmd": "cargo build"}),
            "error: linker `cc` not found",
            true,
        ),
        TrajectoryEntry::message(session, "assistant", "installing the toolchain"),
        TrajectoryEntry::tool_end(
            session,
            "bash",
            json!({"cmd": "apt-get install -y build-essential && cargo build"}),
            "Finished",
            false,
        ),
    ]
}

#[test]
fn trajectory_entries_are_logged_to_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let log = TrajectoryLog::new(dir.path().join("trajectory"));
    let first = TrajectoryEntry::tool_start("s1", "bash", json!({"cmd": "ls"}));
    log.append(&first).unwrap();
    let path = log.file_for(first.timestamp);
    assert_eq!(
        path.file_name().unwrap().to_string_lossy(),
        format!("{}.jsonl", first.timestamp.date())
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["sessionId"], "s1");
    assert_eq!(line["type"], "tool_start");
}

#[test]
fn extract_finds_error_success_patterns() {
    let c = trajectory::extract_error_recoveries(&bash_recovery("s1"), Some("s1"));
    assert!(!c.is_empty());
    assert_eq!(c[0].trigger, "tool:bash:error");
}

#[test]
fn evaluate_filters_candidates() {
    let good = trajectory::extract_error_recoveries(&bash_recovery("s1"), None).remove(0);
    let bad = Candidate {
        trigger: "session-specific".into(),
        confidence: 0.3,
        ..good.clone()
    };
    let passed: Vec<_> = [good.clone(), bad]
        .into_iter()
        .filter(|c| trajectory::screen(c).accepted)
        .collect();
    assert_eq!(passed, std::slice::from_ref(&good));
    assert!(trajectory::screen(&good).quality_score >= 0.75);
}

#[test]
fn persist_writes_to_the_store_and_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let before = store.wal().last_lsn();
    let report = CompoundCycle::new(&store, CycleOptions::default())
        .run(&bash_recovery("s1"))
        .unwrap();
    assert_eq!(report.persisted.len(), 1, "{report:?}");
    let l = store.get(&report.persisted[0].id).unwrap();
    assert!(l.solution.contains("build-essential"), "solution preserved");
    assert!(store.wal().last_lsn() > before);
}

#[test]
fn load_for_context_returns_formatted_learnings() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let l = store.add(good(Target::Openclaw)).unwrap();
    let block = store.context_block(20);
    assert!(block.contains("Recent Learnings"));
    assert!(block.contains(&format!("**{}**", l.trigger)));
}

#[test]
fn full_cycle_log_extract_evaluate_persist_load() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir.path().join("store"));
    let log = TrajectoryLog::new(dir.path().join("trajectory"));
    for e in bash_recovery("s1") {
        log.append(&e).unwrap();
    }
    let t = Trajectory::read_dir(log.dir()).unwrap();
    assert!(t.bad_lines.is_empty());
    let cycle = CompoundCycle::new(&store, CycleOptions::default());
    let candidates = cycle.extract(&t.entries);
    assert!(!candidates.is_empty());
    let report = cycle.persist(candidates).unwrap();
    assert!(!report.persisted.is_empty());
    assert!(store.context_block(20).contains("Recent Learnings"));
}

// ---- kill-restart-resume.test.ts (the true-crash variant is `crash::sigkill_100_times`) -------

#[test]
fn compound_learning_persists_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lsn = {
        let (store, _) = open(dir.path());
        CompoundCycle::new(&store, CycleOptions::default())
            .run(&bash_recovery("s1"))
            .unwrap();
        store.wal().last_lsn()
    };
    let (store, _) = open(dir.path());
    assert!(store.context_block(20).contains("Recent Learnings"));
    assert!(store.wal().last_lsn() >= lsn);
}

// ---- compound-learning.test.ts (CompoundLearningExtractor) ------------------------------------

fn outcome(p: &str, success: bool) -> TaskOutcome {
    TaskOutcome {
        pattern: p.into(),
        success,
    }
}

#[test]
fn extractor_groups_by_pattern_counts_and_uses_success_rate() {
    let x = Extractor::default();
    let c = x.extract_candidates(&[
        outcome("retry", true),
        outcome("retry", true),
        outcome("cache", false), // failure before any success: ignored
        outcome("retry", false),
        outcome("cache", true),
    ]);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].pattern, "retry");
    assert_eq!((c[0].occurrences, c[0].total), (2, 3));
    assert!((c[0].confidence - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!((c[1].occurrences, c[1].total), (1, 1));
}

#[test]
fn extractor_quality_gate_accepts_and_rejects_with_reasons() {
    let x = Extractor::default();
    let many = |n: usize, fails: usize| {
        let mut v: Vec<TaskOutcome> = (0..n).map(|_| outcome("p", true)).collect();
        v.extend((0..fails).map(|_| outcome("p", false)));
        x.extract_candidates(&v).remove(0)
    };
    assert_eq!(x.quality_gate(&many(4, 0)), Ok(()));
    let low_conf = x.quality_gate(&many(3, 3)).unwrap_err();
    assert!(matches!(low_conf, ExtractorRejection::Confidence { .. }));
    assert_eq!(low_conf.to_string(), "confidence 0.5 < 0.7");
    let few = x.quality_gate(&many(2, 0)).unwrap_err();
    assert_eq!(few.to_string(), "occurrences 2 < 3");
}

#[test]
fn extractor_to_persistable_ids_defaults_and_cap() {
    let d = ExtractorConfig::default();
    assert_eq!(
        (d.min_occurrences, d.min_confidence, d.max_learnings),
        (3, 0.7, 50)
    );
    let x = Extractor {
        config: ExtractorConfig {
            max_learnings: 2,
            ..d
        },
    };
    let outcomes: Vec<_> = ["a", "b", "c"].iter().map(|p| outcome(p, true)).collect();
    let p = x.to_persistable(&x.extract_candidates(&outcomes));
    assert_eq!(p.len(), 2);
    assert_ne!(p[0].id, p[1].id);
    assert!(p[0].timestamp.as_millis() > 0);
}

// ---- compound-learning.test.ts (CompoundLearningCycle) + review-fixes.test.ts -----------------

fn entry(content: &str, source: &str, ms: i64) -> MemoryEntry {
    MemoryEntry {
        content: content.into(),
        timestamp: Timestamp::from_millis(ms),
        source: source.into(),
        confidence: None,
        metadata: None,
    }
}

#[test]
fn pattern_miner_accumulates_finds_recurring_patterns_and_sorts() {
    let mut m = PatternMiner::default();
    assert!(m.extract_patterns().is_empty(), "no recurring patterns yet");
    for (i, c) in ["a", "b", "a", "c", "b", "a", " A "].iter().enumerate() {
        m.add(entry(c, &format!("s{}", i % 2), i as i64));
    }
    assert_eq!(m.entries().count(), 7);
    let p = m.extract_patterns();
    assert_eq!(p.len(), 2, "'c' occurs once");
    assert_eq!(p[0].content, "a");
    assert_eq!(p[0].frequency, 4);
    assert!((p[0].confidence - 0.8).abs() < 1e-9);
    assert_eq!(p[1].frequency, 2);
    assert_eq!(p[0].sources, ["s0", "s1"]);
    assert_eq!(p[0].first_seen, Timestamp::from_millis(0));
    assert_eq!(p[0].last_seen, Timestamp::from_millis(6));
}

#[test]
fn pattern_miner_confidence_caps_at_five() {
    let mut m = PatternMiner::default();
    for i in 0..9 {
        m.add(entry("same", "s", i));
    }
    assert_eq!(m.extract_patterns()[0].confidence, 1.0);
}

#[test]
fn pattern_miner_gates_and_observer() {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s2 = seen.clone();
    let mut m = PatternMiner::default().with_observer(move |_| {
        s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    m.add(entry("keep this one", "s", 1));
    m.add(entry("drop", "s", 2));
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(m.qualified(None).len(), 2);
    let gate = |e: &MemoryEntry| e.content.len() > 5;
    let q = m.qualified(Some(&gate));
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].content, "keep this one");
}

#[test]
fn pattern_miner_evicts_oldest_and_defaults_to_10000() {
    assert_eq!(PatternMiner::default().max_entries(), 10_000);
    let mut m = PatternMiner::new(3);
    for (i, c) in ["old", "old", "x", "y", "y"].iter().enumerate() {
        m.add(entry(c, "s", i as i64));
    }
    let kept: Vec<_> = m.entries().map(|e| e.content.clone()).collect();
    assert_eq!(kept, ["x", "y", "y"]);
    let p = m.extract_patterns();
    assert_eq!(p.len(), 1, "'old' was evicted");
    assert_eq!(p[0].content, "y");
}

// ---- quality-gates.test.ts (memory gates) -----------------------------------------------------

fn mem(content: &str) -> MemoryEntry {
    MemoryEntry::new(content, "test")
}

#[test]
fn temporal_gate_passes_recent_and_fails_old() {
    let now = Timestamp::now();
    let recent = entry("x", "s", now.as_millis() - 1_000);
    let old = entry("x", "s", now.as_millis() - 10_000);
    assert!(gates::temporal(&recent, 5_000, now).is_ok());
    assert_eq!(
        gates::temporal(&old, 5_000, now).unwrap_err().gate,
        MemoryGate::Temporal
    );
}

#[test]
fn speculation_gate_filters_hedges_as_whole_words() {
    assert!(gates::speculation(&mem("The cache might be stale after deploy")).is_err());
    assert!(gates::speculation(&mem("It is probably the DNS")).is_err());
    assert!(gates::speculation(&mem("perhaps the config is wrong")).is_err());
    assert!(gates::speculation(&mem("The cache is stale after deploy")).is_ok());
    // Substring matching flagged these; whole words do not.
    assert!(gates::speculation(&mem("The mighty likelihood of assumptions")).is_ok());
}

#[test]
fn instruction_gate_filters_instructions() {
    for s in [
        "Please restart the server",
        "You should pin versions",
        "Always run tests",
        "Don't forget the env",
    ] {
        assert!(gates::instruction(&mem(s)).is_err(), "{s}");
    }
    assert!(gates::instruction(&mem("The server restarts when the config changes")).is_ok());
}

#[test]
fn confidence_gate_checks_only_a_present_confidence() {
    let mut e = mem("x");
    e.confidence = Some(0.9);
    assert!(gates::confidence(&e, 0.5).is_ok());
    e.confidence = Some(0.2);
    assert!(gates::confidence(&e, 0.5).is_err());
    e.confidence = None;
    assert!(gates::confidence(&e, 0.5).is_ok());
}

#[test]
fn quality_gate_fails_short_and_repetitive_passes_substantive() {
    assert!(gates::quality(&mem("too short")).is_err());
    assert!(gates::quality(&mem("retry retry retry retry")).is_err());
    assert!(gates::quality(&mem("The WAL segment rotates at 64 MiB")).is_ok());
}

#[test]
fn technical_gate_needs_technical_content() {
    assert!(gates::technical(&mem("The API endpoint returns 502 under load")).is_ok());
    assert!(gates::technical(&mem("upgrade to 1.89 fixed it")).is_ok());
    assert!(gates::technical(&mem("see src/store.rs::open")).is_ok());
    assert!(gates::technical(&mem("We had a nice lunch together")).is_err());
}

#[test]
fn evaluate_all_gates_order_and_config() {
    let now = Timestamp::now();
    let fine = mem("The database timeout is 30 seconds in production");
    assert!(gates::evaluate_all(&fine, &GateConfig::default(), now).is_ok());
    // Speculative *and* too short: the first gate in order reports.
    let e = gates::evaluate_all(&mem("maybe"), &GateConfig::default(), now).unwrap_err();
    assert_eq!(e.gate, MemoryGate::Speculation);
    let old = MemoryEntry {
        timestamp: Timestamp::from_millis(now.as_millis() - 60_000),
        ..fine.clone()
    };
    assert!(gates::evaluate_all(&old, &GateConfig::default(), now).is_ok());
    let cfg = GateConfig {
        max_age_ms: Some(1_000),
        ..GateConfig::default()
    };
    assert_eq!(
        gates::evaluate_all(&old, &cfg, now).unwrap_err().gate,
        MemoryGate::Temporal
    );
    let mut unsure = fine.clone();
    unsure.confidence = Some(0.6);
    assert!(gates::evaluate_all(&unsure, &GateConfig::default(), now).is_ok());
    let strict = GateConfig {
        confidence_threshold: 0.8,
        ..GateConfig::default()
    };
    assert_eq!(
        gates::evaluate_all(&unsure, &strict, now).unwrap_err().gate,
        MemoryGate::Confidence
    );
}
