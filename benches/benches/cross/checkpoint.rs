//! Checkpoints to an object store (LocalFileSystem) and the full recovery cascade.
//!
//! `checkpoint_1pct_change/<system>`: state of `checkpoint_files` files (100 MiB in the full
//! run), one of which (1 % of the bytes) changes before each checkpoint.
//! - `finn_incremental`: `Checkpointer::checkpoint` of the whole state directory; only the
//!   changed file's object is uploaded (bytes uploaded go to the extras).
//! - `finn_full`: the same state checkpointed into an empty prefix (everything uploaded).
//! - `physical_write_changed`: write + `fdatasync` + rename + `fsync dir` of the changed file,
//!   the least any durable copy of the change costs.
//!
//! `recovery_cascade/<system>`: the data directory is lost; state and shipped WAL are in the
//! object store.
//! - `finn`: `Cascade::run` with an object-store source: newest signed manifest, every file
//!   fetched, blake3-verified and swapped in, shipped WAL records restored into a new WAL.
//! - `physical_copy`: copy the store's files to a new directory with `fdatasync` of each file
//!   and `fsync` of each directory (the bytes a restore has to move, no verification).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use finn_checkpoint::{
    CheckpointInput, Checkpointer, CheckpointerOptions, Keyring, Lsn, Remote, RemoteOptions,
    SigningKey,
};
use finn_recovery::source::object_store::ObjectStoreSource;
use finn_recovery::{Cascade, Layout, State};
use finn_wal::{Durability, Kind, NewRecord, Wal};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

use crate::append::finn_options;
use crate::baseline::copy_tree_durably;
use crate::{Scale, extras, payload, scratch};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn local_store(dir: &Path) -> Arc<dyn ObjectStore> {
    std::fs::create_dir_all(dir).expect("store dir");
    Arc::new(LocalFileSystem::new_with_prefix(dir).expect("LocalFileSystem"))
}

fn write_state(dir: &Path, scale: Scale) {
    std::fs::create_dir_all(dir).expect("state dir");
    for i in 0..scale.checkpoint_files {
        std::fs::write(
            dir.join(format!("file-{i:03}.bin")),
            payload(scale.checkpoint_file_size, i as u64 + 1),
        )
        .expect("write state file");
    }
}

/// The checkpoint workloads.
pub fn checkpoint(c: &mut Criterion, scale: Scale) {
    let rt = runtime();
    let root = scratch("checkpoint");
    let state = root.path().join("state");
    write_state(&state, scale);
    let total = (scale.checkpoint_files * scale.checkpoint_file_size) as u64;
    let store = local_store(&root.path().join("store"));
    let key = SigningKey::generate();
    let open = |prefix: &str| {
        rt.block_on(Checkpointer::open(
            Remote::new(store.clone(), prefix, RemoteOptions::default()),
            key.clone(),
            Keyring::new(),
            CheckpointerOptions::default(),
        ))
        .expect("open checkpointer")
    };
    let cp = open("incremental");
    let first = rt
        .block_on(cp.checkpoint(CheckpointInput::from_dir(&state, Lsn::new(1)).expect("input")))
        .expect("first checkpoint");

    let mut g = c.benchmark_group("checkpoint_1pct_change");
    scale.configure(&mut g);
    let mut lsn = 1u64;
    let mut uploads: Vec<u64> = Vec::new();
    let mut change = 0u64;
    g.bench_function("finn_incremental", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                change += 1;
                let victim = (change as usize) % scale.checkpoint_files;
                std::fs::write(
                    state.join(format!("file-{victim:03}.bin")),
                    payload(scale.checkpoint_file_size, 1_000_000 + change),
                )
                .expect("change one file");
                lsn += 1;
                let input = CheckpointInput::from_dir(&state, Lsn::new(lsn)).expect("input");
                let start = Instant::now();
                let report = rt.block_on(cp.checkpoint(input)).expect("checkpoint");
                elapsed += start.elapsed();
                uploads.push(report.uploaded_bytes);
            }
            elapsed
        })
    });
    let mean_upload = uploads.iter().sum::<u64>() as f64 / uploads.len().max(1) as f64;
    extras::note(
        "checkpoint_1pct_change/finn_incremental",
        serde_json::json!({
            "state_bytes": total,
            "files": scale.checkpoint_files,
            "first_uploaded_bytes": first.uploaded_bytes,
            "mean_uploaded_bytes": mean_upload,
            "uploaded_fraction": mean_upload / total as f64,
            "checkpoints": uploads.len(),
        }),
    );

    let mut full = 0u64;
    g.bench_function("finn_full", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                full += 1;
                let cp = open(&format!("full-{full}"));
                let input = CheckpointInput::from_dir(&state, Lsn::new(1)).expect("input");
                let start = Instant::now();
                let report = rt.block_on(cp.checkpoint(input)).expect("checkpoint");
                elapsed += start.elapsed();
                assert_eq!(
                    report.uploaded_bytes, total,
                    "a new prefix uploads everything"
                );
            }
            elapsed
        })
    });

    let changed = payload(scale.checkpoint_file_size, 42);
    let copy_dir = root.path().join("copy");
    std::fs::create_dir_all(&copy_dir).expect("copy dir");
    g.bench_function("physical_write_changed", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let tmp = copy_dir.join("changed.tmp");
                let f = std::fs::File::create(&tmp).expect("create");
                std::io::Write::write_all(&mut &f, &changed).expect("write");
                f.sync_data().expect("fdatasync");
                std::fs::rename(&tmp, copy_dir.join("changed")).expect("rename");
                std::fs::File::open(&copy_dir)
                    .and_then(|d| d.sync_all())
                    .expect("fsync dir");
            }
            start.elapsed()
        })
    });
    g.finish();
}

