//! Beads: import of the real `issues.jsonl` fixture into an empty store, and the ready query
//! over the imported beads.
//!
//! - `beads_import/finn`: `Store::open` of an empty directory is not timed; `import_path` is
//!   (parse, validate, one durable WAL batch per chunk, fold).
//! - `beads_import/json_parse`: `serde_json` parsing of every line into a `Value`: the floor
//!   of any importer of this format.
//! - `beads_ready/finn`: `Store::ready` with the default query (`bd ready`).
//!
//! The fixture is `<FINN_SHARED_DIR or ../shared>/fixtures/beads/loa-finn-issues.jsonl`;
//! without it the workload is skipped with a printed reason.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use finn_beads::{ImportOptions, ReadyQuery, Store};

use crate::{Scale, extras, scratch};

fn fixture() -> Option<PathBuf> {
    let shared = std::env::var_os("FINN_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let path = shared.join("fixtures/beads/loa-finn-issues.jsonl");
    path.is_file().then_some(path)
}

/// The beads workloads.
pub fn bench(c: &mut Criterion, scale: Scale) {
    let Some(path) = fixture() else {
        eprintln!(
            "finn-benches: skipping beads: the shared fixture beads/loa-finn-issues.jsonl is missing"
        );
        return;
    };
    let text = std::fs::read_to_string(&path).expect("read fixture");
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;

    let mut g = c.benchmark_group("beads_import");
    scale.configure(&mut g);
    g.throughput(Throughput::Elements(lines));
    g.bench_function("finn", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let dir = scratch("beads");
                let store = Store::open(dir.path(), finn_beads::Options::default()).expect("open");
                let start = Instant::now();
                let report = store
                    .import_path(&path, &ImportOptions::default())
                    .expect("import");
                elapsed += start.elapsed();
                std::hint::black_box(report);
            }
            elapsed
        })
    });
    g.bench_function("json_parse", |b| {
        b.iter(|| {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
                .collect::<Vec<_>>()
        })
    });
    g.finish();

    let dir = scratch("beads-ready");
    let store = Store::open(dir.path(), finn_beads::Options::default()).expect("open");
    let report = store
        .import_path(&path, &ImportOptions::default())
        .expect("import");
    let query = ReadyQuery::default();
    let ready = store.ready(&query).len();
    extras::note(
        "beads",
        serde_json::json!({ "lines": lines, "created": report.created.len(), "ready": ready }),
    );
    let mut g = c.benchmark_group("beads_ready");
    scale.configure(&mut g);
    g.throughput(Throughput::Elements(1));
    g.bench_function("finn", |b| b.iter(|| store.ready(&query)));
    g.finish();
}
