//! Transactions on a directory of files: stage writes, deletes and directory creations, commit
//! them as one durable batch (the intent), then apply them to the files.
//!
//! Crash safety comes from the order of effects:
//!
//! 1. `commit` writes every operation of the transaction to the backend in one atomic, durable
//!    batch under `<scope>/op/<txid>/<n>`. Before that point nothing on disk changed; a crash
//!    loses the uncommitted transaction and nothing else.
//! 2. Each file is written to a temp file in its directory, fdatasynced and renamed over its
//!    target; each touched directory is then fsynced once.
//! 3. The intent is retired in one batch (its op keys deleted, `<scope>/applied` set to the
//!    txid). This batch is relaxed: the next durable commit covers it, and if it is lost the
//!    intent is simply applied again, which is idempotent.
//!
//! [`StateDir::open`] finishes step 2 and 3 for every intent left by a crash (in txid order) and
//! removes stray temp files, so once opened every file of every transaction holds its new
//! version, or (for a transaction whose commit was not acknowledged and did not reach the log)
//! its old one.
//!
//! ```
//! use finn_wal::store::{MemoryBackend, txn::StateDir};
//! # let dir = tempfile::tempdir()?;
//! let (state, _report) = StateDir::open(dir.path(), MemoryBackend::new(), "agent")?;
//! let mut t = state.begin();
//! t.write("notes/today.md", b"# plan")?;
//! t.mkdir("cache")?;
//! let sp = t.savepoint();
//! t.write("scratch", b"maybe")?;
//! t.rollback_to(sp);                // nested transaction undone
//! t.commit()?;
//! assert_eq!(state.read("notes/today.md")?, Some(b"# plan".to_vec()));
//! assert_eq!(state.read("scratch")?, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{Backend, Mutation, StoreError, decode, encode, validate_segment};
use crate::fs::sync_dir;

/// Name prefix of the temp files a transaction writes before renaming them into place; paths
/// whose components start with it are refused.
pub const TEMP_PREFIX: &str = ".finn-txn.";

/// One staged operation, as stored in the intent record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileOp {
    /// Replace (or create) the file with these bytes; missing parent directories are created.
    Write {
        /// Path relative to the state directory, `/`-separated.
        path: String,
        /// The new contents.
        bytes: Vec<u8>,
    },
    /// Remove the file (or empty directory); absent is fine.
    Delete {
        /// Path relative to the state directory.
        path: String,
    },
    /// Create the directory and its parents.
    Mkdir {
        /// Path relative to the state directory.
        path: String,
    },
}

impl FileOp {
    fn path(&self) -> &str {
        match self {
            FileOp::Write { path, .. } | FileOp::Delete { path } | FileOp::Mkdir { path } => path,
        }
    }
}

/// What opening found and finished.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRecovery {
    /// Committed transactions whose files were (re)applied, in order.
    pub reapplied: Vec<u64>,
    /// Stray temp files of interrupted applies that were removed.
    pub temp_files_removed: usize,
}

/// What a commit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The transaction id (0 for an empty transaction, which writes nothing).
    pub txid: u64,
    /// Operations applied.
    pub ops: usize,
}

#[derive(Debug)]
struct Inner {
    next_txid: u64,
    poisoned: bool,
}

/// A directory of files changed only through transactions.
#[derive(Debug)]
pub struct StateDir<B: Backend> {
    root: PathBuf,
    backend: B,
    scope: String,
    inner: Mutex<Inner>,
}

impl<B: Backend> StateDir<B> {
    /// Opens (creating if missing) the directory `root`, with its intents kept in `backend`
    /// under `<scope>/`, and finishes every committed transaction a crash interrupted.
    pub fn open(
        root: impl AsRef<Path>,
        backend: B,
        scope: &str,
    ) -> Result<(Self, TxnRecovery), StoreError> {
        validate_segment("scope", scope)?;
        let root = root.as_ref().to_path_buf();
        create_dirs(&root, &mut BTreeSet::new())?;
        let dir = StateDir {
            root,
            backend,
            scope: scope.to_owned(),
            inner: Mutex::new(Inner {
                next_txid: 1,
                poisoned: false,
            }),
        };
        let mut report = TxnRecovery {
            temp_files_removed: remove_temp_files(&dir.root)?,
            ..TxnRecovery::default()
        };
        let applied = match dir.backend.get(&dir.applied_key())? {
            Some(bytes) => decode::<u64>("applied txid", &bytes)?,
            None => 0,
        };
        let pending = dir.pending()?;
        let mut next = applied + 1;
        for (txid, ops) in pending {
            dir.apply(txid, &ops)?;
            dir.retire(txid, ops.len())?;
            report.reapplied.push(txid);
            next = next.max(txid + 1);
        }
        if !report.reapplied.is_empty() {
            tracing::info!(scope, txids = ?report.reapplied, "re-applied committed transactions");
        }
        dir.lock().next_txid = next;
        Ok((dir, report))
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts a transaction. Dropping it without [`Transaction::commit`] rolls it back.
    pub fn begin(&self) -> Transaction<'_, B> {
        Transaction {
            dir: self,
            ops: Vec::new(),
        }
    }

