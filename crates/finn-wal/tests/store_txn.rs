//! State-directory transactions between commit and checkpoint: the intent in the WAL is the
//! commit point, the files are rewritten from it on open whatever they hold, and intents are
//! retired only by a checkpoint that synced the files first.

use std::path::Path;
use std::sync::Arc;

use finn_wal::store::WalBackend;
use finn_wal::store::txn::{StateDir, TxnOptions};
use finn_wal::{Options, Wal};

fn backend(dir: &Path) -> WalBackend {
    let (wal, _) = Wal::open(dir.join("wal"), Options::default()).unwrap();
    WalBackend::open(Arc::new(wal), "txn").unwrap()
}

fn lazy() -> TxnOptions {
    TxnOptions::default().checkpoint_every(1000)
}

fn files(dir: &Path) -> std::path::PathBuf {
    dir.join("files")
}

/// Three transactions over the same files, none checkpointed.
/// The state directory `files(dir)` on a fresh WAL backend in `dir`, scope `t`.
fn open_state(dir: &Path, options: TxnOptions) -> StateDir<WalBackend> {
    StateDir::open_with(files(dir), backend(dir), "t", options)
        .unwrap()
        .0
}

fn commit_three(state: &StateDir<WalBackend>) {
    for g in 1..=3u8 {
        let mut t = state.begin();
        t.write("a", vec![g; 100]).unwrap();
        t.write("sub/b", vec![g + 10; 5000]).unwrap();
        if g == 2 {
            t.write("gone", b"x".to_vec()).unwrap();
        }
        if g == 3 {
            t.delete("gone").unwrap();
        }
        let c = t.commit().unwrap();
        assert!(!c.checkpointed);
    }
    assert_eq!(state.unsynced(), 3);
}

#[test]
fn power_loss_before_checkpoint_is_repaired_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _) =
        StateDir::open_with(files(dir.path()), backend(dir.path()), "t", lazy()).unwrap();
    commit_three(&state);
    drop(state);
    // What a power loss can leave of renamed but unsynced files: empty files, and contents
    // of the right length that are not the committed ones.
    let root = files(dir.path());
    std::fs::write(root.join("a"), b"").unwrap();
    std::fs::write(root.join("sub/b"), vec![0u8; 5000]).unwrap();
    std::fs::write(root.join("gone"), b"stale").unwrap();

    let (state, report) = StateDir::open(&root, backend(dir.path()), "t").unwrap();
    assert_eq!(report.reapplied, vec![1, 2, 3]);
    assert_eq!(state.read("a").unwrap(), Some(vec![3; 100]));
    assert_eq!(state.read("sub/b").unwrap(), Some(vec![13; 5000]));
    assert_eq!(state.read("gone").unwrap(), None);
    assert_eq!(state.unsynced(), 0, "open checkpoints what it re-applied");

    // The re-application was checkpointed: a second open has nothing left to do.
    drop(state);
    let (_, report) = StateDir::open(&root, backend(dir.path()), "t").unwrap();
    assert!(report.reapplied.is_empty(), "{report:?}");
}

#[test]
fn checkpoint_retires_intents_and_later_commits_are_reapplied_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = files(dir.path());
    let (state, _) = StateDir::open_with(&root, backend(dir.path()), "t", lazy()).unwrap();
    commit_three(&state);
    assert_eq!(state.checkpoint().unwrap(), 3);
    assert_eq!(state.unsynced(), 0);
    let mut t = state.begin();
    t.write("a", vec![4; 100]).unwrap();
    let c = t.commit().unwrap();
    assert_eq!(c.txid, 4);
    drop(state);
    std::fs::write(root.join("a"), b"").unwrap();

    let (state, report) = StateDir::open(&root, backend(dir.path()), "t").unwrap();
    assert_eq!(
        report.reapplied,
        vec![4],
        "retired intents must not come back"
    );
    assert_eq!(state.read("a").unwrap(), Some(vec![4; 100]));
    assert_eq!(state.read("sub/b").unwrap(), Some(vec![13; 5000]));
    // Transaction ids keep increasing after the retired ones.
    let mut t = state.begin();
    t.write("c", b"5".to_vec()).unwrap();
    assert_eq!(t.commit().unwrap().txid, 5);
}

