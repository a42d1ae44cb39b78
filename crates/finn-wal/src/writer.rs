//! The append path: frame encoding into the active segment with `pwrite`, rotation, leader /
//! follower group commit, poisoning, disk pressure, and the background thread that serves
//! `Durability::Batch` deadlines and automatic compaction.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::compaction::KeyIndex;
use crate::id::{UlidGen, now_ms};
use crate::lock::DirLock;
use crate::record::{FrameBuilder, RecordRef, marked_batch_frame_len, marked_single_frame_len};
use crate::segment::{
    HEADER_LEN, Segment, SegmentHeader, create_segment, install_spare, prepare_spare,
    remove_durably,
};
use crate::status::{Metrics, Pressure};
use crate::{Durability, Error, NewRecord, Options, Record, error::PressureReason};

/// How often free space is measured at most (statvfs is a syscall; appends are not).
const FREE_SPACE_RECHECK: Duration = Duration::from_millis(250);

/// State shared by every handle, reader and the background thread.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) read_only: bool,
    /// Segments in LSN order; the last one is the active segment of a writable WAL.
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    pub(crate) writer: Mutex<WriterState>,
    /// Signalled whenever a group-commit round ends.
    pub(crate) synced: Condvar,
    /// Signalled when a `Sync` writer starts waiting while a leader gathers its group.
    pub(crate) arrived: Condvar,
    pub(crate) poisoned: AtomicBool,
    pub(crate) last_lsn: AtomicU64,
    pub(crate) durable_lsn: AtomicU64,
    pub(crate) wal_bytes: AtomicU64,
    pub(crate) metrics: Metrics,
    pub(crate) keys: Mutex<KeyIndex>,
    /// Serialises compaction, pruning, retention and truncation.
    pub(crate) maintenance: Mutex<Maintenance>,
    /// The next segment, prepared in the background.
    pub(crate) spare: Mutex<SpareSlot>,
    pub(crate) bg: Mutex<Background>,
    pub(crate) bg_cv: Condvar,
    /// Lets `&self` methods start the background thread on first need.
    pub(crate) self_ref: Weak<Inner>,
    pub(crate) _lock: Option<DirLock>,
}

/// State of maintenance operations.
#[derive(Debug, Default)]
pub(crate) struct Maintenance {
    /// Highest LSN the caller confirmed as checkpointed (in memory: after a restart retention
    /// knows less and deletes less, never more).
    pub(crate) confirmed: u64,
}

/// The next segment prepared ahead of need (see [`crate::segment::Spare`]).
#[derive(Debug, Default)]
pub(crate) struct SpareSlot {
    pub(crate) ready: Option<crate::segment::Spare>,
    pub(crate) preparing: bool,
}

/// Work for the background thread.
#[derive(Debug, Default)]
pub(crate) struct Background {
    /// Started on first need, so that a WAL that never uses `Batch`, auto-compaction or
    /// retention never runs a thread.
    pub(crate) thread: Option<JoinHandle<()>>,
    pub(crate) shutdown: bool,
    pub(crate) flush_deadline: Option<Instant>,
    pub(crate) compact: bool,
    pub(crate) retention: bool,
    /// Fold the keys of sealed segments into the key index, then check for compaction.
    pub(crate) fold_keys: bool,
    /// Prepare the next segment.
    pub(crate) prepare_spare: bool,
}

/// Everything the append path mutates, under one mutex.
#[derive(Debug)]
pub(crate) struct WriterState {
    pub(crate) active: Arc<Segment>,
    pub(crate) capacity: u64,
    pub(crate) write_offset: u64,
    pub(crate) next_lsn: u64,
    pub(crate) ulid: UlidGen,
    /// Whether the next replicated record may leave a gap (empty WAL or after `advance_to`).
    pub(crate) gap_allowed: bool,
    /// A group-commit leader is gathering its group or inside fdatasync.
    pub(crate) syncing: bool,
    pub(crate) group: GroupCommit,
    /// Offset in the active segment up to which its bytes are known durable; written into
    /// every frame as `synced_to` (see [`crate::record`]).
    pub(crate) synced_offset: u64,
    /// The background thread was asked to prepare the segment after the active one.
    pub(crate) spare_requested: bool,
    pub(crate) buf: Vec<u8>,
    pub(crate) free_bytes: Option<u64>,
    pub(crate) free_checked: Option<Instant>,
}

