//! The I/O layer the WAL and the durable whole-file helpers run on, and those helpers.
//!
//! Every file-system operation of a [`Wal`](crate::Wal) (segment creation, appends, syncs,
//! seals, recovery, compaction, pruning, the directory lock) goes through an [`Io`], held by
//! [`Options::io`](crate::Options::io) as an `Arc<dyn Io>`. (The [`store`](crate::store)
//! layers' own state files do not yet: they use the real file system.) The default, [`Os`], is the real
//! file system with its fast paths (an `O_TMPFILE` segment prepared in the background, flock).
//! [`sim::SimFs`] is a recording in-memory file system for power-loss tests: it builds the
//! images a power loss could leave (only what a sync covered, or that plus any subset of what
//! it did not) and injects `EIO` on a sync (`docs/guarantees.md` names the tests).
//!
//! [`write_atomic`] and [`sync_dir`] work on the real file system; [`write_atomic_with`] runs
//! the same steps through any [`Io`].

pub mod sim;

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How [`Io::open`] opens a file. Every mode but `Read` opens for reading and writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, read only.
    Read,
    /// An existing file.
    ReadWrite,
    /// A new file; fails with `AlreadyExists` if the name is taken (`O_CREAT|O_EXCL`).
    CreateNew,
    /// Creates the file, or empties it if it exists.
    Truncate,
}

/// A held exclusive lock (see [`Io::try_lock`]); dropping it releases the lock.
pub type LockGuard = Box<dyn std::fmt::Debug + Send + Sync>;

/// The file-system operations the WAL and [`write_atomic_with`] perform.
///
/// Object safe: the WAL holds one as `Arc<dyn Io>` ([`Options::io`](crate::Options::io)), so
/// `Wal` stays one type whatever it runs on. [`Os`] is the real file system; [`sim::SimFs`] a
/// recording one for power-loss tests. A wrapper that delegates to another `Io` and fails some
/// operations is the way to inject other faults.
pub trait Io: std::fmt::Debug + Send + Sync {
    /// Opens `path` as `mode` says.
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn IoFile>>;
    /// Renames `from` over `to` (atomically replacing a file there).
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    /// Swaps the entries `a` and `b` in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`).
    /// The default refuses with [`ErrorKind::Unsupported`](std::io::ErrorKind::Unsupported);
    /// callers then fall back to two renames.
    fn exchange(&self, a: &Path, b: &Path) -> std::io::Result<()> {
        let _ = (a, b);
        Err(std::io::ErrorKind::Unsupported.into())
    }
    /// Removes the file `path`.
    fn remove_file(&self, path: &Path) -> std::io::Result<()>;
    /// The names of the entries directly inside `dir`, in no particular order.
    fn read_dir(&self, dir: &Path) -> std::io::Result<Vec<OsString>>;
    /// Creates `dir` and its missing parents (not durably: sync the parents for that).
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()>;
    /// Creates the directory `dir`; fails with `AlreadyExists` if the name is taken.
    fn create_dir(&self, dir: &Path) -> std::io::Result<()>;
    /// Removes `dir` and everything under it.
    fn remove_dir_all(&self, dir: &Path) -> std::io::Result<()>;
    /// Whether `path` is a directory (a symlink to one is not).
    fn is_dir(&self, path: &Path) -> bool;
    /// Whether anything (a file, a directory, a symlink) has the name `path`; a symlink is
    /// not followed.
    fn exists(&self, path: &Path) -> std::io::Result<bool>;
    /// Makes the creations, renames and removals inside `dir` durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()>;
    /// Takes an exclusive lock named by `path` (created if missing), held until the guard is
    /// dropped; `Ok(None)` if someone else holds it. [`Os`] uses flock, which the kernel
    /// releases when the holder dies.
    fn try_lock(&self, path: &Path) -> std::io::Result<Option<LockGuard>>;
    /// An unnamed file in `dir` for [`link_unnamed`](Self::link_unnamed) to give a name later
    /// (`O_TMPFILE`); `Ok(None)` where the file system has none. The WAL prepares its next
    /// segment this way in the background and otherwise falls back to the portable way:
    /// create a temp file, sync it, rename it into place, sync the directory.
    fn create_unnamed(&self, dir: &Path) -> std::io::Result<Option<Box<dyn IoFile>>> {
        let _ = dir;
        Ok(None)
    }
    /// Links a file from [`create_unnamed`](Self::create_unnamed) into its directory as `path`.
    fn link_unnamed(&self, file: &dyn IoFile, path: &Path) -> std::io::Result<()> {
        let _ = (file, path);
        Err(std::io::ErrorKind::Unsupported.into())
    }
    /// Bytes available to unprivileged users on the file system holding `dir` (`f_bavail`),
    /// `None` where unknown (then the free-space pressure thresholds never trigger).
    fn available_space(&self, dir: &Path) -> Option<u64> {
        let _ = dir;
        None
    }
}

