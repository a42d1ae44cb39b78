//! finn-wal benchmarks, each next to a raw baseline measured in the same run.
//!
//! * `sync_append/1`: one writer, `Durability::Sync`, 256-byte payloads, vs `raw/pwrite+fdatasync`
//!   of a 306-byte frame into a preallocated file.
//! * `sync_append/8`, `sync_append/64`: that many threads appending with `Sync` (group commit).
//! * `none_append`: `Durability::None` vs a raw `pwrite` of the same bytes.
//! * `replay_1m`: open + full iteration of 1,000,000 × 256-byte records (page cache warm), vs a
//!   raw buffered read + CRC of the same files.
//!
//! The machine is shared and noisy: compare within one run, as ratios. Run briefly with
//! `cargo bench -p finn-wal -- --quick`.
#![allow(missing_docs)]

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use finn_wal::{Durability, Kind, Lsn, NewRecord, Options, Wal};

const PAYLOAD: usize = 256;
/// Frame bytes of one 256-byte event: 8 header + 1 tag + 42 record header + payload.
const FRAME: usize = 8 + 1 + 42 + PAYLOAD;
const RAW_FILE: u64 = 64 * 1024 * 1024;

fn record() -> NewRecord {
    NewRecord::event(Kind::Audit, vec![0x5a; PAYLOAD])
}

fn preallocated(dir: &Path) -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("raw"))
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    for i in 0..(RAW_FILE >> 20) {
        f.write_all_at(&zeros, i << 20).unwrap();
    }
    f.sync_all().unwrap();
    f
}

fn sync_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("sync_append");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));

    let raw_dir = tempfile::tempdir().unwrap();
    let raw = preallocated(raw_dir.path());
    let frame = vec![0x5au8; FRAME];
    let mut at = 0u64;
    g.bench_function("raw/pwrite+fdatasync", |b| {
        b.iter(|| {
            raw.write_all_at(&frame, at).unwrap();
            raw.sync_data().unwrap();
            at = (at + FRAME as u64) % (RAW_FILE - FRAME as u64);
        })
    });

    for threads in [1usize, 8, 64] {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), Options::default()).unwrap();
        let wal = Arc::new(wal);
        g.bench_with_input(BenchmarkId::new("wal", threads), &threads, |b, &threads| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads as u64);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        let wal = Arc::clone(&wal);
                        s.spawn(move || {
                            for _ in 0..per_thread {
                                wal.append(record()).unwrap();
                            }
                        });
                    }
                });
                // Time per append, so that throughput ratios compare directly.
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
            })
        });
        let s = wal.status();
        eprintln!(
            "sync_append/{threads}: average group size {:.1} over {} syncs",
            s.average_group_size, s.syncs
        );
    }
    g.finish();
}

fn none_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("none_append");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    let raw_dir = tempfile::tempdir().unwrap();
    let raw = preallocated(raw_dir.path());
    let frame = vec![0x5au8; FRAME];
    let mut at = 0u64;
    g.bench_function("raw/pwrite", |b| {
        b.iter(|| {
            raw.write_all_at(&frame, at).unwrap();
            at = (at + FRAME as u64) % (RAW_FILE - FRAME as u64);
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        wal_size_critical: u64::MAX,
        wal_size_warning: u64::MAX,
        ..Options::default()
    };
    let (wal, _) = Wal::open(dir.path(), opts).unwrap();
    let r = record();
    g.bench_function("wal", |b| {
        b.iter(|| wal.append_with(r.clone(), Durability::None).unwrap())
    });
    g.finish();
}

fn replay(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    // Page-cache-warm replay: a tmpfs directory when available.
    let dir = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let opts = Options {
        wal_size_critical: u64::MAX,
        wal_size_warning: u64::MAX,
        free_space_critical: 0,
        free_space_warning: 0,
        ..Options::default()
    };
    {
        let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
        let batch: Vec<NewRecord> = (0..1000).map(|_| record()).collect();
        for _ in 0..N / 1000 {
            wal.append_batch(batch.clone(), Durability::None).unwrap();
        }
        wal.sync().unwrap();
    }
    let mut g = c.benchmark_group("replay_1m");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(N));
    g.bench_function("raw/read+crc", |b| {
        b.iter(|| {
            let mut total = 0u64;
            let mut buf = vec![0u8; 1 << 20];
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "wal") {
                    let mut f = File::open(&p).unwrap();
                    loop {
                        let n = f.read(&mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        total = total.wrapping_add(u64::from(crc32fast::hash(&buf[..n])));
                    }
                }
            }
            total
        })
    });
    g.bench_function("wal/open+iterate", |b| {
        b.iter(|| {
            let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
            let mut n = 0u64;
            for r in wal.iter_from(Lsn::ZERO).unwrap() {
                let r = r.unwrap();
                n += r.payload.len() as u64 / PAYLOAD as u64;
            }
            assert_eq!(n, N);
        })
    });
    g.finish();
}

criterion_group!(benches, sync_append, none_append, replay);
criterion_main!(benches);
