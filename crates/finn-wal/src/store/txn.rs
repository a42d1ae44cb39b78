//! Transactions on a directory of files: stage writes, deletes and directory creations, commit
//! them as one durable batch (the intent), then apply them to the files.
//!
//! The intent in the log is the commit point; the files are a materialized view of it, made
//! durable lazily, the way a database flushes data pages at checkpoints rather than per commit:
//!
//! 1. `commit` writes every operation of the transaction to the backend in one atomic, durable
//!    batch under `<scope>/op/<txid>/<n>` (one fdatasync). Before that point nothing on disk
//!    changed; a crash loses the uncommitted transaction and nothing else.
//! 2. Each file is written under its temp name `.finn-txn.<name>` in its directory and swapped
//!    with its target (`renameat2(RENAME_EXCHANGE)`), without an fsync: the new contents are
//!    visible at once, and the transaction is durable through its intent. The displaced
//!    version stays under the temp name as the file's *spare*, and the next write of that file
//!    overwrites the spare in place instead of creating a new file (inode allocation and
//!    freeing are most of what an apply would cost otherwise). Both inodes of up to 32
//!    recently written files stay open, so such a write needs no open or close either.
//! 3. A *checkpoint* ([`TxnOptions::checkpoint_every`] transactions or
//!    [`TxnOptions::checkpoint_bytes`] of intents after the last one, or [`StateDir::checkpoint`])
//!    fdatasyncs every file touched since the last checkpoint and fsyncs every changed directory,
//!    and only then retires those intents in one batch (op keys deleted, `<scope>/applied` set).
//!    That batch is relaxed: if it is lost, the intents are applied again, which is idempotent.
//!    Then it unlinks the spares that no write used since the previous checkpoint (an
//!    explicit [`StateDir::checkpoint`] unlinks all of them).
//!
//! [`StateDir::open`] re-applies every intent not retired, in txid order, by rewriting every file
//! it names from the log (it never trusts what is on disk: after a power loss a swapped but
//! unsynced file may be empty or stale, and a spare overwritten in place may be what the name
//! points to again), checkpoints, and removes stray temp files. Every change to an inode that
//! the disk may still show under a file's name happens while an unretired intent covers that
//! file. So after a crash or power loss at any point, opening leaves every file of every
//! acknowledged transaction at its new version; a transaction whose commit did not reach the
//! log leaves its old one.
//!
//! What a reader bypassing [`StateDir`] may see: between a power loss and the next open, files
//! of uncheckpointed transactions at their old, new or torn contents; between checkpoints,
//! the hidden `.finn-txn.*` spares beside recently written files (the previous version of each
//! file written in the last two checkpoint periods, so such a file takes up to twice its
//! size on disk; [`StateDir::checkpoint`] removes them); and, if it keeps a file open
//! across two commits that both write it, the second commit's bytes (the spare it overwrites is
//! the inode that reader opened). [`StateDir::read`] holds a lock against applies and always
//! sees whole versions. File permissions are not managed: a file's mode is that of whichever
//! inode holds its current version.
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
//! state.checkpoint()?;              // files durable, intent retired
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::{Backend, Mutation, StoreError, decode, encode, push_padded, validate_segment};
use crate::fs::sync_dir;

/// Name prefix of the temp files a transaction writes before renaming them into place; paths
/// whose components start with it are refused.
pub const TEMP_PREFIX: &str = ".finn-txn.";

/// Longest file or directory name a path may hold: 255 bytes (the usual `NAME_MAX`) less
/// [`TEMP_PREFIX`].
pub const MAX_NAME_LEN: usize = 255 - TEMP_PREFIX.len();

/// One staged operation, as stored in the intent record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileOp {
    /// Replace (or create) the file with these bytes; missing parent directories are created.
    Write {
        /// Path relative to the state directory, `/`-separated.
        path: String,
        /// The new contents.
        #[serde(with = "super::raw_bytes")]
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

/// When a [`StateDir`] checkpoints (syncs the files of applied transactions and retires their
/// intents). Every field has a documented default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TxnOptions {
    /// Checkpoint once this many committed transactions wait. `1` syncs the files on every
    /// commit (the commit then also waits for its files). Default: 32.
    pub checkpoint_every: u32,
    /// Checkpoint once the waiting transactions' intents hold this many bytes, which bounds what
    /// the in-memory view holds and what a reopen re-applies. Default: 4 MiB.
    pub checkpoint_bytes: u64,
}