/// A file opened by an [`Io`]: positional reads and writes, length, and syncs. All methods take
/// `&self` (like `pread`/`pwrite`), so one handle serves concurrent readers and a writer.
pub trait IoFile: std::fmt::Debug + Send + Sync {
    /// Reads into `buf` from `offset`; returns how many bytes were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;
    /// Writes `buf` at `offset`, extending the file if needed; returns how many bytes were
    /// written.
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<usize>;
    /// Reads exactly `buf.len()` bytes from `offset`; `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    /// The file's length in bytes.
    fn size(&self) -> std::io::Result<u64>;
    /// Cuts or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> std::io::Result<()>;
    /// Makes the file's data (and the length needed to read it) durable: fdatasync.
    fn sync_data(&self) -> std::io::Result<()>;
    /// Makes the file's data and metadata durable: fsync.
    fn sync_all(&self) -> std::io::Result<()>;
    /// The real file behind this handle, if there is one ([`Os`] files only).
    fn as_std(&self) -> Option<&File> {
        None
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct Os;

impl Io for Os {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn IoFile>> {
        let mut o = OpenOptions::new();
        o.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                o.write(true);
            }
            OpenMode::CreateNew => {
                o.write(true).create_new(true);
            }
            OpenMode::Truncate => {
                o.write(true).create(true).truncate(true);
            }
        }
        Ok(Box::new(o.open(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn exchange(&self, a: &Path, b: &Path) -> std::io::Result<()> {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            a,
            rustix::fs::CWD,
            b,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(std::io::Error::from)
    }

    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)
    }

    fn read_dir(&self, dir: &Path) -> std::io::Result<Vec<OsString>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
    }

    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn create_dir(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir(dir)
    }

    fn remove_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::remove_dir_all(dir)
    }

    fn is_dir(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
    }

    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        sync_dir(dir)
    }

    fn try_lock(&self, path: &Path) -> std::io::Result<Option<LockGuard>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn create_unnamed(&self, dir: &Path) -> std::io::Result<Option<Box<dyn IoFile>>> {
        use rustix::fs::{Mode, OFlags};
        // Linking an unnamed file needs /proc (linkat with AT_EMPTY_PATH needs a capability).
        if !Path::new("/proc/self/fd").is_dir() {
            return Ok(None);
        }
        let fd = match rustix::fs::open(
            dir,
            OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(Box::new(File::from(fd))))
    }

    fn link_unnamed(&self, file: &dyn IoFile, path: &Path) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let file = file.as_std().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a file of the real file system",
            )
        })?;
        let source = format!("/proc/self/fd/{}", file.as_raw_fd());
        rustix::fs::linkat(
            rustix::fs::CWD,
            source.as_str(),
            rustix::fs::CWD,
            path,
            rustix::fs::AtFlags::SYMLINK_FOLLOW,
        )
        .map_err(std::io::Error::from)
    }

    fn available_space(&self, dir: &Path) -> Option<u64> {
        let stat = rustix::fs::statvfs(dir).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
}

