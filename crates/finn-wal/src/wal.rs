//! [`Wal`]: the handle, opening, and the public read and write calls.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::id::UlidGen;
use crate::lock::DirLock;
use crate::reader::Iter;
use crate::recovery::{RecoveryReport, recover};
use crate::segment::{HEADER_LEN, Segment, SegmentHeader, create_segment};
use crate::status::{CompactionReport, Metrics, PruneReport, Status};
use crate::writer::{Background, Inner, Input, Maintenance, SpareSlot, WriterState};
use crate::{Durability, Error, Lsn, NewRecord, Options, Record};

/// The write-ahead log. `Wal: Send + Sync`; share it with `Arc<Wal>`. All methods take `&self`.
///
/// Dropping the handle makes pending `None`/`Batch` appends durable (best effort, errors are
/// logged), stops the background thread and releases the directory lock.
#[derive(Debug)]
pub struct Wal {
    pub(crate) inner: Arc<Inner>,
}

impl Wal {
    /// Opens (creating if missing) and recovers the WAL in `dir`.
    ///
    /// Holds an exclusive OS lock for the `Wal`'s life; a second opener (any process, or the
    /// same one) gets [`Error::Locked`]. Recovery checks every segment header, takes sealed
    /// segments from their seals (the default mode) or reads them too (the other modes), scans
    /// the unsealed ones verifying every CRC, finds the true tail, and repairs as
    /// [`Options::recovery_mode`] allows; the report lists each repair.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<(Wal, RecoveryReport), Error> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let io = &*options.io;
        crate::fs::create_dir_durably(io, &dir).map_err(|e| Error::io(&dir, e))?;
        let lock = DirLock::acquire(&options.io, &dir)?;
        let recovered = recover(&dir, &options, true)?;
        let mut segments = recovered.segments;
        let last_lsn = recovered.last_lsn;
        let mut next_lsn = last_lsn + 1;
        let mut ulid = UlidGen::new(recovered.max_ulid);

        // The active segment: the newest one, unless it is a compacted (sealed) one or there is none.
        let reuse = segments
            .last()
            .is_some_and(|s| !s.header.is_compacted() && !s.is_sealed() && s.holes.is_empty());
        if let Some(last) = segments.last() {
            next_lsn = next_lsn.max(last.header.first_lsn);
        }
        let gap_allowed = last_lsn == 0
            || segments
                .last()
                .is_some_and(|s| s.is_empty() && s.header.first_lsn > last_lsn + 1);
        if !reuse {
            let header = SegmentHeader {
                flags: 0,
                first_lsn: next_lsn,
                covers_through: 0,
                created_ms: crate::id::now_ms(),
                prev_ulid: ulid.last(),
            };
            let (path, file) =
                create_segment(io, &dir, &header, options.segment_size, options.preallocate)?;
            segments.push(Arc::new(Segment::new(path, file, header)));
        }
        let active = segments.last().cloned().ok_or(Error::InvalidOptions {
            field: "dir",
            reason: "no active segment could be created",
        })?;
        // A reused segment may be longer (the option shrank) or shorter (it grew, or the
        // segment was sealed and trimmed) than `segment_size`; writing past the end of a
        // preallocated file is correct, just slower.
        let capacity = active
            .file
            .size()
            .map_err(|e| Error::io(&active.path, e))?
            .max(options.segment_size);
        let write_offset = active.end().max(HEADER_LEN);
        ulid.observe(recovered.max_ulid);
        let wal_bytes = segments.iter().map(|s| s.data_bytes()).sum();