/// Default [`TxnOptions::checkpoint_every`].
pub const DEFAULT_CHECKPOINT_EVERY: u32 = 32;
/// Default [`TxnOptions::checkpoint_bytes`].
pub const DEFAULT_CHECKPOINT_BYTES: u64 = 4 << 20;

impl Default for TxnOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            checkpoint_bytes: DEFAULT_CHECKPOINT_BYTES,
        }
    }
}

impl TxnOptions {
    /// Sets [`checkpoint_every`](Self::checkpoint_every) (at least 1).
    pub fn checkpoint_every(mut self, n: u32) -> Self {
        self.checkpoint_every = n.max(1);
        self
    }

    /// Sets [`checkpoint_bytes`](Self::checkpoint_bytes).
    pub fn checkpoint_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_bytes = bytes;
        self
    }
}

/// What opening found and finished.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRecovery {
    /// Committed transactions whose files were rewritten from their intents, in order.
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
    /// Whether this commit also ran a checkpoint (its files, and those of every earlier
    /// transaction, are durable on disk and the intents retired).
    pub checkpointed: bool,
}

/// Transactions applied to the files but not yet checkpointed.
#[derive(Debug, Default)]
struct Unsynced {
    /// `(txid, number of op keys)` in commit order.
    txns: Vec<(u64, usize)>,
    intent_bytes: u64,
    /// Files renamed into place since the last checkpoint.
    files: BTreeSet<PathBuf>,
    /// Directories whose entries changed since the last checkpoint.
    dirs: BTreeSet<PathBuf>,
    /// Files written since the last checkpoint or the one before, by target path.
    slots: HashMap<PathBuf, Slot>,
}

/// Most files whose descriptors a [`StateDir`] keeps open between writes (two each).
const MAX_OPEN_SLOTS: usize = 32;

/// What a [`StateDir`] keeps about a recently written file.
#[derive(Debug, Default)]
struct Slot {
    /// Whether its spare exists: the version displaced by its last swap, under its temp name,
    /// which the next write overwrites in place.
    spare: bool,
    /// Whether a write used it since the last checkpoint.
    used: bool,
    /// Whether its descriptors are kept (decided when the slot is made, which bounds the
    /// open slots by [`MAX_OPEN_SLOTS`]).
    keep_open: bool,
    /// The open current version (the inode the name points to) and its inode number.
    current: Option<(std::fs::File, u64)>,
    /// The open spare, when it is the inode `current` held before the last swap.
    spare_file: Option<std::fs::File>,
}

#[derive(Debug)]
struct Inner {
    next_txid: u64,
    poisoned: bool,
    unsynced: Unsynced,
}

/// A directory of files changed only through transactions.
#[derive(Debug)]
pub struct StateDir<B: Backend> {
    root: PathBuf,
    backend: B,
    scope: String,
    options: TxnOptions,
    inner: Mutex<Inner>,
    // Held shared by `read` and exclusively while files are applied: an apply overwrites a
    // displaced inode in place, which a reader that opened the file two commits earlier could
    // otherwise still be reading.
    files: RwLock<()>,
}

impl<B: Backend> StateDir<B> {
    /// Opens (creating if missing) the directory `root`, with its intents kept in `backend`
    /// under `<scope>/`, and finishes every committed transaction a crash interrupted.
    pub fn open(
        root: impl AsRef<Path>,
        backend: B,
        scope: &str,
    ) -> Result<(Self, TxnRecovery), StoreError> {
        Self::open_with(root, backend, scope, TxnOptions::default())
    }

