//! The exclusive directory lock: an OS lock (`File::try_lock`, flock on Unix) held for the
//! WAL's life, plus a pid file that only enriches the [`Error::Locked`] message.
//!
//! The OS lock is released by the kernel when the process dies, so a crashed writer never
//! blocks the next one, and a pid that was reused by another process cannot fake a holder.
//! A second opener in the same process gets its own open file description and is refused too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Error;
use crate::fs::{Io, LockGuard, OpenMode};

const LOCK_FILE: &str = "wal.lock";
const PID_FILE: &str = "wal.pid";

/// Holds the lock until dropped.
#[derive(Debug)]
#[must_use = "dropping the lock releases the WAL directory"]
pub(crate) struct DirLock {
    _guard: LockGuard,
    io: Arc<dyn Io>,
    pid_path: PathBuf,
}

impl DirLock {
    pub(crate) fn acquire(io: &Arc<dyn Io>, dir: &Path) -> Result<DirLock, Error> {
        let path = dir.join(LOCK_FILE);
        let Some(guard) = io.try_lock(&path).map_err(|e| Error::io(&path, e))? else {
            // The holder writes its pid right after locking; give a racing one a moment.
            let mut pid = read_pid(&**io, dir);
            for _ in 0..10 {
                if pid.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
                pid = read_pid(&**io, dir);
            }
            return Err(Error::Locked {
                dir: dir.to_path_buf(),
                pid,
            });
        };
        let pid_path = dir.join(PID_FILE);
        // Diagnostic only: a failure to write it must not stop the writer. Renamed into place
        // so a contender never reads half a pid, but not synced: after a power loss a stale or
        // missing pid file is harmless (the OS lock is the truth, and the next holder writes it
        // again), and its two flushes were a third of a small WAL's open.
        let pid = std::process::id();
        let tmp = dir.join(format!(".{PID_FILE}.{pid}.tmp"));
        let written = io
            .open(&tmp, OpenMode::Truncate)
            .and_then(|f| f.write_all_at(pid.to_string().as_bytes(), 0))
            .and_then(|()| {
                io.rename(&tmp, &pid_path).inspect_err(|_| {
                    let _ = io.remove_file(&tmp);
                })
            });
        if let Err(e) = written {
            tracing::warn!(path = %pid_path.display(), error = %e, "could not write WAL pid file");
        }
        Ok(DirLock {
            _guard: guard,
            io: Arc::clone(io),
            pid_path,
        })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if read_pid_file(&*self.io, &self.pid_path) == Some(std::process::id()) {
            let _ = self.io.remove_file(&self.pid_path);
        }
    }
}

fn read_pid(io: &dyn Io, dir: &Path) -> Option<u32> {
    read_pid_file(io, &dir.join(PID_FILE))
}

fn read_pid_file(io: &dyn Io, path: &Path) -> Option<u32> {
    let file = io.open(path, OpenMode::Read).ok()?;
    let len = file.size().ok()?.min(32) as usize;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf).ok()?.trim().parse().ok()
}
