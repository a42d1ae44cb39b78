//! Agent-state store benchmarks, beside the seed-002 targets (WAL write < 10 ms, replay
//! < 100 ms, clear < 5 ms), which finn must beat by at least 20×.
//!
//! * `txn/commit_10_files`: a state-directory transaction writing ten 1 KiB files with the
//!   default checkpointing (one WAL fdatasync per commit; the files' fdatasyncs, concurrent,
//!   once per 32 commits), and `txn/commit_10_files_eager` (`checkpoint_every = 1`: every
//!   commit also syncs its ten files and the directory). Compare with the "WAL write" target.
//! * `kv/put_sync`, `kv/get`: one durable put (one fdatasync) — the "WAL write" — and one read.
//! * `journal/append_sync`: one durable journal append.
//! * `journal/restore`: restore of a stream (snapshot + 99 later entries, 256 B each).
//! * `replay/open_10k`: reopening a WAL of 10,000 keyed 256 B records and folding them into
//!   the view — the "replay"; `replay/wal_open_10k` is the WAL's own open (recovery) alone,
//!   `replay/fold_10k` the store's fold of an open WAL alone, and `replay/iter_10k` the
//!   WAL's iteration inside that fold (the records read back, nothing kept).
//! * `journal/delete_100`: deleting a stream of 100 entries (no snapshot) in one durable
//!   batch — the "clear".
//! * `raw/pwrite+fdatasync` and `raw/pwrite+fdatasync_end`: the device's floor for any durable
//!   write, measured first and last in the same run (a shared disk drifts).
//!
//! The latest run's numbers and their ratios to the seed targets are in the `finn_wal::store`
//! module docs (2026-11-22: `replay/open_10k` 2.6 ms = 38× the 100 ms target, `kv/put_sync`
//! 0.14 ms = 71×, `journal/delete_100` 0.21 ms = 24×, `txn/commit_10_files` 0.39 ms = 25×).
//!
//! Run with `cargo bench -p finn-wal --bench store` (`-- --quick` for a rough pass).
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use finn_wal::store::journal::{JournalOptions, Journals};
use finn_wal::store::kv::{Kv, KvOptions};
use finn_wal::store::txn::{StateDir, TxnOptions};
use finn_wal::store::{Backend, Mutation, WalBackend};
use finn_wal::{Lsn, Options, Wal};

fn options() -> Options {
    Options {
        segment_size: 16 << 20,
        ..Options::default()
    }
}

fn backend(dir: &std::path::Path, ns: &str) -> WalBackend {
    let (wal, _) = Wal::open(dir, options()).unwrap();
    WalBackend::open(Arc::new(wal), ns).unwrap()
}

