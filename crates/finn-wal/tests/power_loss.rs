//! Simulated power loss: what SIGKILL cannot show.
//!
//! A SIGKILL leaves everything the process wrote in the page cache, so it survives. A power
//! loss keeps only what an fsync covered, and the kernel writes the rest back in any order, a
//! page at a time, possibly tearing a page at a sector boundary. These tests build such crash
//! images from the outside, without touching the WAL's I/O path (redb's `CrashBackend` idea, on
//! the real files):
//!
//! 1. A workload appends with `Durability::None` and, at random moments, calls `Wal::sync` (or
//!    appends with `Sync`). Right after each sync returns, the directory is copied: the
//!    **durable image** `D`. Everything appended up to then is acknowledged. A rotation inside
//!    an append syncs the sealed segment and creates the next one durably; `D` follows it
//!    (sealed segment as it stands, new segment as its header and zero fill), and
//!    `Wal::durable_lsn` says what that acknowledged.
//! 2. More unsynced appends follow (crossing segment rotations), then the "power fails": the
//!    directory as it stands is the **live image** `L`.
//! 3. Every 4 KiB page where `L` differs from `D` is an unsynced write. A crash image is `D`
//!    plus some of those pages, chosen by one of the [`Mode`]s.
//! 4. The crash image is opened with the default recovery mode. It must open, hold every
//!    acknowledged record intact and in order, and anything after them must be an intact
//!    prefix of what was appended unsynced: nothing acknowledged lost, nothing unreadable.
//!
//! Limitation: `D` is taken after the sync returned, so it assumes the WAL's own directory
//! fsyncs (new segment, rename) happened before the sync returned; those are checked by the
//! fail-point tests in `faults.rs` (`wal::segment::create_sync`, `wal::segment::create_rename`).
//!
//! `FINN_POWER_LOSS_ROUNDS=N` runs more workloads (default 16 per mode).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Rng, all_records};
use finn_wal::{Durability, Kind, NewRecord, Options, RecoveryMode, Wal};

const PAGE: usize = 4096;
const SECTOR: usize = 512;
/// Length of a segment header (docs/formats/finn-wal.md).
const SEGMENT_HEADER: usize = 64;

/// File name → contents, for every file of a WAL directory except the lock and pid files
/// (those are recreated by the next open).
type Image = BTreeMap<String, Vec<u8>>;

fn snapshot(dir: &Path) -> Image {
    let mut image = Image::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_file() && name != "wal.lock" && name != "wal.pid" {
            image.insert(name, std::fs::read(&p).unwrap());
        }
    }
    image
}

fn materialise(image: &Image) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in image {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

/// Which unsynced pages reach the disk before the power fails.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// None of them: the disk holds exactly what was synced.
    DropUnsynced,
    /// A prefix of them in write order, across files (an in-order write-back).
    InOrder,
    /// An independent prefix per file: a later segment's writes may land while an earlier
    /// segment's tail does not (writes to different files reordered).
    ReorderedFiles,
    /// Any subset of them: write-back inside one file out of order too (page 3 of the tail
    /// lands, page 2 does not).
    AnyPages,
}

/// One unsynced page: file, page index.
type Dirty = (String, usize);

fn dirty_pages(durable: &Image, live: &Image) -> Vec<Dirty> {
    let mut out = Vec::new();
    // Segment names sort by first LSN, so name order is write order.
    for (name, l) in live {
        let d = durable.get(name).map_or(&[][..], Vec::as_slice);
        let pages = l.len().max(d.len()).div_ceil(PAGE);
        for page in 0..pages {
            let range = |b: &[u8]| {
                let start = (page * PAGE).min(b.len());
                let end = ((page + 1) * PAGE).min(b.len());
                b[start..end].to_vec()
            };
            if range(l) != range(d) {
                out.push((name.clone(), page));
            }
        }
    }
    out
}

