//! The store: the WAL, the state folded from it, and the write path (validate → append → apply).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use finn_wal::{Durability, Kind, Lsn, Wal};

use crate::bead::Bead;
use crate::error::Error;
use crate::ready::ReadyQuery;
use crate::state::State;
use crate::timestamp::Timestamp;
use crate::tx::{Outbox, Pending, Tx};
use crate::validate::Limits;

/// Name of the WAL directory inside a store directory.
pub const WAL_DIR: &str = "wal";
/// Name of the lock file that serializes writers across processes.
pub const LOCK_FILE: &str = "beads.lock";

/// WAL segment size of a beads store (4 MiB; about 6,000 typical beads per segment).
pub const DEFAULT_SEGMENT_SIZE: u64 = 4 << 20;

/// How the store shares its directory with other processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sharing {
    /// This process is the only one using the directory: the WAL stays open, writes cost one
    /// append. A second opener (any process) gets [`Error::Locked`]. Default.
    #[default]
    Exclusive,
    /// Several processes use the directory. Each write takes the lock file, reopens the WAL (which
    /// truncates any torn tail a crashed writer left), folds in the records other processes
    /// appended, validates against that fresh state, appends with `Sync` and releases the lock.
    /// Reads see other processes' writes after [`Store::refresh`].
    MultiProcess,
}

/// Source of "now" for timestamps and lease deadlines.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Store options.
#[derive(Clone)]
pub struct Options {
    /// Directory sharing. Default: [`Sharing::Exclusive`].
    pub sharing: Sharing,
    /// Options of the WAL. Default: `finn_wal::Options::default()` (durability `Sync`) with
    /// [`DEFAULT_SEGMENT_SIZE`]-byte segments: beads are small, and every new segment is
    /// zero-filled and synced when it is created.
    pub wal: finn_wal::Options,
    /// Validation limits. Default: the anchors' limits ([`Limits::default`]).
    pub limits: Limits,
    /// Prefix of generated ids. Default: `"bd"`.
    pub id_prefix: String,
    /// Clock. Default: [`SystemTime::now`].
    pub clock: Clock,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sharing: Sharing::default(),
            wal: finn_wal::Options {
                segment_size: DEFAULT_SEGMENT_SIZE,
                ..finn_wal::Options::default()
            },
            limits: Limits::default(),
            id_prefix: "bd".to_owned(),
            clock: Arc::new(SystemTime::now),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("sharing", &self.sharing)
            .field("limits", &self.limits)
            .field("id_prefix", &self.id_prefix)
            .finish_non_exhaustive()
    }
}

enum Backend {
    /// The WAL stays open for the store's life.
    Owned { wal: Wal, _lock: File },
    /// A WAL shared with other components of this process.
    Shared(Arc<Wal>),
    /// Reopened under the lock file for every operation.
    MultiProcess { wal_dir: PathBuf, lock: File },
}

struct Inner {
    state: State,
    backend: Backend,
}