#[test]
fn thresholds_trigger_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let state = open_state(dir.path(), TxnOptions::default().checkpoint_every(3));
    let mut flags = Vec::new();
    for i in 0..7u8 {
        let mut t = state.begin();
        t.write("f", vec![i]).unwrap();
        flags.push(t.commit().unwrap().checkpointed);
    }
    assert_eq!(flags, [false, false, true, false, false, true, false]);
    assert_eq!(state.unsynced(), 1);

    let dir2 = tempfile::tempdir().unwrap();
    let (state, _) = StateDir::open_with(
        files(dir2.path()),
        backend(dir2.path()),
        "t",
        TxnOptions::default()
            .checkpoint_every(1000)
            .checkpoint_bytes(10_000),
    )
    .unwrap();
    let mut t = state.begin();
    t.write("small", vec![1; 100]).unwrap();
    assert!(!t.commit().unwrap().checkpointed);
    let mut t = state.begin();
    t.write("big", vec![1; 20_000]).unwrap();
    assert!(t.commit().unwrap().checkpointed, "byte threshold ignored");
    assert_eq!(state.unsynced(), 0);
}

#[test]
fn an_apply_interrupted_midway_is_finished_by_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = files(dir.path());
    let (state, _) = StateDir::open(&root, backend(dir.path()), "t").unwrap();
    let mut t = state.begin();
    for i in 0..6 {
        t.write(&format!("f{i}"), b"old".to_vec()).unwrap();
    }
    t.commit().unwrap();
    // An obstacle the apply cannot write over stops it after f0..f2: the intent is durable,
    // the files are a mix, as after a kill in the middle of the apply.
    std::fs::remove_file(root.join("f3")).unwrap();
    std::fs::create_dir(root.join("f3")).unwrap();
    let mut t = state.begin();
    for i in 0..6 {
        t.write(&format!("f{i}"), b"new".to_vec()).unwrap();
    }
    assert!(t.commit().is_err());
    let raw: Vec<Option<Vec<u8>>> = (0..6)
        .map(|i| std::fs::read(root.join(format!("f{i}"))).ok())
        .collect();
    assert_eq!(raw[0].as_deref(), Some(&b"new"[..]));
    assert_eq!(
        raw[5].as_deref(),
        Some(&b"old"[..]),
        "apply did not stop midway"
    );
    drop(state);
    std::fs::remove_dir(root.join("f3")).unwrap();

    let (state, report) = StateDir::open(&root, backend(dir.path()), "t").unwrap();
    assert_eq!(report.reapplied, vec![1, 2]);
    for i in 0..6 {
        assert_eq!(state.read(&format!("f{i}")).unwrap(), Some(b"new".to_vec()));
    }
}

fn temp_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(finn_wal::store::txn::TEMP_PREFIX) {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// A write displaces the previous version into a spare temp file that the next write of the
/// same file overwrites in place (longer or shorter contents alike); checkpoints and deletes
/// remove the spares.
#[test]
fn spare_files_are_reused_and_never_outlive_a_checkpoint() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let root = files(dir.path());
    let (state, _) = StateDir::open_with(&root, backend(dir.path()), "t", lazy()).unwrap();
    let mut inodes = std::collections::BTreeSet::new();
    for body in [vec![1u8; 9000], vec![2; 10], vec![3; 5000], vec![4; 3]] {
        let mut t = state.begin();
        t.write("d/f", body.clone()).unwrap();
        t.commit().unwrap();
        assert_eq!(state.read("d/f").unwrap(), Some(body));
        inodes.insert(std::fs::metadata(root.join("d/f")).unwrap().ino());
    }
    assert_eq!(inodes.len(), 2, "the two inodes alternate");
    assert_eq!(temp_names(&root), vec!["d/.finn-txn.f"]);
    assert_eq!(state.checkpoint().unwrap(), 4);
    assert!(temp_names(&root).is_empty());

    // Deleting a file removes its spare, so its directory can go in the same transaction.
    for g in 0..2u8 {
        let mut t = state.begin();
        t.write("d/f", vec![g; 10]).unwrap();
        t.commit().unwrap();
    }
    assert_eq!(temp_names(&root), vec!["d/.finn-txn.f"]);
    let mut t = state.begin();
    t.delete("d/f").unwrap();
    t.delete("d").unwrap();
    t.commit().unwrap();
    assert!(!root.join("d").exists());
    assert!(temp_names(&root).is_empty());
    drop(state);

    // Reopening re-applies the unretired intents and checkpoints: no temp files either.
    let (state, report) = StateDir::open_with(&root, backend(dir.path()), "t", lazy()).unwrap();
    assert_eq!(report.reapplied, vec![5, 6, 7]);
    assert!(temp_names(&root).is_empty());
    assert_eq!(state.read("d/f").unwrap(), None);
}

