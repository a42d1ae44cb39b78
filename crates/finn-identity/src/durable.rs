//! Whole-file replacement that survives a crash at any point: the old content or the new, never a
//! mix. finn-identity stands alone in the workspace, so it keeps this small private copy instead of
//! using finn-wal's.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A distinct temp name per call, so two writers in one process never share a temp file.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temp file a replacement of `path` is staged in: hidden, same directory (rename is only
/// atomic within one file system), named after the target, the process and a counter.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// A staged replacement: the bytes are in a synced temp file next to the target.
pub(crate) struct Staged {
    temp: PathBuf,
    target: PathBuf,
}

impl Staged {
    /// Writes `bytes` to a new temp file next to `target` and fdatasyncs it. The target's
    /// permissions are copied when it exists, so replacing a file does not change its mode.
    pub(crate) fn write(target: &Path, bytes: &[u8]) -> Result<Self, (PathBuf, io::Error)> {
        let temp = temp_path(target);
        let staged = Self {
            temp: temp.clone(),
            target: target.to_path_buf(),
        };
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            if let Ok(meta) = fs::metadata(target) {
                file.set_permissions(meta.permissions())?;
            }
            file.write_all(bytes)?;
            file.sync_data()
        })();
        // On error `staged` drops here and removes the temp file.
        result.map(|()| staged).map_err(|e| (temp, e))
    }

    /// Renames the temp file over the target and fsyncs the directory so the rename is durable.
    pub(crate) fn commit(self) -> Result<(), (PathBuf, io::Error)> {
        fs::rename(&self.temp, &self.target).map_err(|e| (self.target.clone(), e))?;
        let dir = parent_dir(&self.target);
        // The rename happened; forget the temp so Drop does not try to remove it.
        std::mem::forget(self);
        sync_dir(&dir).map_err(|e| (dir, e))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Best effort: a stale hidden temp file is harmless, and the caller already has the
        // error that led here.
        let _ = fs::remove_file(&self.temp);
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs a directory so entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` atomically and durably.
#[cfg(test)]
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), (PathBuf, io::Error)> {
    Staged::write(path, bytes)?.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("NOTES.md");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["NOTES.md"]);
    }

    #[test]
    fn dropped_stage_removes_its_temp_and_keeps_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("NOTES.md");
        write_atomic(&path, b"keep").unwrap();
        let staged = Staged::write(&path, b"discard").unwrap();
        drop(staged);
        assert_eq!(fs::read(&path).unwrap(), b"keep");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn keeps_the_target_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("NOTES.md");
        fs::write(&path, b"a").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&path, b"b").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
