//! Point-in-time restore and time travel: a writer works for a while with checkpoints and WAL
//! shipping while the test records its state history; then 20 restores to random LSNs and times
//! (half before, half after level compaction) must each equal the writer's state at that point.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use finn_checkpoint::{
    CheckpointInput, Checkpointer, Error, KeyAt, Keyring, LevelPolicy, LevelSpec, Lsn, Reader,
    RestoreOptions, RestoreTarget, SigningKey,
};
use finn_wal::{Kind, NewRecord, Op, Record, Wal};
use object_store::{ObjectStore, ObjectStoreExt};

use crate::util;

pub type State = BTreeMap<String, Vec<u8>>;

/// Small segments, and no automatic compaction: the history must keep every record.
pub fn small_wal() -> finn_wal::Options {
    finn_wal::Options {
        segment_size: 1 << 20,
        auto_compact: false,
        ..Default::default()
    }
}

/// The writer's state after applying `r`.
pub fn apply(state: &mut State, r: &Record) {
    let Some(key) = &r.key else { return };
    match r.op {
        Op::Put => {
            state.insert(key.clone(), r.payload.clone());
        }
        Op::Delete => {
            state.remove(key);
        }
        Op::Event => {}
    }
}

/// The writer's state after every record up to `lsn`.
pub fn state_at(history: &[Record], lsn: Lsn) -> State {
    let mut s = State::new();
    for r in history.iter().take_while(|r| r.lsn <= lsn) {
        apply(&mut s, r);
    }
    s
}

/// A checkpoint of `state`: one file per key.
pub fn checkpoint_of(state: &State, lsn: Lsn) -> CheckpointInput {
    let mut input = CheckpointInput::new(lsn);
    for (k, v) in state {
        input.add_bytes(&format!("kv/{k}"), v.clone()).unwrap();
    }
    input
}

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Written {
    history: Vec<Record>,
    /// (version, covered lsn, created at) of each checkpoint.
    checkpoints: Vec<(u64, Lsn, u64)>,
    cp: Checkpointer,
    _dir: tempfile::TempDir,
}

/// Writes `rounds` rounds of puts, deletes and events, syncing and shipping after each and
/// checkpointing every `every` rounds.
async fn write_history(remote: finn_checkpoint::Remote, key: SigningKey, rounds: u64) -> Written {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path().join("wal"), small_wal()).unwrap();
    let cp = Checkpointer::open(
        remote,
        key,
        Keyring::new(),
        util::opts(|o| o.ship_batch_records = 25),
    )
    .await
    .unwrap();
    let mut rng = Rng::new(rounds);
    let mut state = State::new();
    let mut checkpoints = Vec::new();
    for round in 0..rounds {
        for _ in 0..30 {
            let k = format!("k{:02}", rng.below(40));
            let record = match rng.below(10) {
                0..=5 => {
                    let len = rng.below(200) as usize;
                    NewRecord::put(Kind::State, k, util::noise(rng.next(), len))
                }
                6..=7 => NewRecord::delete(Kind::State, k),
                _ => NewRecord::event(Kind::Audit, format!("round {round}")),
            };
            let lsn = wal.append_with(record, finn_wal::Durability::None).unwrap();
            apply(&mut state, &wal.read(lsn).unwrap().unwrap());
        }
        wal.sync().unwrap();
        cp.ship_wal(&wal).await.unwrap();
        if round % 5 == 4 {
            let r = cp
                .checkpoint(checkpoint_of(&state, wal.last_lsn()))
                .await
                .unwrap();
            let head = cp.head().await.unwrap();
            checkpoints.push((r.version, head.covered_lsn, head.created_at_ms));
        }
        // Spread record timestamps over several milliseconds.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let history: Vec<Record> = wal
        .iter_from(Lsn::new(1))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(state_at(&history, wal.last_lsn()), state);
    Written {
        history,
        checkpoints,
        cp,
        _dir: dir,
    }
}

/// Restores `target` into a fresh directory and WAL and folds the result into a state.
async fn restored(
    reader: &Reader,
    target: RestoreTarget,
    options: &RestoreOptions,
) -> (
    finn_checkpoint::RestorePlan,
    finn_checkpoint::RestoreReport,
    State,
) {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path().join("wal"), small_wal()).unwrap();
    let plan = reader.plan_restore(target).await.unwrap();
    let report = reader
        .restore(&plan, &dir.path().join("state"), &wal, options)
        .await
        .unwrap();
    let mut state: State = util::read_tree(&dir.path().join("state"))
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("kv/").unwrap().to_owned(), v))
        .collect();
    for r in wal.iter_from(plan.base_lsn().next()).unwrap() {
        apply(&mut state, &r.unwrap());
    }
    (plan, report, state)
}

