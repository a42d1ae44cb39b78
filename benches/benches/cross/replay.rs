//! Open + replay of a log of N records, warm (page cache) and cold (`posix_fadvise DONTNEED` on
//! the log's files before each pass).
//!
//! - `physical_read`: reading finn's segment files in 1 MiB reads, nothing else; the limit.
//! - `framed_scan`: a naive `[u32 len][u32 crc32][payload]` log of the same records, read and
//!   CRC-checked; the cheapest format that still detects damage.
//! - `finn`: `Wal::open` (recovery: every frame's CRC, the true tail) then `iter_from(1)` over
//!   every record, decoded.
//! - `sqlite`: open + `SELECT data FROM log ORDER BY id` over every row (rows written 1000
//!   per transaction, database checkpointed).
//! - `okaywal`: open with a log manager that reads and CRC-checks every chunk of every entry
//!   (100 chunks per entry, no checkpoint, as after a crash); each pass gets a fresh copy
//!   because okaywal checkpoints what it recovered.
//!
//! Group ids: `replay_<size>_<warm|cold>/<system>`; throughput is records.

use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use finn_wal::{Durability, Kind, Lsn, NewRecord, Wal};

use crate::append::finn_options;
use crate::baseline::{copy_tree, evict, read_dir_bytes};
use crate::{Scale, extras, payload, scratch, sqlite};

const OKAYWAL_CHUNKS_PER_ENTRY: u64 = 100;

struct Fixture {
    _root: tempfile::TempDir,
    finn: std::path::PathBuf,
    framed: std::path::PathBuf,
    sqlite: std::path::PathBuf,
    okaywal: std::path::PathBuf,
    records: u64,
}

fn build(scale: Scale, size: usize, records: u64) -> Fixture {
    let root = scratch("replay");
    let record = payload(size, 7);
    let finn = root.path().join("finn");
    {
        let (wal, _) = Wal::open(&finn, finn_options(scale, Durability::None)).expect("open");
        let mut left = records;
        while left > 0 {
            let n = left.min(1000);
            let batch = (0..n)
                .map(|_| NewRecord::event(Kind::Session, record.clone()))
                .collect();
            wal.append_batch(batch, Durability::None).expect("append");
            left -= n;
        }
        wal.sync().expect("sync");
    }
    let framed = root.path().join("framed.log");
    {
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&framed).expect("f"));
        let crc = crc32fast::hash(&record);
        for _ in 0..records {
            w.write_all(&(record.len() as u32).to_le_bytes())
                .expect("w");
            w.write_all(&crc.to_le_bytes()).expect("w");
            w.write_all(&record).expect("w");
        }
        w.into_inner()
            .expect("flush")
            .sync_all()
            .expect("sync framed");
    }
    let sqlite_dir = root.path().join("sqlite");
    std::fs::create_dir_all(&sqlite_dir).expect("mkdir");
    let sqlite_path = sqlite_dir.join("bench.db");
    {
        let mut conn = sqlite::open(&sqlite_path);
        let mut left = records;
        while left > 0 {
            let n = left.min(1000);
            sqlite::insert(&mut conn, &record, n as usize);
            left -= n;
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .expect("checkpoint");
    }
    let okaywal = root.path().join("okaywal");
    {
        let log = okaywal::Configuration::default_for(&okaywal)
            .checkpoint_after_bytes(u64::MAX)
            .open(okaywal::LogVoid)
            .expect("open okaywal");
        let entries = records.div_ceil(OKAYWAL_CHUNKS_PER_ENTRY);
        for e in 0..entries {
            let chunks = OKAYWAL_CHUNKS_PER_ENTRY.min(records - e * OKAYWAL_CHUNKS_PER_ENTRY);
            let mut entry = log.begin_entry().expect("begin");
            for _ in 0..chunks {
                entry.write_chunk(&record).expect("chunk");
            }
            entry.commit().expect("commit");
        }
        // Dropped without shutdown and without any checkpoint: the log as a crash leaves it.
        drop(log);
    }
    Fixture {
        _root: root,
        finn,
        framed,
        sqlite: sqlite_path,
        okaywal,
        records,
    }
}

fn replay_finn(dir: &Path, scale: Scale) -> u64 {
    let (wal, _) = Wal::open(dir, finn_options(scale, Durability::None)).expect("open");
    let mut n = 0u64;
    for r in wal.iter_from(Lsn::new(1)).expect("iter") {
        let r = r.expect("record");
        std::hint::black_box(&r.payload);
        n += 1;
    }
    n
}

