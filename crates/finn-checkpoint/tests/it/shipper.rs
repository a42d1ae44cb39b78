//! Remote-durable acknowledgement: `await_shipped`, the RPO tick, failures, fencing, shutdown.

use std::sync::Arc;
use std::time::Duration;

use finn_checkpoint::fault::{Fault, FaultStore, OpKind};
use finn_checkpoint::{
    Checkpointer, Error, Keyring, Lsn, Reader, Shipper, ShipperOptions, Takeover,
};
use finn_wal::{Durability, Kind, NewRecord, Wal};
use object_store::memory::InMemory;

use crate::pitr::small_wal;
use crate::util;

async fn shipped_records(reader: &Reader, cp: &Checkpointer) -> Vec<Lsn> {
    reader
        .shipped_after(cp.lineage().await, Lsn::ZERO)
        .await
        .unwrap()
        .iter()
        .map(|r| r.lsn)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_become_remote_durable_on_request_and_within_the_rpo() {
    let store = FaultStore::new(Arc::new(InMemory::new()));
    let remote = util::remote(Arc::new(store.clone()), "rpo");
    let key = util::key();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path().join("wal"), small_wal()).unwrap();
    let wal = Arc::new(wal);
    let cp = Arc::new(
        Checkpointer::open(
            remote.clone(),
            key.clone(),
            Keyring::new(),
            util::opts(|_| {}),
        )
        .await
        .unwrap(),
    );
    let reader = Reader::new(remote.clone(), Keyring::trusting(key.verifying_key()));
    // A long RPO: anything shipped quickly below was asked for.
    let shipper = Shipper::for_checkpointer(
        cp.clone(),
        wal.clone(),
        None,
        ShipperOptions::default().rpo(Duration::from_secs(3600)),
    )
    .await;

    // Remote-durable per write: the ack comes once the record is in the store.
    let lsn = wal
        .append(NewRecord::put(Kind::Session, "s", b"pay 10".to_vec()))
        .unwrap();
    assert_eq!(shipper.await_shipped(lsn).await.unwrap(), lsn);
    assert_eq!(shipped_records(&reader, &cp).await, [lsn]);
    // Local-durable writes are not shipped until someone asks (or the RPO tick).
    let local = wal.append(NewRecord::event(Kind::Audit, "x")).unwrap();
    assert_eq!(shipper.shipped_lsn(), lsn);
    assert!(matches!(
        shipper.await_shipped(Lsn::new(local.get() + 100)).await,
        Err(Error::NotAppended { .. })
    ));

    // The store fails: the waiter hears why instead of hanging; it may wait again later.
    store.inject(Fault::error().of_kind(OpKind::Put).repeatedly());
    match shipper.await_shipped(local).await {
        Err(Error::NotShipped { lsn: l, source }) => {
            assert_eq!(l, local);
            assert!(matches!(*source, Error::Remote { .. }), "{source:?}");
        }
        other => panic!("expected NotShipped, got {other:?}"),
    }
    assert!(shipper.status().consecutive_failures >= 1);
    assert!(shipper.status().last_error.is_some());
    store.clear_faults();
    shipper.ship_now();
    assert_eq!(shipper.await_shipped(local).await.unwrap(), local);
    assert_eq!(shipper.status().consecutive_failures, 0);

    // Shutdown ships what is synced.
    let mut last = local;
    for i in 0..20u8 {
        last = wal
            .append_with(NewRecord::event(Kind::Audit, vec![i]), Durability::None)
            .unwrap();
    }
    wal.sync().unwrap();
    assert_eq!(shipper.shutdown().await.unwrap(), last);
    assert_eq!(shipped_records(&reader, &cp).await.len() as u64, last.get());

    // The RPO tick alone ships synced records, nobody asking.
    let ticking = Shipper::for_checkpointer(
        cp.clone(),
        wal.clone(),
        None,
        ShipperOptions::default().rpo(Duration::from_millis(20)),
    )
    .await;
    let next = wal.append(NewRecord::event(Kind::Audit, "tick")).unwrap();
    let mut waited = 0;
    while ticking.shipped_lsn() < next && waited < 500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    assert_eq!(ticking.shipped_lsn(), next, "shipped by the rpo tick");
    assert!(ticking.status().attempts >= 1);

    // A writer taking over the prefix fences this one: the shipper stops for good.
    let _new = Checkpointer::open(
        remote.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|o| o.takeover = Takeover::Force),
    )
    .await
    .unwrap();
    let fenced = wal.append(NewRecord::event(Kind::Audit, "late")).unwrap();
    let err = ticking.await_shipped(fenced).await.unwrap_err();
    assert!(err.is_fenced(), "{err:?}");
    let mut waited = 0;
    while !ticking.status().stopped && waited < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(ticking.status().stopped);
    assert!(matches!(
        ticking.await_shipped(fenced).await,
        Err(Error::ShipperStopped) | Err(Error::NotShipped { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipper_compacts_what_it_shipped() {
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
    let remote = util::remote(store, "compacting");
    let key = util::key();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path().join("wal"), small_wal()).unwrap();
    let wal = Arc::new(wal);
    let cp = Arc::new(
        Checkpointer::open(
            remote.clone(),
            key.clone(),
            Keyring::new(),
            util::opts(|_| {}),
        )
        .await
        .unwrap(),
    );
    let policy = finn_checkpoint::LevelPolicy::new(vec![finn_checkpoint::LevelSpec::new(
        Duration::ZERO,
        1_000,
        1 << 30,
    )])
    .close_open_windows(true);
    let shipper = Shipper::for_checkpointer(
        cp.clone(),
        wal.clone(),
        Some(policy),
        ShipperOptions::default()
            .rpo(Duration::from_millis(5))
            .compact_every(Duration::from_millis(20)),
    )
    .await;
    let mut last = Lsn::ZERO;
    for round in 0..10u8 {
        for i in 0..10u8 {
            last = wal
                .append(NewRecord::event(Kind::Audit, vec![round, i]))
                .unwrap();
        }
        shipper.await_shipped(last).await.unwrap();
    }
    let reader = Reader::new(remote, Keyring::trusting(key.verifying_key()));
    let lineage = cp.lineage().await;
    let mut waited = 0;
    while reader
        .wal_objects(lineage)
        .await
        .unwrap()
        .iter()
        .any(|o| o.name.level == 0)
        && waited < 500
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    let objects = reader.wal_objects(lineage).await.unwrap();
    assert!(objects.iter().all(|o| o.name.level == 1), "{objects:?}");
    assert_eq!(
        reader
            .shipped_after(lineage, Lsn::ZERO)
            .await
            .unwrap()
            .len() as u64,
        last.get()
    );
    shipper.shutdown().await.unwrap();
}
