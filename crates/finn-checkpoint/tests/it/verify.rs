//! Continuous verification: remote validation (incremental, with damage injected through a store
//! wrapper) and the restore drill.

use std::sync::Arc;

use finn_checkpoint::fault::{FaultStore, OpKind};
use finn_checkpoint::remote_index::RemoteIndex;
use finn_checkpoint::{
    CheckpointInput, Checkpointer, DrillError, DrillOptions, Finding, Keyring, Lsn, Reader, Remote,
    SigningKey, ValidateOptions,
};
use finn_wal::{Kind, NewRecord, Wal};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::util;

struct Setup {
    store: FaultStore,
    remote: Remote,
    key: SigningKey,
    wal: Wal,
    cp: Checkpointer,
    _dir: tempfile::TempDir,
}

/// Three checkpoints with shipped WAL between and after them (several batches).
async fn setup(prefix: &str) -> Setup {
    let store = FaultStore::new(Arc::new(InMemory::new()));
    let remote = util::remote(Arc::new(store.clone()) as Arc<dyn ObjectStore>, prefix);
    let key = util::key();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path().join("wal"), finn_wal::Options::default()).unwrap();
    let cp = Checkpointer::open(
        remote.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|o| o.ship_batch_records = 10),
    )
    .await
    .unwrap();
    for round in 0..3u8 {
        for i in 0..25 {
            wal.append_with(
                NewRecord::put(Kind::State, format!("k{i}"), vec![round; 40]),
                finn_wal::Durability::None,
            )
            .unwrap();
        }
        wal.sync().unwrap();
        cp.ship_wal(&wal).await.unwrap();
        let mut input = CheckpointInput::new(wal.durable_lsn());
        input
            .add_bytes(
                "state/a.json",
                format!("{{\"round\":{round}}}").into_bytes(),
            )
            .unwrap();
        input
            .add_bytes("state/big.bin", util::noise(round as u64, 5000))
            .unwrap();
        input
            .add_bytes("state/same.txt", b"never changes".to_vec())
            .unwrap();
        cp.checkpoint(input).await.unwrap();
    }
    for i in 0..25 {
        wal.append_with(
            NewRecord::event(Kind::Memory, format!("after {i}")),
            finn_wal::Durability::None,
        )
        .unwrap();
    }
    wal.sync().unwrap();
    cp.ship_wal(&wal).await.unwrap();
    Setup {
        store,
        remote,
        key,
        wal,
        cp,
        _dir: dir,
    }
}