/// `durable` with `applied` pages of `live` written over it. A page past the end of the file
/// extends it (the size update rides along with the data); pages in between that did not land
/// read as zeros, as unwritten extents do. `torn` names the applied page that is torn after
/// some sectors: its remaining sectors keep their old contents.
fn crash_image(durable: &Image, live: &Image, applied: &[Dirty], torn: Option<usize>) -> Image {
    let mut image = durable.clone();
    for (i, (name, page)) in applied.iter().enumerate() {
        let l = &live[name];
        let file = image.entry(name.clone()).or_default();
        let start = page * PAGE;
        let page_end = ((page + 1) * PAGE).min(l.len());
        let mut end = page_end;
        if torn == Some(i) {
            end = (start + SECTOR * (1 + (i % (PAGE / SECTOR - 1)))).min(end);
        }
        if file.len() < page_end {
            file.resize(page_end, 0);
        }
        if start < end {
            file[start..end].copy_from_slice(&l[start..end]);
        }
    }
    image
}

fn payload(round: u64, n: u64, rng: &mut Rng) -> Vec<u8> {
    let mut p = format!("r{round}n{n}").into_bytes();
    p.resize(8 + rng.below(700) as usize, b'a' + (n % 26) as u8);
    p
}

struct Workload {
    /// Payloads acknowledged by a sync before the power failed, in LSN order.
    acked: Vec<Vec<u8>>,
    /// Payloads appended after the last sync, in LSN order.
    unsynced: Vec<Vec<u8>>,
    durable: Image,
    live: Image,
}

fn run_workload(round: u64, preallocate: bool, rng: &mut Rng) -> Workload {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        segment_size: 8 * 1024,
        preallocate,
        auto_compact: false,
        ..Options::default()
    };
    let (wal, _) = Wal::open(dir.path(), options).unwrap();
    let mut all: Vec<Vec<u8>> = Vec::new();
    let mut durable = snapshot(dir.path());
    let mut durable_lsn = 0;
    let steps = 10 + rng.below(30);
    for _ in 0..steps {
        let n = all.len() as u64;
        let before = snapshot(dir.path());
        let synced_everything = match rng.below(10) {
            0 => {
                wal.sync().unwrap();
                true
            }
            1 => {
                let p = payload(round, n, rng);
                wal.append_with(NewRecord::event(Kind::Session, p.clone()), Durability::Sync)
                    .unwrap();
                all.push(p);
                true
            }
            2 => {
                let ps: Vec<Vec<u8>> = (0..3).map(|i| payload(round, n + i, rng)).collect();
                let recs = ps
                    .iter()
                    .map(|p| NewRecord::event(Kind::Bead, p.clone()))
                    .collect();
                wal.append_batch(recs, Durability::None).unwrap();
                all.extend(ps);
                false
            }
            _ => {
                let p = payload(round, n, rng);
                wal.append_with(
                    NewRecord::put(Kind::Memory, format!("k{}", n % 5), p.clone()),
                    Durability::None,
                )
                .unwrap();
                all.push(p);
                false
            }
        };
        let now = wal.durable_lsn().get();
        let cur = snapshot(dir.path());
        // A rotation shows as a new segment file; when everything was already durable it does
        // not move `durable_lsn`, but the sealing of the old segment was synced all the same.
        let rotated = cur.keys().any(|name| !before.contains_key(name));
        if synced_everything {
            assert_eq!(now, all.len() as u64);
            durable = cur;
        } else if now > durable_lsn || rotated {
            // A rotation inside the append: the sealed segment was fdatasynced (data, then its
            // seal, cut and trailer), and the new one created with its header (64 bytes,
            // docs/formats/finn-wal.md) and zero fill, synced, named, directory fsynced. The
            // record then written into the new segment is not synced.
            for (name, bytes) in &cur {
                if before.contains_key(name) {
                    durable.insert(name.clone(), bytes.clone());
                } else {
                    let mut fresh = bytes[..SEGMENT_HEADER.min(bytes.len())].to_vec();
                    if preallocate {
                        fresh.resize(bytes.len(), 0);
                    }
                    durable.insert(name.clone(), fresh);
                }
            }
        }
        durable_lsn = now;
    }
    let acked = durable_lsn as usize;
    // The power fails now: the handle is never closed.
    let live = snapshot(dir.path());
    std::mem::forget(wal);
    let unsynced = all.split_off(acked);
    Workload {
        acked: all,
        unsynced,
        durable,
        live,
    }
}

fn open_options(mode: RecoveryMode) -> Options {
    Options {
        segment_size: 8 * 1024,
        auto_compact: false,
        recovery_mode: mode,
        ..Options::default()
    }
}