    /// Reads a committed file (`None` if absent).
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let full = self.root.join(checked_path(path)?);
        match std::fs::read(&full) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path: full, source }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn applied_key(&self) -> String {
        format!("{}/applied", self.scope)
    }

    fn op_prefix(&self) -> String {
        format!("{}/op/", self.scope)
    }

    fn op_key(&self, txid: u64, n: usize) -> String {
        format!("{}/op/{txid:020}/{n:06}", self.scope)
    }

    fn pending(&self) -> Result<BTreeMap<u64, Vec<FileOp>>, StoreError> {
        let prefix = self.op_prefix();
        let mut out: BTreeMap<u64, Vec<FileOp>> = BTreeMap::new();
        for (key, bytes) in self.backend.scan_prefix(&prefix)? {
            let txid = key
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.split('/').next())
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| StoreError::Corrupt {
                    key: key.clone(),
                    reason: "transaction op key without a txid",
                })?;
            // Keys sort by (txid, n), so ops arrive in order.
            out.entry(txid)
                .or_default()
                .push(decode("file op", &bytes)?);
        }
        Ok(out)
    }

    fn commit_ops(&self, ops: Vec<FileOp>) -> Result<Committed, StoreError> {
        let mut inner = self.lock();
        if inner.poisoned {
            return Err(StoreError::Poisoned);
        }
        if ops.is_empty() {
            return Ok(Committed { txid: 0, ops: 0 });
        }
        let txid = inner.next_txid;
        let mut batch = Vec::with_capacity(ops.len());
        for (n, op) in ops.iter().enumerate() {
            batch.push(Mutation::Put(self.op_key(txid, n), encode("file op", op)?));
        }
        self.backend.commit(batch)?;
        inner.next_txid += 1;
        // The intent is durable: from here a failure must not be retried in-process (a failed
        // fsync's outcome is unknown); reopening re-applies the intent from the log.
        if let Err(e) = self
            .apply(txid, &ops)
            .and_then(|()| self.retire(txid, ops.len()))
        {
            inner.poisoned = true;
            return Err(e);
        }
        Ok(Committed {
            txid,
            ops: ops.len(),
        })
    }

    fn retire(&self, txid: u64, ops: usize) -> Result<(), StoreError> {
        let mut batch: Vec<Mutation> = (0..ops)
            .map(|n| Mutation::Delete(self.op_key(txid, n)))
            .collect();
        batch.push(Mutation::Put(
            self.applied_key(),
            encode("applied txid", &txid)?,
        ));
        self.backend.commit_relaxed(batch)
    }

    fn apply(&self, txid: u64, ops: &[FileOp]) -> Result<(), StoreError> {
        let mut dirty: BTreeSet<PathBuf> = BTreeSet::new();
        for op in ops {
            let rel = checked_path(op.path())?;
            let full = self.root.join(&rel);
            let parent = full.parent().unwrap_or(&self.root).to_path_buf();
            match op {
                FileOp::Write { bytes, .. } => {
                    create_dirs(&parent, &mut dirty)?;
                    write_replace(&full, &parent, txid, bytes)?;
                    dirty.insert(parent);
                }
                FileOp::Delete { .. } => {
                    let result = match std::fs::symlink_metadata(&full) {
                        Ok(m) if m.is_dir() => std::fs::remove_dir(&full),
                        Ok(_) => std::fs::remove_file(&full),
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(()) => {
                            dirty.insert(parent);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => return Err(StoreError::Io { path: full, source }),
                    }
                }
                FileOp::Mkdir { .. } => create_dirs(&full, &mut dirty)?,
            }
        }
        for d in &dirty {
            sync_dir(d).map_err(|source| StoreError::Io {
                path: d.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// A staged set of file operations; nothing touches the disk before [`commit`](Self::commit).
#[derive(Debug)]
pub struct Transaction<'a, B: Backend> {
    dir: &'a StateDir<B>,
    ops: Vec<FileOp>,
}

/// A point to roll a transaction back to (a nested transaction's start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Savepoint(usize);

impl<B: Backend> Transaction<'_, B> {
    /// Stages replacing `path` with `bytes`.
    pub fn write(&mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Result<(), StoreError> {
        checked_path(path)?;
        self.ops.push(FileOp::Write {
            path: path.to_owned(),
            bytes: bytes.into(),
        });
        Ok(())
    }

    /// Stages removing `path` (a file or an empty directory).
    pub fn delete(&mut self, path: &str) -> Result<(), StoreError> {
        checked_path(path)?;
        self.ops.push(FileOp::Delete {
            path: path.to_owned(),
        });
        Ok(())
    }

    /// Stages creating directory `path` and its parents.
    pub fn mkdir(&mut self, path: &str) -> Result<(), StoreError> {
        checked_path(path)?;
        self.ops.push(FileOp::Mkdir {
            path: path.to_owned(),
        });
        Ok(())
    }

    /// Reads `path` as this transaction would leave it (its own staged writes first).
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        checked_path(path)?;
        for op in self.ops.iter().rev() {
            match op {
                FileOp::Write { path: p, bytes } if p == path => return Ok(Some(bytes.clone())),
                FileOp::Delete { path: p } if p == path => return Ok(None),
                _ => {}
            }
        }
        self.dir.read(path)
    }

    /// The operations staged so far.
    pub fn ops(&self) -> &[FileOp] {
        &self.ops
    }

    /// Marks the start of a nested transaction.
    pub fn savepoint(&self) -> Savepoint {
        Savepoint(self.ops.len())
    }

    /// Undoes everything staged after `savepoint`.
    pub fn rollback_to(&mut self, savepoint: Savepoint) {
        self.ops.truncate(savepoint.0);
    }

    /// Runs `f` as a nested transaction: if it returns an error, its operations are undone and
    /// the error returned; the outer transaction continues either way.
    pub fn nested<T, E>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, E>) -> Result<T, E> {
        let sp = self.savepoint();
        let result = f(self);
        if result.is_err() {
            self.rollback_to(sp);
        }
        result
    }

    /// Commits: one durable batch, then the files. On an error after the batch was durable the
    /// store is poisoned and reopening finishes the transaction.
    pub fn commit(self) -> Result<Committed, StoreError> {
        self.dir.commit_ops(self.ops)
    }

    /// Discards every staged operation (as dropping does).
    pub fn rollback(self) {}
}

/// Validates a transaction path: relative, `/`-separated, no `.`/`..`, no temp-file names.
fn checked_path(path: &str) -> Result<PathBuf, StoreError> {
    let bad = |reason| StoreError::InvalidName {
        what: "path",
        value: path.to_owned(),
        reason,
    };
    if path.is_empty() {
        return Err(bad("must not be empty"));
    }
    if path.len() > 1024 {
        return Err(bad("longer than 1024 bytes"));
    }
    if path.contains('\0') || path.contains('\\') {
        return Err(bad("must not contain NUL or backslash"));
    }
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(name) => {
                if name.to_string_lossy().starts_with(TEMP_PREFIX) {
                    return Err(bad("names starting with .finn-txn. are reserved"));
                }
                out.push(name);
            }
            _ => return Err(bad("must be relative without '.' or '..' components")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(bad("must name a file"));
    }
    Ok(out)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and missing parents, recording each parent whose entries changed.
fn create_dirs(dir: &Path, dirty: &mut BTreeSet<PathBuf>) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dirs(parent, dirty)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(source) => {
            return Err(StoreError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Made durable now: a file renamed into `dir` is only reachable if `dir` is.
        sync_dir(parent).map_err(io(parent))?;
        dirty.insert(parent.to_path_buf());
    }
    Ok(())
}

fn write_replace(target: &Path, parent: &Path, txid: u64, bytes: &[u8]) -> Result<(), StoreError> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!("{TEMP_PREFIX}{txid}.{name}"));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, target)
    })();
    if let Err(source) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::Io {
            path: target.to_path_buf(),
            source,
        });
    }
    Ok(())
}