fn concat(state: &mut Vec<u8>, entry: &[u8]) {
    state.truncate(0);
    state.extend_from_slice(entry);
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("store");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));

    let dir = tempfile::tempdir().unwrap();
    // The hardware floor of any durable write: one 300-byte pwrite + fdatasync.
    let raw = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.path().join("raw"))
        .unwrap();
    raw.set_len(1 << 20).unwrap();
    raw.sync_all().unwrap();
    let frame = [0x5au8; 300];
    let mut at = 0u64;
    g.bench_function("raw/pwrite+fdatasync", |b| {
        b.iter(|| {
            use std::os::unix::fs::FileExt;
            raw.write_all_at(&frame, at % (1 << 20)).unwrap();
            at += 300;
            raw.sync_data().unwrap()
        })
    });

    let body = vec![7u8; 1024];
    let commit_10 = |state: &StateDir<WalBackend>| {
        let mut t = state.begin();
        for i in 0..10 {
            t.write(&format!("f{i}"), body.clone()).unwrap();
        }
        t.commit().unwrap()
    };
    // Default: the intent's fdatasync per commit, the files' syncs once per 32 commits.
    let (state, _) = StateDir::open(
        dir.path().join("files"),
        backend(&dir.path().join("wal-t"), "txn"),
        "b",
    )
    .unwrap();
    g.bench_function("txn/commit_10_files", |b| b.iter(|| commit_10(&state)));
    // Every commit also syncs its files (checkpoint_every = 1).
    let (eager, _) = StateDir::open_with(
        dir.path().join("files-eager"),
        backend(&dir.path().join("wal-te"), "txn"),
        "b",
        TxnOptions::default().checkpoint_every(1),
    )
    .unwrap();
    g.bench_function("txn/commit_10_files_eager", |b| {
        b.iter(|| commit_10(&eager))
    });
    // Each store goes once measured: its WAL's background work (compaction after a rotation)
    // must not run into the next rows.
    drop((state, eager));

    let kv = Kv::open(
        backend(&dir.path().join("wal-kv"), "kv"),
        KvOptions::default(),
    )
    .unwrap();
    let mut n = 0u64;
    g.bench_function("kv/put_sync", |b| {
        b.iter(|| {
            n += 1;
            kv.put("ns", &format!("k{}", n % 1000), vec![1; 256], None)
                .unwrap()
        })
    });
    g.bench_function("kv/get", |b| b.iter(|| kv.get("ns", "k500").unwrap()));
    drop(kv);

    let jdir = dir.path().join("wal-j");
    let j = Journals::open(backend(&jdir, "j"), JournalOptions::default())
        .unwrap()
        .with_reducer(concat);
    g.bench_function("journal/append_sync", |b| {
        b.iter(|| j.append("bench", vec![3; 256]).unwrap())
    });
    for _ in 0..100 {
        j.append("restore", vec![5; 256]).unwrap();
    }
    j.snapshot_now("restore").unwrap();
    for _ in 0..99 {
        j.append("restore", vec![6; 256]).unwrap();
    }
    g.bench_function("journal/restore", |b| {
        b.iter(|| j.restore_state("restore").unwrap())
    });
    drop(j);
    // Without automatic snapshots, so the stream really holds 100 entries when deleted.
    let victims = Journals::open(
        backend(&dir.path().join("wal-jd"), "j"),
        JournalOptions {
            snapshot_every: None,
        },
    )
    .unwrap();
    g.bench_function("journal/delete_100", |b| {
        b.iter_batched(
            || {
                victims
                    .append_all("victim", vec![vec![1; 256]; 100])
                    .unwrap();
            },
            |()| victims.delete("victim").unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
    drop(victims);

    let rdir = dir.path().join("wal-r");
    {
        let b = backend(&rdir, "kv");
        for chunk in 0..100u32 {
            let batch = (0..100u32)
                .map(|i| Mutation::Put(format!("k{chunk:03}{i:03}"), vec![9; 256]))
                .collect();
            b.commit_relaxed(batch).unwrap();
        }
        b.wal().sync().unwrap();
    }
    // The WAL's own open (recovery scan) alone, then open + fold into the view + one read.
    g.bench_function("replay/wal_open_10k", |b| {
        b.iter(|| Wal::open(&rdir, options()).unwrap().0.last_lsn())
    });
    // The store's own part: folding the already-open WAL into the view.
    let opened = Arc::new(Wal::open(&rdir, options()).unwrap().0);
    // The WAL's half of the fold: reading every record back (each one allocated and dropped).
    g.bench_function("replay/iter_10k", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for r in opened.iter_from(Lsn::ZERO).unwrap() {
                bytes += r.unwrap().payload.len();
            }
            bytes
        })
    });
    g.bench_function("replay/fold_10k", |b| {
        b.iter(|| {
            let b = WalBackend::open(opened.clone(), "kv").unwrap();
            b.get("k050050").unwrap().map(|v| v.len())
        })
    });
    drop(opened);
    g.bench_function("replay/open_10k", |b| {
        b.iter(|| {
            let b = backend(&rdir, "kv");
            b.get("k050050").unwrap().map(|v| v.len())
        })
    });
    g.bench_function("raw/pwrite+fdatasync_end", |b| {
        b.iter(|| {
            use std::os::unix::fs::FileExt;
            raw.write_all_at(&frame, at % (1 << 20)).unwrap();
            at += 300;
            raw.sync_data().unwrap()
        })
    });
    g.finish();
}

criterion_group!(store, benches);
criterion_main!(store);
