//! Level compaction of shipped WAL: after it, a restore to the middle of 100,000 shipped records
//! reads a handful of objects (counted through `FaultStore`), and nothing is lost on the way.

use std::sync::Arc;
use std::time::Duration;

use finn_checkpoint::fault::{Fault, FaultStore, OpKind};
use finn_checkpoint::{
    Checkpointer, Keyring, LevelPolicy, LevelSpec, Lsn, Reader, RestoreOptions, RestoreTarget,
};
use finn_wal::{Kind, NewRecord, Record, Wal};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

use crate::pitr::small_wal;
use crate::util;

const RECORDS: u64 = 100_000;

fn policy() -> LevelPolicy {
    LevelPolicy::new(vec![
        LevelSpec::new(Duration::ZERO, 5_000, 1 << 30),
        LevelSpec::new(Duration::ZERO, 50_000, 1 << 30),
    ])
    .close_open_windows(true)
}

/// Restores to `target` into a fresh WAL; returns its records and the store's GET count.
async fn restore_counting(
    reader: &Reader,
    store: &FaultStore,
    target: Lsn,
) -> (Vec<Record>, u64, finn_checkpoint::RestoreReport) {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path().join("wal"), small_wal()).unwrap();
    store.reset_counts();
    let report = reader
        .restore_to(
            RestoreTarget::Lsn(target),
            &dir.path().join("state"),
            &wal,
            &RestoreOptions::default(),
        )
        .await
        .unwrap();
    let gets = store.count(OpKind::Get);
    let records = wal
        .iter_from(Lsn::new(1))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (records, gets, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_to_the_middle_of_100k_records_reads_a_few_objects_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let store = FaultStore::new(local);
    let remote = util::remote(Arc::new(store.clone()), "levels");
    let key = util::key();
    let (wal, _) = Wal::open(dir.path().join("wal"), small_wal()).unwrap();
    let cp = Checkpointer::open(
        remote.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|o| o.ship_batch_records = 500),
    )
    .await
    .unwrap();
    for chunk in 0..10 {
        for i in 0..RECORDS / 10 {
            let n = chunk * (RECORDS / 10) + i;
            let r = NewRecord::put(
                Kind::State,
                format!("k{}", n % 977),
                n.to_le_bytes().to_vec(),
            );
            wal.append_with(r, finn_wal::Durability::None).unwrap();
        }
        wal.sync().unwrap();
        cp.ship_wal(&wal).await.unwrap();
    }
    let history: Vec<Record> = wal
        .iter_from(Lsn::new(1))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(history.len() as u64, RECORDS);
    let reader = Reader::new(remote.clone(), Keyring::trusting(key.verifying_key()));
    let lineage = cp.lineage().await;
    let target = Lsn::new(RECORDS / 2 + 1234);

    let (got, gets_before, before) = restore_counting(&reader, &store, target).await;
    assert_eq!(got[..], history[..target.get() as usize]);
    eprintln!(
        "before compaction: {} wal objects, {gets_before} gets",
        before.wal_objects
    );
    assert!(before.wal_objects > 100);

    // A pass interrupted after writing its first merged object, before deleting what it merged:
    // the merged object and its parts coexist, and restores still read correct records.
    store.inject(Fault::error().of_kind(OpKind::Delete));
    assert!(cp.compact_wal(&policy()).await.is_err());
    let (got, _, _) = restore_counting(&reader, &store, target).await;
    assert_eq!(got[..], history[..target.get() as usize]);

    let report = cp.compact_wal(&policy()).await.unwrap();
    eprintln!(
        "compaction: {} created, {} deleted, {} read",
        report.created.len(),
        report.deleted,
        report.read
    );
    let objects = reader.wal_objects(lineage).await.unwrap();
    let levels: Vec<u8> = objects.iter().map(|o| o.name.level).collect();
    assert_eq!(levels, [2, 2], "everything merged into two level-2 objects");
    assert_eq!(
        reader.shipped_after(lineage, Lsn::ZERO).await.unwrap(),
        history,
        "compaction lost or changed nothing"
    );

    let (got, gets_after, after) = restore_counting(&reader, &store, target).await;
    assert_eq!(got[..], history[..target.get() as usize]);
    eprintln!(
        "after compaction: {} wal objects, {gets_after} gets",
        after.wal_objects
    );
    assert_eq!(after.wal_objects, 2);
    assert!(
        gets_after <= 24,
        "a restore to the middle reads a few dozen objects at most, not {gets_after}"
    );
    assert!(gets_after * 5 < gets_before);

    // A second pass has nothing to do.
    let again = cp.compact_wal(&policy()).await.unwrap();
    assert!(again.created.is_empty() && again.deleted == 0);
    // Shipping continues above the compacted levels; a restore reads level 2 + level 0.
    for i in 0..10u64 {
        wal.append(NewRecord::event(Kind::Audit, i.to_le_bytes().to_vec()))
            .unwrap();
    }
    cp.ship_wal(&wal).await.unwrap();
    let (got, _, tail) = restore_counting(&reader, &store, Lsn::new(RECORDS + 10)).await;
    assert_eq!(got.len() as u64, RECORDS + 10);
    assert_eq!(tail.wal_objects, 3);
}

/// Compaction deletes the objects a restore planned to read while it runs: the restore lists
/// again and finishes with the same records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_racing_compaction_lists_again_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let store = FaultStore::new(local);
    let remote = util::remote(Arc::new(store.clone()), "race");
    let key = util::key();
    let (wal, _) = Wal::open(dir.path().join("wal"), small_wal()).unwrap();
    let cp = Checkpointer::open(
        remote.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|o| o.ship_batch_records = 100),
    )
    .await
    .unwrap();
    for i in 0..5_000u64 {
        wal.append_with(
            NewRecord::event(Kind::Audit, i.to_le_bytes().to_vec()),
            finn_wal::Durability::None,
        )
        .unwrap();
    }
    wal.sync().unwrap();
    cp.ship_wal(&wal).await.unwrap();
    let history: Vec<Record> = wal
        .iter_from(Lsn::new(1))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let reader = Reader::new(remote, Keyring::trusting(key.verifying_key()));
    // The restore's first WAL download stalls until compaction has replaced every object.
    store.inject(Fault::delay(Duration::from_millis(800)).on_keys_containing(".batch"));
    let restore = {
        let reader = reader.clone();
        tokio::spawn(async move {
            let dir = tempfile::tempdir().unwrap();
            let (wal, _) = Wal::open(dir.path().join("wal"), small_wal()).unwrap();
            let report = reader
                .restore_to(
                    RestoreTarget::Latest,
                    &dir.path().join("state"),
                    &wal,
                    &RestoreOptions::default().prefetch(1),
                )
                .await
                .unwrap();
            let records: Vec<Record> = wal
                .iter_from(Lsn::new(1))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            (report, records)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let compacted = cp.compact_wal(&policy()).await.unwrap();
    assert!(compacted.deleted >= 50, "{compacted:?}");
    let (report, records) = restore.await.unwrap();
    assert_eq!(records, history);
    assert_eq!(report.reached_lsn, Lsn::new(5_000));
    assert!(
        report.wal_objects < 50,
        "the rest came from the merged objects after listing again ({} objects)",
        report.wal_objects
    );
}
