//! Appends: durable (1, 8, 64 closed-loop writers), unsynced, and batched, for finn, the
//! physical limit, SQLite (WAL, `synchronous=FULL`) and okaywal.
//!
//! One criterion iteration is one record made durable (or written, for the unsynced group), by
//! whichever writer; `iters` records are split evenly across the writers, which start together
//! at a barrier, and the time runs until the last one finishes. Group ids:
//! `append_durable_<size>/<system>/<writers>`, `append_unsynced_<size>/<system>`,
//! `append_batched_<size>/<system>`.

use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use finn_wal::{Durability, Kind, NewRecord, Options, Wal};

use crate::baseline::Prealloc;
use crate::{Scale, extras, payload, scratch, sqlite};

/// Record sizes of every append workload, with their label.
pub const SIZES: [(usize, &str); 2] = [(256, "256B"), (4096, "4KiB")];
/// Writer counts of the durable workload.
pub const WRITERS: [usize; 3] = [1, 8, 64];
/// Bytes per batch in the batched workload (and per group of the physical batch baseline).
const BATCH_BYTES: usize = 256 << 10;

/// finn's options for a benchmark WAL: default durability and format; size thresholds and
/// automatic maintenance out of the way so they do not fire mid-measurement.
pub fn finn_options(scale: Scale, durability: Durability) -> Options {
    Options {
        durability,
        segment_size: scale.segment_size,
        max_segment_age: None,
        wal_size_warning: u64::MAX,
        wal_size_critical: u64::MAX,
        free_space_warning: 0,
        free_space_critical: 0,
        auto_compact: false,
        ..Options::default()
    }
}

/// Runs `work(writer, records)` on `writers` threads that start together; each gets an even
/// share of `iters`. `work` returns how many records it actually made durable (batching may
/// round up); the time is scaled to exactly `iters` records.
fn run_writers(writers: usize, iters: u64, work: impl Fn(usize, u64) -> u64 + Sync) -> Duration {
    let barrier = Barrier::new(writers + 1);
    let base = iters / writers as u64;
    let extra = iters % writers as u64;
    let (elapsed, done) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let share = base + u64::from((w as u64) < extra);
                let barrier = &barrier;
                let work = &work;
                s.spawn(move || {
                    barrier.wait();
                    if share == 0 { 0 } else { work(w, share) }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let done: u64 = handles
            .into_iter()
            .map(|h| h.join().expect("writer thread panicked"))
            .sum();
        (start.elapsed(), done)
    });
    scale_to(elapsed, iters, done)
}

fn scale_to(elapsed: Duration, iters: u64, done: u64) -> Duration {
    if done == 0 || done == iters {
        elapsed
    } else {
        elapsed.mul_f64(iters as f64 / done as f64)
    }
}

fn event(record: &[u8]) -> NewRecord {
    NewRecord::event(Kind::Session, record.to_vec())
}

/// Durable appends with 1, 8 and 64 writers.
pub fn durable(c: &mut Criterion, scale: Scale) {
    for (size, label) in SIZES {
        let record = payload(size, size as u64);
        let group_name = format!("append_durable_{label}");
        let mut g = c.benchmark_group(&group_name);
        scale.configure(&mut g);
        g.throughput(Throughput::Elements(1));

        // The physical limit: one thread, write + fdatasync per record.
        {
            let dir = scratch("physical");
            let mut file = Prealloc::create(&dir.path().join("log"), scale.prealloc_bytes);
            g.bench_function(BenchmarkId::new("physical", 1), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        file.write(&record);
                        file.sync();
                    }
                    start.elapsed()
                })
            });
            // Group commit's limit for N writers: N records per write + fdatasync.
            for writers in [8usize, 64] {
                let group: Vec<u8> = record.repeat(writers);
                g.bench_function(BenchmarkId::new("physical_group", writers), |b| {
                    b.iter_custom(|iters| {
                        let syncs = iters.div_ceil(writers as u64);
                        let start = Instant::now();
                        for _ in 0..syncs {
                            file.write(&group);
                            file.sync();
                        }
                        scale_to(start.elapsed(), iters, syncs * writers as u64)
                    })
                });
            }
        }

        for writers in WRITERS {
            // finn: every writer calls `append` with the default durability (Sync).
            let dir = scratch("finn");
            let (wal, _) =
                Wal::open(dir.path(), finn_options(scale, Durability::Sync)).expect("open wal");
            g.bench_function(BenchmarkId::new("finn", writers), |b| {
                b.iter_custom(|iters| {
                    run_writers(writers, iters, |_, n| {
                        for _ in 0..n {
                            wal.append(event(&record)).expect("append");
                        }
                        n
                    })
                })
            });
            let status = wal.status();
            extras::note(
                &format!("{group_name}/finn/{writers}"),
                serde_json::json!({
                    "average_group_size": status.average_group_size,
                    "syncs": status.syncs,
                    "appends": status.appends,
                }),
            );
            drop(wal);
            drop(dir);

            // SQLite WAL + synchronous=FULL, 1 and 100 rows per transaction, a connection
            // per writer.
            for rows in [1usize, 100] {
                let dir = scratch("sqlite");
                let path = dir.path().join("bench.db");
                let conns: Vec<Mutex<rusqlite::Connection>> = (0..writers)
                    .map(|_| Mutex::new(sqlite::open(&path)))
                    .collect();
                g.bench_function(
                    BenchmarkId::new(format!("sqlite_full_{rows}"), writers),
                    |b| {
                        b.iter_custom(|iters| {
                            run_writers(writers, iters, |w, n| {
                                let mut conn = conns[w].lock().expect("connection lock");
                                let txns = n.div_ceil(rows as u64);
                                for _ in 0..txns {
                                    sqlite::insert(&mut conn, &record, rows);
                                }
                                txns * rows as u64
                            })
                        })
                    },
                );
            }

            // okaywal: one entry of one chunk per commit; commit returns after fdatasync.
            let dir = scratch("okaywal");
            let log = okaywal::Configuration::default_for(dir.path())
                .open(okaywal::LogVoid)
                .expect("open okaywal");
            g.bench_function(BenchmarkId::new("okaywal", writers), |b| {
                b.iter_custom(|iters| {
                    run_writers(writers, iters, |_, n| {
                        for _ in 0..n {
                            let mut entry = log.begin_entry().expect("begin entry");
                            entry.write_chunk(&record).expect("write chunk");
                            entry.commit().expect("commit");
                        }
                        n
                    })
                })
            });
            log.shutdown().expect("okaywal shutdown");
        }
        g.finish();
    }
}