/// Opens the crash image in the default mode and checks it; returns how many unsynced records
/// survived.
fn check(image: &Image, w: &Workload, what: &str) -> usize {
    let dir = materialise(image);
    let (wal, _report) = Wal::open(dir.path(), open_options(RecoveryMode::default()))
        .unwrap_or_else(|e| panic!("{what}: the crash image does not open: {e}"));
    let got: Vec<Vec<u8>> = all_records(&wal).into_iter().map(|r| r.payload).collect();
    assert!(
        got.len() >= w.acked.len(),
        "{what}: {} acknowledged records, {} recovered",
        w.acked.len(),
        got.len()
    );
    assert_eq!(
        &got[..w.acked.len()],
        &w.acked[..],
        "{what}: acknowledged record altered"
    );
    let extra = &got[w.acked.len()..];
    assert!(
        extra.len() <= w.unsynced.len() && extra == &w.unsynced[..extra.len()],
        "{what}: records after the acknowledged ones are not a prefix of what was appended"
    );
    // The log goes on after the crash.
    let next = wal
        .append(NewRecord::event(Kind::Audit, b"after".to_vec()))
        .unwrap();
    assert_eq!(
        next.get(),
        got.len() as u64 + 1,
        "{what}: LSN reused or skipped"
    );
    extra.len()
}

fn rounds() -> u64 {
    std::env::var("FINN_POWER_LOSS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

fn campaign(mode: Mode) {
    let mut survived = 0;
    let mut images = 0;
    for round in 0..rounds() {
        let mut rng = Rng::new(0xF1A5_0000 + round);
        let preallocate = round % 2 == 0;
        let w = run_workload(round, preallocate, &mut rng);
        let dirty = dirty_pages(&w.durable, &w.live);
        let cuts: Vec<Vec<Dirty>> = match mode {
            Mode::DropUnsynced => vec![Vec::new()],
            Mode::InOrder => (0..=dirty.len()).map(|c| dirty[..c].to_vec()).collect(),
            Mode::ReorderedFiles => (0..8)
                .map(|_| {
                    let mut by_file: BTreeMap<&str, Vec<&Dirty>> = BTreeMap::new();
                    for d in &dirty {
                        by_file.entry(d.0.as_str()).or_default().push(d);
                    }
                    let mut applied = Vec::new();
                    for pages in by_file.values() {
                        let cut = rng.below(pages.len() as u64 + 1) as usize;
                        applied.extend(pages[..cut].iter().map(|d| (*d).clone()));
                    }
                    applied
                })
                .collect(),
            Mode::AnyPages => (0..8)
                .map(|_| {
                    dirty
                        .iter()
                        .filter(|_| rng.below(2) == 0)
                        .cloned()
                        .collect()
                })
                .collect(),
        };
        for applied in cuts {
            for torn in [None, applied.len().checked_sub(1)] {
                let image = crash_image(&w.durable, &w.live, &applied, torn);
                let what = format!(
                    "{mode:?} round {round} (preallocate {preallocate}), {} of {} unsynced pages{}",
                    applied.len(),
                    dirty.len(),
                    if torn.is_some() {
                        ", last one torn"
                    } else {
                        ""
                    }
                );
                survived += check(&image, &w, &what);
                images += 1;
            }
        }
    }
    eprintln!(
        "{mode:?}: {images} crash images opened in the default mode, every acknowledged record \
         kept, {survived} unsynced records survived"
    );
}

#[test]
fn power_loss_dropping_every_unsynced_write_keeps_every_acknowledged_record() {
    campaign(Mode::DropUnsynced);
}

#[test]
fn power_loss_with_in_order_partial_write_back_keeps_every_acknowledged_record() {
    campaign(Mode::InOrder);
}

#[test]
fn power_loss_with_writes_to_different_files_reordered_keeps_every_acknowledged_record() {
    campaign(Mode::ReorderedFiles);
}

/// Out-of-order write-back inside the unsynced tail can leave a hole (a page of zeros or old
/// bytes) followed by valid frames. Each frame's `synced_to` marker says how far the segment was
/// durable when it was written, so recovery sees that nothing after the hole proves it durable
/// and cuts the tail there instead of refusing to open.
#[test]
fn power_loss_with_pages_written_back_in_any_order_keeps_every_acknowledged_record() {
    campaign(Mode::AnyPages);
}
