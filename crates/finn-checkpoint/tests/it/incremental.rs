//! Incremental checkpoints: changing 1 of 100 files uploads about 1 % of the bytes.

use std::sync::Arc;

use finn_checkpoint::fault::FaultStore;
use finn_checkpoint::{CheckpointInput, Checkpointer, Keyring, Lsn};
use object_store::memory::InMemory;

use crate::util;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_one_of_a_hundred_files_uploads_about_one_percent() {
    let store = FaultStore::new(Arc::new(InMemory::new()));
    let remote = util::remote(Arc::new(store.clone()), "inc");
    let cp = Checkpointer::open(remote, util::key(), Keyring::new(), util::opts(|_| {}))
        .await
        .unwrap();
    const FILE: usize = 64 << 10;
    let mut files: Vec<Vec<u8>> = (0..100).map(|i| util::noise(i, FILE)).collect();
    let build = |files: &[Vec<u8>], lsn| {
        let mut input = CheckpointInput::new(Lsn::new(lsn));
        for (i, f) in files.iter().enumerate() {
            input
                .add_bytes(&format!("state/file-{i:03}.bin"), f.clone())
                .unwrap();
        }
        input
    };
    let first = cp.checkpoint(build(&files, 1)).await.unwrap();
    let total = (100 * FILE) as u64;
    assert_eq!(first.uploaded_bytes, total);

    files[42] = util::noise(4242, FILE);
    store.reset_counts();
    let second = cp.checkpoint(build(&files, 2)).await.unwrap();
    let wire = store.bytes_put();
    eprintln!(
        "second checkpoint: {} object bytes ({:.2} % of {total}), {wire} bytes on the wire incl. manifest and intent ({:.2} %)",
        second.uploaded_bytes,
        100.0 * second.uploaded_bytes as f64 / total as f64,
        100.0 * wire as f64 / total as f64
    );
    assert_eq!((second.uploaded_objects, second.reused_objects), (1, 99));
    assert_eq!(
        second.uploaded_bytes, FILE as u64,
        "exactly the changed file"
    );
    assert!(
        wire < total / 50,
        "all puts of the second checkpoint stay under 2 % ({wire} of {total})"
    );
}
