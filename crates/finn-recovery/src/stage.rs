//! Staged restores: a candidate state is written into `recovery/staging/<ulid>/`, verified, then
//! swapped in for the state directory with one atomic rename.
//!
//! The anchors wrote restored files one by one into the live directory, so a failure half way
//! (or a bad file found late) left a mix of old and new files before the next source was tried.
//! Here nothing a source does is visible until the whole candidate verified:
//!
//! 1. every file is created with `O_CREAT|O_EXCL` (never through a symlink), written and
//!    fdatasynced; every directory created is fsynced ([`Staging::seal`]);
//! 2. the cascade verifies the tree (`verify.rs`);
//! 3. `swap.json` is written durably, naming the staging directory;
//! 4. the staging directory and the state directory are exchanged with
//!    `renameat2(RENAME_EXCHANGE)`: one atomic step, after which the state path holds the new
//!    state and the staging path the old one; both parents are fsynced;
//! 5. the old state is renamed into `recovery/aside/` (kept, never deleted), directories fsynced,
//!    and `swap.json` removed.
//!
//! A crash anywhere leaves the state path holding the complete old state or the complete new one.
//! Where `RENAME_EXCHANGE` is not supported, step 4 is two renames (state → aside, staging →
//! state); a crash between them leaves no state directory, and [`repair`] (run at the start of
//! every cascade) rolls the swap forward from `swap.json`: the staged tree was verified before
//! the record was written.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use finn_checkpoint::CheckpointPath;
use serde::{Deserialize, Serialize};

use crate::durable::{sync_dir, write_atomic};
use crate::layout::Layout;

/// Why staging or swapping failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// An I/O operation failed.
    #[error("staging i/o error on {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A path component inside the staging directory is not a plain directory (a symlink, or a
    /// file where a directory is needed); nothing is written through it.
    #[error("staged path {path} has a component that is not a directory: {component}")]
    NotADirectory {
        /// The file being staged.
        path: String,
        /// The offending component.
        component: PathBuf,
    },
    /// The state directory and the staging directory are on different filesystems.
    #[error(
        "state directory {state_dir} is not on the filesystem of {recovery_dir}; keep both in the data directory"
    )]
    CrossDevice {
        /// The state directory.
        state_dir: PathBuf,
        /// The recovery directory.
        recovery_dir: PathBuf,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StageError + '_ {
    move |source| StageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A staging directory being filled by a [`RecoverySource`](crate::RecoverySource).
///
/// Files go in with [`Staging::write`] or [`Staging::create`]; a source that runs a tool writing
/// into [`Staging::dir`] itself (such as `git`) may do that too: whatever is in the directory is
/// verified against the candidate's file list before it is used, and anything unexpected (an
/// extra file, a symlink, a device) makes the candidate fail.
///
/// Dropping a `Staging` that was not swapped in removes its directory: it only ever held a
/// candidate copy, never the user's state.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    root: PathBuf,
    dirs: BTreeSet<PathBuf>,
    files: Vec<PathBuf>,
    bytes: u64,
    keep: bool,
}

impl Staging {
    /// Creates `root/<ulid>/`.
    pub(crate) fn new_in(root: &Path) -> Result<Self, StageError> {
        fs::create_dir_all(root).map_err(io_at(root))?;
        let dir = root.join(ulid::Ulid::new().to_string());
        fs::create_dir(&dir).map_err(io_at(&dir))?;
        sync_dir(root).map_err(io_at(root))?;
        let mut dirs = BTreeSet::new();
        dirs.insert(dir.clone());
        Ok(Self {
            dir,
            root: root.to_owned(),
            dirs,
            files: Vec::new(),
            bytes: 0,
            keep: false,
        })
    }

