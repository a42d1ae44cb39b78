//! Compaction of a WAL whose keyed records are 10 % live (every key written 10 times), all in
//! sealed segments.
//!
//! - `finn`: `Wal::compact` on a fresh copy of the WAL (copy and open are not timed).
//! - `physical_copy_live`: the I/O any compaction must do: read every sealed segment, write
//!   the live 10 % of the bytes to a new file, `fdatasync`, rename, `fsync` the directory.
//!
//! Group ids: `compact_10pct_live_<size>/<system>`; throughput is records read.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use finn_wal::{Durability, Kind, NewRecord, Wal};

use crate::append::finn_options;
use crate::baseline::{copy_tree, files_under};
use crate::{Scale, extras, payload, scratch};

fn options(scale: Scale, size: usize) -> finn_wal::Options {
    // Several sealed segments, whatever the scale.
    let segment_size = (scale.segment_size / 8).max(((size as u64) + 128) * 1024);
    finn_wal::Options {
        segment_size,
        ..finn_options(scale, Durability::None)
    }
}

fn build(scale: Scale, size: usize, records: u64, dir: &Path) {
    let keys = (records / 10).max(1);
    let (wal, _) = Wal::open(dir, options(scale, size)).expect("open");
    let mut i = 0u64;
    while i < records {
        let n = (records - i).min(1000);
        let batch = (i..i + n)
            .map(|j| NewRecord::put(Kind::State, format!("key-{}", j % keys), payload(size, j)))
            .collect();
        wal.append_batch(batch, Durability::None).expect("append");
        i += n;
    }
    wal.sync().expect("sync");
    // Compaction only folds sealed segments.
    wal.rotate().expect("rotate");
}

fn copy_live(dir: &Path, fraction: f64) -> u64 {
    let out_dir = dir.join("compacted");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let tmp = out_dir.join("segment.tmp");
    let mut out = std::fs::File::create(&tmp).expect("create");
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    let mut written = 0u64;
    for path in files_under(dir) {
        if path.starts_with(&out_dir) {
            continue;
        }
        let mut f = std::fs::File::open(&path).expect("open");
        loop {
            let n = f.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            read += n as u64;
            let keep = ((read as f64 * fraction) as u64).saturating_sub(written) as usize;
            let keep = keep.min(n);
            out.write_all(&buf[..keep]).expect("write");
            written += keep as u64;
        }
    }
    out.sync_data().expect("fdatasync");
    std::fs::rename(&tmp, out_dir.join("segment")).expect("rename");
    std::fs::File::open(&out_dir)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
    written
}

/// The compaction workloads.
pub fn bench(c: &mut Criterion, scale: Scale) {
    let cases = [
        (256usize, "256B", scale.compaction_records_256),
        (4096, "4KiB", scale.compaction_records_4k),
    ];
    for (size, label, records) in cases {
        let template = scratch("compact-template");
        build(scale, size, records, template.path());
        let group_name = format!("compact_10pct_live_{label}");
        let mut g = c.benchmark_group(&group_name);
        scale.configure(&mut g);
        g.throughput(Throughput::Elements(records));
        let mut last_report = None;
        g.bench_function("finn", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let work = scratch("compact");
                    copy_tree(template.path(), work.path());
                    let (wal, _) = Wal::open(work.path(), options(scale, size)).expect("open");
                    let start = Instant::now();
                    let report = wal.compact().expect("compact");
                    total += start.elapsed();
                    assert_eq!(report.records_in, records, "every record was considered");
                    assert_eq!(report.records_out, records / 10, "only live keys are kept");
                    last_report = Some(report);
                }
                total
            })
        });
        if let Some(r) = last_report {
            extras::note(
                &format!("{group_name}/finn"),
                serde_json::json!({
                    "records_in": r.records_in, "records_out": r.records_out,
                    "bytes_in": r.bytes_in, "bytes_out": r.bytes_out, "segments_in": r.segments_in,
                }),
            );
        }
        g.bench_function("physical_copy_live", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let work = scratch("compact-physical");
                    copy_tree(template.path(), work.path());
                    let start = Instant::now();
                    std::hint::black_box(copy_live(work.path(), 0.1));
                    total += start.elapsed();
                }
                total
            })
        });
        g.finish();
    }
}
