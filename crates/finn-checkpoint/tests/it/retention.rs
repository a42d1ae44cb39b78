//! Retention with pins and a point-in-time window: exactly the expected objects go, in a dry run
//! and for real; a store that forgets deletes is caught.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use finn_checkpoint::fault::{FaultStore, OpKind};
use finn_checkpoint::{
    CheckpointInput, Checkpointer, KeepReason, Keyring, Reader, Remote, RetentionMode,
    RetentionPolicy, RetentionReport,
};
use finn_wal::{Kind, NewRecord, Wal};
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::memory::InMemory;

use crate::util;

struct Setup {
    store: FaultStore,
    remote: Remote,
    cp: Checkpointer,
    reader: Reader,
    /// Created-at times of versions 1..=6.
    created: Vec<u64>,
    /// (version, covered LSN, object key of its own file) per checkpoint.
    own_objects: Vec<String>,
    covered: Vec<u64>,
    _dir: tempfile::TempDir,
}

const PREFIX: &str = "ret";

/// Six checkpoints, each with its own file and a shared one, 10 shipped records (two batches)
/// before each.
async fn setup() -> Setup {
    let store = FaultStore::new(Arc::new(InMemory::new()));
    let remote = util::remote(Arc::new(store.clone()) as Arc<dyn ObjectStore>, PREFIX);
    let key = util::key();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path().join("wal"), finn_wal::Options::default()).unwrap();
    let cp = Checkpointer::open(
        remote.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|o| o.ship_batch_records = 5),
    )
    .await
    .unwrap();
    let reader = Reader::new(remote.clone(), Keyring::trusting(key.verifying_key()));
    let (mut created, mut own_objects, mut covered) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=6u64 {
        for i in 0..10 {
            wal.append_with(
                NewRecord::event(Kind::Memory, format!("r{round} {i}")),
                finn_wal::Durability::None,
            )
            .unwrap();
        }
        wal.sync().unwrap();
        cp.ship_wal(&wal).await.unwrap();
        let mut input = CheckpointInput::new(wal.durable_lsn());
        let own = util::noise(round, 300);
        input.add_bytes("own.bin", own.clone()).unwrap();
        input.add_bytes("shared.txt", b"same".to_vec()).unwrap();
        let report = cp.checkpoint(input).await.unwrap();
        assert_eq!(report.version, round);
        let m = reader.load(round).await.unwrap();
        created.push(m.created_at_ms);
        covered.push(m.covered_lsn.get());
        let f = m.file("own.bin").unwrap();
        let hex = f.blake3.to_hex();
        own_objects.push(format!(
            "objects/{}/{}.{}",
            &hex[..2],
            hex,
            f.codec.extension()
        ));
        // Distinct recorded times, so the window below falls between two checkpoints.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Setup {
        store,
        remote,
        cp,
        reader,
        created,
        own_objects,
        covered,
        _dir: dir,
    }
}

/// Keep the newest 2, pin 2, and a window reaching back to just after checkpoint 4: kept are
/// 6, 5 (newest), 2 (pinned), 4 (window base); 1 and 3 go with their own objects, and the WAL
/// up to checkpoint 2 (the oldest kept one) goes.
fn policy(s: &Setup) -> RetentionPolicy {
    let now = s.created[5] + 1;
    let window = now - (s.created[3] + 1);
    RetentionPolicy::default()
        .keep_last(2)
        .pin(2)
        .pitr_window(Duration::from_millis(window))
        .object_grace(Duration::ZERO)
        .as_of(now)
}

fn expected_deletions(s: &Setup) -> (Vec<u64>, BTreeSet<String>, usize) {
    let objects: BTreeSet<String> = [s.own_objects[0].clone(), s.own_objects[2].clone()].into();
    // Batches of 5 records: those ending at or below checkpoint 2's covered LSN.
    let wal = (s.covered[1] / 5) as usize;
    (vec![1, 3], objects, wal)
}

async fn listing(store: &FaultStore) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut list = store.inner().list(Some(&PREFIX.into()));
    while let Some(m) = list.next().await {
        let loc = m.unwrap().location.to_string();
        // Tombstones of deleted manifests are bookkeeping (checked separately).
        if !loc.ends_with(".deleted") {
            out.insert(loc[PREFIX.len() + 1..].to_owned());
        }
    }
    out
}