/// The recovery cascade workload.
pub fn cascade(c: &mut Criterion, scale: Scale) {
    let rt = runtime();
    let root = scratch("cascade");
    let store_dir = root.path().join("store");
    let store = local_store(&store_dir);
    let remote = Remote::new(store, "agent", RemoteOptions::default());
    let key = SigningKey::generate();
    let data = root.path().join("data");
    let layout = Layout::new(&data);
    let wal_options = finn_options(scale, Durability::Sync);
    // A machine that checkpointed its state (a tenth of the checkpoint workload's size) and
    // shipped its WAL, then wrote and shipped more.
    let state_files = (scale.checkpoint_files / 10).max(1);
    let wal_records = scale.cascade_wal_records;
    {
        let cp = rt
            .block_on(Checkpointer::open(
                remote.clone(),
                key.clone(),
                Keyring::new(),
                CheckpointerOptions::default(),
            ))
            .expect("open checkpointer");
        let (wal, _) = Wal::open(layout.wal_dir(), wal_options.clone()).expect("open wal");
        let record = payload(256, 3);
        let append = |n: u64| {
            for chunk in 0..n.div_ceil(1000) {
                let k = (n - chunk * 1000).min(1000);
                let batch = (0..k)
                    .map(|_| NewRecord::event(Kind::Session, record.clone()))
                    .collect();
                wal.append_batch(batch, Durability::Sync).expect("append");
            }
        };
        append(wal_records);
        std::fs::create_dir_all(layout.state_dir()).expect("state dir");
        for i in 0..state_files {
            std::fs::write(
                layout.state_dir().join(format!("file-{i:03}.bin")),
                payload(scale.checkpoint_file_size, 500 + i as u64),
            )
            .expect("state file");
        }
        let input = CheckpointInput::from_dir(layout.state_dir(), wal.last_lsn()).expect("input");
        rt.block_on(cp.checkpoint(input)).expect("checkpoint");
        append(wal_records);
        rt.block_on(cp.ship_wal(&wal)).expect("ship wal");
        drop(wal);
        rt.block_on(cp.release()).expect("release lease");
    }
    extras::note(
        "recovery_cascade",
        serde_json::json!({
            "state_files": state_files,
            "state_bytes": state_files * scale.checkpoint_file_size,
            "wal_records_after_checkpoint": wal_records,
        }),
    );

    let mut g = c.benchmark_group("recovery_cascade");
    scale.configure(&mut g);
    let keyring = Keyring::trusting(key.verifying_key());
    g.bench_function("finn", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                if data.exists() {
                    std::fs::remove_dir_all(&data).expect("lose the data directory");
                }
                let cascade = Cascade::builder(Layout::new(&data))
                    .wal_options(wal_options.clone())
                    .source(ObjectStoreSource::new(remote.clone(), keyring.clone()))
                    .build();
                let start = Instant::now();
                let mut recovery = rt.block_on(cascade.run()).expect("cascade");
                elapsed += start.elapsed();
                let report = recovery.report();
                assert_eq!(report.state, State::Running, "{report:?}");
                assert_eq!(report.wal_records_restored, wal_records);
                recovery.confirm_boot().expect("confirm boot");
            }
            elapsed
        })
    });
    let mut n = 0u64;
    g.bench_function("physical_copy", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let to = root.path().join(format!("copy-{n}"));
                let start = Instant::now();
                std::hint::black_box(copy_tree_durably(&store_dir, &to));
                elapsed += start.elapsed();
                std::fs::remove_dir_all(&to).expect("remove copy");
            }
            elapsed
        })
    });
    g.finish();
}