    /// The staging directory. The candidate state goes directly under it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes written through [`Staging::write`] and [`Staging::create`] (as counted by the
    /// caller for `create`).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes a whole file and fdatasyncs it. Fails if the file exists.
    pub fn write(&mut self, path: &CheckpointPath, bytes: &[u8]) -> Result<(), StageError> {
        let (mut file, full) = self.open_new(path)?;
        file.write_all(bytes).map_err(io_at(&full))?;
        file.sync_data().map_err(io_at(&full))?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Creates a file for streaming writes (large objects). The caller writes it; it is
    /// fdatasynced by the cascade before anything is swapped in. `len` is added to
    /// [`Staging::bytes`].
    pub fn create(&mut self, path: &CheckpointPath, len: u64) -> Result<File, StageError> {
        let (file, full) = self.open_new(path)?;
        self.files.push(full);
        self.bytes += len;
        Ok(file)
    }

    /// Creates the parent directories of `path` (never through a symlink) and returns where
    /// the file goes, for tools that write the file themselves (a downloader that writes a temp
    /// file and renames it). The file must be durable before the call that staged it returns;
    /// the cascade fsyncs the directories before the swap. `len` is added to [`Staging::bytes`].
    pub fn destination(&mut self, path: &CheckpointPath, len: u64) -> Result<PathBuf, StageError> {
        let full = path.under(&self.dir);
        let parent = full.parent().unwrap_or(&self.dir).to_path_buf();
        self.ensure_dir(path, &parent)?;
        self.bytes += len;
        Ok(full)
    }

    fn open_new(&mut self, path: &CheckpointPath) -> Result<(File, PathBuf), StageError> {
        let full = path.under(&self.dir);
        let parent = full.parent().unwrap_or(&self.dir).to_path_buf();
        self.ensure_dir(path, &parent)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            // create_new is O_EXCL, which already refuses an existing symlink; NOFOLLOW says so.
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&full)
            .map_err(io_at(&full))?;
        Ok((file, full))
    }

    /// Creates `dir` and its missing ancestors under the staging directory, refusing to pass
    /// through anything that is not a real directory.
    fn ensure_dir(&mut self, path: &CheckpointPath, dir: &Path) -> Result<(), StageError> {
        if self.dirs.contains(dir) {
            return Ok(());
        }
        let rel = dir
            .strip_prefix(&self.dir)
            .map_err(|_| StageError::NotADirectory {
                path: path.to_string(),
                component: dir.to_owned(),
            })?;
        let mut current = self.dir.clone();
        for component in rel.components() {
            current.push(component);
            if self.dirs.contains(&current) {
                continue;
            }
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_dir() => {}
                Ok(_) => {
                    return Err(StageError::NotADirectory {
                        path: path.to_string(),
                        component: current,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&current).map_err(io_at(&current))?;
                }
                Err(e) => {
                    return Err(StageError::Io {
                        path: current,
                        source: e,
                    });
                }
            }
            self.dirs.insert(current.clone());
        }
        Ok(())
    }