        let writer = WriterState {
            active,
            capacity,
            write_offset,
            next_lsn,
            ulid,
            gap_allowed,
            syncing: false,
            group: Default::default(),
            // Recovery made everything it accepted durable.
            synced_offset: write_offset,
            spare_requested: false,
            buf: Vec::with_capacity(4096),
            free_bytes: None,
            free_checked: None,
        };
        let inner = Arc::new_cyclic(|self_ref| Inner {
            self_ref: self_ref.clone(),
            dir,
            options,
            read_only: false,
            segments: RwLock::new(segments),
            writer: Mutex::new(writer),
            synced: Condvar::new(),
            arrived: Condvar::new(),
            poisoned: AtomicBool::new(false),
            last_lsn: AtomicU64::new(last_lsn),
            durable_lsn: AtomicU64::new(last_lsn),
            wal_bytes: AtomicU64::new(wal_bytes),
            metrics: Metrics::default(),
            keys: Mutex::new(recovered.keys),
            maintenance: Mutex::new(Maintenance::default()),
            spare: Mutex::new(SpareSlot::default()),
            bg: Mutex::new(Background::default()),
            bg_cv: Condvar::new(),
            _lock: Some(lock),
        });
        let report = recovered.report;
        tracing::debug!(dir = %inner.dir.display(), last_lsn, repairs = report.repairs.len(), "WAL opened");
        Ok((Wal { inner }, report))
    }

    /// Opens for inspection while a writer may be running: no lock is taken, nothing on disk is
    /// changed, and appends return [`Error::ReadOnly`]. The view is the log as it was when
    /// opened; damage is handled in memory as [`Options::recovery_mode`] says (a torn tail of
    /// the newest segment, which a running writer can legitimately show, ends the view).
    pub fn open_read_only(dir: impl AsRef<Path>, options: Options) -> Result<Wal, Error> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        // A writer may compact or prune while we list; retry a few times on vanished files.
        let mut attempt = 0;
        let recovered = loop {
            match recover(&dir, &options, false) {
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound
                        && attempt < 5
                        && options.io.is_dir(&dir) =>
                {
                    attempt += 1;
                }
                other => break other?,
            }
        };
        let segments = recovered.segments;
        let last_lsn = recovered.last_lsn;
        // Read-only handles never write; the writer state only satisfies the type.
        let placeholder = match segments.last() {
            Some(s) => Arc::clone(s),
            None => {
                return Wal::empty_read_only(dir, options);
            }
        };
        let wal_bytes = segments.iter().map(|s| s.data_bytes()).sum();
        let writer = WriterState {
            active: placeholder,
            capacity: 0,
            write_offset: 0,
            next_lsn: last_lsn + 1,
            ulid: UlidGen::new(recovered.max_ulid),
            gap_allowed: false,
            syncing: false,
            group: Default::default(),
            synced_offset: 0,
            spare_requested: false,
            buf: Vec::new(),
            free_bytes: None,
            free_checked: None,
        };
        Ok(Wal {
            inner: Arc::new(Inner {
                self_ref: std::sync::Weak::new(),
                dir,
                options,
                read_only: true,
                segments: RwLock::new(segments),
                writer: Mutex::new(writer),
                synced: Condvar::new(),
                arrived: Condvar::new(),
                poisoned: AtomicBool::new(false),
                last_lsn: AtomicU64::new(last_lsn),
                durable_lsn: AtomicU64::new(last_lsn),
                wal_bytes: AtomicU64::new(wal_bytes),
                metrics: Metrics::default(),
                keys: Mutex::new(recovered.keys),
                maintenance: Mutex::new(Maintenance::default()),
                spare: Mutex::new(SpareSlot::default()),
                bg: Mutex::new(Background::default()),
                bg_cv: Condvar::new(),
                _lock: None,
            }),
        })
    }

    fn empty_read_only(dir: std::path::PathBuf, options: Options) -> Result<Wal, Error> {
        // No segment exists yet: an empty view. A detached in-memory placeholder segment keeps
        // the writer state well-typed; it is never read or written.
        let header = SegmentHeader {
            flags: 0,
            first_lsn: 1,
            covers_through: 0,
            created_ms: 0,
            prev_ulid: ulid::Ulid::nil(),
        };
        if !options.io.is_dir(&dir) {
            return Err(Error::io(
                &dir,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let placeholder = Arc::new(Segment::new(
            dir.clone(),
            Box::new(crate::fs::NoFile),
            header,
        ));
        Ok(Wal {
            inner: Arc::new(Inner {
                self_ref: std::sync::Weak::new(),
                dir,
                options,
                read_only: true,
                segments: RwLock::new(Vec::new()),
                writer: Mutex::new(WriterState {
                    active: placeholder,
                    capacity: 0,
                    write_offset: 0,
                    next_lsn: 1,
                    ulid: UlidGen::new(ulid::Ulid::nil()),
                    gap_allowed: false,
                    syncing: false,
                    group: Default::default(),
                    synced_offset: 0,
                    spare_requested: false,
                    buf: Vec::new(),
                    free_bytes: None,
                    free_checked: None,
                }),
                synced: Condvar::new(),
                arrived: Condvar::new(),
                poisoned: AtomicBool::new(false),
                last_lsn: AtomicU64::new(0),
                durable_lsn: AtomicU64::new(0),
                wal_bytes: AtomicU64::new(0),
                metrics: Metrics::default(),
                keys: Mutex::new(Default::default()),
                maintenance: Mutex::new(Maintenance::default()),
                spare: Mutex::new(SpareSlot::default()),
                bg: Mutex::new(Background::default()),
                bg_cv: Condvar::new(),
                _lock: None,
            }),
        })
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends with the WAL's default durability ([`Options::durability`]); returns the LSN.
    pub fn append(&self, record: NewRecord) -> Result<Lsn, Error> {
        self.append_with(record, self.inner.options.durability)
    }

    /// Appends with an explicit durability; returns the LSN.
    pub fn append_with(&self, record: NewRecord, durability: Durability) -> Result<Lsn, Error> {
        record.validate()?;
        let (first, _) = self
            .inner
            .append_frame(Input::New(std::slice::from_ref(&record)), durability)?;
        Ok(Lsn::new(first))
    }

    /// Appends several records as one frame: after a crash all or none of them are visible.
    /// Returns their LSNs (consecutive) in order. An empty batch appends nothing.
    pub fn append_batch(
        &self,
        records: Vec<NewRecord>,
        durability: Durability,
    ) -> Result<Vec<Lsn>, Error> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        for r in &records {
            r.validate()?;
        }
        let (first, last) = self.inner.append_frame(Input::New(&records), durability)?;
        Ok((first..=last).map(Lsn::new).collect())
    }

    /// Makes everything appended so far durable (one fdatasync, shared with concurrent
    /// `Sync` appenders); returns the durable LSN.
    pub fn sync(&self) -> Result<Lsn, Error> {
        self.inner.sync().map(Lsn::new)
    }

    /// Oldest retained record, `None` if the WAL holds none.
    pub fn first_lsn(&self) -> Option<Lsn> {
        let segments = self
            .inner
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner());
        segments.iter().find_map(|s| s.first_record()).map(Lsn::new)
    }

    /// Newest appended record ([`Lsn::ZERO`] if none ever).
    pub fn last_lsn(&self) -> Lsn {
        Lsn::new(self.inner.last_lsn.load(Ordering::Acquire))
    }

    /// Newest record covered by an fdatasync.
    pub fn durable_lsn(&self) -> Lsn {
        Lsn::new(self.inner.durable_lsn.load(Ordering::Acquire))
    }

    /// Streams records with `lsn >= from` in LSN order, never loading a whole segment. Records
    /// appended but not yet durable are included; bound by [`durable_lsn`](Self::durable_lsn)
    /// if you ship them elsewhere.
    pub fn iter_from(&self, from: Lsn) -> Result<Iter<'_>, Error> {
        let segments = self.inner.segments_now();
        Ok(Iter::new(segments, from.get()))
    }

    /// Reads every segment completely and checks every frame's CRC, structure and LSN order,
    /// and each seal against the records it describes; returns one result per segment, oldest
    /// first. Damage is reported in the results, not as an error (an error means the check
    /// itself could not read a file).
    ///
    /// Opening in the default [`RecoveryMode::TolerateTornTail`](crate::RecoveryMode) trusts
    /// sealed segments' seals instead of reading them; run this (for example after a restore,
    /// or periodically) to find damage in them before a read does.
    ///
    /// ```
    /// # use finn_wal::{Kind, NewRecord, Options, Wal};
    /// # let dir = tempfile::tempdir()?;
    /// let (wal, _) = Wal::open(dir.path(), Options::default())?;
    /// wal.append(NewRecord::event(Kind::Audit, b"x".to_vec()))?;
    /// assert!(wal.verify()?.iter().all(|s| s.is_intact()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self) -> Result<Vec<crate::SegmentCheck>, Error> {
        let segments = self.inner.segments_now();
        segments
            .iter()
            .map(|s| crate::recovery::verify_segment(s))
            .collect()
    }

    /// The record with this LSN, if retained.
    pub fn read(&self, lsn: Lsn) -> Result<Option<Record>, Error> {
        match self.iter_from(lsn)?.next() {
            Some(Ok(r)) if r.lsn == lsn => Ok(Some(r)),
            Some(Ok(_)) | None => Ok(None),
            Some(Err(e)) => Err(e),
        }
    }

    /// The anchors' `getEntriesSince`: records with `lsn > since`, at most `limit`, in LSN order.
    pub fn entries_since(&self, since: Lsn, limit: Option<usize>) -> Result<Vec<Record>, Error> {
        let limit = limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for r in self.iter_from(since.next())? {
            out.push(r?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Replication / restore: appends records verbatim (LSN, ULID and timestamp kept) as one
    /// atomic frame and makes them durable before returning.
    ///
    /// LSNs must strictly increase and exceed [`last_lsn`](Self::last_lsn). The first record
    /// must be `last_lsn + 1`, except into an empty WAL or right after
    /// [`advance_to`](Self::advance_to), where it may be anything at or above the next LSN.
    /// Later records of the call may skip LSNs (a compacted source has gaps).
    pub fn append_replicated(&self, records: &[Record]) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        for pair in records.windows(2) {
            if pair[1].lsn <= pair[0].lsn {
                return Err(Error::InvalidLsn {
                    lsn: pair[1].lsn,
                    reason: "replicated LSNs must strictly increase",
                });
            }
        }
        for r in records {
            r.validate()?;
        }
        self.inner
            .append_frame(Input::Replicated(records), Durability::Sync)
            .map(|_| ())
    }

    /// After a restore from a checkpoint covering LSN `next - 1`: the next appended LSN will be
    /// at least `next`. Durable on return (a new segment named `next` is created).
    pub fn advance_to(&self, next: Lsn) -> Result<(), Error> {
        self.inner.check_writable()?;
        let mut w = self.inner.lock_writer();
        if next.get() <= w.next_lsn {
            return Ok(());
        }
        self.inner.rotate(&mut w, next.get())?;
        w.next_lsn = next.get();
        w.gap_allowed = true;
        Ok(())
    }

    /// Seals the active segment (if it holds a record) and starts a new one, as reaching
    /// [`Options::segment_size`] or [`Options::max_segment_age`] does. Useful before shipping
    /// or pruning whole segments.
    pub fn rotate(&self) -> Result<(), Error> {
        self.inner.check_writable()?;
        let mut w = self.inner.lock_writer();
        if w.active.is_empty() {
            return Ok(());
        }
        let next = w.next_lsn;
        self.inner.rotate(&mut w, next)
    }

    /// Removes every record with an LSN above `lsn` (for example a conflicting suffix). The
    /// next append gets `lsn + 1`. `lsn` must not fall inside an atomic batch or inside a
    /// compacted range.
    pub fn truncate_after(&self, lsn: Lsn) -> Result<(), Error> {
        crate::prune::truncate_after(&self.inner, lsn.get())
    }

    /// Deletes whole sealed segments whose records are all at or below `lsn`; the caller
    /// confirms that everything through `lsn` is checkpointed elsewhere. The active segment is
    /// never deleted. Also raises the confirmed mark that [`Options::retention`] respects.
    pub fn prune_through(&self, lsn: Lsn) -> Result<PruneReport, Error> {
        crate::prune::prune_through(&self.inner, lsn.get())
    }

    /// Records that everything through `lsn` is checkpointed, without deleting anything now;
    /// configured [`Options::retention`] may then delete segments at or below it.
    pub fn confirm_checkpointed(&self, lsn: Lsn) {
        let mut m = self
            .inner
            .maintenance
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        m.confirmed = m.confirmed.max(lsn.get());
    }

    /// Rewrites the sealed segments keeping only events and the newest put or delete of each
    /// `(kind, key)`, crash-safely, preserving LSN order. Runs automatically when
    /// [`Options::auto_compact`] is set and enough garbage accumulated.
    pub fn compact(&self) -> Result<CompactionReport, Error> {
        self.inner.check_writable()?;
        crate::compaction::compact(&self.inner)
    }

    /// State and counters.
    pub fn status(&self) -> Status {
        let inner = &self.inner;
        let (segments, first_lsn) = {
            let s = inner.segments.read().unwrap_or_else(|e| e.into_inner());
            (
                s.len(),
                s.iter().find_map(|s| s.first_record()).map(Lsn::new),
            )
        };
        let free_bytes = inner.options.io.available_space(&inner.dir);
        let wal_bytes = inner.wal_bytes.load(Ordering::Relaxed);
        let syncs = inner.metrics.syncs.load(Ordering::Relaxed);
        let synced = inner.metrics.synced_records.load(Ordering::Relaxed);
        Status {
            first_lsn,
            last_lsn: self.last_lsn(),
            durable_lsn: self.durable_lsn(),
            segments,
            wal_bytes,
            free_bytes,
            pressure: inner.pressure_of(wal_bytes, free_bytes),
            garbage_bytes: match inner.loaded_keys() {
                Ok(keys) => keys.garbage_bytes(),
                Err(e) => {
                    tracing::warn!(error = %e, "garbage unknown: a sealed segment is unreadable");
                    0
                }
            },
            poisoned: inner.is_poisoned(),
            read_only: inner.read_only,
            appends: inner.metrics.appends.load(Ordering::Relaxed),
            bytes_written: inner.metrics.bytes_written.load(Ordering::Relaxed),
            syncs,
            average_group_size: if syncs == 0 {
                0.0
            } else {
                synced as f64 / syncs as f64
            },
            compactions: inner.metrics.compactions.load(Ordering::Relaxed),
            rotations: inner.metrics.rotations.load(Ordering::Relaxed),
            prepared_rotations: inner.metrics.prepared_rotations.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.inner.stop_background();
        if !self.inner.read_only
            && !self.inner.is_poisoned()
            && self.durable_lsn() < self.last_lsn()
            && let Err(e) = self.inner.sync()
        {
            tracing::error!(error = %e, "final sync on drop failed");
        }
    }
}
