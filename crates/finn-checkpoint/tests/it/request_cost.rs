//! Request-cost discipline: the steady-state sync loop (ship + checkpoint) never lists the bucket,
//! and the request counters agree with what the store saw.

use std::sync::Arc;

use finn_checkpoint::fault::{FaultStore, OpKind};
use finn_checkpoint::{
    CheckpointInput, Checkpointer, Keyring, Lsn, Remote, RemoteOptions, StoreOptions, UploadLimits,
};
use finn_wal::{Kind, NewRecord, Wal};
use object_store::ObjectStore;
use object_store::memory::InMemory;

use crate::util;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_sync_makes_no_list_request() {
    let store = FaultStore::new(Arc::new(InMemory::new()));
    let remote = util::remote(Arc::new(store.clone()) as Arc<dyn ObjectStore>, "cost");
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path().join("wal"), finn_wal::Options::default()).unwrap();
    let cp = Checkpointer::open(
        remote.clone(),
        util::key(),
        Keyring::new(),
        util::opts(|_| {}),
    )
    .await
    .unwrap();
    assert!(
        store.count(OpKind::List) > 0,
        "open lists once to learn the state"
    );

    // A first sync, then steady state: many rounds of appends, ships and checkpoints.
    wal.append(NewRecord::event(Kind::Memory, "warm-up"))
        .unwrap();
    cp.ship_wal(&wal).await.unwrap();
    store.reset_counts();
    let before = remote.requests();
    let rounds = 25;
    for round in 0..rounds {
        for i in 0..5 {
            wal.append(NewRecord::put(
                Kind::State,
                format!("k{i}"),
                format!("{round}").into_bytes(),
            ))
            .unwrap();
        }
        let shipped = cp.ship_wal(&wal).await.unwrap();
        assert_eq!(shipped.shipped_lsn, wal.durable_lsn());
        if round % 5 == 4 {
            let mut input = CheckpointInput::new(wal.durable_lsn());
            input
                .add_bytes("state.json", format!("{{\"round\":{round}}}").into_bytes())
                .unwrap();
            cp.checkpoint(input).await.unwrap();
        }
    }
    let counts = store.counts();
    assert_eq!(
        store.count(OpKind::List),
        0,
        "no LIST in steady state; requests were {counts:?}"
    );
    let seen = remote.requests().since(&before);
    assert_eq!(seen.list, 0);
    assert_eq!(
        seen.put,
        store.count(OpKind::Put),
        "the remote's counters match the store's"
    );
    assert_eq!(seen.head, store.count(OpKind::Head));
    assert_eq!(seen.get, store.count(OpKind::Get));
    assert!(seen.put >= rounds, "every round shipped a batch");
    // The lease check costs at most two HEADs; a ship is a check, a create, and a check.
    assert!(seen.head <= 6 * rounds + 40, "HEADs stay bounded: {seen:?}");
    assert!(seen.bytes_sent > 0);

    // A takeover is still noticed at once, without listing on the writer's side.
    let other = Checkpointer::open(
        remote.clone(),
        util::key(),
        Keyring::new(),
        util::opts(|o| o.takeover = finn_checkpoint::Takeover::Force),
    )
    .await
    .unwrap();
    wal.append(NewRecord::event(Kind::Memory, "zombie"))
        .unwrap();
    assert!(cp.ship_wal(&wal).await.unwrap_err().is_fenced());
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_taken_by_someone_else_is_reconciled_with_one_listing() {
    let store = FaultStore::new(Arc::new(InMemory::new()));
    let remote = util::remote(Arc::new(store.clone()) as Arc<dyn ObjectStore>, "conflict");
    let key = util::key();
    let cp = Checkpointer::open(
        remote.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|_| {}),
    )
    .await
    .unwrap();
    let mut input = CheckpointInput::new(Lsn::new(1));
    input.add_bytes("a", b"1".to_vec()).unwrap();
    cp.checkpoint(input).await.unwrap();
    // Someone publishes version 2 behind the writer's back (a manifest signed by the writer's
    // key, as a lost-answer retry of another process would leave).
    let head = cp.head().await.unwrap();
    let mut m = head.manifest().clone();
    m.version = 2;
    m.previous = Some(head.link());
    finn_checkpoint::publish(&remote, &m.sign(&key))
        .await
        .unwrap();

    store.reset_counts();
    let mut input = CheckpointInput::new(Lsn::new(3));
    input.add_bytes("a", b"3".to_vec()).unwrap();
    let report = cp.checkpoint(input).await.unwrap();
    assert_eq!(report.version, 3, "published above the stray version");
    assert_eq!(store.count(OpKind::List), 1, "exactly one reconciling LIST");
}

#[test]
fn provider_limits_are_built_in() {
    let options = StoreOptions::default()
        .endpoint("https://0123456789abcdef.r2.cloudflarestorage.com")
        .region("auto")
        .credentials("k", "s");
    let r2 = Remote::from_url("s3://bucket/agent", &options, RemoteOptions::default()).unwrap();
    assert_eq!(
        r2.upload_limits().concurrency_limit(),
        Some(finn_checkpoint::R2_MAX_CONCURRENT_UPLOADS)
    );
    // An explicit setting wins.
    let mine = Remote::from_url(
        "s3://bucket/agent",
        &options,
        RemoteOptions::default()
            .uploads(UploadLimits::default().max_concurrent(1).bandwidth(1 << 20)),
    )
    .unwrap();
    assert_eq!(mine.upload_limits().concurrency_limit(), Some(1));
    assert_eq!(mine.upload_limits().bandwidth_limit(), Some(1 << 20));
    let plain = Remote::from_url(
        "memory:///x",
        &StoreOptions::default(),
        RemoteOptions::default(),
    )
    .unwrap();
    assert_eq!(plain.upload_limits().concurrency_limit(), None);
}
