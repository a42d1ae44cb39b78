//! Fault injection: fail the k-th store operation of a full checkpoint, for every k.
//!
//! After each failure: the newest published checkpoint restores byte-for-byte, no published
//! manifest names a missing object, the next checkpoint succeeds, and GC removes the debris.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use finn_checkpoint::fault::{Fault, FaultStore};
use finn_checkpoint::{
    CheckpointInput, Checkpointer, Keyring, Lsn, Reader, Remote, RemoteOptions, SigningKey,
};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::util;

fn tree(generation: u8) -> BTreeMap<String, Vec<u8>> {
    let mut t = BTreeMap::new();
    t.insert(
        "agent.json".to_owned(),
        format!("{{\"generation\":{generation}}}").into_bytes(),
    );
    t.insert(
        "beads/queue.jsonl".to_owned(),
        format!("{{\"id\":{generation}}}\n")
            .repeat(200)
            .into_bytes(),
    );
    t.insert(
        "memory/notes.md".to_owned(),
        b"# notes\n".repeat(50 + generation as usize),
    );
    t.insert("stable.bin".to_owned(), util::noise(7, 4096));
    // Large and incompressible: streamed in three multipart parts.
    t.insert(
        "big.bin".to_owned(),
        util::noise(100 + generation as u64, 80 << 10),
    );
    t
}

fn input(t: &BTreeMap<String, Vec<u8>>, lsn: u64) -> CheckpointInput {
    let mut i = CheckpointInput::new(Lsn::new(lsn));
    for (p, b) in t {
        i.add_bytes(p, b.clone()).unwrap();
    }
    i
}

fn fault_remote(store: &FaultStore, prefix: &str, timeout: Duration) -> Remote {
    let r = util::remote(Arc::new(store.clone()), prefix);
    Remote::new(
        r.store().clone(),
        prefix,
        RemoteOptions::default()
            .breaker(r.breaker().clone())
            .timeout(timeout),
    )
}

/// Keys of every object the published manifests name, and whether each exists.
async fn check_invariants(
    inner: &Arc<dyn ObjectStore>,
    prefix: &str,
    key: &SigningKey,
    expect: &[BTreeMap<String, Vec<u8>>],
) {
    let remote = util::remote(inner.clone(), prefix);
    let reader = Reader::new(remote.clone(), Keyring::trusting(key.verifying_key()));
    for v in reader.versions().await.unwrap() {
        let m = reader.load(v.version).await.unwrap();
        for f in &m.files {
            let k = format!(
                "{prefix}/objects/{}/{}.{}",
                &f.blake3.to_hex()[..2],
                f.blake3,
                f.codec.extension()
            );
            assert!(
                inner.head(&k.as_str().into()).await.is_ok(),
                "manifest {} names missing {k}",
                v.version
            );
        }
    }
    let newest = reader
        .newest()
        .await
        .unwrap()
        .expect("a checkpoint is published");
    let dir = tempfile::tempdir().unwrap();
    reader.fetch_files(&newest, dir.path(), 4).await.unwrap();
    let got = util::read_tree(dir.path());
    assert!(
        expect.contains(&got),
        "newest checkpoint v{} restores to a published state",
        newest.version
    );
}

/// GC (no grace) removes the debris: afterwards exactly the objects of the newest manifest exist
/// (retain = 1), and no intent is left.
async fn assert_gc_leaves_only_the_newest(
    inner: &Arc<dyn ObjectStore>,
    prefix: &str,
    key: &SigningKey,
    mut gc_opts: finn_checkpoint::CheckpointerOptions,
    case: &str,
) {
    gc_opts.retain = 1;
    let remote = util::remote(inner.clone(), prefix);
    let cp = Checkpointer::open(remote, key.clone(), Keyring::new(), gc_opts)
        .await
        .unwrap();
    cp.gc_with(Duration::ZERO, Duration::ZERO).await.unwrap();
    let reader = Reader::new(
        util::remote(inner.clone(), prefix),
        Keyring::trusting(key.verifying_key()),
    );
    let newest = reader.newest().await.unwrap().unwrap();
    let wanted: BTreeSet<String> = newest
        .files
        .iter()
        .map(|f| {
            format!(
                "{prefix}/objects/{}/{}.{}",
                &f.blake3.to_hex()[..2],
                f.blake3,
                f.codec.extension()
            )
        })
        .collect();
    let mut present = BTreeSet::new();
    let mut intents = 0;
    use futures::StreamExt;
    let mut list = inner.list(Some(&prefix.into()));
    while let Some(m) = list.next().await {
        let loc = m.unwrap().location.to_string();
        if loc.contains("/objects/") {
            present.insert(loc);
        } else if loc.contains("/intents/") {
            intents += 1;
        }
    }
    assert_eq!(
        present, wanted,
        "{case}: gc leaves exactly the needed objects"
    );
    assert_eq!(intents, 0, "{case}: gc removes stale intents");
}

