//! WAL shipping: 10,000 records across many segments, restored from the object store alone.

use std::sync::Arc;

use finn_checkpoint::{Checkpointer, Error, Keyring, Lsn, Reader};
use finn_wal::{Kind, NewRecord, Wal};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::util;

fn small_segments() -> finn_wal::Options {
    finn_wal::Options {
        segment_size: 64 << 10,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_restore_from_the_store_alone() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let remote = util::remote(store.clone(), "ship");
    let key = util::key();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path().join("wal"), small_segments()).unwrap();
    let cp = Checkpointer::open(
        remote.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|o| o.ship_batch_records = 500),
    )
    .await
    .unwrap();
    let mut shipped = 0;
    for round in 0..4 {
        for i in 0..2500 {
            let record = match i % 3 {
                0 => NewRecord::event(Kind::Memory, format!("event {round}/{i} ").repeat(3)),
                1 => NewRecord::put(Kind::Bead, format!("bead-{i}"), vec![round as u8; i % 97]),
                _ => NewRecord::delete(Kind::State, format!("k{i}")),
            };
            wal.append_with(record, finn_wal::Durability::None).unwrap();
        }
        wal.sync().unwrap();
        let report = cp.ship_wal(&wal).await.unwrap();
        shipped += report.records;
        assert_eq!(report.shipped_lsn, wal.durable_lsn());
    }
    assert_eq!(shipped, 10_000);
    assert!(wal.status().segments > 10, "the log spans many segments");
    let original: Vec<_> = wal
        .iter_from(Lsn::new(1))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let lineage = cp.lineage().await;
    drop((cp, wal));

    // Restore with nothing but the store and the public key.
    let reader = Reader::new(
        util::remote(store.clone(), "ship"),
        Keyring::trusting(key.verifying_key()),
    );
    assert_eq!(reader.lineage_of_newest().await.unwrap(), Some(lineage));
    let batches = reader.shipped_batches(lineage).await.unwrap();
    assert!(batches.len() >= 20, "{} batches", batches.len());
    let restored = reader.shipped_after(lineage, Lsn::ZERO).await.unwrap();
    assert_eq!(restored.len(), 10_000);
    assert_eq!(restored, original);
    let (copy, _) = Wal::open(dir.path().join("copy"), small_segments()).unwrap();
    let last = reader
        .replay_into(lineage, Lsn::ZERO, &copy, 16 << 10)
        .await
        .unwrap();
    assert_eq!(last, Lsn::new(10_000));
    let copied: Vec<_> = copy
        .iter_from(Lsn::new(1))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(copied, original);
    // After an LSN: every later record, not only the newest batch.
    let tail = reader.shipped_after(lineage, Lsn::new(4321)).await.unwrap();
    assert_eq!(tail.len(), 10_000 - 4321);
    assert_eq!(tail[0].lsn, Lsn::new(4322));

    // A batch deleted from the middle is a detected gap, not a silent hole.
    let victim = batches[batches.len() / 2];
    let key = format!(
        "ship/wal/{lineage}/{:020}-{:020}-{:020}.batch",
        victim.first.get(),
        victim.last.get(),
        victim.epoch
    );
    store.delete(&key.as_str().into()).await.unwrap();
    assert!(matches!(
        reader.shipped_after(lineage, Lsn::ZERO).await,
        Err(Error::ShippedGap { .. })
    ));
}
