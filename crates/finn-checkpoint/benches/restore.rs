//! Point-in-time restore of 100 MB of state + 100,000 shipped WAL records, with and without
//! prefetch of the WAL objects, against a plain durable copy of the same bytes, measured in the
//! same run. From a LocalFileSystem store always; through S3 (moto) too when
//! `FINN_TEST_S3_ENDPOINT` is set (bucket `FINN_TEST_S3_BUCKET`, default `finn-test`).
//!
//! Size: `FINN_BENCH_STATE_MB` (default 100) of incompressible state in 1 MiB files, and
//! `FINN_BENCH_RECORDS` (default 100,000) records of ~100 bytes shipped after the checkpoint in
//! batches of 1,000 (100 objects, uncompacted: the case prefetch is for).

#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use finn_checkpoint::{
    CheckpointInput, Checkpointer, CheckpointerOptions, Compression, Keyring, Lsn, Reader, Remote,
    RemoteOptions, RestoreOptions, RestoreTarget, SigningKey, StoreOptions, open_store,
};
use finn_wal::{Durability, Kind, NewRecord, Wal};
use object_store::{ObjectStore, ObjectStoreExt};

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
        auto_compact: false,
        free_space_warning: 0,
        free_space_critical: 0,
        wal_size_warning: u64::MAX / 4,
        wal_size_critical: u64::MAX / 2,
        ..finn_wal::Options::default()
    }
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes the state and the shipped WAL to `remote`; returns the reader's keyring and the
/// target (the last record).
fn populate(rt: &tokio::runtime::Runtime, remote: &Remote, scratch: &Path) -> (Keyring, Lsn) {
    let mb = env("FINN_BENCH_STATE_MB", 100);
    let records = env("FINN_BENCH_RECORDS", 100_000);
    let key = SigningKey::generate();
    rt.block_on(async {
        let mut options = CheckpointerOptions::default();
        options.compression = Compression::Off;
        let cp = Checkpointer::open(remote.clone(), key.clone(), Keyring::new(), options)
            .await
            .unwrap();
        let mut input = CheckpointInput::new(Lsn::ZERO);
        for i in 0..mb {
            input
                .add_bytes(&format!("d{}/f{i:04}", i % 10), noise(i as u64, 1 << 20))
                .unwrap();
        }
        cp.checkpoint(input).await.unwrap();
        let (wal, _) = Wal::open(scratch.join("origin-wal"), wal_options()).unwrap();
        for i in 0..records {
            wal.append_with(
                NewRecord::put(Kind::State, format!("key-{}", i % 1000), vec![b'x'; 80]),
                Durability::None,
            )
            .unwrap();
        }
        wal.sync().unwrap();
        cp.ship_wal(&wal).await.unwrap();
        cp.release().await.unwrap();
        (Keyring::trusting(key.verifying_key()), wal.last_lsn())
    })
}

fn restore_once(
    rt: &tokio::runtime::Runtime,
    reader: &Reader,
    target: Lsn,
    dir: &Path,
    options: &RestoreOptions,
) {
    let (wal, _) = Wal::open(dir.join("wal"), wal_options()).unwrap();
    let report = rt
        .block_on(reader.restore_to(
            RestoreTarget::Lsn(target),
            &dir.join("state"),
            &wal,
            options,
        ))
        .unwrap();
    assert_eq!(report.reached_lsn, target);
}

/// The baseline: every object the restore reads (state objects and WAL batches), fetched one
/// after the other and written with fdatasync, nothing verified or decoded.
fn plain_copy(rt: &tokio::runtime::Runtime, store: &Arc<dyn ObjectStore>, prefix: &str, to: &Path) {
    rt.block_on(async {
        use futures::TryStreamExt;
        let prefix = object_store::path::Path::from(prefix);
        let listed: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
        std::fs::create_dir_all(to).unwrap();
        for (i, meta) in listed.iter().enumerate() {
            let bytes = store
                .get(&meta.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let dest = to.join(format!("{i:06}"));
            std::fs::write(&dest, &bytes).unwrap();
            std::fs::File::open(&dest).unwrap().sync_data().unwrap();
        }
        std::fs::File::open(to).unwrap().sync_all().unwrap();
    });
}

struct Backend {
    name: &'static str,
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

fn backends(root: &Path) -> Vec<Backend> {
    let dir = root.join("store");
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = vec![Backend {
        name: "local",
        store: Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap()),
        prefix: "agent".to_owned(),
    }];
    if let Ok(endpoint) = std::env::var("FINN_TEST_S3_ENDPOINT") {
        let bucket =
            std::env::var("FINN_TEST_S3_BUCKET").unwrap_or_else(|_| "finn-test".to_owned());
        let prefix = format!(
            "bench-restore-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let options = StoreOptions::default()
            .endpoint(endpoint)
            .region("us-east-1")
            .allow_http(true)
            .credentials("finn-bench", "finn-bench");
        let (store, prefix) = open_store(&format!("s3://{bucket}/{prefix}"), &options).unwrap();
        out.push(Backend {
            name: "s3",
            store,
            prefix,
        });
    } else {
        eprintln!("restore bench: FINN_TEST_S3_ENDPOINT not set, S3 (moto) variants skipped");
    }
    out
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let root_dir = tempfile::tempdir().unwrap();
    let root: PathBuf = root_dir.path().to_owned();
    let mut n = 0u64;
    for backend in backends(&root) {
        let remote = Remote::new(
            backend.store.clone(),
            &backend.prefix,
            RemoteOptions::default(),
        );
        let (keyring, target) = populate(&rt, &remote, &root.join(backend.name));
        let reader = Reader::new(remote, keyring);
        let mut group = c.benchmark_group(format!("restore_{}", backend.name));
        group.sample_size(10);
        for (label, options) in [
            ("pitr_no_prefetch", RestoreOptions::default().prefetch(1)),
            ("pitr_prefetch_8", RestoreOptions::default().prefetch(8)),
        ] {
            group.bench_function(label, |b| {
                b.iter_batched(
                    || {
                        n += 1;
                        root.join(format!("restore-{n}"))
                    },
                    |dir| {
                        restore_once(&rt, &reader, target, &dir, &options);
                        std::fs::remove_dir_all(&dir).unwrap();
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        group.bench_function("plain_copy_same_objects", |b| {
            b.iter_batched(
                || {
                    n += 1;
                    root.join(format!("copy-{n}"))
                },
                |dir| {
                    plain_copy(&rt, &backend.store, &backend.prefix, &dir);
                    std::fs::remove_dir_all(&dir).unwrap();
                },
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
