//! The protocol suite, run unchanged against InMemory, LocalFileSystem and moto (S3).

use std::collections::BTreeMap;
use std::time::Duration;

use finn_checkpoint::{ChainCheck, CheckpointInput, Checkpointer, Error, Keyring, Lsn, Reader};

use crate::util::{self, Backend};

fn input_of(files: &BTreeMap<String, Vec<u8>>, lsn: u64) -> CheckpointInput {
    let mut input = CheckpointInput::new(Lsn::new(lsn));
    for (p, b) in files {
        input.add_bytes(p, b.clone()).unwrap();
    }
    input
}

async fn restore(reader: &Reader, version: u64) -> BTreeMap<String, Vec<u8>> {
    let m = reader.load(version).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    reader.fetch_files(&m, dir.path(), 4).await.unwrap();
    util::read_tree(dir.path())
}

async fn suite(b: Backend) {
    let name = b.name;
    let remote = util::remote(b.store.clone(), &b.prefix);
    let key = util::key();
    let ring = Keyring::trusting(key.verifying_key());
    let options = util::opts(|o| o.multipart_threshold = 6 << 20);
    let cp = Checkpointer::open(remote.clone(), key.clone(), Keyring::new(), options)
        .await
        .unwrap();
    assert_eq!(cp.epoch(), 1, "{name}");

    // v1: three files, one nested, one large enough to be streamed in multipart.
    let mut v1 = BTreeMap::new();
    v1.insert("agent.json".to_owned(), b"{\"name\":\"finn\"}".to_vec());
    v1.insert("beads/queue.jsonl".to_owned(), b"{\"id\":1}\n".repeat(500));
    v1.insert("blob.bin".to_owned(), util::noise(1, 11 << 20));
    let r1 = cp.checkpoint(input_of(&v1, 10)).await.unwrap();
    assert_eq!(
        (r1.version, r1.files, r1.uploaded_objects),
        (1, 3, 3),
        "{name}"
    );

    let reader = Reader::new(remote.clone(), ring.clone());
    assert_eq!(
        restore(&reader, 1).await,
        v1,
        "{name}: v1 restores byte-for-byte"
    );

    // v2: one file changed, one added, one removed.
    let mut v2 = v1.clone();
    v2.insert(
        "agent.json".to_owned(),
        b"{\"name\":\"finn\",\"turn\":2}".to_vec(),
    );
    v2.insert("notes/new.md".to_owned(), b"# new".to_vec());
    v2.remove("beads/queue.jsonl");
    let r2 = cp.checkpoint(input_of(&v2, 20)).await.unwrap();
    assert_eq!(r2.version, 2, "{name}");
    assert_eq!(
        r2.reused_objects, 1,
        "{name}: the unchanged large file is not uploaded again"
    );

    let versions: Vec<u64> = reader
        .versions()
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, vec![2, 1], "{name}");
    let m2 = reader.load(2).await.unwrap();
    assert_eq!(m2.chain(), ChainCheck::Linked, "{name}");
    assert_eq!(m2.covered_lsn, Lsn::new(20));
    assert_eq!(m2.previous.unwrap().version, 1);
    assert_eq!(restore(&reader, 2).await, v2, "{name}: v2 restores");
    assert_eq!(restore(&reader, 1).await, v1, "{name}: v1 untouched by v2");
    assert_eq!(reader.newest().await.unwrap().unwrap().version, 2);

    // The covered LSN never goes backwards within a lineage.
    assert!(
        matches!(
            cp.checkpoint(input_of(&v2, 19)).await,
            Err(Error::LsnRegression { .. })
        ),
        "{name}"
    );

    // Retention 1 and no grace: v1 and the objects only it used go; v2 stays complete.
    drop(cp);
    let options = util::opts(|o| {
        o.retain = 1;
        o.takeover = finn_checkpoint::Takeover::Force;
    });
    let cp = Checkpointer::open(remote.clone(), key.clone(), Keyring::new(), options)
        .await
        .unwrap();
    let gc = cp
        .gc_with(Duration::ZERO, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(gc.deleted_manifests, vec![1], "{name}");
    assert_eq!(
        gc.deleted_objects, 2,
        "{name}: old agent.json and the queue"
    );
    assert_eq!(restore(&reader, 2).await, v2, "{name}: v2 survives gc");
    assert_eq!(
        reader.load(2).await.unwrap().chain(),
        ChainCheck::BeyondRetention,
        "{name}"
    );
    assert!(
        matches!(
            reader.load(1).await,
            Err(Error::ManifestMissing { version: 1 })
        ),
        "{name}"
    );
    cp.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_suite_in_memory() {
    suite(util::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_suite_local_filesystem() {
    suite(util::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_suite_s3_moto() {
    if let Some(b) = util::s3() {
        suite(b).await;
    }
}

#[tokio::test]
async fn lease_is_exclusive_until_expiry_or_forced() {
    let b = util::memory();
    let remote = util::remote(b.store.clone(), &b.prefix);
    let opts = |takeover, ttl| {
        util::opts(|o| {
            o.takeover = takeover;
            o.lease_ttl = ttl;
        })
    };
    let first = Checkpointer::open(
        remote.clone(),
        util::key(),
        Keyring::new(),
        opts(Default::default(), Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let second = Checkpointer::open(
        remote.clone(),
        util::key(),
        Keyring::new(),
        opts(Default::default(), Duration::from_secs(60)),
    )
    .await;
    assert!(matches!(second, Err(Error::LeaseHeld { epoch: 1, .. })));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = Checkpointer::open(
        remote.clone(),
        util::key(),
        Keyring::new(),
        opts(Default::default(), Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert_eq!(second.epoch(), 2);
    assert!(matches!(
        first.renew().await,
        Err(Error::Fenced {
            epoch: 1,
            current: 2
        })
    ));
    second.release().await.unwrap();
    let third = Checkpointer::open(
        remote,
        util::key(),
        Keyring::new(),
        opts(Default::default(), Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert_eq!(third.epoch(), 3, "a released lease is free at once");
}