    /// Makes the staged tree durable: fdatasync of streamed files, fsync of every directory in
    /// the tree, deepest first, then of the staging root.
    pub(crate) fn seal(&self) -> Result<(), StageError> {
        for file in &self.files {
            File::open(file)
                .and_then(|f| f.sync_data())
                .map_err(io_at(file))?;
        }
        // Directories made by tools writing into dir() are not in self.dirs: walk the tree.
        let mut dirs = Vec::new();
        collect_dirs(&self.dir, &mut dirs)?;
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in &dirs {
            sync_dir(dir).map_err(io_at(dir))?;
        }
        sync_dir(&self.root).map_err(io_at(&self.root))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: leftovers are removed by the next run's repair() anyway.
            let _ = fs::remove_dir_all(&self.dir);
            let _ = sync_dir(&self.root);
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), StageError> {
    out.push(dir.to_owned());
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        if entry.file_type().map_err(io_at(dir))?.is_dir() {
            collect_dirs(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// The durable record of a swap in progress.
#[derive(Debug, Serialize, Deserialize)]
struct SwapRecord {
    format: String,
    /// Name of the staging directory under `recovery/staging/`.
    staging: String,
    /// Name the previous state gets under `recovery/aside/`.
    aside: String,
}

const SWAP_FORMAT: &str = "finn-recovery/swap";

/// Swaps a sealed, verified staging directory in for the state directory. Returns where the
/// previous state directory was kept, if there was one.
pub(crate) fn swap_in(
    layout: &Layout,
    mut staging: Staging,
    set: ulid::Ulid,
) -> Result<Option<PathBuf>, StageError> {
    staging.seal()?;
    fail::fail_point!("recovery::swap::before_record");
    let state = layout.state_dir().to_owned();
    let state_parent = parent_of(&state);
    fs::create_dir_all(&state_parent).map_err(io_at(&state_parent))?;
    same_filesystem(layout, &state_parent)?;
    let aside_root = layout.aside_root();
    fs::create_dir_all(&aside_root).map_err(io_at(&aside_root))?;

    let staging_name = file_name(&staging.dir);
    let aside_name = crate::aside::free_name(&aside_root, set, "replaced-state");
    let aside = aside_root.join(&aside_name);
    let record_path = layout.swap_record();
    let record = SwapRecord {
        format: SWAP_FORMAT.to_owned(),
        staging: staging_name,
        aside: aside_name,
    };
    let record_bytes = serde_json::to_vec(&record).map_err(|e| StageError::Io {
        path: record_path.clone(),
        source: io::Error::other(e),
    })?;
    write_atomic(&record_path, &record_bytes).map_err(io_at(&record_path))?;
    // From here on, the staging directory belongs to the swap record, not to the Drop guard.
    staging.keep = true;
    fail::fail_point!("recovery::swap::after_record");
    let staged = staging.dir.clone();
    let staging_root = staging.root.clone();

    let state_exists = match fs::symlink_metadata(&state) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            return Err(StageError::Io {
                path: state,
                source: e,
            });
        }
    };
    let kept = if state_exists {
        match exchange(&staged, &state) {
            Ok(()) => {
                fail::fail_point!("recovery::swap::after_exchange");
                sync_dir(&state_parent).map_err(io_at(&state_parent))?;
                sync_dir(&staging_root).map_err(io_at(&staging_root))?;
                // The staging path now holds the previous state: keep it.
                fs::rename(&staged, &aside).map_err(io_at(&staged))?;
                fail::fail_point!("recovery::swap::after_aside");
            }
            Err(e) if exchange_unsupported(&e) => {
                tracing::debug!(error = %e, "RENAME_EXCHANGE unsupported; two-rename swap");
                fs::rename(&state, &aside).map_err(io_at(&state))?;
                sync_dir(&state_parent).map_err(io_at(&state_parent))?;
                fail::fail_point!("recovery::swap::between_renames");
                fs::rename(&staged, &state).map_err(io_at(&staged))?;
            }
            Err(e) => {
                return Err(StageError::Io {
                    path: state,
                    source: e,
                });
            }
        }
        Some(aside)
    } else {
        fs::rename(&staged, &state).map_err(io_at(&staged))?;
        None
    };
    sync_dir(&state_parent).map_err(io_at(&state_parent))?;
    sync_dir(&staging_root).map_err(io_at(&staging_root))?;
    sync_dir(&aside_root).map_err(io_at(&aside_root))?;
    fail::fail_point!("recovery::swap::before_done");
    remove_record(layout)?;
    Ok(kept)
}

fn remove_record(layout: &Layout) -> Result<(), StageError> {
    let record_path = layout.swap_record();
    fs::remove_file(&record_path).map_err(io_at(&record_path))?;
    let recovery = layout.recovery_dir();
    sync_dir(&recovery).map_err(io_at(&recovery))
}

fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    // Lets tests take the two-rename path a filesystem without RENAME_EXCHANGE takes.
    fail::fail_point!("recovery::swap::no_exchange", |_| Err(io::Error::from(
        rustix::io::Errno::INVAL
    )));
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        a,
        rustix::fs::CWD,
        b,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .map_err(io::Error::from)
}

fn exchange_unsupported(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(rustix::io::Errno::INVAL.raw_os_error())
        || code == Some(rustix::io::Errno::NOSYS.raw_os_error())
        || code == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error())
}

/// What [`repair`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Repair {
    /// An interrupted two-rename swap was completed: the staged state is now the state.
    pub rolled_forward: bool,
    /// Directories moved into `recovery/aside/`.
    pub set_aside: Vec<PathBuf>,
    /// Abandoned staging directories removed (partial candidates, never user state).
    pub removed_partial: usize,
}

