//! `write_atomic` through simulated power loss ([`finn_wal::fs::sim::SimFs`]).
//!
//! The power fails after every operation of a replacement (create the temp file, write, sync
//! it, rename, sync the directory), and each time every image a power loss may leave is checked:
//! only what was synced, and that plus random subsets of the unsynced writes and renames (64
//! seeds). The file must hold the old or the new contents, never a mix, never empty; once
//! `write_atomic` has returned Ok, only the new contents. Two broken variants (no data sync
//! before the rename, no directory sync after it) run through the same check, which must catch
//! them: the check can fail.

use std::io::Write;
use std::path::Path;

use finn_wal::fs::sim::{Crash, SimFs};
use finn_wal::fs::{Io, IoFile, LockGuard, OpenMode, write_atomic_with};

const OLD: &[u8] = b"{\"generation\":1,\"notes\":\"the old contents\"}";
const SEEDS: u64 = 64;

fn new_contents() -> Vec<u8> {
    // More than a sector, so that torn writes show.
    (0..2000u32).flat_map(|i| i.to_le_bytes()).collect()
}

type Writer = fn(&SimFs, &Path, &[u8]) -> std::io::Result<()>;

/// Runs `write` with the power failing after every operation; returns the first violation.
fn check(write: Writer) -> Result<u64, String> {
    let path = Path::new("/agent/state/agent.json");
    let new = new_contents();
    let full = {
        let fs = SimFs::new();
        fs.put_durable(path, OLD);
        write(&fs, path, &new).map_err(|e| e.to_string())?;
        fs.ops()
    };
    for halt in 0..=full {
        let fs = SimFs::new();
        fs.put_durable(path, OLD);
        fs.halt_after(halt);
        let acknowledged = write(&fs, path, &new).is_ok();
        let modes = std::iter::once(Crash::DropUnsynced).chain((0..SEEDS).map(Crash::Subset));
        for mode in modes {
            let got = fs.crash(mode).read(path);
            let ok = match got.as_deref() {
                Some(b) if b == new.as_slice() => true,
                Some(b) if b == OLD => !acknowledged,
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "power lost after {halt} of {full} operations, {mode:?}, acknowledged \
                     {acknowledged}: the file holds {:?}",
                    got.map(|b| b.len())
                ));
            }
        }
    }
    Ok(full)
}

#[test]
fn write_atomic_leaves_the_old_or_the_new_file_after_any_power_loss() {
    let ops = check(|fs, path, bytes| write_atomic_with(fs, path, |f| f.write_all(bytes))).unwrap();
    assert_eq!(ops, 5, "create, write, sync, rename, sync the directory");
}

#[test]
fn the_check_catches_a_rename_before_the_data_is_synced() {
    fn unsynced_rename(fs: &SimFs, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let f = fs.open(&tmp, OpenMode::CreateNew)?;
        f.write_all_at(bytes, 0)?;
        fs.rename(&tmp, path)?;
        fs.sync_dir(path.parent().unwrap())
    }
    let err = check(unsynced_rename).unwrap_err();
    assert!(
        err.contains("Subset") || err.contains("DropUnsynced"),
        "{err}"
    );
}

#[test]
fn the_check_catches_a_missing_directory_sync() {
    fn no_dir_sync(fs: &SimFs, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let f = fs.open(&tmp, OpenMode::CreateNew)?;
        f.write_all_at(bytes, 0)?;
        f.sync_data()?;
        fs.rename(&tmp, path)
    }
    let err = check(no_dir_sync).unwrap_err();
    assert!(err.contains("acknowledged true"), "{err}");
}

#[test]
fn a_failed_data_sync_is_reported_never_retried_and_the_old_file_stays() {
    let path = Path::new("/agent/state/agent.json");
    let fs = SimFs::new();
    fs.put_durable(path, OLD);
    fs.fail_next_sync();
    let err = write_atomic_with(&fs, path, |f| f.write_all(&new_contents())).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5), "EIO reaches the caller");
    // create, write, the failed sync, then only the temp file's removal: no second sync.
    assert_eq!(fs.ops(), 4, "the failed sync is not retried");
    assert_eq!(
        fs.read(path).as_deref(),
        Some(OLD),
        "the old file is untouched"
    );
    assert_eq!(fs.list(path.parent().unwrap()), vec![path.to_path_buf()]);
    for seed in 0..SEEDS {
        assert_eq!(
            fs.crash(Crash::Subset(seed)).read(path).as_deref(),
            Some(OLD)
        );
    }
}

#[test]
fn a_failed_directory_sync_is_reported_and_leaves_the_old_or_the_new_file() {
    /// Fails the sync that follows the rename: the directory's.
    #[derive(Debug)]
    struct FailDirSync<'a>(&'a SimFs);
    impl Io for FailDirSync<'_> {
        fn open(&self, p: &Path, mode: OpenMode) -> std::io::Result<Box<dyn IoFile>> {
            self.0.open(p, mode)
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            self.0.rename(from, to)?;
            self.0.fail_next_sync();
            Ok(())
        }
        fn remove_file(&self, p: &Path) -> std::io::Result<()> {
            self.0.remove_file(p)
        }
        fn read_dir(&self, dir: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
            self.0.read_dir(dir)
        }
        fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
            self.0.create_dir_all(dir)
        }
        fn create_dir(&self, dir: &Path) -> std::io::Result<()> {
            self.0.create_dir(dir)
        }
        fn remove_dir_all(&self, dir: &Path) -> std::io::Result<()> {
            self.0.remove_dir_all(dir)
        }
        fn is_dir(&self, p: &Path) -> bool {
            self.0.is_dir(p)
        }
        fn exists(&self, p: &Path) -> std::io::Result<bool> {
            self.0.exists(p)
        }
        fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
            self.0.sync_dir(dir)
        }
        fn try_lock(&self, p: &Path) -> std::io::Result<Option<LockGuard>> {
            self.0.try_lock(p)
        }
    }
    let path = Path::new("/agent/state/agent.json");
    let new = new_contents();
    let fs = SimFs::new();
    fs.put_durable(path, OLD);
    let err = write_atomic_with(&FailDirSync(&fs), path, |f| f.write_all(&new)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5), "EIO reaches the caller");
    // create, write, sync, rename, the failed sync, then the temp removal (already renamed).
    assert_eq!(fs.ops(), 6, "the failed sync is not retried");
    for seed in 0..SEEDS {
        let got = fs.crash(Crash::Subset(seed)).read(path);
        assert!(got.as_deref() == Some(OLD) || got.as_deref() == Some(new.as_slice()));
    }
}
