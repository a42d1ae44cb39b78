//! Tampering is detected: a flipped byte in an object, a manifest field, a file entry, a
//! signature or a shipped batch; manifests signed by unknown or revoked keys are refused.

use std::sync::Arc;

use finn_checkpoint::{
    CheckpointInput, Checkpointer, Error, Keyring, Lsn, ManifestRejection, Reader, SignatureError,
};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::util;

async fn flip(store: &Arc<dyn ObjectStore>, key: &str, at: impl FnOnce(&[u8]) -> usize) {
    let path = Path::from(key);
    let mut bytes = store
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let i = at(&bytes);
    bytes[i] ^= 0x01;
    store.put(&path, bytes.into()).await.unwrap();
}

async fn setup() -> (Arc<dyn ObjectStore>, finn_checkpoint::SigningKey, Reader) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let key = util::key();
    let remote = util::remote(store.clone(), "t");
    let cp = Checkpointer::open(
        remote.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|_| {}),
    )
    .await
    .unwrap();
    let mut input = CheckpointInput::new(Lsn::new(3));
    input
        .add_bytes("compressible.txt", b"state ".repeat(1000))
        .unwrap();
    input.add_bytes("raw.bin", util::noise(3, 2000)).unwrap();
    cp.checkpoint(input).await.unwrap();
    (
        store,
        key.clone(),
        Reader::new(remote, Keyring::trusting(key.verifying_key())),
    )
}

/// Picks the byte to flip.
type ByteAt = fn(&[u8]) -> usize;

fn object_key(f: &finn_checkpoint::FileEntry) -> String {
    format!(
        "t/objects/{}/{}.{}",
        &f.blake3.to_hex()[..2],
        f.blake3,
        f.codec.extension()
    )
}

#[tokio::test]
async fn flipped_byte_in_an_object_is_detected_and_nothing_is_written() {
    let (store, _, reader) = setup().await;
    let m = reader.load(1).await.unwrap();
    for f in &m.files {
        flip(&store, &object_key(f), |b| b.len() / 2).await;
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let err = reader.fetch_file(f, &dest).await.unwrap_err();
        assert!(
            matches!(err, Error::HashMismatch { .. } | Error::Decode { .. }),
            "{}: {err}",
            f.path
        );
        assert!(!dest.exists(), "no unverified file is left behind");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no temp file either"
        );
        assert!(reader.fetch_bytes(f).await.is_err());
    }
}

#[tokio::test]
async fn flipped_byte_in_a_manifest_field_entry_or_signature_is_detected() {
    let (store, _, reader) = setup().await;
    let key = "t/manifests/00000000000000000001.manifest";
    let original = store
        .get(&Path::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let cases: Vec<(&str, ByteAt)> = vec![
        ("covered lsn", |_| 26),
        ("file entry path", |b| {
            b.windows(7).position(|w| w == b"raw.bin").unwrap() + 1
        }),
        ("file entry size", |b| {
            b.windows(7).position(|w| w == b"raw.bin").unwrap() + 7
        }),
        ("signature", |b| b.len() - 5),
    ];
    for (what, at) in cases {
        store
            .put(&Path::from(key), original.clone().into())
            .await
            .unwrap();
        reader.load(1).await.unwrap();
        flip(&store, key, at).await;
        let err = reader.load(1).await.unwrap_err();
        assert!(
            matches!(err, Error::ManifestRejected { version: 1, .. }),
            "{what}: {err}"
        );
    }
}

#[tokio::test]
async fn unknown_and_revoked_keys_are_refused() {
    let (_, key, reader) = setup().await;
    let stranger = Reader::new(
        reader.remote().clone(),
        Keyring::trusting(util::key().verifying_key()),
    );
    assert!(matches!(
        stranger.load(1).await,
        Err(Error::ManifestRejected {
            reason: ManifestRejection::Signature(SignatureError::UnknownKey(_)),
            ..
        })
    ));
    let mut ring = Keyring::trusting(key.verifying_key());
    ring.revoke(key.id());
    let revoked = Reader::new(reader.remote().clone(), ring);
    assert!(matches!(
        revoked.load(1).await,
        Err(Error::ManifestRejected {
            reason: ManifestRejection::Signature(SignatureError::RevokedKey(_)),
            ..
        })
    ));
    assert!(
        revoked.newest().await.unwrap().is_none(),
        "nothing signed by a revoked key is restorable"
    );
}

#[tokio::test]
async fn flipped_byte_in_a_shipped_batch_is_detected() {
    let (store, key, reader) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = finn_wal::Wal::open(dir.path(), finn_wal::Options::default()).unwrap();
    for i in 0..10 {
        wal.append(finn_wal::NewRecord::event(
            finn_wal::Kind::Memory,
            format!("r{i}"),
        ))
        .unwrap();
    }
    let remote = reader.remote().clone();
    let cp = Checkpointer::open(
        remote,
        key,
        Keyring::new(),
        util::opts(|o| o.takeover = finn_checkpoint::Takeover::Force),
    )
    .await
    .unwrap();
    cp.ship_wal(&wal).await.unwrap();
    let lineage = cp.lineage().await;
    let name = reader.shipped_batches(lineage).await.unwrap()[0];
    let key = format!(
        "t/wal/{lineage}/{:020}-{:020}-{:020}.batch",
        name.first.get(),
        name.last.get(),
        name.epoch
    );
    flip(&store, &key, |b| b.len() / 2).await;
    assert!(matches!(
        reader.shipped_after(lineage, Lsn::ZERO).await,
        Err(Error::BatchRejected { .. })
    ));
}