fn check_plan(s: &Setup, report: &RetentionReport) {
    let (manifests, objects, wal) = expected_deletions(s);
    assert_eq!(report.deleted_manifests, manifests);
    assert_eq!(
        report
            .deleted_objects
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        objects
    );
    assert_eq!(report.deleted_wal.len(), wal, "{:?}", report.deleted_wal);
    let kept: Vec<_> = report
        .kept
        .iter()
        .map(|k| (k.version, k.reasons.clone()))
        .collect();
    assert_eq!(
        kept,
        [
            (
                6,
                vec![KeepReason::Newest, KeepReason::Head, KeepReason::HighWater]
            ),
            (5, vec![KeepReason::Newest]),
            (4, vec![KeepReason::PitrBase]),
            (2, vec![KeepReason::Pinned]),
        ]
    );
    assert_eq!(
        report.pitr_floor.map(|l| l.get()),
        Some(s.covered[1]),
        "the pinned checkpoint 2 needs more WAL than the window"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_then_real_run_delete_exactly_the_expected_objects() {
    let s = setup().await;
    let before = listing(&s.store).await;
    s.store.reset_counts();
    let dry =
        s.cp.retention(&policy(&s), RetentionMode::DryRun)
            .await
            .unwrap();
    assert!(dry.dry_run);
    check_plan(&s, &dry);
    assert_eq!(
        s.store.count(OpKind::Delete),
        0,
        "a dry run deletes nothing"
    );
    assert_eq!(listing(&s.store).await, before);
    // The reader (no lease) plans the same.
    let planned = s
        .reader
        .plan_retention(&policy(&s), Some(6), Some(s.cp.lineage().await))
        .await
        .unwrap();
    check_plan(&s, &planned);

    let real =
        s.cp.retention(&policy(&s), RetentionMode::Delete)
            .await
            .unwrap();
    assert!(!real.dry_run);
    check_plan(&s, &real);
    assert!(real.is_verified(), "{real:?}");
    assert_eq!(real.retained_bytes, Some(real.expected_retained_bytes));
    let after = listing(&s.store).await;
    let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
    let mut expected: BTreeSet<String> = real
        .deleted_objects
        .iter()
        .chain(&real.deleted_wal)
        .cloned()
        .collect();
    expected.extend(
        real.deleted_manifests
            .iter()
            .map(|v| format!("manifests/{v:020}.manifest")),
    );
    assert_eq!(gone, expected, "exactly the planned keys are gone");
    assert!(after.is_subset(&before));

    // Every kept checkpoint still restores, the pinned one included, with its WAL.
    for v in [2, 4, 5, 6] {
        let m = s.reader.load(v).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        s.reader.fetch_files(&m, dir.path(), 2).await.unwrap();
        let records = s
            .reader
            .shipped_after(m.lineage, m.covered_lsn)
            .await
            .unwrap();
        assert_eq!(records.len() as u64, s.covered[5] - m.covered_lsn.get());
    }
    // The chain still validates: the manifests removed between kept ones left signed
    // tombstones. Without its tombstone, the removal of 3 looks like a loss.
    let mut index = finn_checkpoint::remote_index::RemoteIndex::for_remote(&s.remote);
    let valid = s
        .reader
        .validate(&mut index, &finn_checkpoint::ValidateOptions::default())
        .await
        .unwrap();
    assert!(valid.is_ok(), "{:?}", valid.findings);
    s.store.hide(format!("{:020}.deleted", 3));
    let broken = s
        .reader
        .validate(&mut index, &finn_checkpoint::ValidateOptions::default())
        .await
        .unwrap();
    assert!(
        matches!(
            broken.findings[..],
            [finn_checkpoint::Finding::ManifestRejected { version: 4, .. }]
        ),
        "{:?}",
        broken.findings
    );
    assert!(s.reader.load(4).await.is_err());
    s.store.unhide_all();

    // A second pass finds nothing more to delete.
    let again =
        s.cp.retention(&policy(&s), RetentionMode::Delete)
            .await
            .unwrap();
    assert!(again.deleted_manifests.is_empty() && again.deleted_objects.is_empty());
    assert!(again.deleted_wal.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_forgets_deletes_is_caught() {
    let s = setup().await;
    s.store.forget_deletes(true);
    let report =
        s.cp.retention(&policy(&s), RetentionMode::Delete)
            .await
            .unwrap();
    assert!(!report.is_verified());
    let (manifests, objects, wal) = expected_deletions(&s);
    assert_eq!(
        report.undeleted.len(),
        manifests.len() + objects.len() + wal,
        "every acknowledged but ignored delete is named"
    );
    assert!(s.store.forgotten_deletes() >= report.undeleted.len() as u64);
    assert_eq!(
        report.retained_bytes,
        Some(report.expected_retained_bytes + report.deleted_bytes),
        "bytes retained vs expected shows the difference"
    );

    // A store that keeps its word again: the next pass deletes and verifies.
    s.store.forget_deletes(false);
    let report =
        s.cp.retention(&policy(&s), RetentionMode::Delete)
            .await
            .unwrap();
    assert!(report.is_verified(), "{report:?}");
    let _ = &s.remote;
}
