//! Eight publishers race for the same version, 100 times: exactly one wins each time.

use std::collections::BTreeMap;
use std::sync::Arc;

use finn_checkpoint::{Error, Keyring, LineageId, Lsn, Manifest, Reader, SigningKey, publish};
use object_store::ObjectStore;

use crate::util;

fn manifest(version: u64, writer: usize, lineage: LineageId) -> Manifest {
    let mut metadata = BTreeMap::new();
    metadata.insert("writer".to_owned(), writer.to_string());
    Manifest {
        version,
        created_at_ms: 0,
        covered_lsn: Lsn::new(version),
        writer_epoch: writer as u64 + 1,
        lineage,
        parent: None,
        previous: None,
        encryption_key_id: String::new(),
        signer: SigningKey::generate().id(),
        metadata,
        files: Vec::new(),
    }
}

async fn race(store: Arc<dyn ObjectStore>, prefix: &str, rounds: u64) {
    let remote = util::remote(store, prefix);
    let key = SigningKey::generate();
    let lineage = LineageId::generate();
    for version in 1..=rounds {
        let signed: Vec<_> = (0..8)
            .map(|w| manifest(version, w, lineage).sign(&key))
            .collect();
        let tasks: Vec<_> = signed
            .iter()
            .cloned()
            .map(|s| {
                let remote = remote.clone();
                tokio::spawn(async move { publish(&remote, &s).await })
            })
            .collect();
        let mut winners = Vec::new();
        for (w, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(()) => winners.push(w),
                Err(Error::VersionConflict {
                    version: v,
                    winner_epoch,
                }) => {
                    assert_eq!(v, version);
                    assert!(
                        winner_epoch.is_some(),
                        "the loser learns the winner's epoch"
                    );
                }
                Err(e) => panic!("round {version}: unexpected {e}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {version}: exactly one winner, got {winners:?}"
        );
        // No manifest is lost: the stored one is exactly the winner's.
        let reader = Reader::new(remote.clone(), Keyring::trusting(key.verifying_key()));
        let stored = reader.load(version).await.unwrap();
        assert_eq!(
            stored.signed().bytes(),
            signed[winners[0]].bytes(),
            "round {version}"
        );
    }
    let reader = Reader::new(remote, Keyring::trusting(key.verifying_key()));
    assert_eq!(reader.versions().await.unwrap().len() as u64, rounds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_publishers_in_memory() {
    let b = util::memory();
    race(b.store.clone(), &b.prefix, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_publishers_local_filesystem() {
    let b = util::local();
    race(b.store.clone(), &b.prefix, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_publishers_s3_moto() {
    if let Some(b) = util::s3() {
        race(b.store.clone(), &b.prefix, 100).await;
    }
}
