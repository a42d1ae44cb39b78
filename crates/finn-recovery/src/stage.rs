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
//!
//! Every file operation goes through a [`finn_wal::fs::Io`] (the real file system unless a test
//! gives a [`SimFs`](finn_wal::fs::sim::SimFs)), so a power loss after any single operation of
//! a restore can be simulated; the tests below check each such image, with the exchange and
//! with the two-rename fallback.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use finn_checkpoint::CheckpointPath;
use finn_wal::fs::{Io, OpenMode, create_dir_durably, write_atomic_with};
use serde::{Deserialize, Serialize};

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
    io: Arc<dyn Io>,
    /// Whether `io` is the real file system (files for [`Staging::create`] and tools).
    real: bool,
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
        Self::create_in(finn_wal::fs::os(), true, root)
    }

    /// Creates `root/<ulid>/` through `io` (a simulated file system in tests);
    /// [`Staging::create`] is refused on it.
    #[cfg(test)]
    pub(crate) fn new_in_with(io: Arc<dyn Io>, root: &Path) -> Result<Self, StageError> {
        Self::create_in(io, false, root)
    }

    fn create_in(io: Arc<dyn Io>, real: bool, root: &Path) -> Result<Self, StageError> {
        create_dir_durably(&*io, root).map_err(io_at(root))?;
        let dir = root.join(ulid::Ulid::new().to_string());
        io.create_dir(&dir).map_err(io_at(&dir))?;
        io.sync_dir(root).map_err(io_at(root))?;
        let mut dirs = BTreeSet::new();
        dirs.insert(dir.clone());
        Ok(Self {
            io,
            real,
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
        let full = self.new_file_path(path)?;
        // CreateNew is O_CREAT|O_EXCL, which refuses an existing name, a symlink included.
        let file = self
            .io
            .open(&full, OpenMode::CreateNew)
            .map_err(io_at(&full))?;
        file.write_all_at(bytes, 0).map_err(io_at(&full))?;
        file.sync_data().map_err(io_at(&full))?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Creates a file for streaming writes (large objects). The caller writes it; it is
    /// fdatasynced by the cascade before anything is swapped in. `len` is added to
    /// [`Staging::bytes`].
    pub fn create(&mut self, path: &CheckpointPath, len: u64) -> Result<File, StageError> {
        let full = self.new_file_path(path)?;
        if !self.real {
            return Err(StageError::Io {
                path: full,
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    "streaming files need the real file system",
                ),
            });
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            // create_new is O_EXCL, which already refuses an existing symlink; NOFOLLOW says so.
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&full)
            .map_err(io_at(&full))?;
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

    /// Where `path` goes, its parent directories created.
    fn new_file_path(&mut self, path: &CheckpointPath) -> Result<PathBuf, StageError> {
        let full = path.under(&self.dir);
        let parent = full.parent().unwrap_or(&self.dir).to_path_buf();
        self.ensure_dir(path, &parent)?;
        Ok(full)
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
            // Neither test follows a symlink: one where a directory should be is refused.
            if !self.io.is_dir(&current) {
                if self.io.exists(&current).map_err(io_at(&current))? {
                    return Err(StageError::NotADirectory {
                        path: path.to_string(),
                        component: current,
                    });
                }
                self.io.create_dir(&current).map_err(io_at(&current))?;
            }
            self.dirs.insert(current.clone());
        }
        Ok(())
    }

    /// Makes the staged tree durable: fdatasync of streamed files, fsync of every directory in
    /// the tree, deepest first, then of the staging root.
    pub(crate) fn seal(&self) -> Result<(), StageError> {
        let io = &*self.io;
        for file in &self.files {
            io.open(file, OpenMode::Read)
                .and_then(|f| f.sync_data())
                .map_err(io_at(file))?;
        }
        // Directories made by tools writing into dir() are not in self.dirs: walk the tree.
        let mut dirs = Vec::new();
        collect_dirs(io, &self.dir, &mut dirs)?;
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in &dirs {
            io.sync_dir(dir).map_err(io_at(dir))?;
        }
        io.sync_dir(&self.root).map_err(io_at(&self.root))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: leftovers are removed by the next run's repair() anyway.
            let _ = self.io.remove_dir_all(&self.dir);
            let _ = self.io.sync_dir(&self.root);
        }
    }
}

