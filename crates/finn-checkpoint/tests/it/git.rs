//! Git archive: archive to a bare repository on local disk acting as the remote; clone it and
//! compare files; restore from it.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use finn_checkpoint::{CheckpointInput, Checkpointer, GitArchive, Keyring, Lsn, Reader};
use object_store::memory::InMemory;

use crate::util;

fn git(args: &[&str], cwd: &std::path::Path) {
    let out = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_to_a_bare_repository_clone_and_compare() {
    if Command::new("git").arg("--version").output().is_err() {
        if std::env::var("FINN_XTASK").is_ok_and(|v| v == "1") {
            panic!("git is not installed");
        }
        eprintln!("skipping: git is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let remote_repo = tmp.path().join("remote.git");
    std::fs::create_dir_all(&remote_repo).unwrap();
    git(&["init", "--bare", "--quiet"], &remote_repo);

    let key = util::key();
    let store_remote = util::remote(Arc::new(InMemory::new()), "g");
    let cp = Checkpointer::open(
        store_remote.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|_| {}),
    )
    .await
    .unwrap();
    let reader = Reader::new(store_remote, Keyring::trusting(key.verifying_key()));
    let archive =
        GitArchive::new(tmp.path().join("cache.git"), remote_repo.to_string_lossy()).unwrap();

    let mut files = BTreeMap::new();
    files.insert("agent.json".to_owned(), b"{\"v\":1}".to_vec());
    files.insert("beads/queue.jsonl".to_owned(), b"{\"id\":1}\n".to_vec());
    files.insert("old.txt".to_owned(), b"will be deleted".to_vec());
    for round in 1..=2u64 {
        if round == 2 {
            files.remove("old.txt");
            files.insert("agent.json".to_owned(), b"{\"v\":2}".to_vec());
        }
        let mut input = CheckpointInput::new(Lsn::new(round));
        for (p, b) in &files {
            input.add_bytes(p, b.clone()).unwrap();
        }
        cp.checkpoint(input).await.unwrap();
        // Archive from what a restore fetched: the archive holds exactly the checkpoint.
        let m = reader.newest().await.unwrap().unwrap();
        let staging = tmp.path().join(format!("staging-{round}"));
        reader.fetch_files(&m, &staging, 2).await.unwrap();
        let report = archive.archive(m.signed(), &staging).await.unwrap();
        assert_eq!((report.version, report.files), (round, files.len()));

        let clone = tmp.path().join(format!("clone-{round}"));
        git(
            &[
                "clone",
                "--quiet",
                "--branch",
                "finn/archive",
                &remote_repo.to_string_lossy(),
                &clone.to_string_lossy(),
            ],
            tmp.path(),
        );
        let mut tree = util::read_tree(&clone.join("state"));
        tree.retain(|k, _| !k.starts_with(".git"));
        assert_eq!(
            tree, files,
            "round {round}: the clone holds exactly the checkpoint (deletions too)"
        );
        assert_eq!(
            std::fs::read(clone.join("finn-manifest.bin")).unwrap(),
            m.signed().bytes()
        );
    }
    let log = Command::new("git")
        .args(["log", "--oneline", "finn/archive"])
        .current_dir(tmp.path().join("clone-2"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&log.stdout).lines().count(),
        2,
        "history is kept, never forced"
    );

    // A restore from git restores the files, verified against the signed manifest.
    let restored = tmp.path().join("restored");
    let other_cache =
        GitArchive::new(tmp.path().join("cache2.git"), remote_repo.to_string_lossy()).unwrap();
    let m = other_cache
        .restore_latest(&restored, &Keyring::trusting(key.verifying_key()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.version, 2);
    assert_eq!(util::read_tree(&restored), files);
    assert!(
        other_cache
            .restore_latest(&restored, &Keyring::new())
            .await
            .is_err(),
        "unknown signer refused"
    );
}
