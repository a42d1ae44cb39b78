//! The thread conformance suite (put, get, list, fork, prune, TTL, crash), written once and run
//! against every [`Backend`] through a [`BackendFactory`].
//!
//! ```
//! use finn::threads::{MemoryBackend, StoreError, conformance::{self, BackendFactory}};
//! struct Memory;
//! impl BackendFactory for Memory {
//!     type Backend = MemoryBackend;
//!     fn create(&mut self) -> Result<MemoryBackend, StoreError> { Ok(MemoryBackend::new()) }
//!     fn reopen(&mut self, b: MemoryBackend) -> Result<MemoryBackend, StoreError> { Ok(b) }
//! }
//! let passed = conformance::run(&mut Memory).map_err(|f| f.to_string())?;
//! assert!(passed.contains(&"prune keeps the latest and their states"));
//! # Ok::<(), String>(())
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use finn_wal::store::conformance::{BackendFactory, Failure};

use super::{Backend, ListFilter, Source, State, StepInput, ThreadError, ThreadOptions, Threads};

type Check<F> = fn(&mut F) -> Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn e<E: std::fmt::Debug>(err: E) -> String {
    format!("{err:?}")
}

/// Runs every check; returns their names (all passed) or the first failure.
pub fn run<F: BackendFactory>(factory: &mut F) -> Result<Vec<&'static str>, Failure> {
    let checks: Vec<(&'static str, Check<F>)> = vec![
        ("put and get rebuild every state", put_get::<F>),
        ("list filters and orders", list::<F>),
        ("fork branches and copies", fork::<F>),
        ("prune keeps the latest and their states", prune::<F>),
        ("ttl expires whole threads, also after reopen", ttl::<F>),
        (
            "reopen keeps acknowledged steps, pending writes and idempotency keys",
            crash::<F>,
        ),
        ("size limits warn and refuse", sizes::<F>),
        ("delete removes every record at once", delete::<F>),
        ("large values go to the blob sink by hash", blobs::<F>),
    ];
    let mut passed = Vec::new();
    for (name, check) in checks {
        check(factory).map_err(|detail| Failure {
            check: name,
            detail,
        })?;
        passed.push(name);
    }
    Ok(passed)
}

fn opts(every: u32) -> ThreadOptions {
    ThreadOptions {
        snapshot_every: every,
        ..ThreadOptions::default()
    }
}

fn open<F: BackendFactory>(f: &mut F, o: ThreadOptions) -> Result<Threads<F::Backend>, String> {
    Threads::open(f.create().map_err(e)?, o).map_err(e)
}

fn reopen<F: BackendFactory>(
    f: &mut F,
    t: Threads<F::Backend>,
    o: ThreadOptions,
) -> Result<Threads<F::Backend>, String> {
    Threads::open(f.reopen(t.into_backend()).map_err(e)?, o).map_err(e)
}

/// Writes `n` steps: channel `c{i % 5}` set to `i`, channel `c3` deleted every 7th step.
/// Returns the expected state after each step.
fn steps<B: Backend>(t: &Threads<B>, thread: &str, n: u64) -> Result<Vec<(u64, State)>, String> {
    let mut state = State::new();
    let mut out = Vec::new();
    for i in 0..n {
        let mut input = StepInput::new(if i == 0 { Source::Input } else { Source::Loop }, i as i64)
            .set(format!("c{}", i % 5), i.to_le_bytes().to_vec())
            .meta("parity", if i % 2 == 0 { "even" } else { "odd" });
        state.insert(format!("c{}", i % 5), i.to_le_bytes().to_vec());
        if i % 7 == 6 {
            input = input.unset("c3");
            state.remove("c3");
        }
        let id = t.put(thread, input).map_err(e)?.id;
        out.push((id, state.clone()));
    }
    Ok(out)
}