/// What the group-commit leader knows about concurrency, to decide how long to gather.
///
/// A leader that syncs the moment the previous sync ends covers only the writers that waited
/// during it; those that sync released append again while the new sync runs and wait for the
/// next one. With `n` writers the rounds settle into two halves of `n / 2`. So when more than
/// one writer has been seen in a group, the leader first lets the writers the previous sync
/// released append (PostgreSQL's `commit_delay`, made adaptive): it waits until as many
/// writers joined as in the largest recent group, at most the last sync's duration. A lone
/// writer never waits.
///
/// The group counts writers whose frames the next sync would be the first to cover, not
/// writers inside [`Inner::wait_durable`]: right after a sync, the writers it released are
/// still inside, waiting to be scheduled, and counting them ended the gathering before the
/// released writers had appended again (groups of about 5 of 8 writers).
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    /// `Sync` writers whose frames were written after the running or last sync began.
    joined: usize,
    /// The largest recent group, in writers; decays by one per round.
    peak: usize,
    /// How long the last fdatasync took.
    last_sync: Duration,
    /// A leader waits on `arrived` for its group.
    gathering: bool,
}

/// Longest a leader gathers its group.
const MAX_GATHER: Duration = Duration::from_micros(500);

/// The records of one frame.
pub(crate) enum Input<'a> {
    New(&'a [NewRecord]),
    Replicated(&'a [Record]),
}

impl Input<'_> {
    fn len(&self) -> usize {
        match self {
            Input::New(r) => r.len(),
            Input::Replicated(r) => r.len(),
        }
    }

    /// Calls `f(kind code, key, lsn, encoded length)` for each put and delete, the records
    /// the key index tracks; the frame's first record gets LSN `first`.
    fn for_each_keyed(&self, first: u64, mut f: impl FnMut(u16, &str, u64, usize)) {
        let mut one = |kind: crate::Kind, op, key: Option<&str>, lsn, len| {
            if let (crate::Op::Put | crate::Op::Delete, Some(key), Some(code)) =
                (op, key, kind.code())
            {
                f(code, key, lsn, len);
            }
        };
        match self {
            Input::New(records) => {
                for (lsn, r) in (first..).zip(records.iter()) {
                    one(r.kind, r.op, r.key.as_deref(), lsn, r.encoded_len());
                }
            }
            Input::Replicated(records) => {
                for r in records.iter() {
                    one(r.kind, r.op, r.key.as_deref(), r.lsn.get(), r.encoded_len());
                }
            }
        }
    }

    fn frame_len(&self) -> usize {
        let records: usize = match self {
            Input::New(r) => r.iter().map(NewRecord::encoded_len).sum(),
            Input::Replicated(r) => r.iter().map(Record::encoded_len).sum(),
        };
        if self.len() == 1 {
            marked_single_frame_len(records)
        } else {
            marked_batch_frame_len(records)
        }
    }
}