fn replay_framed(path: &Path) -> u64 {
    let mut f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).expect("f"));
    let mut header = [0u8; 8];
    let mut body = Vec::new();
    let mut n = 0;
    loop {
        match f.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("read framed log: {e}"),
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        body.resize(len, 0);
        f.read_exact(&mut body).expect("frame body");
        assert_eq!(crc32fast::hash(&body), crc, "framed log CRC");
        n += 1;
    }
    n
}

#[derive(Debug)]
struct CountChunks(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl okaywal::LogManager for CountChunks {
    fn recover(&mut self, entry: &mut okaywal::Entry<'_>) -> std::io::Result<()> {
        if let Some(chunks) = entry.read_all_chunks()? {
            self.0
                .fetch_add(chunks.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last: okaywal::EntryId,
        _entries: &mut okaywal::SegmentReader,
        _wal: &okaywal::WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

fn replay_okaywal(dir: &Path) -> (u64, okaywal::WriteAheadLog) {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let log = okaywal::Configuration::default_for(dir)
        .checkpoint_after_bytes(u64::MAX)
        .open(CountChunks(count.clone()))
        .expect("recover okaywal");
    (count.load(std::sync::atomic::Ordering::Relaxed), log)
}

/// Times `pass` `iters` times, evicting `cold_dir` from the page cache first when given.
fn timed(iters: u64, cold: Option<&Path>, expect: u64, mut pass: impl FnMut() -> u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        if let Some(dir) = cold {
            evict(dir);
        }
        let start = Instant::now();
        let n = pass();
        total += start.elapsed();
        assert_eq!(n, expect, "replay saw a different number of records");
    }
    total
}

/// The replay workloads.
pub fn bench(c: &mut Criterion, scale: Scale) {
    let cases = [
        (256usize, "256B", scale.replay_records_256),
        (4096, "4KiB", scale.replay_records_4k),
    ];
    for (size, label, records) in cases {
        let fx = build(scale, size, records);
        let finn_bytes: u64 = crate::baseline::files_under(&fx.finn)
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        for temperature in ["warm", "cold"] {
            let cold = temperature == "cold";
            let group_name = format!("replay_{label}_{temperature}");
            extras::note(
                &group_name,
                serde_json::json!({ "records": fx.records, "record_size": size, "finn_file_bytes": finn_bytes }),
            );
            let mut g = c.benchmark_group(&group_name);
            scale.configure(&mut g);
            g.throughput(Throughput::Elements(fx.records));
            let finn_dir = fx.finn.as_path();
            g.bench_function("physical_read", |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        if cold {
                            evict(finn_dir);
                        }
                        let start = Instant::now();
                        std::hint::black_box(read_dir_bytes(finn_dir));
                        total += start.elapsed();
                    }
                    total
                })
            });
            g.bench_function("framed_scan", |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        if cold {
                            let f = std::fs::File::open(&fx.framed).expect("open");
                            rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)
                                .expect("fadvise");
                        }
                        let start = Instant::now();
                        let n = replay_framed(&fx.framed);
                        total += start.elapsed();
                        assert_eq!(n, fx.records);
                    }
                    total
                })
            });
            g.bench_function("finn", |b| {
                b.iter_custom(|iters| {
                    timed(iters, cold.then_some(finn_dir), fx.records, || {
                        replay_finn(finn_dir, scale)
                    })
                })
            });
            let sqlite_dir = fx.sqlite.parent().expect("sqlite dir").to_path_buf();
            g.bench_function("sqlite", |b| {
                b.iter_custom(|iters| {
                    timed(iters, cold.then_some(&sqlite_dir), fx.records, || {
                        sqlite::scan(&fx.sqlite).0
                    })
                })
            });
            g.bench_function("okaywal", |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for i in 0..iters {
                        let work = scratch("okaywal-replay");
                        let copy = work.path().join(format!("log-{i}"));
                        copy_tree(&fx.okaywal, &copy);
                        if cold {
                            evict(&copy);
                        } else {
                            std::hint::black_box(read_dir_bytes(&copy));
                        }
                        let start = Instant::now();
                        let (n, log) = replay_okaywal(&copy);
                        total += start.elapsed();
                        assert_eq!(n, fx.records, "okaywal recovered every chunk");
                        log.shutdown().expect("okaywal shutdown");
                    }
                    total
                })
            });
            g.finish();
        }
    }
}