/// Finishes or cleans up after a crash: completes an interrupted swap from `swap.json`, and
/// removes staging directories of candidates that never reached the swap.
pub(crate) fn repair(layout: &Layout, set: ulid::Ulid) -> Result<Repair, StageError> {
    let mut out = Repair::default();
    let record_path = layout.swap_record();
    let staging_root = layout.staging_root();
    let mut protected = None;
    match fs::read(&record_path) {
        Ok(bytes) => {
            match serde_json::from_slice::<SwapRecord>(&bytes) {
                Ok(record)
                    if record.format == SWAP_FORMAT
                        && is_plain_name(&record.staging)
                        && is_plain_name(&record.aside) =>
                {
                    let staged = staging_root.join(&record.staging);
                    let state = layout.state_dir();
                    let staged_exists = fs::symlink_metadata(&staged).is_ok();
                    let state_exists = fs::symlink_metadata(state).is_ok();
                    if staged_exists && !state_exists {
                        // Two-rename swap interrupted between its renames: the staged tree was
                        // verified and sealed before the record was written; finish the swap.
                        fs::rename(&staged, state).map_err(io_at(&staged))?;
                        let parent = parent_of(state);
                        sync_dir(&parent).map_err(io_at(&parent))?;
                        out.rolled_forward = true;
                    } else if staged_exists {
                        // Either the exchange happened (this is the previous state) or it did not
                        // (this is the verified candidate). Both are kept, never deleted.
                        let aside_root = layout.aside_root();
                        fs::create_dir_all(&aside_root).map_err(io_at(&aside_root))?;
                        let aside = aside_root.join(&record.aside);
                        fs::rename(&staged, &aside).map_err(io_at(&staged))?;
                        sync_dir(&aside_root).map_err(io_at(&aside_root))?;
                        out.set_aside.push(aside);
                    }
                    sync_dir(&staging_root).map_err(io_at(&staging_root))?;
                    protected = Some(record.staging);
                }
                _ => {
                    // An unreadable record names nothing we can trust; staging dirs are then set
                    // aside rather than removed, below.
                    protected = Some(String::new());
                }
            }
            remove_record(layout)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StageError::Io {
                path: record_path,
                source: e,
            });
        }
    }
    let unreadable_record = protected.as_deref() == Some("");
    match fs::read_dir(&staging_root) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(io_at(&staging_root))?;
                let path = entry.path();
                if unreadable_record {
                    let aside_root = layout.aside_root();
                    fs::create_dir_all(&aside_root).map_err(io_at(&aside_root))?;
                    let aside = aside_root.join(crate::aside::free_name(
                        &aside_root,
                        set,
                        "unknown-staging",
                    ));
                    fs::rename(&path, &aside).map_err(io_at(&path))?;
                    out.set_aside.push(aside);
                } else {
                    fs::remove_dir_all(&path).map_err(io_at(&path))?;
                    out.removed_partial += 1;
                }
            }
            sync_dir(&staging_root).map_err(io_at(&staging_root))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StageError::Io {
                path: staging_root,
                source: e,
            });
        }
    }
    Ok(out)
}

/// Moves `path` (the state directory or the WAL directory) into `recovery/aside/<set>-<what>`.
/// Returns the new location, or `None` if `path` did not exist.
pub(crate) fn set_aside(
    layout: &Layout,
    path: &Path,
    what: &str,
    set: ulid::Ulid,
) -> Result<Option<PathBuf>, StageError> {
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StageError::Io {
                path: path.to_owned(),
                source: e,
            });
        }
    }
    let aside_root = layout.aside_root();
    fs::create_dir_all(&aside_root).map_err(io_at(&aside_root))?;
    let aside = aside_root.join(crate::aside::free_name(&aside_root, set, what));
    fs::rename(path, &aside).map_err(io_at(path))?;
    let parent = parent_of(path);
    sync_dir(&parent).map_err(io_at(&parent))?;
    sync_dir(&aside_root).map_err(io_at(&aside_root))?;
    Ok(Some(aside))
}

