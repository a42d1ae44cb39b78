//! Fencing: a second writer takes the lease over; the first (a zombie) is refused on its next
//! manifest or shipped batch, and readers see only the second writer's data after the takeover,
//! even when the zombie's write slipped in between its lease check and the store.

use std::sync::Arc;
use std::time::Duration;

use finn_checkpoint::fault::{Fault, FaultStore, OpKind};
use finn_checkpoint::{CheckpointInput, Checkpointer, Error, Keyring, Lsn, Reader, Takeover};
use finn_wal::{Kind, NewRecord, Wal};
use object_store::ObjectStore;
use object_store::memory::InMemory;

use crate::util;

fn input(text: &str, lsn: u64) -> CheckpointInput {
    let mut i = CheckpointInput::new(Lsn::new(lsn));
    i.add_bytes("state.txt", text.as_bytes().to_vec()).unwrap();
    i
}

fn wal(dir: &std::path::Path) -> Wal {
    Wal::open(dir, finn_wal::Options::default()).unwrap().0
}

async fn wait_fired(store: &FaultStore) {
    while store.fired() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zombie_is_refused_and_invisible_after_takeover() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let zombie_store = FaultStore::new(inner.clone());
    let key = util::key();
    let ring = Keyring::trusting(key.verifying_key());
    let remote_a = util::remote(Arc::new(zombie_store.clone()), "p");
    let remote_b = util::remote(inner.clone(), "p");
    let dirs = tempfile::tempdir().unwrap();

    // Writer A: a checkpoint and ten shipped records.
    let wal_a = wal(&dirs.path().join("a"));
    for i in 1..=10 {
        wal_a
            .append(NewRecord::event(Kind::Memory, format!("a{i}")))
            .unwrap();
    }
    let a = Checkpointer::open(
        remote_a.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|_| {}),
    )
    .await
    .unwrap();
    a.checkpoint(input("a-1", 5)).await.unwrap();
    a.ship_wal(&wal_a).await.unwrap();

    // A keeps writing; its next manifest put stalls (a slow network) past its lease check.
    for i in 11..=20 {
        wal_a
            .append(NewRecord::event(Kind::Memory, format!("zombie{i}")))
            .unwrap();
    }
    zombie_store.inject(
        Fault::delay(Duration::from_millis(300))
            .of_kind(OpKind::Put)
            .on_keys_containing("/manifests/"),
    );
    let a = Arc::new(a);
    let a2 = a.clone();
    let zombie_manifest = tokio::spawn(async move { a2.checkpoint(input("zombie", 20)).await });
    wait_fired(&zombie_store).await;

    // Writer B takes over while A's put is in flight, then restores what the seal recorded.
    let b = Checkpointer::open(
        remote_b.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|o| o.takeover = Takeover::Force),
    )
    .await
    .unwrap();
    assert_eq!(b.epoch(), 2);
    let lineage = b.lineage().await;
    let reader = Reader::new(remote_b.clone(), ring.clone());
    let restored = reader.shipped_after(lineage, Lsn::ZERO).await.unwrap();
    assert_eq!(restored.len(), 10);

    // A's manifest landed after the takeover, but A finds out and stops.
    let zombie_result = zombie_manifest.await.unwrap();
    assert!(
        matches!(
            zombie_result,
            Err(Error::Fenced {
                epoch: 1,
                current: 2
            })
        ),
        "{zombie_result:?}"
    );
    let zombie_version = reader.versions().await.unwrap()[0].version;
    assert!(matches!(
        reader.load(zombie_version).await,
        Err(Error::FencedWrite { epoch: 1, .. })
    ));
    // Every later write of A is refused before it reaches the store.
    let puts = zombie_store.count(OpKind::Put);
    assert!(
        a.checkpoint(input("zombie-2", 20))
            .await
            .unwrap_err()
            .is_fenced()
    );
    assert!(a.ship_wal(&wal_a).await.unwrap_err().is_fenced());
    assert_eq!(
        zombie_store.count(OpKind::Put),
        puts,
        "a stopped zombie writes nothing"
    );

    // B continues from the restored state with its own records and checkpoint.
    let wal_b = wal(&dirs.path().join("b"));
    wal_b.append_replicated(&restored).unwrap();
    for i in 11..=15 {
        wal_b
            .append(NewRecord::event(Kind::Memory, format!("b{i}")))
            .unwrap();
    }
    b.ship_wal(&wal_b).await.unwrap();
    let rb = b.checkpoint(input("b-1", 12)).await.unwrap();
    assert_eq!(
        rb.version,
        zombie_version + 1,
        "versions are never reused, not even a zombie's"
    );

    let newest = reader.newest().await.unwrap().unwrap();
    assert_eq!(newest.version, rb.version);
    assert_eq!(
        newest.previous.unwrap().version,
        1,
        "B's chain skips the zombie manifest"
    );
    let dir = tempfile::tempdir().unwrap();
    reader.fetch_files(&newest, dir.path(), 2).await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("state.txt")).unwrap(), b"b-1");
    let after: Vec<_> = reader.shipped_after(lineage, Lsn::new(12)).await.unwrap();
    let payloads: Vec<_> = after
        .iter()
        .map(|r| String::from_utf8(r.payload.clone()).unwrap())
        .collect();
    assert_eq!(payloads, ["b13", "b14", "b15"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zombie_shipped_batch_that_slips_in_is_ignored() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let zombie_store = FaultStore::new(inner.clone());
    let key = util::key();
    let ring = Keyring::trusting(key.verifying_key());
    let remote_a = util::remote(Arc::new(zombie_store.clone()), "p");
    let remote_b = util::remote(inner.clone(), "p");
    let dirs = tempfile::tempdir().unwrap();
    let wal_a = wal(&dirs.path().join("a"));
    for i in 1..=10 {
        wal_a
            .append(NewRecord::event(Kind::Memory, format!("a{i}")))
            .unwrap();
    }
    let a = Arc::new(
        Checkpointer::open(remote_a, key.clone(), Keyring::new(), util::opts(|_| {}))
            .await
            .unwrap(),
    );
    a.ship_wal(&wal_a).await.unwrap();
    for i in 11..=20 {
        wal_a
            .append(NewRecord::event(Kind::Memory, format!("zombie{i}")))
            .unwrap();
    }
    zombie_store.inject(
        Fault::delay(Duration::from_millis(300))
            .of_kind(OpKind::Put)
            .on_keys_containing("/wal/"),
    );
    let (a2, wal_a) = (a.clone(), Arc::new(wal_a));
    let w2 = wal_a.clone();
    let zombie_ship = tokio::spawn(async move { a2.ship_wal(&w2).await });
    wait_fired(&zombie_store).await;
    let b = Checkpointer::open(
        remote_b.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|o| o.takeover = Takeover::Force),
    )
    .await
    .unwrap();
    assert!(zombie_ship.await.unwrap().unwrap_err().is_fenced());

    let reader = Reader::new(remote_b.clone(), ring);
    let lineage = b.lineage().await;
    let all = reader.shipped_after(lineage, Lsn::ZERO).await.unwrap();
    assert_eq!(
        all.len(),
        10,
        "the zombie's batch (11..=20) landed but is ignored"
    );
    let wal_b = wal(&dirs.path().join("b"));
    wal_b.append_replicated(&all).unwrap();
    wal_b.append(NewRecord::event(Kind::Memory, "b11")).unwrap();
    b.ship_wal(&wal_b).await.unwrap();
    let all = reader.shipped_after(lineage, Lsn::ZERO).await.unwrap();
    assert_eq!(all.len(), 11);
    assert_eq!(all[10].payload, b"b11");
    // GC removes the zombie's batch.
    let gc = b.gc_with(Duration::ZERO, Duration::ZERO).await.unwrap();
    assert_eq!(gc.deleted_batches, 1);
}