async fn twenty_random_points(store: Arc<dyn ObjectStore>, prefix: &str) {
    let key = util::key();
    let w = write_history(util::remote(store.clone(), prefix), key.clone(), 30).await;
    let reader = Reader::new(
        util::remote(store.clone(), prefix),
        Keyring::trusting(key.verifying_key()),
    );
    let last = w.history.last().unwrap();
    let first = &w.history[0];
    let mut rng = Rng::new(7);
    for i in 0..20 {
        if i == 10 {
            // Half of the restores read level-compacted WAL.
            let policy = LevelPolicy::new(vec![
                LevelSpec::new(Duration::ZERO, 150, 1 << 30),
                LevelSpec::new(Duration::ZERO, 600, 1 << 30),
            ])
            .close_open_windows(true);
            let report = w.cp.compact_wal(&policy).await.unwrap();
            assert!(report.created.iter().any(|b| b.level == 2), "{report:?}");
            assert!(report.deleted > 0);
        }
        let (target, expected) = if i % 2 == 0 {
            let n = Lsn::new(1 + rng.below(last.lsn.get()));
            (RestoreTarget::Lsn(n), n)
        } else {
            let t = first.timestamp_ms + rng.below(last.timestamp_ms - first.timestamp_ms + 1);
            let n = w
                .history
                .iter()
                .rev()
                .find(|r| r.timestamp_ms <= t)
                .map_or(Lsn::ZERO, |r| r.lsn);
            (RestoreTarget::Time(t), n)
        };
        let progress = finn_checkpoint::RestoreProgress::new();
        let options = RestoreOptions::default()
            .prefetch(1 + (i % 4) as usize)
            .progress(progress.clone());
        let (plan, report, state) = restored(&reader, target, &options).await;
        assert_eq!(progress.records(), report.records);
        assert_eq!(progress.wal_objects() as usize, report.wal_objects);
        assert_eq!(progress.files() as usize, report.files.files);
        // The base: the newest checkpoint at or before the target, not the newest one.
        let base = w
            .checkpoints
            .iter()
            .rev()
            .find(|(_, covered, created)| match target {
                RestoreTarget::Lsn(n) => *covered <= n,
                RestoreTarget::Time(t) => *created <= t,
                _ => unreachable!(),
            })
            .map(|c| c.0);
        assert_eq!(plan.base.as_ref().map(|b| b.version), base, "{target}");
        assert_eq!(report.reached_lsn, expected, "{target}");
        assert_eq!(plan.reach_lsn, expected, "{target}: the dry run is exact");
        let at = w.history.iter().find(|r| r.lsn == expected);
        assert_eq!(report.reached_time_ms, {
            if report.records > 0 {
                at.map(|r| r.timestamp_ms)
            } else {
                None
            }
        });
        assert_eq!(
            state,
            state_at(&w.history, expected),
            "{target}: restored state differs from the writer's"
        );
        eprintln!(
            "{target}: base {:?}, {} records from {} objects, reached lsn {}",
            plan.base.as_ref().map(|b| b.version),
            report.records,
            report.wal_objects,
            report.reached_lsn
        );

        // Time travel to the same point sees the same keys without restoring.
        if i % 5 == 0 {
            let view = reader.open_at(target).await.unwrap();
            assert_eq!(view.lsn(), expected);
            let want = state_at(&w.history, expected);
            let mut seen = state_at(&w.history, view.plan().base_lsn());
            for (_, key, at) in view.keys().filter(|(kind, _, _)| *kind == Kind::State) {
                match at {
                    KeyAt::Put(r) => {
                        assert_eq!(Some(&r.payload), want.get(key));
                        seen.insert(key.to_owned(), r.payload.clone());
                    }
                    KeyAt::Deleted(_) => {
                        assert!(!want.contains_key(key));
                        seen.remove(key);
                    }
                    KeyAt::NotInWal => unreachable!(),
                }
                assert_eq!(view.get(Kind::State, key), at);
            }
            assert_eq!(seen, want, "base files + keys after it = the state");
            if let Some(f) = view.files().first() {
                let name = f.path.as_str().strip_prefix("kv/").unwrap();
                let base_state = state_at(&w.history, view.plan().base_lsn());
                assert_eq!(
                    view.read_file(f.path.as_str()).await.unwrap(),
                    base_state[name]
                );
            }
        }
    }

    // Past the end: refused, typed.
    let beyond = RestoreTarget::Lsn(last.lsn.next());
    assert!(matches!(
        reader.plan_restore(beyond).await,
        Err(Error::TargetBeyondHistory { .. })
    ));
    // An exact checkpoint: its files, no replay.
    let (v, covered, _) = w.checkpoints[1];
    let (plan, report, state) = restored(
        &reader,
        RestoreTarget::Checkpoint(v),
        &RestoreOptions::default(),
    )
    .await;
    assert!(plan.wal_objects.is_empty());
    assert_eq!((report.reached_lsn, report.records), (covered, 0));
    assert_eq!(state, state_at(&w.history, covered));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_random_points_local_filesystem() {
    let b = util::local();
    twenty_random_points(b.store.clone(), &b.prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_random_points_s3_moto() {
    let Some(b) = util::s3() else { return };
    twenty_random_points(b.store.clone(), &b.prefix).await;
}

fn view_keys(view: &finn_checkpoint::TimeTravel) -> Vec<(Kind, &str, KeyAt<'_>)> {
    view.keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_newer_checkpoint_is_passed_over_for_an_older_verified_one() {
    let b = util::local();
    let key = util::key();
    let w = write_history(util::remote(b.store.clone(), &b.prefix), key.clone(), 10).await;
    assert_eq!(w.checkpoints.len(), 2);
    // Flip a byte of the newest manifest.
    let newest = format!("{}/manifests/{:020}.manifest", b.prefix, w.checkpoints[1].0);
    let path = object_store::path::Path::from(newest);
    let mut bytes = b
        .store
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    b.store.put(&path, bytes.into()).await.unwrap();

    let reader = Reader::new(
        util::remote(b.store.clone(), &b.prefix),
        Keyring::trusting(key.verifying_key()),
    );
    let (plan, report, state) =
        restored(&reader, RestoreTarget::Latest, &RestoreOptions::default()).await;
    assert_eq!(
        plan.base.as_ref().map(|b| b.version),
        Some(w.checkpoints[0].0)
    );
    assert_eq!(plan.skipped.len(), 1);
    assert_eq!(plan.skipped[0].version, w.checkpoints[1].0);
    assert!(!plan.needs_fork(), "the latest point continues its lineage");
    let last = w.history.last().unwrap().lsn;
    assert_eq!(report.reached_lsn, last);
    assert_eq!(state, state_at(&w.history, last), "more replay, same state");
    // Asking for the rejected checkpoint itself is an error, not a silent substitute.
    assert!(
        reader
            .plan_restore(RestoreTarget::Checkpoint(w.checkpoints[1].0))
            .await
            .is_err()
    );
    // Time travel to before the first checkpoint: records only, no files.
    let early = RestoreTarget::Lsn(Lsn::new(20));
    let view = reader.open_at(early).await.unwrap();
    assert!(view.base().is_none() && view.files().is_empty());
    assert_eq!(view.records().len(), 20);
    assert!(!view_keys(&view).is_empty());
    assert!(matches!(
        view.read_file("kv/k01").await,
        Err(Error::NotInCheckpoint { .. })
    ));
    // A WAL that already holds records above the base is refused.
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path().join("wal"), small_wal()).unwrap();
    for _ in 0..5 {
        wal.append(NewRecord::event(Kind::Audit, "x")).unwrap();
    }
    let plan = reader
        .plan_restore(RestoreTarget::Lsn(Lsn::new(3)))
        .await
        .unwrap();
    assert!(matches!(
        reader
            .restore(
                &plan,
                &dir.path().join("s"),
                &wal,
                &RestoreOptions::default()
            )
            .await,
        Err(Error::RestoreWalAhead { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_on_after_a_restore_to_the_past_forks_and_mixes_nothing() {
    let b = util::local();
    let key = util::key();
    let w = write_history(util::remote(b.store.clone(), &b.prefix), key.clone(), 10).await;
    let old_lineage = w.cp.lineage().await;
    w.cp.renew().await.unwrap();
    drop(w.cp);
    let remote = util::remote(b.store.clone(), &b.prefix);
    let reader = Reader::new(remote.clone(), Keyring::trusting(key.verifying_key()));
    let point = Lsn::new(200);
    let plan = reader
        .plan_restore(RestoreTarget::Lsn(point))
        .await
        .unwrap();
    assert!(plan.needs_fork());
    let cp = Checkpointer::open(
        remote.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|o| {
            o.takeover = finn_checkpoint::Takeover::Force;
            o.lineage = finn_checkpoint::LineageMode::Fork(plan.fork_parent().unwrap());
        }),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path().join("wal"), small_wal()).unwrap();
    let state_dir = dir.path().join("state");
    let report = reader
        .restore(&plan, &state_dir, &wal, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(report.reached_lsn, point);
    cp.adopt_restore(&plan, &report, &state_dir, &wal)
        .await
        .unwrap();
    wal.advance_to(cp.high_water().await.lsn.next()).unwrap();
    let mut expected = state_at(&w.history, point);
    for i in 0..5u8 {
        let lsn = wal
            .append(NewRecord::put(Kind::State, format!("new{i}"), vec![i]))
            .unwrap();
        apply(&mut expected, &wal.read(lsn).unwrap().unwrap());
    }
    cp.ship_wal(&wal).await.unwrap();
    assert_ne!(cp.lineage().await, old_lineage);

    // The latest state is the past point plus what was written after it, nothing from the
    // abandoned future.
    let fresh = Reader::new(remote.clone(), Keyring::trusting(key.verifying_key()));
    let (plan, _, state) =
        restored(&fresh, RestoreTarget::Latest, &RestoreOptions::default()).await;
    assert_eq!(plan.lineage, cp.lineage().await);
    assert_eq!(state, expected);
    // The old lineage is still there, whole.
    let old = Reader::new(remote, Keyring::trusting(key.verifying_key())).with_lineage(old_lineage);
    let last = w.history.last().unwrap().lsn;
    let (_, report, state) =
        restored(&old, RestoreTarget::Lsn(last), &RestoreOptions::default()).await;
    assert_eq!(report.reached_lsn, last);
    assert_eq!(state, state_at(&w.history, last));
}