fn remove_temp_files(root: &Path) -> Result<usize, StoreError> {
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut changed = false;
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            let ty = entry.file_type().map_err(io(&path))?;
            if ty.is_dir() {
                stack.push(path);
            } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                std::fs::remove_file(&path).map_err(io(&path))?;
                removed += 1;
                changed = true;
            }
        }
        if changed {
            sync_dir(&dir).map_err(io(&dir))?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryBackend;

    #[test]
    fn paths_are_confined_to_the_directory() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./a",
            ".finn-txn.1.a",
            "a\\b",
        ] {
            assert!(
                matches!(checked_path(bad), Err(StoreError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
        assert_eq!(checked_path("a/b.txt").unwrap(), PathBuf::from("a/b.txt"));
    }

    #[test]
    fn nested_error_rolls_back_only_the_inner_part() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = StateDir::open(dir.path(), MemoryBackend::new(), "t").unwrap();
        let mut t = s.begin();
        t.write("a", b"1".to_vec()).unwrap();
        let r: Result<(), &str> = t.nested(|t| {
            t.write("b", b"2".to_vec()).unwrap();
            Err("inner failed")
        });
        assert!(r.is_err());
        assert_eq!(t.read("b").unwrap(), None);
        t.commit().unwrap();
        assert_eq!(s.read("a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.read("b").unwrap(), None);
    }
}