fn put_get<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let t = open(f, opts(4))?;
    let expected = steps(&t, "a", 30)?;
    for (id, state) in &expected {
        let cp = t
            .get("a", *id)
            .map_err(e)?
            .ok_or(format!("checkpoint {id} missing"))?;
        ensure!(
            &cp.state == state,
            "state of {id}: {:?} != {:?}",
            cp.state,
            state
        );
        ensure!(
            cp.replay_depth() < 4,
            "replay depth {} at {id}",
            cp.replay_depth()
        );
        ensure!(
            cp.meta.parent == id.checked_sub(1).filter(|p| *p > 0),
            "parent of {id}"
        );
    }
    let latest = t.latest("a").map_err(e)?.ok_or("no latest")?;
    ensure!(
        latest.meta.id == expected[29].0,
        "latest is {}",
        latest.meta.id
    );
    ensure!(
        t.get("nope", 1).map_err(e)?.is_none(),
        "unknown thread has a checkpoint"
    );
    Ok(())
}

fn list<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let t = open(f, opts(3))?;
    steps(&t, "a", 10)?;
    steps(&t, "b", 2)?;
    let all = t.list("a", &ListFilter::default()).map_err(e)?;
    let ids: Vec<u64> = all.iter().map(|m| m.id).collect();
    ensure!(
        ids == (1..=10).rev().collect::<Vec<_>>(),
        "list order {ids:?}"
    );
    let odd = t
        .list(
            "a",
            &ListFilter {
                metadata: [("parity".to_owned(), "odd".to_owned())].into(),
                limit: Some(2),
                ..ListFilter::default()
            },
        )
        .map_err(e)?;
    ensure!(
        odd.iter().map(|m| m.step).collect::<Vec<_>>() == [9, 7],
        "metadata filter {odd:?}"
    );
    let inputs = t
        .list(
            "a",
            &ListFilter {
                source: Some(Source::Input),
                ..ListFilter::default()
            },
        )
        .map_err(e)?;
    ensure!(
        inputs.len() == 1 && inputs[0].id == 1,
        "source filter {inputs:?}"
    );
    let before = t
        .list(
            "a",
            &ListFilter {
                before: Some(3),
                ..ListFilter::default()
            },
        )
        .map_err(e)?;
    ensure!(before.len() == 2, "before filter {before:?}");
    ensure!(
        t.threads().map_err(e)? == ["a", "b"],
        "threads {:?}",
        t.threads()
    );
    Ok(())
}

fn fork<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let t = open(f, opts(3))?;
    let expected = steps(&t, "a", 8)?;
    let (at, state_at) = expected[4].clone();
    let branch = t.fork("a", at, "a").map_err(e)?;
    let cp = t.get("a", branch).map_err(e)?.ok_or("branch missing")?;
    ensure!(
        cp.meta.parent == Some(at) && cp.meta.source == Source::Fork,
        "branch header {:?}",
        cp.meta
    );
    ensure!(cp.state == state_at, "branch state differs");
    let next = t
        .put(
            "a",
            StepInput::after(branch, Source::Loop, 5).set("x", b"branch".to_vec()),
        )
        .map_err(e)?
        .id;
    let mut s = state_at.clone();
    s.insert("x".into(), b"branch".to_vec());
    ensure!(
        t.get("a", next).map_err(e)?.map(|c| c.state) == Some(s),
        "step on branch"
    );
    let copy = t.fork("a", at, "b").map_err(e)?;
    ensure!(
        matches!(t.fork("a", at, "b"), Err(ThreadError::Exists { .. })),
        "copy over an existing thread accepted"
    );
    t.delete("a").map_err(e)?;
    let cp = t
        .get("b", copy)
        .map_err(e)?
        .ok_or("copy missing after source delete")?;
    ensure!(cp.state == state_at, "copy state differs");
    ensure!(
        cp.meta.metadata.get("forked_from").map(String::as_str) == Some(&*format!("a/{at}")),
        "fork metadata"
    );
    Ok(())
}

