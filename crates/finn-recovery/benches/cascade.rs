//! Full cascade from a LocalFileSystem store (state + shipped WAL) against a plain durable copy
//! of the same bytes, measured in the same run.
//!
//! Size: `FINN_BENCH_STATE_MB` (default 100) of state in 1 MiB files and
//! `FINN_BENCH_RECORDS` (default 100,000) WAL records of ~100 bytes shipped after the checkpoint.

#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use finn_checkpoint::{
    CheckpointInput, Checkpointer, CheckpointerOptions, Compression, Keyring, Remote,
    RemoteOptions, SigningKey,
};
use finn_recovery::source::object_store::ObjectStoreSource;
use finn_recovery::{Cascade, Layout, State};
use finn_wal::{Durability, Kind, Lsn, NewRecord, Wal};
use rand::RngCore;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wal_options() -> finn_wal::Options {
    finn_wal::Options {
        segment_size: 64 << 20,
        preallocate: false,
        free_space_warning: 0,
        free_space_critical: 0,
        wal_size_warning: u64::MAX / 4,
        wal_size_critical: u64::MAX / 2,
        ..finn_wal::Options::default()
    }
}

struct Fixture {
    _root: tempfile::TempDir,
    root: PathBuf,
    remote: Remote,
    keyring: Keyring,
    source_state: PathBuf,
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    let mb = env("FINN_BENCH_STATE_MB", 100);
    let records = env("FINN_BENCH_RECORDS", 100_000);
    let root_dir = tempfile::tempdir().unwrap();
    let root = root_dir.path().to_owned();
    let store_dir = root.join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let store: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&store_dir).unwrap());
    let remote = Remote::new(store, "agent", RemoteOptions::default());
    let key = SigningKey::generate();
    let state = root.join("origin/state");
    let mut rng = rand::thread_rng();
    for i in 0..mb {
        let path = state.join(format!("d{}/f{i:04}", i % 10));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut bytes = vec![0u8; 1 << 20];
        rng.fill_bytes(&mut bytes);
        std::fs::write(path, bytes).unwrap();
    }
    rt.block_on(async {
        let mut options = CheckpointerOptions::default();
        options.compression = Compression::Off;
        let cp = Checkpointer::open(remote.clone(), key.clone(), Keyring::new(), options)
            .await
            .unwrap();
        cp.checkpoint(CheckpointInput::from_dir(&state, Lsn::ZERO).unwrap())
            .await
            .unwrap();
        let (wal, _) = Wal::open(root.join("origin/wal"), wal_options()).unwrap();
        for i in 0..records {
            wal.append_with(
                NewRecord::put(Kind::State, format!("key-{}", i % 1000), vec![b'x'; 80]),
                Durability::None,
            )
            .unwrap();
        }
        wal.sync().unwrap();
        cp.ship_wal(&wal).await.unwrap();
    });
    Fixture {
        _root: root_dir,
        root,
        remote,
        keyring: Keyring::trusting(key.verifying_key()),
        source_state: state,
    }
}

fn durable_copy(from: &Path, to: &Path) -> u64 {
    let mut bytes = 0;
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            bytes += durable_copy(&entry.path(), &dest);
        } else {
            bytes += std::fs::copy(entry.path(), &dest).unwrap();
            std::fs::File::open(&dest).unwrap().sync_data().unwrap();
        }
    }
    std::fs::File::open(to).unwrap().sync_all().unwrap();
    bytes
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = fixture(&rt);
    let mut group = c.benchmark_group("restore");
    group.sample_size(10);
    let mut n = 0u64;
    group.bench_function("cascade_object_store_plus_shipped_wal", |b| {
        b.iter_batched(
            || {
                n += 1;
                f.root.join(format!("restore-{n}"))
            },
            |data| {
                let recovery = rt
                    .block_on(
                        Cascade::builder(Layout::new(&data))
                            .wal_options(wal_options())
                            .source(ObjectStoreSource::new(f.remote.clone(), f.keyring.clone()))
                            .build()
                            .run(),
                    )
                    .unwrap();
                assert_eq!(recovery.report().state, State::Running);
                drop(recovery);
                std::fs::remove_dir_all(&data).unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    // Baseline: the same state bytes plus the shipped WAL objects, copied and fdatasynced.
    group.bench_function("plain_durable_copy_same_bytes", |b| {
        b.iter_batched(
            || {
                n += 1;
                let dest = f.root.join(format!("copy-{n}"));
                std::fs::create_dir_all(dest.join("state")).unwrap();
                std::fs::create_dir_all(dest.join("wal")).unwrap();
                dest
            },
            |dest| {
                durable_copy(&f.source_state, &dest.join("state"));
                durable_copy(&f.root.join("store/agent/wal"), &dest.join("wal"));
                std::fs::remove_dir_all(&dest).unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