    /// [`open`](Self::open) with explicit checkpoint thresholds.
    pub fn open_with(
        root: impl AsRef<Path>,
        backend: B,
        scope: &str,
        options: TxnOptions,
    ) -> Result<(Self, TxnRecovery), StoreError> {
        validate_segment("scope", scope)?;
        let root = root.as_ref().to_path_buf();
        let mut unsynced = Unsynced::default();
        create_dirs(&root, &mut unsynced.dirs)?;
        let dir = StateDir {
            root,
            backend,
            scope: scope.to_owned(),
            options: TxnOptions {
                checkpoint_every: options.checkpoint_every.max(1),
                ..options
            },
            inner: Mutex::new(Inner {
                next_txid: 1,
                poisoned: false,
                unsynced,
            }),
            files: RwLock::new(()),
        };
        let mut report = TxnRecovery {
            temp_files_removed: remove_temp_files(&dir.root)?,
            ..TxnRecovery::default()
        };
        let applied = match dir.backend.get(&dir.applied_key())? {
            Some(bytes) => decode::<u64>("applied txid", &bytes)?,
            None => 0,
        };
        let mut inner = dir.lock();
        let mut next = applied + 1;
        for (txid, ops) in dir.pending()? {
            // Rewrite every file from the intent: what is on disk may be stale or truncated.
            dir.apply(&ops, &mut inner.unsynced)?;
            inner.unsynced.txns.push((txid, ops.len()));
            report.reapplied.push(txid);
            next = next.max(txid + 1);
        }
        // Also makes the root's creation durable on a first open.
        dir.checkpoint_locked(&mut inner, Spares::RemoveAll)?;
        inner.next_txid = next;
        drop(inner);
        if !report.reapplied.is_empty() {
            tracing::info!(scope, txids = ?report.reapplied, "re-applied committed transactions");
        }
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
        let _files = self.files.read().unwrap_or_else(|e| e.into_inner());
        match std::fs::read(&full) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path: full, source }),
        }
    }

    /// Makes the files of every committed transaction durable on disk, retires their intents,
    /// removes every temp file and closes the descriptors kept open between writes; returns
    /// how many transactions it retired. Commits do this
    /// on their own by [`TxnOptions`] (keeping the temp files of recently written files for
    /// reuse); call it before handing the directory to something that reads the files without
    /// opening the `StateDir` (a backup, another program).
    pub fn checkpoint(&self) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        if inner.poisoned {
            return Err(StoreError::Poisoned);
        }
        let n = inner.unsynced.txns.len();
        if let Err(e) = self.checkpoint_locked(&mut inner, Spares::RemoveAll) {
            // A failed fsync must not be retried: its pages may be marked clean and lost.
            inner.poisoned = true;
            return Err(e);
        }
        Ok(n)
    }

    /// Committed transactions whose files are not yet known durable (their intents are).
    pub fn unsynced(&self) -> usize {
        self.lock().unsynced.txns.len()
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
        let mut key = String::with_capacity(self.scope.len() + 32);
        key.push_str(&self.scope);
        key.push_str("/op/");
        push_padded(&mut key, txid, 20);
        key.push('/');
        push_padded(&mut key, n as u64, 6);
        key
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
            return Ok(Committed {
                txid: 0,
                ops: 0,
                checkpointed: false,
            });
        }
        let txid = inner.next_txid;
        let mut batch = Vec::with_capacity(ops.len());
        let mut bytes = 0u64;
        for (n, op) in ops.iter().enumerate() {
            let key = self.op_key(txid, n);
            let value = encode("file op", op)?;
            bytes += (key.len() + value.len()) as u64;
            batch.push(Mutation::Put(key, value));
        }
        self.backend.commit(batch)?;
        inner.next_txid += 1;
        // The intent is durable: from here a failure must not be retried in-process (a failed
        // fsync's outcome is unknown); reopening re-applies the intent from the log.
        let result = (|| {
            self.apply(&ops, &mut inner.unsynced)?;
            inner.unsynced.txns.push((txid, ops.len()));
            inner.unsynced.intent_bytes += bytes;
            let due = inner.unsynced.txns.len() >= self.options.checkpoint_every as usize
                || inner.unsynced.intent_bytes >= self.options.checkpoint_bytes;
            if due {
                self.checkpoint_locked(&mut inner, Spares::RemoveIdle)?;
            }
            Ok(due)
        })();
        match result {
            Ok(checkpointed) => Ok(Committed {
                txid,
                ops: ops.len(),
                checkpointed,
            }),
            Err(e) => {
                inner.poisoned = true;
                Err(e)
            }
        }
    }

    /// Syncs every file and directory the unsynced transactions touched, then retires them.
    /// The caller poisons the store on failure.
    fn checkpoint_locked(&self, inner: &mut Inner, spares: Spares) -> Result<(), StoreError> {
        let u = &mut inner.unsynced;
        let jobs: Vec<SyncJob<'_>> =
            (u.files
                .iter()
                .map(|f| match u.slots.get(f).and_then(|s| s.current.as_ref()) {
                    Some((file, _)) => SyncJob::Open(f, file),
                    None => SyncJob::File(f),
                }))
            .chain(u.dirs.iter().map(|d| SyncJob::Dir(d)))
            .collect();
        sync_all(&jobs)?;
        u.files.clear();
        u.dirs.clear();
        let Some(&(last, _)) = u.txns.last() else {
            remove_spares(&mut u.slots, spares);
            return Ok(());
        };
        // Only now, with the files durable, may the intents go.
        let mut batch: Vec<Mutation> = Vec::new();
        for &(txid, ops) in &u.txns {
            batch.extend((0..ops).map(|n| Mutation::Delete(self.op_key(txid, n))));
        }
        batch.push(Mutation::Put(
            self.applied_key(),
            encode("applied txid", &last)?,
        ));
        self.backend.commit_relaxed(batch)?;
        u.txns.clear();
        u.intent_bytes = 0;
        remove_spares(&mut u.slots, spares);
        Ok(())
    }

    fn apply(&self, ops: &[FileOp], u: &mut Unsynced) -> Result<(), StoreError> {
        let _files = self.files.write().unwrap_or_else(|e| e.into_inner());
        for op in ops {
            let rel = checked_path(op.path())?;
            let full = self.root.join(&rel);
            let parent = full.parent().unwrap_or(&self.root).to_path_buf();
            match op {
                FileOp::Write { bytes, .. } => {
                    write_replace(&full, &parent, bytes, u)?;
                    u.files.insert(full);
                    u.dirs.insert(parent);
                }
                FileOp::Delete { .. } => {
                    let result = match std::fs::symlink_metadata(&full) {
                        Ok(m) if m.is_dir() => std::fs::remove_dir(&full),
                        Ok(_) => std::fs::remove_file(&full),
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(()) => {
                            u.files.remove(&full);
                            u.dirs.insert(parent.clone());
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => return Err(StoreError::Io { path: full, source }),
                    }
                    // The deleted file's spare goes too (it would keep its directory from
                    // being deleted, and nothing will write the file through it).
                    let spare = spare_path(&full, &parent);
                    if u.slots.remove(&full).is_some_and(|s| s.spare) {
                        match std::fs::remove_file(&spare) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(source) => {
                                return Err(StoreError::Io {
                                    path: spare,
                                    source,
                                });
                            }
                        }
                    }
                }
                FileOp::Mkdir { .. } => create_dirs(&full, &mut u.dirs)?,
            }
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
                // The temp name (prefix + name) must fit the file system's 255-byte limit; a
                // name refused only at apply time would poison the store after its commit.
                if name.len() > MAX_NAME_LEN {
                    return Err(bad("has a component longer than 245 bytes"));
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

/// Creates `dir` and missing parents, recording each directory whose entries changed (synced
/// at the next checkpoint, before any intent that relies on them is retired).
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
        dirty.insert(parent.to_path_buf());
    }
    Ok(())
}

/// The temp name `target` is written under before it is swapped into place.
fn spare_path(target: &Path, parent: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(TEMP_PREFIX);
    name.push(target.file_name().unwrap_or_default());
    parent.join(name)
}

/// Writes `bytes` under `target`'s temp name and swaps it into place: readers see the old or
/// the new contents, never a partial write. No fsync here; the checkpoint syncs.
///
/// The temp file is the spare left by the previous swap of the same file when there is one
/// (the displaced version, overwritten in place), else a new file. Reusing the inode is what
/// makes an apply cheap: creating and unlinking an inode per write costs ext4 its inode and
/// block allocators (and, mounted with `discard`, a discard per freed block), while an
/// overwrite in place only dirties pages. Truncating the spare to zero instead would make
/// ext4 (`auto_da_alloc`) flush it on close.
fn write_replace(
    target: &Path,
    parent: &Path,
    bytes: &[u8],
    u: &mut Unsynced,
) -> Result<(), StoreError> {
    let spare = spare_path(target, parent);
    let mut slot = match u.slots.remove(target) {
        Some(slot) => slot,
        None => Slot {
            keep_open: u.slots.len() < MAX_OPEN_SLOTS,
            ..Slot::default()
        },
    };
    let file = match slot.spare_file.take() {
        Some(f) => f,
        None => match open_spare(&spare) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_dirs(parent, &mut u.dirs)?;
                open_spare(&spare).map_err(io(&spare))?
            }
            Err(source) => {
                return Err(StoreError::Io {
                    path: spare,
                    source,
                });
            }
        },
    };
    let result = (|| {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let meta = file.metadata()?;
        file.write_all_at(bytes, 0)?;
        if meta.len() > bytes.len() as u64 {
            file.set_len(bytes.len() as u64)?;
        }
        Ok((meta.ino(), swap_in(&spare, target)?))
    })();
    match result {
        Ok((ino, displaced)) => {
            let previous = slot.current.take();
            slot.used = true;
            slot.spare = displaced.is_some();
            if slot.keep_open {
                // The displaced inode is the one `previous` holds, unless something else
                // swapped the files meanwhile: then it is opened by name next time.
                slot.spare_file = previous
                    .filter(|(_, previous_ino)| Some(*previous_ino) == displaced)
                    .map(|(f, _)| f);
                slot.current = Some((file, ino));
            }
            u.slots.insert(target.to_path_buf(), slot);
            Ok(())
        }
        Err(source) => {
            // The slot (and its descriptors) goes; so does the temp file, whatever it holds.
            let _ = std::fs::remove_file(&spare);
            Err(StoreError::Io {
                path: target.to_path_buf(),
                source,
            })
        }
    }
}

