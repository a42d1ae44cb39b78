//! Large thread values stored by hash in an object store: InMemory, LocalFileSystem and (when
//! `FINN_TEST_S3_ENDPOINT` is set) S3; the WAL holds only references and reads verify bytes.
#![cfg(all(feature = "wal", feature = "checkpoint"))]

use std::sync::Arc;

use finn::threads::blobs::{BlobId, BlobSink, ObjectStoreBlobs};
use finn::threads::{
    ListFilter, Source, StepInput, ThreadError, ThreadOptions, Threads, WalBackend,
};
use finn::wal::{Options, Wal};
use io::{block_on, count_objects};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

/// Small helpers over the object store's async API for the assertions.
mod io {
    use super::*;

    pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    pub fn count_objects(store: &Arc<dyn ObjectStore>, prefix: &str) -> usize {
        let prefix = ObjectPath::from(prefix);
        block_on(store.list_with_delimiter(Some(&prefix)))
            .unwrap()
            .objects
            .len()
    }
}

const THRESHOLD: u64 = 4096;

fn open_threads(dir: &std::path::Path, sink: Option<Arc<dyn BlobSink>>) -> Threads<WalBackend> {
    let (wal, _) = Wal::open(dir, Options::default()).unwrap();
    let backend = WalBackend::open(Arc::new(wal), "threads").unwrap();
    let t = Threads::open(
        backend,
        ThreadOptions {
            snapshot_every: 3,
            blob_threshold_bytes: THRESHOLD,
            ..ThreadOptions::default()
        },
    )
    .unwrap();
    match sink {
        Some(s) => t.with_blobs(s),
        None => t,
    }
}

fn big(seed: u8) -> Vec<u8> {
    (0..200_000u32)
        .map(|i| (i as u8).wrapping_mul(seed))
        .collect()
}

/// The whole story against one store: offload, reopen, fork, prune, pending writes, garbage
/// collection input, and damage detection.
fn exercise(store: Arc<dyn ObjectStore>, prefix: &str) {
    let dir = tempfile::tempdir().unwrap();
    let sink: Arc<dyn BlobSink> = Arc::new(ObjectStoreBlobs::new(store.clone(), prefix).unwrap());
    let t = open_threads(dir.path(), Some(sink.clone()));

    let doc = big(3);
    let a = t
        .put(
            "chat",
            StepInput::new(Source::Input, -1)
                .set("doc", doc.clone())
                .set("small", vec![1; 100]),
        )
        .unwrap()
        .id;
    assert_eq!(
        count_objects(&store, prefix),
        1,
        "only the large value goes to the store"
    );
    assert!(
        t.thread_bytes("chat").unwrap() < 1_000,
        "the WAL holds the value instead of a reference"
    );
    let key = format!("{prefix}/{}", BlobId::of(&doc));
    assert!(
        block_on(store.head(&ObjectPath::from(key.as_str()))).is_ok(),
        "blob not at <prefix>/<blake3 hex>"
    );

    // The same bytes again (another step, a pending write): stored once.
    let b = t
        .put(
            "chat",
            StepInput::new(Source::Loop, 0).set("copy", doc.clone()),
        )
        .unwrap()
        .id;
    let result = big(5);
    t.put_writes("chat", b, "tool", vec![("result".into(), result.clone())])
        .unwrap();
    assert_eq!(count_objects(&store, prefix), 2);
    for i in 1..6 {
        t.put(
            "chat",
            StepInput::new(Source::Loop, i).set("n", vec![i as u8]),
        )
        .unwrap();
    }

    // Reopen from the WAL: states come back through the references.
    drop(t);
    let t = open_threads(dir.path(), Some(sink.clone()));
    let cp = t.get("chat", a).unwrap().unwrap();
    assert_eq!(cp.state["doc"], doc);
    assert_eq!(cp.state["small"], vec![1; 100]);
    let latest = t.latest("chat").unwrap().unwrap();
    assert_eq!(latest.state["copy"], doc);
    assert_eq!(latest.state["doc"], doc);
    let pending = t.pending_writes("chat", b).unwrap();
    assert_eq!(
        pending[0].writes,
        vec![("result".to_owned(), result.clone())]
    );
    assert!(t.completed_tasks("chat", b).unwrap().contains("tool"));

    // Fork into a new thread and prune: references are copied, never the bytes.
    t.fork("chat", b, "branch").unwrap();
    let pruned = t.prune("chat", 2).unwrap();
    assert!(pruned.rebased > 0, "{pruned:?}");
    assert_eq!(
        count_objects(&store, prefix),
        2,
        "fork or prune re-uploaded a blob"
    );
    assert_eq!(t.latest("branch").unwrap().unwrap().state["doc"], doc);
    assert_eq!(t.latest("chat").unwrap().unwrap().state["copy"], doc);
    assert_eq!(
        t.referenced_blobs().unwrap(),
        [BlobId::of(&doc)].into_iter().collect(),
        "the pruned pending write's blob is no longer referenced"
    );

    // Damage: a changed blob and a lost blob are typed errors, not wrong state.
    let doc_key = ObjectPath::from(key.as_str());
    block_on(store.put(&doc_key, vec![0u8; doc.len()].into())).unwrap();
    match t.latest("branch") {
        Err(ThreadError::BlobCorrupt {
            id, expected_len, ..
        }) => {
            assert_eq!(id, BlobId::of(&doc));
            assert_eq!(expected_len, doc.len() as u64);
        }
        other => panic!("damaged blob not detected: {other:?}"),
    }
    block_on(store.delete(&doc_key)).unwrap();
    assert!(matches!(
        t.latest("branch"),
        Err(ThreadError::BlobMissing { .. })
    ));
    // Headers and other threads' inline data stay readable.
    assert_eq!(t.list("branch", &ListFilter::default()).unwrap().len(), 1);

    // Without a sink, a reference is reported, not misread.
    drop(t);
    let t = open_threads(dir.path(), None);
    assert!(matches!(
        t.latest("branch"),
        Err(ThreadError::NoBlobSink { .. })
    ));
}

#[test]
fn large_values_go_to_an_in_memory_object_store_by_hash() {
    exercise(
        Arc::new(object_store::memory::InMemory::new()),
        "agent/blobs",
    );
}

#[test]
fn large_values_go_to_a_local_file_system_store_by_hash() {
    let root = tempfile::tempdir().unwrap();
    let store = object_store::local::LocalFileSystem::new_with_prefix(root.path())
        .unwrap()
        .with_fsync(true);
    exercise(Arc::new(store), "blobs");
    // The blob files are plain files named by hash.
    let names: Vec<String> = std::fs::read_dir(root.path().join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.is_empty());
    assert!(names.iter().all(|n| n.len() == 64), "{names:?}");
}

#[test]
fn large_values_go_to_s3_by_hash() {
    let Ok(endpoint) = std::env::var("FINN_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("FINN_XTASK").is_err(),
            "FINN_TEST_S3_ENDPOINT is required under cargo xtask test"
        );
        println!("skipped: FINN_TEST_S3_ENDPOINT is not set");
        return;
    };
    let bucket = std::env::var("FINN_TEST_S3_BUCKET").unwrap_or_else(|_| "finn-test".into());
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap();
    let prefix = format!("threads-blobs-{}", ulid::Ulid::new());
    exercise(Arc::new(store), &prefix);
}