/// A symlink under a temp name is never written through.
#[test]
fn a_planted_temp_symlink_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = files(dir.path());
    let (state, _) = StateDir::open_with(&root, backend(dir.path()), "t", lazy()).unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"keep").unwrap();
    std::os::unix::fs::symlink(&outside, root.join(".finn-txn.f")).unwrap();
    let mut t = state.begin();
    t.write("f", b"new".to_vec()).unwrap();
    assert!(t.commit().is_err());
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
}

/// Automatic checkpoints keep the spares of files written since the previous checkpoint (the
/// next period will likely write them again) and remove the idle ones.
#[test]
fn automatic_checkpoints_keep_only_spares_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let root = files(dir.path());
    let state = open_state(dir.path(), TxnOptions::default().checkpoint_every(2));
    let write = |path: &str, g: u8| {
        let mut t = state.begin();
        t.write(path, vec![g; 100]).unwrap();
        t.commit().unwrap()
    };
    write("f", 1);
    assert!(write("f", 2).checkpointed);
    assert_eq!(temp_names(&root), vec![".finn-txn.f"]);
    write("g", 3);
    assert!(write("g", 4).checkpointed);
    assert_eq!(
        temp_names(&root),
        vec![".finn-txn.g"],
        "only the spare in use stays"
    );
    // The kept spare is overwritten in place by the next period's write.
    write("g", 5);
    assert_eq!(state.read("g").unwrap(), Some(vec![5; 100]));
    state.checkpoint().unwrap();
    assert!(temp_names(&root).is_empty());
}

/// More files than the store keeps descriptors open for: every write still lands, in place of
/// the right file, and reopening finds every last version.
#[test]
fn many_files_rewritten_beyond_the_open_descriptor_cap() {
    let dir = tempfile::tempdir().unwrap();
    let root = files(dir.path());
    let state = open_state(dir.path(), TxnOptions::default().checkpoint_every(3));
    let body = |i: usize, g: usize| format!("file {i} generation {g} ").repeat(1 + (i + g) % 5);
    for g in 0..5 {
        let mut t = state.begin();
        for i in 0..80 {
            t.write(&format!("d{}/f{i}", i % 4), body(i, g)).unwrap();
        }
        t.commit().unwrap();
        for i in 0..80 {
            assert_eq!(
                state.read(&format!("d{}/f{i}", i % 4)).unwrap(),
                Some(body(i, g).into_bytes()),
                "file {i} after generation {g}"
            );
        }
    }
    drop(state);
    let (state, report) = StateDir::open(&root, backend(dir.path()), "t").unwrap();
    assert_eq!(report.reapplied, vec![4, 5]);
    for i in 0..80 {
        assert_eq!(
            state.read(&format!("d{}/f{i}", i % 4)).unwrap(),
            Some(body(i, 4).into_bytes())
        );
    }
    assert!(temp_names(&root).is_empty());
}

/// A power loss can undo a swap whose directory was not synced yet: the file's name points
/// back to the previous inode, and the spare holds whatever the in-place write left. Neither
/// matters: the transaction's intent is not retired, so opening rewrites the file.
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn a_swap_lost_to_power_loss_is_redone_from_the_log() {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    let dir = tempfile::tempdir().unwrap();
    let root = files(dir.path());
    let state = open_state(dir.path(), TxnOptions::default().checkpoint_every(2));
    for g in 1..=3u8 {
        let mut t = state.begin();
        t.write("f", vec![g; 3000]).unwrap();
        t.commit().unwrap();
    }
    // Generation 2 was checkpointed; 3 went into the spare kept from the checkpoint period.
    drop(state);
    let spare = root.join(".finn-txn.f");
    if renameat_with(CWD, &spare, CWD, root.join("f"), RenameFlags::EXCHANGE).is_err() {
        return; // no exchange on this file system: nothing to simulate
    }
    std::fs::write(&spare, vec![0u8; 10]).unwrap();
    assert_eq!(std::fs::read(root.join("f")).unwrap(), vec![2; 3000]);

    let (state, report) = StateDir::open(&root, backend(dir.path()), "t").unwrap();
    assert_eq!(report.reapplied, vec![3]);
    assert_eq!(report.temp_files_removed, 1);
    assert_eq!(state.read("f").unwrap(), Some(vec![3; 3000]));
    assert!(temp_names(&root).is_empty());
}
