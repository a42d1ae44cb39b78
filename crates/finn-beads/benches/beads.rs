//! Benchmarks: import of 100,000 beads and a ready query over 100,000 beads with a realistic
//! dependency graph (epics of 20 children, `blocks` chains, 60 % closed).
//!
//! Baselines measured in the same run: parsing the same JSONL into `serde_json::Value`
//! (`import` is reported against it), appending the same lines to a bare WAL with the batching
//! and the single sync an import uses (the floor no import can go below), and a linear scan
//! filtering open beads (`ready`).

use std::hint::black_box;
use std::io::Write;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use finn_beads::{
    DEFAULT_SEGMENT_SIZE, IMPORT_CHUNK, ImportOptions, Options, ReadyQuery, Status, Store,
    Timestamp,
};
use finn_wal::{Durability, Kind, NewRecord, Wal};

const N: usize = 100_000;

/// Realistic JSONL: one epic per 21 beads (20 children), every third task `blocks` on the
/// previous task, 60 % closed, labels on most.
fn corpus() -> String {
    let mut out = Vec::with_capacity(N * 600);
    let mut epic = 0;
    for i in 0..N {
        let closed = i % 5 < 3;
        let id = format!("bd-{i:06x}");
        let created = format!(
            "2026-02-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            1 + i % 28,
            i % 24,
            i % 60,
            (i / 60) % 60,
            i
        );
        let mut deps = Vec::new();
        let is_epic = i % 21 == 0;
        if is_epic {
            epic = i;
        } else {
            deps.push(format!(
                r#"{{"issue_id":"{id}","depends_on_id":"bd-{epic:06x}","type":"parent-child","created_at":"{created}","created_by":"bench","metadata":"{{}}","thread_id":""}}"#
            ));
            if i % 3 == 0 && i > 1 && (i - 1) % 21 != 0 {
                deps.push(format!(
                    r#"{{"issue_id":"{id}","depends_on_id":"bd-{:06x}","type":"blocks","created_at":"{created}","created_by":"bench","metadata":"{{}}","thread_id":""}}"#,
                    i - 1
                ));
            }
        }
        let status = if closed { "closed" } else { "open" };
        let closing = if closed {
            format!(r#","closed_at":"{created}","close_reason":"done""#)
        } else {
            String::new()
        };
        writeln!(
            out,
            r#"{{"id":"{id}","title":"T{i}: implement the thing number {i}","description":"Some description of bead {i} with enough words to be realistic.","status":"{status}","priority":{},"issue_type":"{}","created_at":"{created}","created_by":"bench","updated_at":"{created}"{closing},"source_repo":".","compaction_level":0,"original_size":0,"labels":["sprint:{}","epic:bd-{epic:06x}"],"dependencies":[{}]}}"#,
            i % 4,
            if is_epic { "epic" } else { "task" },
            i / 500,
            deps.join(",")
        )
        .unwrap();
    }
    String::from_utf8(out).unwrap()
}

fn bench(c: &mut Criterion) {
    let text = corpus();
    let mut g = c.benchmark_group("import_100k");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("baseline_parse_json_values", |b| {
        b.iter(|| {
            for l in text.lines() {
                black_box(serde_json::from_str::<serde_json::Value>(l).unwrap());
            }
        })
    });
    g.bench_function("baseline_wal_append_same_lines_sync", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let options = finn_wal::Options {
                    segment_size: DEFAULT_SEGMENT_SIZE,
                    ..finn_wal::Options::default()
                };
                let (wal, _) = Wal::open(dir.path(), options).unwrap();
                (dir, wal)
            },
            |(dir, wal)| {
                let mut batch = Vec::with_capacity(IMPORT_CHUNK);
                let mut bytes = 0;
                for l in text.lines() {
                    let mut p = Vec::with_capacity(l.len() + 48);
                    p.extend_from_slice(br#"{"v":1,"changes":[{"op":"import"}],"bead":"#);
                    p.extend_from_slice(l.as_bytes());
                    p.push(b'}');
                    bytes += p.len() + 64;
                    batch.push(NewRecord::put(Kind::Bead, format!("bead/{}", &l[7..16]), p));
                    if batch.len() >= IMPORT_CHUNK || bytes > (DEFAULT_SEGMENT_SIZE / 4) as usize {
                        wal.append_batch(std::mem::take(&mut batch), Durability::None)
                            .unwrap();
                        bytes = 0;
                    }
                }
                wal.append_batch(batch, Durability::None).unwrap();
                wal.sync().unwrap();
                (dir, wal)
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("import_into_store_sync", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(dir.path(), Options::default()).unwrap();
                (dir, store)
            },
            |(dir, store)| {
                let r = store
                    .import_reader(text.as_bytes(), &ImportOptions::default())
                    .unwrap();
                assert_eq!(r.created.len(), N);
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store
        .import_reader(text.as_bytes(), &ImportOptions::default())
        .unwrap();
    let now = Timestamp::parse("2026-03-01T00:00:00Z").unwrap();
    let mut g = c.benchmark_group("ready_100k");
    g.bench_function("baseline_scan_open", |b| {
        b.iter(|| {
            store.read(|s| {
                let mut v: Vec<_> = s.beads().filter(|b| b.status == Status::Open).collect();
                v.sort_by(|a, b| {
                    a.priority
                        .cmp(&b.priority)
                        .then(a.created_at.cmp(&b.created_at))
                });
                black_box(v.len())
            })
        })
    });
    g.bench_function("ready_all", |b| {
        b.iter(|| store.read(|s| black_box(s.ready(&ReadyQuery::default(), &now).len())))
    });
    let top10 = ReadyQuery {
        limit: Some(10),
        ..ReadyQuery::default()
    };
    g.bench_function("ready_limit_10", |b| {
        b.iter(|| store.read(|s| black_box(s.ready(&top10, &now).len())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