fn reader(s: &Setup) -> Reader {
    Reader::new(s.remote.clone(), Keyring::trusting(s.key.verifying_key()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_is_incremental_and_reports_restorable_time() {
    let s = setup("valid").await;
    let reader = reader(&s);
    let mut index = RemoteIndex::for_remote(&s.remote);
    let first = reader
        .validate(&mut index, &ValidateOptions::default())
        .await
        .unwrap();
    assert!(first.is_ok(), "{:?}", first.findings);
    assert_eq!(first.manifests, 3);
    assert_eq!(first.newest_version, Some(3));
    // 3 distinct big.bin + 3 distinct a.json + 1 shared same.txt.
    assert_eq!(first.objects, 7);
    assert_eq!(
        first.objects_downloaded, 7,
        "a fresh index checks every object"
    );
    assert_eq!(first.restorable_lsn, s.wal.durable_lsn());
    let last = s.wal.read(s.wal.durable_lsn()).unwrap().unwrap();
    assert_eq!(
        first.restorable_as_of_ms,
        Some(last.timestamp_ms),
        "restorable as of the newest shipped record"
    );
    assert_eq!(first.wal_objects_downloaded, first.wal_objects);
    assert!(first.wal_objects >= 10, "{}", first.wal_objects);

    // The index survives a restart; the next run downloads only its sample.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remote-index.json");
    index.save(&path).unwrap();
    let mut index = RemoteIndex::load_or_new(&path, &s.remote);
    s.store.reset_counts();
    let second = reader
        .validate(&mut index, &ValidateOptions::default().sample(2))
        .await
        .unwrap();
    assert!(second.is_ok(), "{:?}", second.findings);
    assert_eq!(second.objects_downloaded, 0);
    assert_eq!(second.objects_sampled, 2);
    assert_eq!(second.wal_objects_downloaded, 2);
    assert!(second.bytes_downloaded < first.bytes_downloaded);
    assert!(index.last_validation.as_ref().is_some_and(|v| v.ok));

    // New data: only the new objects are downloaded (plus the sample).
    let mut input = CheckpointInput::new(s.wal.durable_lsn());
    input
        .add_bytes("state/a.json", b"{\"round\":9}".to_vec())
        .unwrap();
    s.cp.checkpoint(input).await.unwrap();
    let third = reader
        .validate(&mut index, &ValidateOptions::default().sample(0))
        .await
        .unwrap();
    assert!(third.is_ok(), "{:?}", third.findings);
    assert_eq!(third.objects_downloaded, 1);
    assert_eq!(third.objects_sampled, 0);
    assert_eq!(third.newest_version, Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipped_wal_gap_is_detected() {
    let s = setup("gap").await;
    let reader = reader(&s);
    let lineage = s.cp.lineage().await;
    let batches = reader.shipped_batches(lineage).await.unwrap();
    // A batch after the oldest checkpoint, with batches after it: its loss is a hole.
    let oldest = reader.load(1).await.unwrap().covered_lsn;
    let lost = batches
        .iter()
        .find(|b| b.first > oldest && b.last < s.wal.durable_lsn())
        .copied()
        .unwrap();
    let needle = format!("{:020}-{:020}", lost.first.get(), lost.last.get());
    s.store.hide(needle.clone());
    let mut index = RemoteIndex::for_remote(&s.remote);
    let report = reader
        .validate(&mut index, &ValidateOptions::default())
        .await
        .unwrap();
    let gaps: Vec<_> = report
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::ShippedGap {
                covered,
                next_first,
                next_prev,
                ..
            } => Some((*covered, *next_first, *next_prev)),
            _ => None,
        })
        .collect();
    assert_eq!(
        gaps,
        [(Lsn::new(lost.first.get() - 1), lost.last.next(), lost.last)],
        "exactly the hidden batch's records are reported lost: {:?}",
        report.findings
    );
    assert!(!report.is_ok());
    // The hole lies between the oldest and the newest checkpoint: a restore of the newest one
    // still works (the drill passes), but restoring an older point in time would not.
    let newest = reader.newest().await.unwrap().unwrap();
    assert!(lost.last < newest.covered_lsn);
    assert_eq!(report.restorable_lsn, s.wal.durable_lsn());
    let scratch = tempfile::tempdir().unwrap();
    reader
        .restore_drill(scratch.path(), Some(&s.wal), &DrillOptions::default())
        .await
        .unwrap();
    s.store.unhide_all();
    let report = reader
        .validate(&mut index, &ValidateOptions::default())
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.findings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_after_the_newest_checkpoint_fails_the_drill() {
    let s = setup("gap-tail").await;
    let reader = reader(&s);
    let newest = reader.newest().await.unwrap().unwrap();
    let lineage = s.cp.lineage().await;
    let batches = reader.shipped_batches(lineage).await.unwrap();
    let after: Vec<_> = batches
        .iter()
        .filter(|b| b.first > newest.covered_lsn)
        .collect();
    assert!(after.len() >= 2);
    let lost = after[0];
    s.store
        .hide(format!("{:020}-{:020}", lost.first.get(), lost.last.get()));
    let scratch = tempfile::tempdir().unwrap();
    let err = reader
        .restore_drill(scratch.path(), Some(&s.wal), &DrillOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DrillError::Restore(finn_checkpoint::Error::ShippedGap { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("cannot be restored"));
    let mut index = RemoteIndex::for_remote(&s.remote);
    let report = reader
        .validate(&mut index, &ValidateOptions::default())
        .await
        .unwrap();
    assert_eq!(report.restorable_lsn, newest.covered_lsn);
    assert!(matches!(report.findings[..], [Finding::ShippedGap { .. }]));

    // The last batch lost: nothing follows it, so only the confirmed LSN tells.
    s.store.unhide_all();
    let last = batches.last().unwrap();
    s.store
        .hide(format!("{:020}-{:020}", last.first.get(), last.last.get()));
    let err = reader
        .restore_drill(
            scratch.path(),
            Some(&s.wal),
            &DrillOptions::default().expect_lsn(s.cp.shipped_lsn().await),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DrillError::Behind { restored, expected } if restored < expected),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        0,
        "the scratch directory is cleaned up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_damaged_object_is_detected() {
    let s = setup("missing").await;
    let reader = reader(&s);
    let mut index = RemoteIndex::for_remote(&s.remote);
    assert!(
        reader
            .validate(&mut index, &ValidateOptions::default())
            .await
            .unwrap()
            .is_ok()
    );
    let newest = reader.newest().await.unwrap().unwrap();
    let big = newest.file("state/big.bin").unwrap().clone();
    let hex = big.blake3.to_hex();
    s.store.hide(hex.clone());
    // Known to the index and not sampled: the listing still finds it gone.
    let report = reader
        .validate(&mut index, &ValidateOptions::default().sample(0))
        .await
        .unwrap();
    assert!(
        report.findings.iter().any(|f| matches!(
            f,
            Finding::ObjectMissing { version: 3, path, .. } if path == "state/big.bin"
        )),
        "{:?}",
        report.findings
    );
    let scratch = tempfile::tempdir().unwrap();
    let err = reader
        .restore_drill(scratch.path(), Some(&s.wal), &DrillOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DrillError::Restore(finn_checkpoint::Error::ObjectMissing { .. })
        ),
        "{err:?}"
    );
    s.store.unhide_all();
    // Back: it left the index when it went missing, so the next run checks its content again.
    let back = reader
        .validate(&mut index, &ValidateOptions::default().sample(0))
        .await
        .unwrap();
    assert!(back.is_ok(), "{:?}", back.findings);
    assert_eq!(back.objects_downloaded, 1);

    // Same-size corruption of a verified object: found by a full run (or when sampled).
    let key = format!(
        "missing/objects/{}/{}.{}",
        &hex[..2],
        hex,
        big.codec.extension()
    );
    let mut bytes = s
        .store
        .inner()
        .get(&key.as_str().into())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    bytes[100] ^= 0xff;
    s.store
        .inner()
        .put(&key.as_str().into(), bytes.into())
        .await
        .unwrap();
    let quick = reader
        .validate(&mut index, &ValidateOptions::default().sample(0))
        .await
        .unwrap();
    assert!(quick.is_ok(), "content is not re-read unless sampled");
    let full = reader
        .validate(&mut index, &ValidateOptions::default().full(true))
        .await
        .unwrap();
    assert!(
        full.findings
            .iter()
            .any(|f| matches!(f, Finding::ObjectDamaged { version: 3, .. })),
        "{:?}",
        full.findings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_reports_a_time_and_matches_the_live_wal() {
    let s = setup("drill").await;
    let reader = reader(&s);
    let scratch = tempfile::tempdir().unwrap();
    s.store.reset_counts();
    let report = reader
        .restore_drill(
            scratch.path(),
            Some(&s.wal),
            &DrillOptions::default().expect_lsn(s.cp.shipped_lsn().await),
        )
        .await
        .unwrap();
    assert_eq!(report.version, Some(3));
    assert_eq!(report.restored_lsn, s.wal.durable_lsn());
    assert_eq!(report.records, 25);
    assert_eq!(report.compared_records, 25);
    assert_eq!(report.files, 3);
    let last = s.wal.read(s.wal.durable_lsn()).unwrap().unwrap();
    assert_eq!(report.restorable_as_of_ms, Some(last.timestamp_ms));
    assert_eq!(
        s.store.count(OpKind::Put),
        0,
        "a drill writes nothing remote"
    );
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);

    // A live WAL that disagrees with the remote (another history under the same LSNs).
    let other_dir = tempfile::tempdir().unwrap();
    let (other, _) = Wal::open(other_dir.path(), finn_wal::Options::default()).unwrap();
    for _ in 0..s.wal.durable_lsn().get() {
        other
            .append(NewRecord::event(Kind::Memory, "other"))
            .unwrap();
    }
    let err = reader
        .restore_drill(scratch.path(), Some(&other), &DrillOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, DrillError::Diverged { .. }), "{err:?}");
}