impl Inner {
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    pub(crate) fn poison(&self, what: &str, path: &std::path::Path, error: &std::io::Error) {
        if !self.poisoned.swap(true, Ordering::AcqRel) {
            tracing::error!(path = %path.display(), %error, "{what} failed; WAL poisoned until reopen");
        }
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, WriterState> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn check_writable(&self) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        if self.is_poisoned() {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// The segments as they are now: a list of handles, so a reader or maintenance pass works
    /// on it without holding the lock.
    pub(crate) fn segments_now(&self) -> Vec<Arc<Segment>> {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Largest frame a fresh segment can hold.
    pub(crate) fn max_frame(&self) -> u64 {
        self.options.segment_size - HEADER_LEN
    }

    /// Appends one frame holding `input`; returns its first and last LSN.
    pub(crate) fn append_frame(
        &self,
        input: Input<'_>,
        durability: Durability,
    ) -> Result<(u64, u64), Error> {
        self.check_writable()?;
        let frame_len = input.frame_len() as u64;
        if frame_len > self.max_frame() {
            return Err(Error::TooLarge {
                what: if input.len() == 1 {
                    "record frame"
                } else {
                    "batch frame"
                },
                len: frame_len,
                max: self.max_frame(),
            });
        }
        let mut w = self.lock_writer();
        self.check_writable()?;
        self.check_pressure(&mut w)?;

        // Which LSNs the frame gets.
        let first = match &input {
            Input::New(_) => w.next_lsn,
            Input::Replicated(records) => {
                let first = records[0].lsn.get();
                let ok = if w.gap_allowed {
                    first >= w.next_lsn
                } else {
                    first == w.next_lsn
                };
                if !ok {
                    return Err(Error::InvalidLsn {
                        lsn: records[0].lsn,
                        reason: if first < w.next_lsn {
                            "replicated records must follow the last LSN"
                        } else {
                            "replicated records may only leave a gap into an empty WAL or after advance_to"
                        },
                    });
                }
                first
            }
        };

        if w.write_offset + frame_len > w.capacity || self.segment_too_old(&w) {
            self.rotate(&mut w, first)?;
        }

        // Encode.
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        let count = input.len();
        let builder = FrameBuilder::begin(
            &mut buf,
            (count > 1).then_some(count as u32),
            Some(w.synced_offset),
        );
        let mut last = first;
        match &input {
            Input::New(records) => {
                let now = now_ms();
                for (i, r) in records.iter().enumerate() {
                    let Some(id) = w.ulid.next(now) else {
                        w.buf = buf;
                        return Err(Error::InvalidRecord {
                            reason: "ULID space exhausted",
                        });
                    };
                    last = first + i as u64;
                    builder.push(
                        &mut buf,
                        &RecordRef {
                            lsn: last,
                            id,
                            timestamp_ms: id.timestamp_ms(),
                            kind: r.kind,
                            op: r.op,
                            key: r.key.as_deref(),
                            payload: &r.payload,
                        },
                    );
                }
            }
            Input::Replicated(records) => {
                for r in records.iter() {
                    w.ulid.observe(r.id);
                    last = r.lsn.get();
                    builder.push(&mut buf, &r.as_ref());
                }
            }
        }
        builder.finish(&mut buf);
        debug_assert_eq!(buf.len() as u64, frame_len);

        // Write.
        let offset = w.write_offset;
        let active = Arc::clone(&w.active);
        let written = write_frame(&active, &buf, offset);
        if let Err(e) = written {
            w.buf = buf;
            self.poison("write", &active.path, &e);
            return Err(Error::io(&active.path, e));
        }
        let mut keyed = 0u64;
        input.for_each_keyed(first, |_, _, _, _| keyed += 1);
        active.note_frame(offset, offset + frame_len, first, last, count as u64, keyed);
        w.write_offset += frame_len;
        w.next_lsn = last + 1;
        w.gap_allowed = false;
        self.last_lsn.store(last, Ordering::Release);
        self.wal_bytes.fetch_add(frame_len, Ordering::Relaxed);
        if self.options.preallocate
            && !w.spare_requested
            && w.write_offset.saturating_mul(2) >= w.capacity
        {
            // Half full: have the next segment zero-filled and synced before it is needed.
            w.spare_requested = true;
            self.wake_background(|bg| bg.prepare_spare = true);
        }
        Metrics::add(&self.metrics.appends, count as u64);
        Metrics::add(&self.metrics.bytes_written, frame_len);

        // Key index for compaction, from the records as given (the frame encodes the same
        // kind, op, key, LSN and length, so there is no need to parse it back).
        if keyed > 0 {
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            input.for_each_keyed(first, |code, key, lsn, len| {
                keys.observe(code, key, lsn, len as u64);
            });
        }
        w.buf = buf;

        match durability {
            Durability::None => Ok((first, last)),
            Durability::Batch { max_delay } => {
                drop(w);
                self.schedule_flush(max_delay);
                Ok((first, last))
            }
            Durability::Sync => {
                self.wait_durable(w, last)?;
                Ok((first, last))
            }
        }
    }

    fn segment_too_old(&self, w: &WriterState) -> bool {
        match self.options.max_segment_age {
            Some(age) if !w.active.is_empty() => {
                now_ms().saturating_sub(w.active.header.created_ms) >= age.as_millis() as u64
            }
            _ => false,
        }
    }

    /// Leader / follower group commit: returns once `durable_lsn >= target`. The first waiter
    /// to find no sync in progress becomes leader, syncs everything written so far outside the
    /// lock and wakes the others; whoever arrives meanwhile is covered by the next round.
    pub(crate) fn wait_durable<'a>(
        &'a self,
        mut w: MutexGuard<'a, WriterState>,
        target: u64,
    ) -> Result<u64, Error> {
        w.group.joined += 1;
        if w.group.gathering {
            // A condvar notify is a futex syscall even with nobody waiting: only when needed.
            self.arrived.notify_one();
        }
        loop {
            let durable = self.durable_lsn.load(Ordering::Acquire);
            if durable >= target {
                return Ok(durable);
            }
            if self.is_poisoned() {
                return Err(Error::Poisoned);
            }
            if w.syncing {
                w = self.synced.wait(w).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            w.syncing = true;
            if w.group.peak > 1 && w.group.joined < w.group.peak {
                let deadline = Instant::now() + w.group.last_sync.min(MAX_GATHER);
                w.group.gathering = true;
                while w.group.joined < w.group.peak {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    w = self
                        .arrived
                        .wait_timeout(w, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                w.group.gathering = false;
            }
            let segment = Arc::clone(&w.active);
            let upto = self.last_lsn.load(Ordering::Acquire);
            let upto_offset = w.write_offset;
            // Everyone who joined so far is covered by this sync.
            let group = std::mem::take(&mut w.group.joined);
            drop(w);
            let started = Instant::now();
            let result = sync_data(&segment);
            let took = started.elapsed();
            w = self.lock_writer();
            w.syncing = false;
            match result {
                Ok(()) => {
                    if Arc::ptr_eq(&segment, &w.active) {
                        w.synced_offset = w.synced_offset.max(upto_offset);
                    }
                    w.group.peak = group.max(w.group.peak.saturating_sub(1));
                    w.group.last_sync = took;
                    let before = self.durable_lsn.fetch_max(upto, Ordering::AcqRel);
                    Metrics::add(&self.metrics.syncs, 1);
                    Metrics::add(&self.metrics.synced_records, upto.saturating_sub(before));
                    self.synced.notify_all();
                }
                Err(e) => {
                    self.poison("fdatasync", &segment.path, &e);
                    self.synced.notify_all();
                    return Err(Error::io(&segment.path, e));
                }
            }
        }
    }

    /// Seals the active segment (its data made durable, then a seal written and the unused
    /// preallocation cut off, see [`crate::segment`]) and starts a new one whose first LSN is
    /// `first_lsn`.
    pub(crate) fn rotate(&self, w: &mut WriterState, first_lsn: u64) -> Result<(), Error> {
        let old = Arc::clone(&w.active);
        let last = self.last_lsn.load(Ordering::Acquire);
        if !old.is_empty() && self.durable_lsn.load(Ordering::Acquire) < last {
            if let Err(e) = sync_data(&old) {
                self.poison("fdatasync", &old.path, &e);
                return Err(Error::io(&old.path, e));
            }
            let before = self.durable_lsn.fetch_max(last, Ordering::AcqRel);
            Metrics::add(&self.metrics.syncs, 1);
            Metrics::add(&self.metrics.synced_records, last.saturating_sub(before));
            self.synced.notify_all();
        }
        if !old.is_empty()
            && !old.is_sealed()
            && let Err(e) = old.write_seal(w.ulid.last())
        {
            // The seal is only a shortcut for the next open, but its fsync failed: no retry.
            self.poison("sealing", &old.path, &e);
            return Err(Error::io(&old.path, e));
        }
        let header = SegmentHeader {
            flags: 0,
            first_lsn,
            covers_through: 0,
            created_ms: now_ms(),
            prev_ulid: w.ulid.last(),
        };
        let replaces_old = old.is_empty() && old.header.first_lsn == first_lsn;
        let spare = if self.options.preallocate && !replaces_old {
            let mut slot = self.spare.lock().unwrap_or_else(|e| e.into_inner());
            slot.ready
                .take()
                .filter(|s| s.size == self.options.segment_size)
        } else {
            None
        };
        let prepared = spare.is_some();
        let created = match spare {
            Some(spare) => install_spare(&*self.options.io, &self.dir, &header, spare),
            None => create_segment(
                &*self.options.io,
                &self.dir,
                &header,
                self.options.segment_size,
                self.options.preallocate,
            ),
        };
        let (path, file) = created.inspect_err(|e| {
            if let Error::Io { path, source } = e {
                self.poison("segment creation", path, source);
            }
        })?;
        let segment = Arc::new(Segment::new(path, file, header));
        {
            let mut segments = self.segments.write().unwrap_or_else(|e| e.into_inner());
            if replaces_old {
                segments.pop();
            }
            segments.push(Arc::clone(&segment));
        }
        if old.is_empty() && !replaces_old {
            // An empty segment before an advance_to gap holds nothing the new header does not.
            {
                let mut segments = self.segments.write().unwrap_or_else(|e| e.into_inner());
                segments.retain(|s| !Arc::ptr_eq(s, &old));
            }
            remove_durably(&*self.options.io, &self.dir, &old.path)?;
        }
        w.active = segment;
        w.capacity = self.options.segment_size;
        w.write_offset = HEADER_LEN;
        w.synced_offset = HEADER_LEN;
        w.spare_requested = false;
        Metrics::add(&self.metrics.rotations, 1);
        if prepared {
            Metrics::add(&self.metrics.prepared_rotations, 1);
        }
        self.request_background_after_rotation();
        Ok(())
    }

    fn request_background_after_rotation(&self) {
        let compact = self.options.auto_compact && self.compaction_due();
        let retention = self.options.retention.is_enabled();
        if compact || retention {
            self.wake_background(|bg| {
                bg.compact |= compact;
                bg.retention |= retention;
            });
        }
    }

    /// Hands work to the background thread, starting it if needed.
    pub(crate) fn wake_background(&self, work: impl FnOnce(&mut Background)) {
        let mut bg = self.bg.lock().unwrap_or_else(|e| e.into_inner());
        if bg.shutdown {
            return;
        }
        work(&mut bg);
        if bg.thread.is_none()
            && let Some(inner) = self.self_ref.upgrade()
        {
            match std::thread::Builder::new()
                .name("finn-wal".into())
                .spawn(move || background_loop(inner))
            {
                Ok(handle) => bg.thread = Some(handle),
                Err(e) => tracing::error!(error = %e, "could not start the WAL background thread"),
            }
        }
        self.bg_cv.notify_all();
    }

    /// Stops the background thread (called when the last handle goes away).
    pub(crate) fn stop_background(&self) {
        let handle = {
            let mut bg = self.bg.lock().unwrap_or_else(|e| e.into_inner());
            bg.shutdown = true;
            self.bg_cv.notify_all();
            bg.thread.take()
        };
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Whether enough superseded bytes accumulated to make compaction worth its cost.
    pub(crate) fn compaction_due(&self) -> bool {
        let garbage = {
            let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            if !keys.pending.is_empty() {
                // Unknown until the keys of the sealed segments open skipped are folded in;
                // the background thread does that, then asks again.
                drop(keys);
                self.wake_background(|bg| bg.fold_keys = true);
                return false;
            }
            keys.garbage_bytes()
        };
        let total = self.wal_bytes.load(Ordering::Relaxed).max(1);
        let ratio = garbage as f64 / total as f64;
        let pressure = Pressure::of_size(
            total,
            self.options.wal_size_warning,
            self.options.wal_size_critical,
        );
        if pressure >= Pressure::Warning {
            // Under pressure, compact as soon as an eighth of the log is garbage.
            return garbage > 0 && ratio >= self.options.compaction_garbage_ratio.min(0.125);
        }
        garbage >= self.options.compaction_min_bytes
            && ratio >= self.options.compaction_garbage_ratio
    }

    fn check_pressure(&self, w: &mut WriterState) -> Result<(), Error> {
        let wal_bytes = self.wal_bytes.load(Ordering::Relaxed);
        if wal_bytes >= self.options.wal_size_critical {
            return Err(Error::DiskPressureCritical {
                reason: PressureReason::WalSize,
                wal_bytes,
                free_bytes: w.free_bytes,
            });
        }
        let stale = w
            .free_checked
            .is_none_or(|t| t.elapsed() >= FREE_SPACE_RECHECK);
        if stale {
            w.free_bytes = self.options.io.available_space(&self.dir);
            w.free_checked = Some(Instant::now());
            let level = self.pressure_of(wal_bytes, w.free_bytes);
            if level == Pressure::Warning && self.options.auto_compact && self.compaction_due() {
                self.wake_background(|bg| bg.compact = true);
            }
        }
        if let Some(free) = w.free_bytes
            && free <= self.options.free_space_critical
        {
            return Err(Error::DiskPressureCritical {
                reason: PressureReason::FreeSpace,
                wal_bytes,
                free_bytes: Some(free),
            });
        }
        Ok(())
    }

    pub(crate) fn pressure_of(&self, wal_bytes: u64, free: Option<u64>) -> Pressure {
        let by_size = Pressure::of_size(
            wal_bytes,
            self.options.wal_size_warning,
            self.options.wal_size_critical,
        );
        let by_free = free.map_or(Pressure::Normal, |f| {
            Pressure::of_free_space(
                f,
                self.options.free_space_warning,
                self.options.free_space_critical,
            )
        });
        by_size.max(by_free)
    }

    fn schedule_flush(&self, max_delay: Duration) {
        let deadline = Instant::now() + max_delay;
        {
            let bg = self.bg.lock().unwrap_or_else(|e| e.into_inner());
            if bg.thread.is_some() && bg.flush_deadline.is_some_and(|d| d <= deadline) {
                return;
            }
        }
        self.wake_background(|bg| {
            if bg.flush_deadline.is_none_or(|d| deadline < d) {
                bg.flush_deadline = Some(deadline);
            }
        });
    }

    /// Prepares the next segment unless one is ready or being prepared. A failure only means
    /// the next rotation creates its segment the ordinary way (the file is dropped, its fsync
    /// never retried, nothing of the log depends on it).
    fn prepare_spare(&self) {
        {
            let mut slot = self.spare.lock().unwrap_or_else(|e| e.into_inner());
            if slot.ready.is_some() || slot.preparing {
                return;
            }
            slot.preparing = true;
        }
        let started = Instant::now();
        let result = prepare_spare(&*self.options.io, &self.dir, self.options.segment_size);
        let mut slot = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        slot.preparing = false;
        match result {
            Ok(spare) => {
                tracing::debug!(elapsed = ?started.elapsed(), "prepared the next segment");
                slot.ready = Some(spare);
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not prepare the next segment ahead of need");
            }
        }
    }

    /// Makes everything appended so far durable.
    pub(crate) fn sync(&self) -> Result<u64, Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let w = self.lock_writer();
        let target = self.last_lsn.load(Ordering::Acquire);
        self.wait_durable(w, target)
    }
}

/// `pwrite` of a whole frame group with a fail point in front of it.
fn write_frame(segment: &Segment, buf: &[u8], offset: u64) -> std::io::Result<()> {
    fail::fail_point!("wal::writer::write", |_| Err(std::io::Error::other(
        "fail point wal::writer::write"
    )));
    segment.file.write_all_at(buf, offset)
}

/// fdatasync with a fail point in front of it.
fn sync_data(segment: &Segment) -> std::io::Result<()> {
    fail::fail_point!("wal::writer::sync_data", |_| Err(std::io::Error::other(
        "fail point wal::writer::sync_data"
    )));
    segment.file.sync_data()
}

/// Body of the background thread: `Batch` flush deadlines, automatic compaction, retention.
pub(crate) fn background_loop(inner: Arc<Inner>) {
    loop {
        let mut bg = inner.bg.lock().unwrap_or_else(|e| e.into_inner());
        let (flush, mut compact, retention, fold_keys, spare) = loop {
            if bg.shutdown {
                return;
            }
            let now = Instant::now();
            let flush = bg.flush_deadline.is_some_and(|d| d <= now);
            if flush || bg.compact || bg.retention || bg.fold_keys || bg.prepare_spare {
                if flush {
                    bg.flush_deadline = None;
                }
                let work = (
                    flush,
                    bg.compact,
                    bg.retention,
                    bg.fold_keys,
                    bg.prepare_spare,
                );
                bg.compact = false;
                bg.retention = false;
                bg.fold_keys = false;
                bg.prepare_spare = false;
                break work;
            }
            bg = match bg.flush_deadline {
                Some(d) => {
                    inner
                        .bg_cv
                        .wait_timeout(bg, d.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => inner.bg_cv.wait(bg).unwrap_or_else(|e| e.into_inner()),
            };
        };
        drop(bg);
        if flush
            && !inner.is_poisoned()
            && let Err(e) = inner.sync()
        {
            tracing::error!(error = %e, "background flush failed");
        }
        if spare && !inner.is_poisoned() {
            inner.prepare_spare();
        }
        if fold_keys && !inner.is_poisoned() {
            match inner.loaded_keys() {
                Ok(keys) => {
                    drop(keys);
                    compact |= inner.options.auto_compact && inner.compaction_due();
                }
                // A damaged sealed segment: no automatic compaction until it is dealt with
                // (asking again here would only read the same damage again).
                Err(e) => tracing::error!(error = %e, "folding keys of sealed segments failed"),
            }
        }
        if compact
            && !inner.is_poisoned()
            && let Err(e) = crate::compaction::compact(&inner)
        {
            tracing::error!(error = %e, "automatic compaction failed");
        }
        if retention
            && !inner.is_poisoned()
            && let Err(e) = crate::prune::apply_retention(&inner)
        {
            tracing::error!(error = %e, "retention failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::{Durability, Kind, Lsn, NewRecord, Options, Wal};

    /// Rotation takes the segment the background thread prepared once the active one was
    /// half full, and the result is an ordinary durable segment.
    #[test]
    fn rotation_takes_the_segment_prepared_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        if let Err(e) = crate::segment::prepare_spare(&crate::fs::Os, dir.path(), 4096) {
            eprintln!("skipped: this filesystem cannot prepare segments ahead of need: {e}");
            return;
        }
        let options = Options {
            segment_size: 64 * 1024,
            ..Options::default()
        };
        let (wal, _) = Wal::open(dir.path(), options.clone()).unwrap();
        let record = || NewRecord::event(Kind::Audit, vec![7u8; 200]);
        let mut n = 0u64;
        // Past half of the first segment: the background thread is asked for the next one.
        while wal.status().bytes_written < 40 * 1024 {
            wal.append_with(record(), Durability::None).unwrap();
            n += 1;
        }
        // Wait (bounded) for it to be ready; this is not a timing assertion.
        let deadline = Instant::now() + Duration::from_secs(60);
        while wal.inner.spare.lock().unwrap().ready.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(wal.inner.spare.lock().unwrap().ready.is_some());
        while wal.status().rotations == 0 {
            wal.append_with(record(), Durability::None).unwrap();
            n += 1;
        }
        let status = wal.status();
        assert_eq!((status.rotations, status.prepared_rotations), (1, 1));
        wal.sync().unwrap();
        drop(wal);

        let (wal, report) = Wal::open(dir.path(), options).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.trusted_seals, 1);
        let lsns: Vec<u64> = wal
            .iter_from(Lsn::ZERO)
            .unwrap()
            .map(|r| r.unwrap().lsn.get())
            .collect();
        assert_eq!(lsns, (1..=n).collect::<Vec<_>>());
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".wal"))
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
        for name in files {
            let len = std::fs::metadata(dir.path().join(&name)).unwrap().len();
            assert!(len > 64, "{name}: {len}");
        }
    }
}
