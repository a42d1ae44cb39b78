//! Tampering and path attacks: every one is refused and nothing is written outside the state
//! directory (anchors.md §4.5-2, -3, -6; §12 item 4).

use std::path::Path;

use finn_checkpoint::manifest::MANIFEST_SIGNATURE_DOMAIN;
use finn_checkpoint::{CheckpointPath, Keyring, Manifest, SigningKey};
use finn_recovery::source::git::GitSource;
use finn_recovery::source::object_store::ObjectStoreSource;
use finn_recovery::{Cascade, CascadeError, Layout, SourceKind, Warning};

use crate::end_to_end::{git, git_archive, world};
use crate::util::*;

async fn restore_only_from(
    w: &crate::end_to_end::World,
    keyring: Keyring,
) -> Result<finn_recovery::Recovery, CascadeError> {
    Cascade::builder(Layout::new(&w.data))
        .wal_options(wal_options())
        .source(ObjectStoreSource::new(w.remote.clone(), keyring))
        .build()
        .run()
        .await
}

fn skipped_reasons(err: &CascadeError) -> Vec<String> {
    err.report()
        .unwrap()
        .warnings
        .iter()
        .filter_map(|w| match w {
            Warning::CandidateSkipped { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Nothing but `data/` (and the test's own store / archive) exists under `root`, and no state
/// directory was created.
fn nothing_written(root: &Path, data: &Path) {
    assert!(!data.join("state").exists(), "no state was installed");
    assert_eq!(
        std::fs::read_dir(data.join("recovery/staging"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
    for entry in std::fs::read_dir(root).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            ["data", "store", "archive.git", "archive-work", "git-cache"].contains(&name.as_str()),
            "{name}"
        );
    }
}

#[tokio::test]
async fn modified_object_is_refused() {
    let w = world(None, 1, 0).await;
    std::fs::remove_dir_all(&w.data).unwrap();
    // Flip one byte of one stored object.
    let objects = w.store_dir().join("agent/objects");
    let object = walk_files(&objects).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&object, bytes).unwrap();
    let err = restore_only_from(&w, w.keyring())
        .await
        .map(drop)
        .unwrap_err();
    assert!(
        matches!(err, CascadeError::AllSourcesFailed { .. }),
        "{err}"
    );
    assert_eq!(
        skipped_reasons(&err).len(),
        1,
        "{:?}",
        skipped_reasons(&err)
    );
    nothing_written(w.root.path(), &w.data);
}

#[tokio::test]
async fn modified_manifest_entry_is_refused() {
    let w = world(None, 1, 0).await;
    std::fs::remove_dir_all(&w.data).unwrap();
    let path = w
        .store_dir()
        .join(format!("agent/manifests/{:020}.manifest", w.versions[0]));
    let mut bytes = std::fs::read(&path).unwrap();
    // Change the first file entry's blake3 (after its path string and u64 size): the entry
    // still parses, so only the signature, which covers every byte, can catch it.
    let name = b"dir0/file-000.txt";
    let at = bytes
        .windows(name.len())
        .position(|win| win == name)
        .unwrap()
        + name.len()
        + 8;
    bytes[at] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = restore_only_from(&w, w.keyring())
        .await
        .map(drop)
        .unwrap_err();
    let reasons = skipped_reasons(&err);
    assert!(reasons[0].contains("signature"), "{reasons:?}");
    nothing_written(w.root.path(), &w.data);
}

#[tokio::test]
async fn revoked_key_is_refused() {
    let w = world(None, 1, 0).await;
    std::fs::remove_dir_all(&w.data).unwrap();
    let mut keyring = w.keyring();
    keyring.revoke(w.key.id());
    let err = restore_only_from(&w, keyring).await.map(drop).unwrap_err();
    assert!(
        skipped_reasons(&err)[0].contains("revoked"),
        "{:?}",
        skipped_reasons(&err)
    );
    nothing_written(w.root.path(), &w.data);
}

#[tokio::test]
async fn unknown_key_is_refused() {
    let w = world(None, 1, 0).await;
    std::fs::remove_dir_all(&w.data).unwrap();
    let stranger = Keyring::trusting(SigningKey::generate().verifying_key());
    let err = restore_only_from(&w, stranger).await.map(drop).unwrap_err();
    assert!(
        skipped_reasons(&err)[0].contains("unknown key"),
        "{:?}",
        skipped_reasons(&err)
    );
    nothing_written(w.root.path(), &w.data);
}

#[tokio::test]
async fn retired_but_trusted_key_still_verifies() {
    let w = world(None, 1, 0).await;
    std::fs::remove_dir_all(&w.data).unwrap();
    let mut keyring = Keyring::trusting(SigningKey::generate().verifying_key()); // the new active key
    keyring.trust(w.key.verifying_key()); // the retired one, still trusted for old manifests
    let recovery = restore_only_from(&w, keyring).await.unwrap();
    assert_eq!(
        recovery.report().source.as_ref().unwrap().kind,
        Some(SourceKind::ObjectStore)
    );
}

#[tokio::test]
async fn a_validly_signed_manifest_naming_dot_dot_outside_is_refused() {
    let w = world(None, 1, 0).await;
    std::fs::remove_dir_all(&w.data).unwrap();
    // A hostile writer with the real key: it signs a manifest whose file path is `../outside`
    // (finn-checkpoint's API cannot even build one, so the bytes are edited before signing).
    let reader = finn_checkpoint::Reader::new(w.remote.clone(), w.keyring());
    let good = reader.load(w.versions[0]).await.unwrap();
    let mut manifest: Manifest = (*good).clone();
    manifest.version += 1;
    manifest.previous = Some(good.signed().link());
    let entry = manifest.files[0].clone();
    manifest.files = vec![finn_checkpoint::FileEntry {
        path: CheckpointPath::new("aa/outside").unwrap(),
        ..entry
    }];
    let mut body = manifest.encode_body();
    let at = body.windows(10).position(|x| x == b"aa/outside").unwrap();
    body[at..at + 10].copy_from_slice(b"../outside");
    let seed = w.key.to_pkcs8_pem().unwrap();
    let dalek =
        <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_pem(
            seed.expose(),
        )
        .unwrap();
    let mut signed_msg = MANIFEST_SIGNATURE_DOMAIN.to_vec();
    signed_msg.extend_from_slice(&body);
    let signature = ed25519_dalek::Signer::sign(&dalek, &signed_msg);
    body.extend_from_slice(&signature.to_bytes());
    let key = w
        .store_dir()
        .join(format!("agent/manifests/{:020}.manifest", manifest.version));
    std::fs::write(&key, &body).unwrap();
    // Also remove the good manifest, so nothing else can be restored.
    std::fs::remove_file(
        w.store_dir()
            .join(format!("agent/manifests/{:020}.manifest", w.versions[0])),
    )
    .unwrap();

    let err = restore_only_from(&w, w.keyring())
        .await
        .map(drop)
        .unwrap_err();
    let reasons = skipped_reasons(&err);
    assert!(reasons.iter().any(|r| r.contains("..")), "{reasons:?}");
    nothing_written(w.root.path(), &w.data);
    assert!(!w.data.join("outside").exists() && !w.root.path().join("outside").exists());
}

#[tokio::test]
async fn a_symlink_in_the_staged_state_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let outside = root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let evil = FakeSource::new("evil", SourceKind::ObjectStore, state("e", 2))
        .behaving(Behaviour::Symlink(outside.clone()));
    let err = Cascade::builder(Layout::new(&data))
        .wal_options(wal_options())
        .source(evil)
        .build()
        .run()
        .await
        .map(drop)
        .unwrap_err();
    assert!(
        skipped_reasons(&err)[0].contains("symlink"),
        "{:?}",
        skipped_reasons(&err)
    );
    assert!(!data.join("state").exists());
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written through the link"
    );
}

#[tokio::test]
async fn a_symlink_in_the_git_archive_is_refused() {
    let w = world(None, 1, 0).await;
    let bare = git_archive(&w).await;
    let work = w.root.path().join("archive-work");
    std::os::unix::fs::symlink("/etc/passwd", work.join("state/link")).unwrap();
    git(Some(&work), &["add", "-A"]);
    git(
        Some(&work),
        &[
            "-c",
            "user.name=f",
            "-c",
            "user.email=f@e",
            "commit",
            "-q",
            "-m",
            "evil",
        ],
    );
    git(
        Some(&work),
        &["push", "-q", bare.to_str().unwrap(), "finn/archive"],
    );
    std::fs::remove_dir_all(&w.data).unwrap();
    let recovery = Cascade::builder(Layout::new(&w.data))
        .wal_options(wal_options())
        .source(
            GitSource::new(bare.to_str().unwrap(), w.keyring())
                .with_cache_dir(w.root.path().join("git-cache")),
        )
        .build()
        .run()
        .await
        .unwrap();
    // The newest commit is refused; the one before it (no symlink) is restored.
    let report = recovery.report();
    assert!(report.warnings.iter().any(
        |x| matches!(x, Warning::CandidateSkipped { version: 0, reason, .. } if reason.contains("120000"))
    ), "{report:#?}");
    assert_eq!(read_tree(&w.data.join("state")), w.checkpointed);
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}