/// Checks that the state directory's parent and the recovery directory share a filesystem.
pub(crate) fn same_filesystem(layout: &Layout, state_parent: &Path) -> Result<(), StageError> {
    use std::os::unix::fs::MetadataExt;
    let recovery = layout.recovery_dir();
    let a = fs::metadata(state_parent).map_err(io_at(state_parent))?;
    let b = fs::metadata(&recovery).map_err(io_at(&recovery))?;
    if a.dev() != b.dev() {
        return Err(StageError::CrossDevice {
            state_dir: layout.state_dir().to_owned(),
            recovery_dir: recovery,
        });
    }
    Ok(())
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CheckpointPath {
        CheckpointPath::new(s).unwrap()
    }

    fn read_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
            for e in fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let path = e.path();
                if e.file_type().unwrap().is_dir() {
                    walk(root, &path, out);
                } else {
                    let rel = path
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    out.push((rel, fs::read(&path).unwrap()));
                }
            }
        }
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    #[test]
    fn swap_replaces_state_and_keeps_the_old_one() {
        let data = tempfile::tempdir().unwrap();
        let layout = Layout::new(data.path());
        fs::create_dir_all(layout.state_dir()).unwrap();
        fs::write(layout.state_dir().join("old.txt"), b"old").unwrap();
        fs::create_dir_all(layout.recovery_dir()).unwrap();

        let mut staging = Staging::new_in(&layout.staging_root()).unwrap();
        staging.write(&p("a/b/new.txt"), b"new").unwrap();
        let kept = swap_in(&layout, staging, ulid::Ulid::new())
            .unwrap()
            .unwrap();

        assert_eq!(
            read_tree(layout.state_dir()),
            vec![("a/b/new.txt".into(), b"new".to_vec())]
        );
        assert_eq!(read_tree(&kept), vec![("old.txt".into(), b"old".to_vec())]);
        assert!(!layout.swap_record().exists());
        assert_eq!(fs::read_dir(layout.staging_root()).unwrap().count(), 0);
    }

    #[test]
    fn dropped_staging_leaves_nothing_and_state_untouched() {
        let data = tempfile::tempdir().unwrap();
        let layout = Layout::new(data.path());
        fs::create_dir_all(layout.state_dir()).unwrap();
        fs::write(layout.state_dir().join("keep"), b"k").unwrap();
        {
            let mut staging = Staging::new_in(&layout.staging_root()).unwrap();
            staging.write(&p("x"), b"partial").unwrap();
        }
        assert_eq!(fs::read_dir(layout.staging_root()).unwrap().count(), 0);
        assert_eq!(
            read_tree(layout.state_dir()),
            vec![("keep".into(), b"k".to_vec())]
        );
    }

    #[test]
    fn staging_never_writes_through_a_symlink() {
        let data = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let layout = Layout::new(data.path());
        let mut staging = Staging::new_in(&layout.staging_root()).unwrap();
        std::os::unix::fs::symlink(outside.path(), staging.dir().join("link")).unwrap();
        let err = staging.write(&p("link/escaped"), b"x").unwrap_err();
        assert!(matches!(err, StageError::NotADirectory { .. }), "{err:?}");
        std::os::unix::fs::symlink(outside.path().join("f"), staging.dir().join("file")).unwrap();
        assert!(staging.write(&p("file"), b"x").is_err());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn repair_rolls_an_interrupted_two_rename_swap_forward() {
        let data = tempfile::tempdir().unwrap();
        let layout = Layout::new(data.path());
        fs::create_dir_all(layout.recovery_dir()).unwrap();
        let mut staging = Staging::new_in(&layout.staging_root()).unwrap();
        staging.write(&p("f"), b"new").unwrap();
        staging.seal().unwrap();
        staging.keep = true;
        // Simulate the crash: record written, state already moved aside, staged not yet renamed.
        let record = SwapRecord {
            format: SWAP_FORMAT.into(),
            staging: file_name(staging.dir()),
            aside: "x-replaced-state".into(),
        };
        write_atomic(&layout.swap_record(), &serde_json::to_vec(&record).unwrap()).unwrap();
        let r = repair(&layout, ulid::Ulid::new()).unwrap();
        assert!(r.rolled_forward);
        assert_eq!(
            read_tree(layout.state_dir()),
            vec![("f".into(), b"new".to_vec())]
        );
        assert!(!layout.swap_record().exists());
    }

    #[test]
    fn repair_keeps_the_staging_dir_named_by_the_record_and_removes_partials() {
        let data = tempfile::tempdir().unwrap();
        let layout = Layout::new(data.path());
        fs::create_dir_all(layout.state_dir()).unwrap();
        fs::write(layout.state_dir().join("s"), b"state").unwrap();
        let mut named = Staging::new_in(&layout.staging_root()).unwrap();
        named.write(&p("old-state-after-exchange"), b"o").unwrap();
        named.keep = true;
        let mut partial = Staging::new_in(&layout.staging_root()).unwrap();
        partial.write(&p("half"), b"h").unwrap();
        partial.keep = true;
        let record = SwapRecord {
            format: SWAP_FORMAT.into(),
            staging: file_name(named.dir()),
            aside: "y-replaced-state".into(),
        };
        write_atomic(&layout.swap_record(), &serde_json::to_vec(&record).unwrap()).unwrap();
        let r = repair(&layout, ulid::Ulid::new()).unwrap();
        assert!(!r.rolled_forward);
        assert_eq!(r.removed_partial, 1);
        assert_eq!(
            r.set_aside,
            vec![layout.aside_root().join("y-replaced-state")]
        );
        assert_eq!(
            read_tree(layout.state_dir()),
            vec![("s".into(), b"state".to_vec())]
        );
    }
}