fn prune<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let t = open(f, opts(4))?;
    let expected = steps(&t, "a", 23)?;
    t.put_writes("a", 2, "task", vec![("c".into(), vec![1])])
        .map_err(e)?;
    let before = t.thread_bytes("a").map_err(e)?;
    let report = t.prune("a", 5).map_err(e)?;
    ensure!(report.removed == 18, "removed {}", report.removed);
    for (id, state) in &expected {
        let got = t.get("a", *id).map_err(e)?;
        if *id <= 18 {
            ensure!(got.is_none(), "pruned checkpoint {id} still readable");
        } else {
            ensure!(
                got.map(|c| c.state).as_ref() == Some(state),
                "kept checkpoint {id} changed"
            );
        }
    }
    ensure!(
        t.pending_writes("a", 2).map_err(e)?.is_empty(),
        "pending writes of a pruned checkpoint kept"
    );
    ensure!(
        t.thread_bytes("a").map_err(e)? < before,
        "prune freed nothing"
    );
    let t = reopen(f, t, opts(4))?;
    ensure!(
        t.list("a", &ListFilter::default()).map_err(e)?.len() == 5,
        "prune not durable"
    );
    ensure!(
        t.get("a", 19).map_err(e)?.map(|c| c.state).as_ref() == Some(&expected[18].1),
        "rebased state after reopen"
    );
    Ok(())
}

fn ttl<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let now = Arc::new(AtomicU64::new(5_000_000));
    let clock_now = now.clone();
    let o = ThreadOptions {
        clock: Arc::new(move || clock_now.load(Ordering::SeqCst)),
        ..opts(3)
    };
    let t = open(f, o.clone())?;
    steps(&t, "short", 5)?;
    steps(&t, "long", 5)?;
    t.set_ttl("short", Some(Duration::from_secs(60)))
        .map_err(e)?;
    now.fetch_add(59_000, Ordering::SeqCst);
    ensure!(
        t.latest("short").map_err(e)?.is_some(),
        "expired before the deadline"
    );
    let t = reopen(f, t, o.clone())?;
    now.fetch_add(1_000, Ordering::SeqCst);
    ensure!(
        t.latest("short").map_err(e)?.is_none(),
        "visible at the deadline after reopen"
    );
    ensure!(
        t.threads().map_err(e)? == ["long"],
        "threads {:?}",
        t.threads()
    );
    ensure!(t.sweep_expired().map_err(e)? == ["short"], "sweep");
    ensure!(
        t.thread_bytes("short").map_err(e)? == 0,
        "records of an expired thread left"
    );
    let id = t
        .put("short", StepInput::new(Source::Input, 0).set("k", vec![1]))
        .map_err(e)?
        .id;
    ensure!(id == 1, "a reused thread name continues old ids");
    ensure!(
        t.latest("long").map_err(e)?.is_some(),
        "sweep removed a live thread"
    );
    Ok(())
}

fn crash<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let t = open(f, opts(3))?;
    let expected = steps(&t, "a", 7)?;
    let last = expected[6].0;
    t.put_writes("a", last, "search", vec![("results".into(), b"r".to_vec())])
        .map_err(e)?;
    let first = t
        .put(
            "a",
            StepInput::new(Source::Update, 7)
                .set("u", vec![7])
                .idempotent("req-1"),
        )
        .map_err(e)?;
    let t = reopen(f, t, opts(3))?;
    for (id, state) in &expected {
        ensure!(
            t.get("a", *id).map_err(e)?.map(|c| c.state).as_ref() == Some(state),
            "step {id} lost"
        );
    }
    ensure!(
        t.completed_tasks("a", last).map_err(e)?.contains("search"),
        "finished sub-task forgotten: it would run again"
    );
    let again = t
        .put(
            "a",
            StepInput::new(Source::Update, 7)
                .set("u", vec![7])
                .idempotent("req-1"),
        )
        .map_err(e)?;
    ensure!(
        again.deduplicated && again.id == first.id,
        "retry wrote a second checkpoint: {again:?}"
    );
    ensure!(
        t.list("a", &ListFilter::default()).map_err(e)?.len() == 8,
        "checkpoint count"
    );
    Ok(())
}