/// Appends that return before any fdatasync: finn's `Durability::None` and `Batch`, next to a
/// bare `pwrite` per record.
pub fn unsynced(c: &mut Criterion, scale: Scale) {
    for (size, label) in SIZES {
        let record = payload(size, size as u64 + 1);
        let mut g = c.benchmark_group(format!("append_unsynced_{label}"));
        scale.configure(&mut g);
        g.throughput(Throughput::Elements(1));
        {
            let dir = scratch("physical");
            let mut file = Prealloc::create(&dir.path().join("log"), scale.prealloc_bytes);
            g.bench_function("physical_write", |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        file.write(&record);
                    }
                    start.elapsed()
                })
            });
        }
        let modes = [
            ("finn_none", Durability::None),
            (
                "finn_batch_10ms",
                Durability::Batch {
                    max_delay: Duration::from_millis(10),
                },
            ),
        ];
        for (name, durability) in modes {
            let dir = scratch("finn");
            let (wal, _) = Wal::open(dir.path(), finn_options(scale, durability)).expect("open");
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        wal.append(event(&record)).expect("append");
                    }
                    start.elapsed()
                })
            });
        }
        g.finish();
    }
}

/// Batches of about 256 KiB made durable by one call: finn's `append_batch` (one atomic frame,
/// one fdatasync) next to one `pwrite` + `fdatasync` of the same bytes.
pub fn batched(c: &mut Criterion, scale: Scale) {
    for (size, label) in SIZES {
        let record = payload(size, size as u64 + 2);
        let batch = (BATCH_BYTES / size).max(1);
        let group_name = format!("append_batched_{label}");
        let mut g = c.benchmark_group(&group_name);
        scale.configure(&mut g);
        g.throughput(Throughput::Elements(1));
        extras::note(
            &group_name,
            serde_json::json!({ "records_per_batch": batch }),
        );
        {
            let dir = scratch("physical");
            let mut file = Prealloc::create(&dir.path().join("log"), scale.prealloc_bytes);
            let bytes = record.repeat(batch);
            g.bench_function("physical_batch", |b| {
                b.iter_custom(|iters| {
                    let syncs = iters.div_ceil(batch as u64);
                    let start = Instant::now();
                    for _ in 0..syncs {
                        file.write(&bytes);
                        file.sync();
                    }
                    scale_to(start.elapsed(), iters, syncs * batch as u64)
                })
            });
        }
        let dir = scratch("finn");
        let (wal, _) = Wal::open(dir.path(), finn_options(scale, Durability::Sync)).expect("open");
        g.bench_function("finn_append_batch", |b| {
            b.iter_custom(|iters| {
                let calls = iters.div_ceil(batch as u64);
                let start = Instant::now();
                for _ in 0..calls {
                    let records = (0..batch).map(|_| event(&record)).collect();
                    wal.append_batch(records, Durability::Sync)
                        .expect("append batch");
                }
                scale_to(start.elapsed(), iters, calls * batch as u64)
            })
        });
        g.finish();
    }
}