/// Small parts (the big file goes multipart), and a writer that takes over from a dead one.
fn options() -> finn_checkpoint::CheckpointerOptions {
    util::opts(|o| {
        o.multipart_threshold = 32 << 10;
        o.part_size = 32 << 10;
        o.takeover = finn_checkpoint::Takeover::Force;
    })
}

async fn campaign(fault: fn() -> Fault, timeout: Duration) -> u64 {
    let key = SigningKey::generate();
    let (t1, t2, t3) = (tree(1), tree(2), tree(3));
    let mut k = 1;
    loop {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let store = FaultStore::new(inner.clone());
        let prefix = "agent";
        let remote = fault_remote(&store, prefix, timeout);
        let cp = Checkpointer::open(remote.clone(), key.clone(), Keyring::new(), options())
            .await
            .unwrap();
        cp.checkpoint(input(&t1, 1)).await.unwrap();

        store.inject(fault().on_nth(k));
        let second = cp.checkpoint(input(&t2, 2)).await;
        let fired = store.fired() > 0;
        store.clear_faults();
        if !fired {
            second.unwrap();
            return k - 1;
        }
        // The last published checkpoint is t1, or t2 if the failure came after the publish.
        check_invariants(&inner, prefix, &key, &[t1.clone(), t2.clone()]).await;

        // The next checkpoint succeeds (a fresh writer if this one was stopped).
        let cp = match cp.checkpoint(input(&t3, 3)).await {
            Ok(_) => cp,
            Err(e) => {
                assert!(
                    !matches!(e, finn_checkpoint::Error::VersionConflict { .. }),
                    "k={k}: {e}"
                );
                let cp = Checkpointer::open(remote.clone(), key.clone(), Keyring::new(), options())
                    .await
                    .unwrap();
                cp.checkpoint(input(&t3, 3))
                    .await
                    .unwrap_or_else(|e| panic!("k={k}: {e}"));
                cp
            }
        };
        check_invariants(&inner, prefix, &key, std::slice::from_ref(&t3)).await;

        drop(cp);
        assert_gc_leaves_only_the_newest(&inner, prefix, &key, options(), &format!("k={k}")).await;
        k += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_failing_with_an_error() {
    let n = campaign(Fault::error, Duration::from_secs(10)).await;
    eprintln!("a full checkpoint took {n} store operations; each failed once");
    assert!(
        n >= 20,
        "the campaign covered the whole checkpoint ({n} operations)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_timing_out() {
    let n = campaign(Fault::hang, Duration::from_millis(50)).await;
    assert!(n >= 20, "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_losing_its_answer() {
    // The operation happens but the caller sees an error: the "did my create win?" case.
    let n = campaign(Fault::lost, Duration::from_secs(10)).await;
    assert!(n >= 20, "{n}");
}

/// The fail points of `Checkpointer::checkpoint`, in order, with whether the new version is
/// published when the writer dies there.
const PUBLISH_STEPS: &[(&str, bool)] = &[
    ("checkpoint::publish::after_prepare", false),
    ("checkpoint::publish::after_intent", false),
    ("checkpoint::publish::after_upload", false),
    ("checkpoint::publish::after_manifest", true),
    ("checkpoint::publish::after_intent_removed", true),
];

/// The writer dies (a panic, as a process would die) at one step of publishing checkpoint 2;
/// then a fresh writer takes over. Readers see checkpoint 1 or 2 whole, never a mix; the next
/// checkpoint takes the next free version; GC removes what the dead writer left.
async fn writer_dies_at(point: &str, published: bool) {
    let scenario = fail::FailScenario::setup();
    let key = SigningKey::generate();
    let (t1, t2, t3) = (tree(1), tree(2), tree(3));
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let prefix = "agent";
    let remote = util::remote(inner.clone(), prefix);
    let cp = Checkpointer::open(remote.clone(), key.clone(), Keyring::new(), options())
        .await
        .unwrap();
    assert_eq!(cp.checkpoint(input(&t1, 1)).await.unwrap().version, 1);

    fail::cfg(point, "panic").unwrap();
    let second = input(&t2, 2);
    let died = tokio::spawn(async move { cp.checkpoint(second).await }).await;
    fail::remove(point);
    assert!(
        died.as_ref().is_err_and(|e| e.is_panic()),
        "{point}: the writer died there"
    );

    let now = if published { &t2 } else { &t1 };
    check_invariants(&inner, prefix, &key, std::slice::from_ref(now)).await;

    let cp = Checkpointer::open(remote, key.clone(), Keyring::new(), options())
        .await
        .unwrap();
    let next = cp.checkpoint(input(&t3, 3)).await.unwrap();
    assert_eq!(
        next.version,
        if published { 3 } else { 2 },
        "{point}: the next checkpoint takes the next free version"
    );
    check_invariants(&inner, prefix, &key, std::slice::from_ref(&t3)).await;
    drop(cp);
    assert_gc_leaves_only_the_newest(&inner, prefix, &key, options(), point).await;
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_dying_at_every_publication_step_loses_nothing() {
    for &(point, published) in PUBLISH_STEPS {
        writer_dies_at(point, published).await;
    }
}