fn sizes<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let o = ThreadOptions {
        record_warn_bytes: 1_000,
        record_limit_bytes: 4_000,
        thread_warn_bytes: 6_000,
        thread_limit_bytes: 10_000,
        ..opts(3)
    };
    let t = open(f, o)?;
    let small = t
        .put("a", StepInput::new(Source::Input, 0).set("v", vec![0; 100]))
        .map_err(e)?;
    ensure!(small.warnings.is_empty(), "warnings on a small record");
    let warn = t
        .put(
            "a",
            StepInput::new(Source::Loop, 1).set("v", vec![0; 2_000]),
        )
        .map_err(e)?;
    ensure!(
        warn.warnings.iter().any(|w| w.what == "record"),
        "no record warning"
    );
    ensure!(
        matches!(
            t.put(
                "a",
                StepInput::new(Source::Loop, 2).set("v", vec![0; 5_000])
            ),
            Err(ThreadError::TooLarge { what: "record", .. })
        ),
        "oversized record accepted"
    );
    t.put(
        "a",
        StepInput::new(Source::Loop, 2).set("w", vec![0; 3_500]),
    )
    .map_err(e)?;
    let w = t
        .put("a", StepInput::new(Source::Loop, 3).set("y", vec![0; 500]))
        .map_err(e)?;
    ensure!(
        w.warnings.iter().any(|w| w.what == "thread"),
        "no thread warning: {w:?}"
    );
    ensure!(
        matches!(
            t.put(
                "a",
                StepInput::new(Source::Loop, 4).set("z", vec![0; 3_900])
            ),
            Err(ThreadError::TooLarge { what: "thread", .. })
        ),
        "thread above its limit accepted"
    );
    ensure!(
        t.list("a", &ListFilter::default()).map_err(e)?.len() == 4,
        "refused write left a record"
    );
    Ok(())
}

fn delete<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let t = open(f, opts(3))?;
    steps(&t, "a", 9)?;
    steps(&t, "ab", 2)?;
    t.put_writes("a", 3, "t", vec![]).map_err(e)?;
    ensure!(t.delete("a").map_err(e)?, "delete reported nothing");
    ensure!(
        t.backend().scan_prefix("a/").map_err(e)?.is_empty(),
        "records left"
    );
    let t = reopen(f, t, opts(3))?;
    ensure!(
        t.backend().scan_prefix("a/").map_err(e)?.is_empty(),
        "records back after reopen"
    );
    ensure!(
        t.latest("ab").map_err(e)?.is_some(),
        "delete hit a thread sharing the prefix"
    );
    Ok(())
}

fn blobs<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    use super::blobs::{BlobId, MemoryBlobs};
    let o = ThreadOptions {
        blob_threshold_bytes: 1_000,
        ..opts(3)
    };
    let sink = MemoryBlobs::new();
    let t = open(f, o.clone())?.with_blobs(Arc::new(sink.clone()));
    let big = vec![9u8; 50_000];
    let id = t
        .put(
            "a",
            StepInput::new(Source::Input, 0)
                .set("big", big.clone())
                .set("small", vec![1; 10]),
        )
        .map_err(e)?
        .id;
    ensure!(
        sink.ids() == vec![BlobId::of(&big)],
        "sink holds {:?}",
        sink.ids()
    );
    let stored = t.thread_bytes("a").map_err(e)?;
    ensure!(
        stored < 1_000,
        "{stored} bytes stored for a referenced value"
    );
    let t = reopen(f, t, o)?.with_blobs(Arc::new(sink.clone()));
    let cp = t.get("a", id).map_err(e)?.ok_or("checkpoint lost")?;
    ensure!(cp.state["big"] == big, "blob value differs after reopen");
    ensure!(cp.state["small"] == vec![1; 10], "inline value differs");
    sink.overwrite(BlobId::of(&big), vec![0; 50_000]);
    ensure!(
        matches!(t.get("a", id), Err(ThreadError::BlobCorrupt { .. })),
        "a damaged blob was returned as state"
    );
    Ok(())
}