/// A beads store: every mutation is appended to the WAL (durably, by default) before it is
/// applied, and the in-memory state is a fold of the WAL.
///
/// `Store` is `Send + Sync`; methods take `&self` and are serialized internally, so a claim by one
/// thread never interleaves with another thread's.
pub struct Store {
    inner: Mutex<Inner>,
    options: Options,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir` and replays its WAL.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store, Error> {
        Self::open_inner(dir.as_ref(), options, None)
    }

    /// Opens the store from a snapshot ([`State::snapshot`]) covering the WAL up to `lsn`, and
    /// replays only the records after it. The coordinator's checkpoint/recovery wiring uses this.
    pub fn open_from_snapshot(
        dir: impl AsRef<Path>,
        options: Options,
        snapshot: &[u8],
        lsn: Lsn,
    ) -> Result<Store, Error> {
        let state = State::from_snapshot(snapshot, lsn)?;
        Self::open_inner(dir.as_ref(), options, Some(state))
    }

    /// A store over a WAL this process already has open (shared with other components; records
    /// of other kinds are skipped). Replays the WAL's bead records.
    pub fn with_wal(wal: Arc<Wal>, options: Options) -> Result<Store, Error> {
        let mut state = State::new();
        catch_up(&wal, &mut state)?;
        Ok(Store {
            inner: Mutex::new(Inner {
                state,
                backend: Backend::Shared(wal),
            }),
            options,
        })
    }

    fn open_inner(dir: &Path, options: Options, state: Option<State>) -> Result<Store, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Error::Io {
                path: lock_path.clone(),
                source,
            })?;
        let wal_dir = dir.join(WAL_DIR);
        let mut state = state.unwrap_or_default();
        let backend = match options.sharing {
            Sharing::Exclusive => {
                match lock.try_lock() {
                    Ok(()) => {}
                    Err(std::fs::TryLockError::WouldBlock) => {
                        return Err(Error::Locked { path: lock_path });
                    }
                    Err(std::fs::TryLockError::Error(source)) => {
                        return Err(Error::Io {
                            path: lock_path,
                            source,
                        });
                    }
                }
                let (wal, _report) = Wal::open(&wal_dir, options.wal.clone())?;
                catch_up(&wal, &mut state)?;
                Backend::Owned { wal, _lock: lock }
            }
            Sharing::MultiProcess => {
                let guard = FileLock::acquire(&lock, &lock_path)?;
                let (wal, _report) = Wal::open(&wal_dir, options.wal.clone())?;
                catch_up(&wal, &mut state)?;
                drop(wal);
                drop(guard);
                Backend::MultiProcess { wal_dir, lock }
            }
        };
        Ok(Store {
            inner: Mutex::new(Inner { state, backend }),
            options,
        })
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    fn lock_inner(&self) -> MutexGuard<'_, Inner> {
        // A panic inside a read closure cannot leave the state half-written: writes apply only
        // records that are already durable. So a poisoned mutex is safe to keep using.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current time according to the store's clock.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_system_time((self.options.clock)())
    }

    /// Runs `f` on the committed state. In [`Sharing::MultiProcess`] mode, call
    /// [`Store::refresh`] first to see other processes' writes.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        let inner = self.lock_inner();
        f(&inner.state)
    }

    /// Folds in records appended by other processes (a no-op in exclusive mode).
    pub fn refresh(&self) -> Result<(), Error> {
        let mut inner = self.lock_inner();
        let Inner { state, backend } = &mut *inner;
        match backend {
            Backend::Owned { .. } => Ok(()),
            Backend::Shared(wal) => catch_up(wal, state),
            Backend::MultiProcess { wal_dir, lock } => {
                let _guard = FileLock::acquire(lock, &wal_dir.with_file_name(LOCK_FILE))?;
                let (wal, _report) = Wal::open(&*wal_dir, self.options.wal.clone())?;
                catch_up(&wal, state)
            }
        }
    }

    /// Runs `f` as one transaction: its mutations are validated, appended to the WAL as one atomic
    /// batch (durable before this returns, with the default `Sync` durability) and then applied.
    /// If `f` or validation fails, nothing is written.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use finn_beads::{Bead, Store, Options};
    /// let store = Store::open(dir.path(), Options::default())?;
    /// let id = store.transact(|tx| {
    ///     let id = tx.create(Bead::new("", "Write the docs"))?;
    ///     tx.add_labels(&id, &["docs"])?;
    ///     Ok(id)
    /// })?;
    /// assert!(store.read(|s| s.get(&id).unwrap().has_label("docs")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn transact<R>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<R, Error>) -> Result<R, Error> {
        self.transact_with(None, f)
    }

    /// Like [`Store::transact`], but with `split` the records go to the WAL as several atomic
    /// batches (appended without a sync each, then made durable by one sync) and are applied
    /// only once all of them are durable. A crash leaves a prefix of the batches.
    pub(crate) fn transact_with<R>(
        &self,
        split: Option<Split>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut inner = self.lock_inner();
        let Inner { state, backend } = &mut *inner;
        match backend {
            Backend::Owned { wal, .. } => commit(wal, state, &self.options, self.now(), split, f),
            Backend::Shared(wal) => {
                catch_up(wal, state)?;
                commit(wal, state, &self.options, self.now(), split, f)
            }
            Backend::MultiProcess { wal_dir, lock } => {
                let _guard = FileLock::acquire(lock, &wal_dir.with_file_name(LOCK_FILE))?;
                let (wal, _report) = Wal::open(&*wal_dir, self.options.wal.clone())?;
                catch_up(&wal, state)?;
                // The clock is read under the lock so timestamps follow the append order.
                let now = self.now();
                commit(&wal, state, &self.options, now, split, f)
            }
        }
    }

    /// Creates a bead (see [`Tx::create`]); returns its id.
    pub fn create(&self, bead: Bead) -> Result<String, Error> {
        self.transact(|tx| Ok(tx.create(bead)?))
    }

    /// A copy of the bead with this id.
    pub fn get(&self, id: &str) -> Option<Bead> {
        self.read(|s| s.get(id).cloned())
    }

    /// The ready list (copies), see [`State::ready`].
    pub fn ready(&self, query: &ReadyQuery) -> Vec<Bead> {
        let now = self.now();
        self.read(|s| s.ready(query, &now).into_iter().cloned().collect())
    }

    /// LSN of the last record folded into the state.
    pub fn lsn(&self) -> Lsn {
        self.read(State::lsn)
    }

    /// A snapshot of the state for checkpointing, with the LSN it covers.
    pub fn snapshot(&self) -> (Vec<u8>, Lsn) {
        self.read(|s| (s.snapshot(), s.lsn()))
    }
}

/// Limits of the WAL batches a split transaction is cut into.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Split {
    /// Most records per batch.
    pub(crate) max_records: usize,
    /// Most encoded bytes (keys and payloads) per batch; a batch frame must fit in a segment.
    pub(crate) max_bytes: usize,
}

fn commit<R>(
    wal: &Wal,
    state: &mut State,
    options: &Options,
    now: Timestamp,
    split: Option<Split>,
    f: impl FnOnce(&mut Tx<'_>) -> Result<R, Error>,
) -> Result<R, Error> {
    let mut tx = Tx::new(state, &options.limits, &options.id_prefix, now);
    let out = f(&mut tx)?;
    if tx.is_empty() {
        return Ok(out);
    }
    let (outbox, pending) = tx.into_parts().map_err(Error::Encode)?;
    let durability = match &options.wal.durability {
        Durability::None => Durability::None,
        _ => Durability::Sync,
    };
    let Some(split) = split else {
        let lsns = wal.append_batch(outbox.encode_all(), durability)?;
        for (p, lsn) in pending.into_iter().zip(lsns) {
            p.apply(state, lsn);
        }
        state.settle();
        return Ok(out);
    };
    // Several atomic batches, one sync. Nothing is applied before everything appended is
    // durable, so a failed sync leaves the state at the last acknowledged write.
    let count = outbox.records.len();
    if count >= OVERLAP_MIN_RECORDS && state.len().saturating_mul(4) <= count {
        return commit_overlapped(wal, state, outbox, pending, split, durability).map(|()| out);
    }
    let (lsns, failed) = append_batches(wal, outbox, split);
    if !lsns.is_empty() && durability == Durability::Sync {
        wal.sync()?;
    }
    state.reserve(lsns.len());
    for (p, lsn) in pending.into_iter().zip(lsns) {
        p.apply(state, lsn);
    }
    state.settle();
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(out),
    }
}

/// A bulk write this large builds its new state beside the appends (see `commit_overlapped`).
const OVERLAP_MIN_RECORDS: usize = 4096;

/// A bulk write (an import several times larger than the store) with the new state built on a
/// second thread while this one appends: the state is a pure function of the records and their
/// LSNs, and the WAL gives consecutive LSNs from its next one. The result replaces the state
/// only once every batch is appended and durable at exactly those LSNs; if another writer of a
/// shared WAL interleaved, or a batch failed, the state is folded from the WAL instead, which
/// holds exactly what was appended. Either way nothing is applied before it is durable.
fn commit_overlapped(
    wal: &Wal,
    state: &mut State,
    outbox: Outbox,
    pending: Vec<Pending>,
    split: Split,
    durability: Durability,
) -> Result<(), Error> {
    let first = wal.last_lsn().next().get();
    let base = state.clone();
    let (lsns, failed, built) = std::thread::scope(|scope| {
        let builder = std::thread::Builder::new()
            .name("finn-beads-apply".to_owned())
            .spawn_scoped(scope, move || {
                let mut next = base;
                next.reserve(pending.len());
                for (i, p) in pending.into_iter().enumerate() {
                    p.apply(&mut next, Lsn::new(first + i as u64));
                }
                next.settle();
                next
            });
        let (lsns, failed) = append_batches(wal, outbox, split);
        let built = match builder {
            Ok(h) => match h.join() {
                Ok(next) => Some(next),
                Err(panic) => std::panic::resume_unwind(panic),
            },
            // No thread to be had: the state is folded from the WAL below.
            Err(_) => None,
        };
        (lsns, failed, built)
    });
    if !lsns.is_empty() && durability == Durability::Sync {
        wal.sync()?;
    }
    let as_predicted = failed.is_none()
        && lsns
            .iter()
            .enumerate()
            .all(|(i, lsn)| lsn.get() == first + i as u64);
    match built {
        Some(next) if as_predicted => *state = next,
        _ => catch_up(wal, state)?,
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Appends the records of `outbox` as atomic batches within `split`, without a sync; stops at
/// the first failure. Returns the LSNs of the records appended (a prefix) and the failure. Each
/// batch is encoded just before it is appended, so only one batch of payloads is held at a time.
fn append_batches(
    wal: &Wal,
    mut outbox: Outbox,
    split: Split,
) -> (Vec<Lsn>, Option<finn_wal::Error>) {
    let mut lsns = Vec::with_capacity(outbox.records.len());
    let mut queue = std::mem::take(&mut outbox.records).into_iter().peekable();
    while queue.peek().is_some() {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        while let Some(r) = queue.peek() {
            let len = r.len() + RECORD_OVERHEAD;
            if !batch.is_empty()
                && (batch.len() >= split.max_records || bytes + len > split.max_bytes)
            {
                break;
            }
            bytes += len;
            if let Some(r) = queue.next() {
                batch.push(outbox.encode(r));
            }
        }
        match wal.append_batch(batch, Durability::None) {
            Ok(l) => lsns.extend(l),
            Err(e) => return (lsns, Some(e)),
        }
    }
    (lsns, None)
}

/// Bytes a WAL record adds to its key and payload (record header, frame share).
const RECORD_OVERHEAD: usize = 64;

/// Folds every bead record after the state's LSN into it.
pub(crate) fn catch_up(wal: &Wal, state: &mut State) -> Result<(), Error> {
    // A gap between the state's LSN and the WAL's first record is normal after compaction (it
    // drops superseded puts and keeps the newest of every key, which is all the fold needs).
    // Records removed by `prune_through` are covered by the checkpoint snapshot the caller must
    // open with (`Store::open_from_snapshot`).
    let from = state.lsn().next();
    if wal.last_lsn() < from {
        return Ok(());
    }
    let mut result = Ok(());
    for r in wal.iter_from(from)? {
        let r = r?;
        if r.kind != Kind::Bead {
            state.set_lsn(r.lsn);
            continue;
        }
        if let Err(e) = state.apply_raw(&r) {
            result = Err(e.into());
            break;
        }
    }
    state.settle();
    result
}

/// Holds the cross-process lock file for a short critical section.
struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    fn acquire(file: &'a File, path: &Path) -> Result<Self, Error> {
        file.lock().map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(FileLock(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // Closing the descriptor would release the lock too; the explicit unlock keeps the file
        // open for the next operation. An unlock failure leaves the lock to be released at exit.
        let _ = self.0.unlock();
    }
}