/// Opens (creating if missing) a temp file for writing without following a symlink: only
/// this module creates names with [`TEMP_PREFIX`], so a symlink there is not ours to write
/// through.
fn open_spare(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Moves the written `spare` to `target` atomically; returns the inode number of the displaced
/// previous version if `spare` now holds it, a regular file the next write of `target` may
/// reuse.
///
/// On Linux an existing target is exchanged with `spare` (`renameat2(RENAME_EXCHANGE)`). A
/// plain rename over an existing file makes ext4 (`auto_da_alloc`) start writeback of the new
/// file inside the rename, about 1 ms per file on a busy disk, for nothing: the checkpoint
/// syncs the file anyway. Elsewhere, or without a target, it is a plain rename.
fn swap_in(spare: &Path, target: &Path) -> std::io::Result<Option<u64>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        use rustix::io::Errno;
        match renameat_with(CWD, spare, CWD, target, RenameFlags::EXCHANGE) {
            Ok(()) => {
                use std::os::unix::fs::MetadataExt;
                let displaced = std::fs::symlink_metadata(spare)?;
                if displaced.is_file() {
                    return Ok(Some(displaced.ino()));
                }
                if displaced.is_dir() {
                    // A plain rename would have refused to replace a directory: swap back.
                    renameat_with(CWD, spare, CWD, target, RenameFlags::EXCHANGE)?;
                    return Err(Errno::ISDIR.into());
                }
                // A symlink or special file the write replaced: not reusable.
                std::fs::remove_file(spare)?;
                return Ok(None);
            }
            // No target yet (a plain rename is cheap then), or a file system without exchange.
            Err(Errno::NOENT | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    std::fs::rename(spare, target)?;
    Ok(None)
}

/// Most threads a checkpoint syncs with (the calling one included).
const SYNC_THREADS: usize = 8;

/// One sync of a checkpoint.
#[derive(Clone, Copy, Debug)]
enum SyncJob<'a> {
    /// fdatasync a file through the descriptor the store keeps open.
    Open(&'a Path, &'a std::fs::File),
    /// fdatasync a file, opening it.
    File(&'a Path),
    /// fsync a directory.
    Dir(&'a Path),
}

/// Runs every sync of a checkpoint; a path that no longer exists is skipped (a later
/// transaction deleted it, and its directory is in the list too).
///
/// The syncs are issued from up to [`SYNC_THREADS`] threads at once. One after another, a
/// checkpoint of ten files waits for eleven device flushes in a row; issued together, the
/// block layer merges their flushes (measured on ext4 over virtio: ten dirty files synced
/// concurrently in 1.2–2× the time of one fdatasync, against 10× in a row). The outcome is
/// the same: every sync done, or an error, after which the caller poisons the store (a failed
/// sync is never retried). If no thread can be started, the calling thread syncs alone.
fn sync_all(jobs: &[SyncJob<'_>]) -> Result<(), StoreError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<StoreError>> = Mutex::new(None);
    let work = || {
        while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
            let (path, synced) = match *job {
                SyncJob::Open(path, file) => (path, file.sync_data()),
                SyncJob::File(path) => {
                    (path, std::fs::File::open(path).and_then(|f| f.sync_data()))
                }
                SyncJob::Dir(path) => (path, sync_dir(path)),
            };
            match synced {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    let mut slot = first_error.lock().unwrap_or_else(|e| e.into_inner());
                    slot.get_or_insert(StoreError::Io {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..jobs.len().min(SYNC_THREADS) {
            let spawned = std::thread::Builder::new()
                .name("finn-txn-sync".into())
                .spawn_scoped(s, work);
            if spawned.is_err() {
                break;
            }
        }
        work();
    });
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Which spares a checkpoint unlinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spares {
    /// Those no write used since the previous checkpoint (automatic checkpoints): a file
    /// written in every checkpoint period keeps its spare instead of paying an inode creation
    /// and an unlink per period.
    RemoveIdle,
    /// All of them ([`StateDir::checkpoint`], open): the directory is left without temp files.
    RemoveAll,
}

/// Drops the slots a checkpoint no longer keeps, unlinking their spares. Keeping a spare is
/// safe: the checkpoint made the swap that displaced it durable, so the inode a later write
/// overwrites is not the one the file's name points to on disk. Best effort: the unlinks need
/// no fsync (opening removes any a crash brings back), and one that fails leaves a temp file
/// that the next open removes.
fn remove_spares(slots: &mut HashMap<PathBuf, Slot>, which: Spares) {
    slots.retain(|target, slot| {
        if which == Spares::RemoveIdle && std::mem::replace(&mut slot.used, false) {
            return true;
        }
        if slot.spare {
            let parent = target.parent().unwrap_or(Path::new(""));
            let spare = spare_path(target, parent);
            match std::fs::remove_file(&spare) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %spare.display(), error = %e, "cannot remove spare temp file")
                }
            }
        }
        false
    });
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
        let longest = "n".repeat(MAX_NAME_LEN);
        assert!(checked_path(&format!("d/{longest}")).is_ok());
        assert!(matches!(
            checked_path(&format!("d/{longest}n")),
            Err(StoreError::InvalidName { .. })
        ));
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

    #[test]
    fn replacing_swaps_files_and_refuses_directories() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = StateDir::open(dir.path(), MemoryBackend::new(), "t").unwrap();
        for v in [b"1", b"2"] {
            let mut t = s.begin();
            t.write("f", v.to_vec()).unwrap();
            t.commit().unwrap();
            assert_eq!(s.read("f").unwrap(), Some(v.to_vec()));
        }
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/inside"), b"keep").unwrap();
        let mut t = s.begin();
        t.write("d", b"file".to_vec()).unwrap();
        assert!(matches!(t.commit(), Err(StoreError::Io { .. })));
        assert_eq!(std::fs::read(dir.path().join("d/inside")).unwrap(), b"keep");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        // `f`'s spare (its first version, displaced by the second) waits for the checkpoint;
        // the failed write of `d` leaves nothing.
        assert!(
            !names.iter().any(|n| n == ".finn-txn.d"),
            "temp file left: {names:?}"
        );
        assert!(names.iter().any(|n| n == ".finn-txn.f"), "{names:?}");
        // The intent is durable but could not be applied: the store refuses further commits.
        let mut t = s.begin();
        t.write("g", b"x".to_vec()).unwrap();
        assert!(matches!(t.commit(), Err(StoreError::Poisoned)));
    }
}