impl IoFile for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<usize> {
        FileExt::write_at(self, buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn size(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        File::set_len(self, len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&self) -> std::io::Result<()> {
        File::sync_all(self)
    }

    fn as_std(&self) -> Option<&File> {
        Some(self)
    }
}

/// The default [`Io`]: the real file system.
pub fn os() -> Arc<dyn Io> {
    Arc::new(Os)
}

/// A file being filled from its start by [`write_atomic_with`]: a [`Write`] over
/// [`IoFile::write_at`].
#[derive(Debug)]
pub struct FileWriter {
    file: Box<dyn IoFile>,
    at: u64,
}

impl FileWriter {
    /// The file written to.
    pub fn file(&self) -> &dyn IoFile {
        &*self.file
    }
}

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }

    /// Nothing is buffered here: a no-op.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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

/// [`write_atomic`] with the contents streamed by `fill` (wrap the writer in a
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
    fill: impl FnOnce(&mut FileWriter) -> std::io::Result<()>,
) -> std::io::Result<()> {
    write_atomic_with(&Os, path, fill)
}

/// [`write_atomic_from`] through any [`Io`]. Each step's failure is returned as it is; a
/// failed sync is never retried (its outcome is unknown), and the temp file is removed.
pub fn write_atomic_with(
    io: &dyn Io,
    path: &Path,
    fill: impl FnOnce(&mut FileWriter) -> std::io::Result<()>,
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
        let mut writer = FileWriter {
            file: io.open(&tmp, OpenMode::CreateNew)?,
            at: 0,
        };
        fill(&mut writer)?;
        // The data must be durable before the rename can be: otherwise a power loss may keep
        // the new name with no data behind it.
        writer.file.sync_data()?;
        drop(writer);
        io.rename(&tmp, path)?;
        io.sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = io.remove_file(&tmp);
    }
    result
}

/// Creates `dir` and any missing parents through `io`, each new entry made durable by syncing
/// the directory holding it: whatever is put into a new directory must not vanish with the
/// directory's own entry on a power loss. An existing `dir` is left as it is.
pub fn create_dir_durably(io: &dyn Io, dir: &Path) -> std::io::Result<()> {
    if io.is_dir(dir) {
        return Ok(());
    }
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !io.is_dir(a))
        .collect();
    io.create_dir_all(dir)?;
    for created in missing.iter().rev() {
        io.sync_dir(&parent_dir(created))?;
    }
    Ok(())
}

/// Fsyncs a directory, making creations, renames and deletions inside it durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A handle standing for no file: every operation fails. The placeholder active segment of a
/// read-only WAL opened on an empty directory holds one; it is never read or written.
#[derive(Debug)]
pub(crate) struct NoFile;

impl NoFile {
    fn refuse() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::Unsupported, "placeholder file")
    }
}

impl IoFile for NoFile {
    fn read_at(&self, _: &mut [u8], _: u64) -> std::io::Result<usize> {
        Err(Self::refuse())
    }
    fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<usize> {
        Err(Self::refuse())
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(0)
    }
    fn set_len(&self, _: u64) -> std::io::Result<()> {
        Err(Self::refuse())
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Err(Self::refuse())
    }
    fn sync_all(&self) -> std::io::Result<()> {
        Err(Self::refuse())
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

    #[test]
    fn os_files_read_and_write_at_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = Os.open(&path, OpenMode::CreateNew).unwrap();
        f.write_all_at(b"world", 6).unwrap();
        f.write_all_at(b"hello ", 0).unwrap();
        assert_eq!(f.size().unwrap(), 11);
        let mut buf = [0u8; 11];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello world");
        f.set_len(5).unwrap();
        assert_eq!(Os.read_dir(dir.path()).unwrap(), vec![OsString::from("f")]);
        assert!(Os.open(&path, OpenMode::CreateNew).is_err());
    }
}