fn collect_dirs(io: &dyn Io, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), StageError> {
    out.push(dir.to_owned());
    for name in io.read_dir(dir).map_err(io_at(dir))? {
        let path = dir.join(name);
        // `is_dir` does not follow symlinks: a link to a directory is not walked into.
        if io.is_dir(&path) {
            collect_dirs(io, &path, out)?;
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
    let io = Arc::clone(&staging.io);
    let io = &*io;
    let state = layout.state_dir().to_owned();
    let state_parent = parent_of(&state);
    io.create_dir_all(&state_parent)
        .map_err(io_at(&state_parent))?;
    if staging.real {
        same_filesystem(layout, &state_parent)?;
    }
    let aside_root = layout.aside_root();
    io.create_dir_all(&aside_root).map_err(io_at(&aside_root))?;

    let staging_name = file_name(&staging.dir);
    let aside_name = crate::aside::free_name(io, &aside_root, set, "replaced-state");
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
    // Its directory sync also makes the entries of `staging/` and `aside/` (in `recovery/`)
    // durable before anything moves into them.
    write_atomic_with(io, &record_path, |f| {
        std::io::Write::write_all(f, &record_bytes)
    })
    .map_err(io_at(&record_path))?;
    // From here on, the staging directory belongs to the swap record, not to the Drop guard.
    staging.keep = true;
    fail::fail_point!("recovery::swap::after_record");
    let staged = staging.dir.clone();
    let staging_root = staging.root.clone();

    let state_exists = io.exists(&state).map_err(io_at(&state))?;
    let kept = if state_exists {
        match exchange(io, &staged, &state) {
            Ok(()) => {
                fail::fail_point!("recovery::swap::after_exchange");
                io.sync_dir(&state_parent).map_err(io_at(&state_parent))?;
                io.sync_dir(&staging_root).map_err(io_at(&staging_root))?;
                // The staging path now holds the previous state: keep it.
                io.rename(&staged, &aside).map_err(io_at(&staged))?;
                fail::fail_point!("recovery::swap::after_aside");
            }
            Err(e) if exchange_unsupported(&e) => {
                tracing::debug!(error = %e, "RENAME_EXCHANGE unsupported; two-rename swap");
                io.rename(&state, &aside).map_err(io_at(&state))?;
                // The old state leaves `state_parent` and enters `aside/`: both directories
                // are synced before the staged tree moves in, or a power loss could keep its
                // departure without its arrival (found by the power-loss test below).
                io.sync_dir(&state_parent).map_err(io_at(&state_parent))?;
                io.sync_dir(&aside_root).map_err(io_at(&aside_root))?;
                fail::fail_point!("recovery::swap::between_renames");
                io.rename(&staged, &state).map_err(io_at(&staged))?;
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
        io.rename(&staged, &state).map_err(io_at(&staged))?;
        None
    };
    io.sync_dir(&state_parent).map_err(io_at(&state_parent))?;
    io.sync_dir(&staging_root).map_err(io_at(&staging_root))?;
    io.sync_dir(&aside_root).map_err(io_at(&aside_root))?;
    fail::fail_point!("recovery::swap::before_done");
    remove_record(io, layout)?;
    Ok(kept)
}

fn remove_record(io: &dyn Io, layout: &Layout) -> Result<(), StageError> {
    let record_path = layout.swap_record();
    io.remove_file(&record_path).map_err(io_at(&record_path))?;
    let recovery = layout.recovery_dir();
    io.sync_dir(&recovery).map_err(io_at(&recovery))
}

fn exchange(io: &dyn Io, a: &Path, b: &Path) -> io::Result<()> {
    // Lets tests take the two-rename path a filesystem without RENAME_EXCHANGE takes.
    fail::fail_point!("recovery::swap::no_exchange", |_| Err(io::Error::from(
        rustix::io::Errno::INVAL
    )));
    io.exchange(a, b)
}

fn exchange_unsupported(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    e.kind() == io::ErrorKind::Unsupported
        || code == Some(rustix::io::Errno::INVAL.raw_os_error())
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
    repair_with(&finn_wal::fs::Os, layout, set)
}

/// [`repair`] through `io`.
pub(crate) fn repair_with(
    io: &dyn Io,
    layout: &Layout,
    set: ulid::Ulid,
) -> Result<Repair, StageError> {
    let mut out = Repair::default();
    let record_path = layout.swap_record();
    let staging_root = layout.staging_root();
    let mut protected = None;
    match read_file(io, &record_path) {
        Ok(bytes) => {
            match serde_json::from_slice::<SwapRecord>(&bytes) {
                Ok(record)
                    if record.format == SWAP_FORMAT
                        && is_plain_name(&record.staging)
                        && is_plain_name(&record.aside) =>
                {
                    let staged = staging_root.join(&record.staging);
                    let state = layout.state_dir();
                    let staged_exists = io.exists(&staged).map_err(io_at(&staged))?;
                    let state_exists = io.exists(state).map_err(io_at(state))?;
                    if staged_exists && !state_exists {
                        // Two-rename swap interrupted between its renames: the staged tree was
                        // verified and sealed before the record was written; finish the swap.
                        io.rename(&staged, state).map_err(io_at(&staged))?;
                        let parent = parent_of(state);
                        io.sync_dir(&parent).map_err(io_at(&parent))?;
                        out.rolled_forward = true;
                    } else if staged_exists {
                        // Either the exchange happened (this is the previous state) or it did not
                        // (this is the verified candidate). Both are kept, never deleted.
                        let aside_root = layout.aside_root();
                        create_dir_durably(io, &aside_root).map_err(io_at(&aside_root))?;
                        let aside = aside_root.join(&record.aside);
                        io.rename(&staged, &aside).map_err(io_at(&staged))?;
                        io.sync_dir(&aside_root).map_err(io_at(&aside_root))?;
                        out.set_aside.push(aside);
                    }
                    if staged_exists {
                        // It left the staging root: make that durable too.
                        io.sync_dir(&staging_root).map_err(io_at(&staging_root))?;
                    }
                    protected = Some(record.staging);
                }
                _ => {
                    // An unreadable record names nothing we can trust; staging dirs are then set
                    // aside rather than removed, below.
                    protected = Some(String::new());
                }
            }
            remove_record(io, layout)?;
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
    match io.read_dir(&staging_root) {
        Ok(names) => {
            for name in names {
                let path = staging_root.join(name);
                if unreadable_record {
                    let aside_root = layout.aside_root();
                    create_dir_durably(io, &aside_root).map_err(io_at(&aside_root))?;
                    let aside = aside_root.join(crate::aside::free_name(
                        io,
                        &aside_root,
                        set,
                        "unknown-staging",
                    ));
                    io.rename(&path, &aside).map_err(io_at(&path))?;
                    io.sync_dir(&aside_root).map_err(io_at(&aside_root))?;
                    out.set_aside.push(aside);
                } else {
                    io.remove_dir_all(&path).map_err(io_at(&path))?;
                    out.removed_partial += 1;
                }
            }
            io.sync_dir(&staging_root).map_err(io_at(&staging_root))?;
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

/// The whole contents of the file `path`.
fn read_file(io: &dyn Io, path: &Path) -> io::Result<Vec<u8>> {
    let file = io.open(path, OpenMode::Read)?;
    let len = usize::try_from(file.size()?).map_err(io::Error::other)?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Moves `path` (the state directory or the WAL directory) into `recovery/aside/<set>-<what>`.
/// Returns the new location, or `None` if `path` did not exist.
pub(crate) fn set_aside(
    layout: &Layout,
    path: &Path,
    what: &str,
    set: ulid::Ulid,
) -> Result<Option<PathBuf>, StageError> {
    set_aside_with(&finn_wal::fs::Os, layout, path, what, set)
}

/// [`set_aside`] through `io`.
pub(crate) fn set_aside_with(
    io: &dyn Io,
    layout: &Layout,
    path: &Path,
    what: &str,
    set: ulid::Ulid,
) -> Result<Option<PathBuf>, StageError> {
    if !io.exists(path).map_err(io_at(path))? {
        return Ok(None);
    }
    let aside_root = layout.aside_root();
    create_dir_durably(io, &aside_root).map_err(io_at(&aside_root))?;
    let aside = aside_root.join(crate::aside::free_name(io, &aside_root, set, what));
    io.rename(path, &aside).map_err(io_at(path))?;
    let parent = parent_of(path);
    io.sync_dir(&parent).map_err(io_at(&parent))?;
    io.sync_dir(&aside_root).map_err(io_at(&aside_root))?;
    Ok(Some(aside))
}

/// Checks that the state directory's parent and the recovery directory share a filesystem.
pub(crate) fn same_filesystem(layout: &Layout, state_parent: &Path) -> Result<(), StageError> {
    use std::os::unix::fs::MetadataExt;
    let recovery = layout.recovery_dir();
    let a = std::fs::metadata(state_parent).map_err(io_at(state_parent))?;
    let b = std::fs::metadata(&recovery).map_err(io_at(&recovery))?;
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
    use crate::durable::write_atomic;
    use std::fs;

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

/// Power loss after every operation of a restore, on a simulated file system.
#[cfg(test)]
mod power_loss {
    use std::collections::BTreeMap;

    use finn_wal::fs::sim::{Crash, SimFs};
    use finn_wal::fs::{IoFile, LockGuard};

    use super::*;

    type Tree = BTreeMap<PathBuf, Vec<u8>>;

    const SUBSETS: u64 = 24;

    fn tree(files: &[(&str, Vec<u8>)]) -> Tree {
        files
            .iter()
            .map(|(p, b)| (PathBuf::from(p), b.clone()))
            .collect()
    }

    fn old_state() -> Tree {
        tree(&[
            ("agent.json", b"{\"generation\":1}".to_vec()),
            ("memory/notes.md", vec![b'o'; 700]),
        ])
    }

    fn new_state() -> Tree {
        // More than a sector per file, so that torn writes show.
        tree(&[
            ("agent.json", vec![b'n'; 1500]),
            ("memory/notes.md", vec![b'm'; 900]),
            ("beads/issues.jsonl", vec![b'b'; 1100]),
        ])
    }

    /// A [`SimFs`] without `RENAME_EXCHANGE`, to take the two-rename path.
    #[derive(Debug)]
    struct NoExchange(SimFs);

    impl Io for NoExchange {
        fn open(&self, p: &Path, mode: OpenMode) -> io::Result<Box<dyn IoFile>> {
            self.0.open(p, mode)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.0.rename(from, to)
        }
        fn remove_file(&self, p: &Path) -> io::Result<()> {
            self.0.remove_file(p)
        }
        fn read_dir(&self, dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
            self.0.read_dir(dir)
        }
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            self.0.create_dir_all(dir)
        }
        fn create_dir(&self, dir: &Path) -> io::Result<()> {
            self.0.create_dir(dir)
        }
        fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
            self.0.remove_dir_all(dir)
        }
        fn is_dir(&self, p: &Path) -> bool {
            self.0.is_dir(p)
        }
        fn exists(&self, p: &Path) -> io::Result<bool> {
            self.0.exists(p)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.0.sync_dir(dir)
        }
        fn try_lock(&self, p: &Path) -> io::Result<Option<LockGuard>> {
            self.0.try_lock(p)
        }
    }

    fn layout() -> Layout {
        Layout::new("/data")
    }

    fn set() -> ulid::Ulid {
        ulid::Ulid::from_parts(1, 7)
    }

    /// A durable old state and recovery directory; returns the operations that took.
    fn setup(fs: &SimFs) -> u64 {
        let layout = layout();
        for (p, b) in old_state() {
            fs.put_durable(&layout.state_dir().join(p), &b);
        }
        fs.create_dir_all(&layout.recovery_dir()).unwrap();
        fs.sync_dir(layout.data_dir()).unwrap();
        fs.ops()
    }

    fn restore(io: Arc<dyn Io>) -> Result<Option<PathBuf>, StageError> {
        let layout = layout();
        let mut staging = Staging::new_in_with(io, &layout.staging_root())?;
        for (p, b) in new_state() {
            let path = CheckpointPath::new(p.to_str().unwrap_or_default()).map_err(|e| {
                StageError::Io {
                    path: p.clone(),
                    source: io::Error::other(e.to_string()),
                }
            })?;
            staging.write(&path, &b)?;
        }
        swap_in(&layout, staging, set())
    }

    fn io_of(fs: &SimFs, exchange: bool) -> Arc<dyn Io> {
        if exchange {
            Arc::new(fs.clone())
        } else {
            Arc::new(NoExchange(fs.clone()))
        }
    }

    /// Checks one power-loss image, repairs it as the next cascade would, and checks again.
    fn check(image: &SimFs, exchange: bool, acknowledged: bool) -> Result<(), String> {
        let layout = layout();
        let (old, new) = (old_state(), new_state());
        let describe = |t: &Option<Tree>| match t {
            None => "no state directory".to_owned(),
            Some(t) if *t == old => "the old state".to_owned(),
            Some(t) if *t == new => "the new state".to_owned(),
            Some(t) => format!("a mix: {:?}", t.keys().collect::<Vec<_>>()),
        };
        let before = image.tree(layout.state_dir());
        let whole = |t: &Option<Tree>| t.as_ref().is_some_and(|t| *t == old || *t == new);
        // Only the two-rename path has a moment without a state directory; repair ends it.
        if !(whole(&before) || (before.is_none() && !exchange)) {
            return Err(format!("before repair: {}", describe(&before)));
        }
        let io = io_of(image, exchange);
        repair_with(&*io, &layout, set()).map_err(|e| format!("repair failed: {e:?}"))?;
        let after = image.tree(layout.state_dir());
        if !whole(&after) {
            return Err(format!("after repair: {}", describe(&after)));
        }
        if acknowledged && after.as_ref() != Some(&new) {
            return Err(format!(
                "swap_in returned Ok, but the state is {}",
                describe(&after)
            ));
        }
        if after.as_ref() == Some(&new) {
            let kept = image
                .read_dir(&layout.aside_root())
                .unwrap_or_default()
                .into_iter()
                .any(|name| image.tree(&layout.aside_root().join(name)).as_ref() == Some(&old));
            if !kept {
                return Err("the new state is in, but the old one was not kept".to_owned());
            }
        }
        if image.exists(&layout.swap_record()).unwrap_or(true) {
            return Err("the swap record outlived repair".to_owned());
        }
        if !image
            .read_dir(&layout.staging_root())
            .unwrap_or_default()
            .is_empty()
        {
            return Err("staging directories outlived repair".to_owned());
        }
        Ok(())
    }

    fn power_off_everywhere(exchange: bool) -> u64 {
        let full = {
            let fs = SimFs::new();
            let base = setup(&fs);
            let kept = restore(io_of(&fs, exchange)).unwrap();
            assert!(kept.is_some());
            assert_eq!(fs.tree(layout().state_dir()), Some(new_state()));
            fs.ops() - base
        };
        for halt in 0..=full {
            let fs = SimFs::new();
            let base = setup(&fs);
            fs.halt_after(base + halt);
            let acknowledged = restore(io_of(&fs, exchange)).is_ok();
            let modes = std::iter::once(Crash::DropUnsynced).chain((0..SUBSETS).map(Crash::Subset));
            for mode in modes {
                if let Err(why) = check(&fs.crash(mode), exchange, acknowledged) {
                    panic!(
                        "exchange {exchange}, power lost after operation {halt} of {full}, \
                         {mode:?}, acknowledged {acknowledged}: {why}"
                    );
                }
            }
        }
        full
    }

    #[test]
    fn power_loss_during_an_exchange_swap_leaves_the_old_or_the_new_state_and_repair_finishes() {
        let ops = power_off_everywhere(true);
        assert!(ops > 10, "{ops}");
    }

    #[test]
    fn power_loss_during_a_two_rename_swap_leaves_the_old_or_the_new_state_after_repair() {
        let ops = power_off_everywhere(false);
        assert!(ops > 10, "{ops}");
    }

    #[test]
    fn power_loss_while_setting_a_directory_aside_never_loses_it() {
        let layout = layout();
        let wal = layout.data_dir().join("wal");
        let seg = wal.join("00000000000000000001.wal");
        let full = {
            let fs = SimFs::new();
            fs.put_durable(&seg, b"segment");
            let base = setup(&fs);
            set_aside_with(&fs, &layout, &wal, "diverged-wal", set())
                .unwrap()
                .unwrap();
            fs.ops() - base
        };
        for halt in 0..=full {
            let fs = SimFs::new();
            fs.put_durable(&seg, b"segment");
            let base = setup(&fs);
            fs.halt_after(base + halt);
            let done = set_aside_with(&fs, &layout, &wal, "diverged-wal", set()).is_ok();
            let modes = std::iter::once(Crash::DropUnsynced).chain((0..SUBSETS).map(Crash::Subset));
            for mode in modes {
                let image = fs.crash(mode);
                let aside = layout
                    .aside_root()
                    .join(format!("{}-diverged-wal", set()))
                    .join("00000000000000000001.wal");
                let at_home = image.read(&seg).is_some();
                let kept = image.read(&aside).is_some();
                assert!(
                    at_home != kept,
                    "halt {halt} of {full}, {mode:?}: at home {at_home}, set aside {kept}"
                );
                assert!(
                    !done || kept,
                    "halt {halt}, {mode:?}: returned Ok, not aside"
                );
            }
        }
    }

    #[test]
    fn the_check_catches_a_swap_that_skips_the_directory_syncs() {
        // The exchange without the syncs after it, acknowledged at once: a power loss may keep
        // the old state where an acknowledged restore put the new one.
        let fs = SimFs::new();
        setup(&fs);
        let layout = layout();
        let mut staging =
            Staging::new_in_with(Arc::new(fs.clone()), &layout.staging_root()).unwrap();
        for (p, b) in new_state() {
            staging
                .write(&CheckpointPath::new(p.to_str().unwrap()).unwrap(), &b)
                .unwrap();
        }
        staging.seal().unwrap();
        fs.exchange(&staging.dir, layout.state_dir()).unwrap();
        let err = check(&fs.crash(Crash::DropUnsynced), true, true).unwrap_err();
        assert!(err.contains("swap_in returned Ok"), "{err}");
    }
}
