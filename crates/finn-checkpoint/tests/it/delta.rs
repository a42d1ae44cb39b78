//! Delta restore: with 1 % of the local files changed, a restore downloads about 1 % of the bytes.

use std::sync::Arc;

use finn_checkpoint::fault::FaultStore;
use finn_checkpoint::{
    CheckpointInput, Checkpointer, Keyring, Lsn, Reader, RestoreOptions, RestoreTarget,
};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

use crate::pitr::small_wal;
use crate::util;

const FILES: usize = 100;
const FILE: usize = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_one_percent_of_the_files_downloads_about_one_percent() {
    let root = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(root.path()).unwrap());
    let store = FaultStore::new(local);
    let remote = util::remote(Arc::new(store.clone()), "delta");
    let key = util::key();
    let cp = Checkpointer::open(
        remote.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|_| {}),
    )
    .await
    .unwrap();
    let mut input = CheckpointInput::new(Lsn::ZERO);
    for i in 0..FILES {
        input
            .add_bytes(&format!("state/f{i:03}.bin"), util::noise(i as u64, FILE))
            .unwrap();
    }
    cp.checkpoint(input).await.unwrap();
    let reader = Reader::new(remote, Keyring::trusting(key.verifying_key()));
    let manifest = reader.newest().await.unwrap().unwrap();
    let total = (FILES * FILE) as u64;

    // The machine's state: a full restore, then 1 % of it changed, and one stray file.
    let state = root.path().join("state");
    let full = reader.fetch_files(&manifest, &state, 4).await.unwrap();
    assert_eq!(full.downloaded, total, "zstd cannot shrink noise");
    std::fs::write(state.join("state/f007.bin"), b"changed locally").unwrap();
    std::fs::write(state.join("state/stray.tmp"), b"not in the checkpoint").unwrap();

    // In place.
    store.reset_counts();
    let report = reader
        .fetch_files_delta(&manifest, &state, &state, 4)
        .await
        .unwrap();
    let got = store.bytes_got();
    eprintln!(
        "delta restore: {} of {total} bytes downloaded ({:.2} %), {got} bytes through the store",
        report.downloaded,
        100.0 * report.downloaded as f64 / total as f64
    );
    assert_eq!((report.reused_files, report.removed_files), (FILES - 1, 1));
    assert_eq!(report.downloaded, FILE as u64, "exactly the changed file");
    assert!(
        got <= total / 80,
        "about 1 %: {got} bytes of {total} fetched"
    );
    let tree = util::read_tree(&state);
    assert_eq!(tree.len(), FILES);
    for i in 0..FILES {
        assert_eq!(
            tree[&format!("state/f{i:03}.bin")],
            util::noise(i as u64, FILE)
        );
    }

    // Into a fresh staging directory, reusing the old state (what a restore with
    // `RestoreOptions::reuse_local` does): the same bytes come down, the rest is copied.
    // This time a file is missing.
    std::fs::remove_file(state.join("state/f099.bin")).unwrap();
    let staging = root.path().join("staging");
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = finn_wal::Wal::open(dir.path().join("wal"), small_wal()).unwrap();
    store.reset_counts();
    let restored = reader
        .restore_to(
            RestoreTarget::Latest,
            &staging,
            &wal,
            &RestoreOptions::default().reuse_local(&state),
        )
        .await
        .unwrap();
    assert_eq!(restored.files.reused_files, FILES - 1);
    assert_eq!(restored.files.downloaded, FILE as u64);
    assert!(store.bytes_got() <= total / 50);
    assert_eq!(util::read_tree(&staging), tree);
    assert_eq!(
        util::read_tree(&state).len(),
        FILES - 1,
        "the source is left alone"
    );
}
