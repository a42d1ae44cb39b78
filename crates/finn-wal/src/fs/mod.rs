//! Durable whole-file helpers that other finn crates reuse instead of writing their own, and the
//! small I/O layer they run on.
//!
//! [`write_atomic`] and [`sync_dir`] work on the real file system. [`write_atomic_with`] runs
//! the same steps through any [`Io`], so a test can run them through [`sim::SimFs`], which
//! records every write, sync, rename and directory sync and builds the images a power loss
//! could leave: only what a sync covered, or that plus any subset of what it did not
//! (`docs/guarantees.md` names the tests).

pub mod sim;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The file-system operations of a durable whole-file update.
///
/// [`Os`] is the real file system; [`sim::SimFs`] a recording one for power-loss tests.
pub trait Io {
    /// An open, writable file.
    type File: IoFile;

    /// Creates `path`, failing if it exists.
    fn create_new(&self, path: &Path) -> std::io::Result<Self::File>;
    /// Renames `from` over `to` (atomically replacing it).
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    /// Removes the file `path`.
    fn remove_file(&self, path: &Path) -> std::io::Result<()>;
    /// Makes the creations, renames and removals inside `dir` durable.
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()>;
}

/// A file opened by an [`Io`]: written through [`Write`], made durable by
/// [`sync_data`](Self::sync_data).
pub trait IoFile: Write {
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&mut self) -> std::io::Result<()>;
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct Os;

impl Io for Os {
    type File = File;

    fn create_new(&self, path: &Path) -> std::io::Result<File> {
        OpenOptions::new().write(true).create_new(true).open(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        sync_dir(dir)
    }
}

impl IoFile for File {
    fn sync_data(&mut self) -> std::io::Result<()> {
        File::sync_data(self)
    }
}

/// Replaces `path` with `bytes` so that after a crash it holds either the old or the new
/// contents, never a mix: a temp file in the same directory is written and fdatasynced, renamed
/// over `path`, and the directory is fsynced.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state.json");
/// finn_wal::fs::write_atomic(&path, b"{}")?;
/// assert_eq!(std::fs::read(&path)?, b"{}");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(&Os, path, |file| file.write_all(bytes))
}

/// [`write_atomic`] with the contents streamed by `fill` (wrap the file in a
/// [`BufWriter`](std::io::BufWriter) for many small writes, and flush it).
///
/// ```
/// use std::io::Write;
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("export.jsonl");
/// finn_wal::fs::write_atomic_from(&path, |file| {
///     let mut w = std::io::BufWriter::new(file);
///     for n in 0..3 {
///         writeln!(w, "{{\"n\":{n}}}")?;
///     }
///     w.flush()
/// })?;
/// assert_eq!(std::fs::read_to_string(&path)?.lines().count(), 3);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_atomic_from(
    path: &Path,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    write_atomic_with(&Os, path, fill)
}

/// [`write_atomic_from`] through any [`Io`]. Each step's failure is returned as it is; a
/// failed sync is never retried (its outcome is unknown), and the temp file is removed.
pub fn write_atomic_with<I: Io>(
    io: &I,
    path: &Path,
    fill: impl FnOnce(&mut I::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = io.create_new(&tmp)?;
        fill(&mut file)?;
        // The data must be durable before the rename can be: otherwise a power loss may keep
        // the new name with no data behind it.
        file.sync_data()?;
        drop(file);
        io.rename(&tmp, path)?;
        io.sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = io.remove_file(&tmp);
    }
    result
}

/// Fsyncs a directory, making creations, renames and deletions inside it durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
