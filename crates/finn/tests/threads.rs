//! Threads: the conformance suite on both backends, the O(N) storage bound and the replay
//! depth bound.
#![cfg(feature = "wal")]

use std::path::PathBuf;
use std::sync::Arc;

use finn::threads::conformance::{self, BackendFactory};
use finn::threads::{
    Backend, ListFilter, MemoryBackend, Source, StepInput, StoreError, ThreadOptions, Threads,
    WalBackend,
};
use finn::wal::{Options, Wal};

struct Memory;

impl BackendFactory for Memory {
    type Backend = MemoryBackend;
    fn create(&mut self) -> Result<MemoryBackend, StoreError> {
        Ok(MemoryBackend::new())
    }
    fn reopen(&mut self, b: MemoryBackend) -> Result<MemoryBackend, StoreError> {
        Ok(b)
    }
}

struct OnWal {
    root: tempfile::TempDir,
    n: usize,
}

fn wal_options() -> Options {
    Options {
        segment_size: 4 << 20,
        ..Options::default()
    }
}

fn open_wal(dir: PathBuf) -> Result<WalBackend, StoreError> {
    let (wal, _) = Wal::open(dir, wal_options())?;
    WalBackend::open(Arc::new(wal), "threads")
}

impl BackendFactory for OnWal {
    type Backend = WalBackend;
    fn create(&mut self) -> Result<WalBackend, StoreError> {
        self.n += 1;
        open_wal(self.root.path().join(format!("wal-{}", self.n)))
    }
    fn reopen(&mut self, b: WalBackend) -> Result<WalBackend, StoreError> {
        let dir = b.wal().dir().to_path_buf();
        drop(b);
        open_wal(dir)
    }
}

#[test]
fn conformance_in_memory() {
    let passed = conformance::run(&mut Memory).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(passed.len(), 9);
}

#[test]
fn conformance_on_the_wal() {
    let mut f = OnWal {
        root: tempfile::tempdir().unwrap(),
        n: 0,
    };
    let passed = conformance::run(&mut f).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(passed.len(), 9);
}

const VALUE: usize = 512;
const EVERY: u32 = 10;

/// Each step adds one new 512-byte channel, so the state after step i holds i channels.
fn grow<B: Backend>(t: &Threads<B>, thread: &str, steps: usize) {
    for i in 0..steps {
        let out = t
            .put(
                thread,
                StepInput::new(Source::Loop, i as i64)
                    .set(format!("ch{i:05}"), vec![i as u8; VALUE]),
            )
            .unwrap();
        assert!(out.warnings.is_empty());
    }
}

#[test]
fn growing_state_stores_linear_bytes_and_replay_depth_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open_wal(dir.path().join("wal")).unwrap();
    let wal = backend.wal().clone();
    let t = Threads::open(
        backend,
        ThreadOptions {
            snapshot_every: EVERY,
            ..ThreadOptions::default()
        },
    )
    .unwrap();
    let written_before = wal.status().bytes_written;
    grow(&t, "n200", 200);
    let wal_bytes_200 = wal.status().bytes_written - written_before;
    grow(&t, "n100", 100);

    let payload_200 = (200 * VALUE) as u64;
    let full_copies_200: u64 = (1..=200u64).map(|i| i * VALUE as u64).sum();
    let b200 = t.thread_bytes("n200").unwrap();
    let b100 = t.thread_bytes("n100").unwrap();
    println!(
        "stored: 100 steps {b100} B, 200 steps {b200} B (payload {payload_200} B, \
         full copies would be {full_copies_200} B); WAL appended {wal_bytes_200} B"
    );
    // O(N): within 1.5x of the values themselves, doubling the steps about doubles the bytes
    // (full copies would quadruple them), and far below copying the state at every step.
    assert!(
        b200 <= payload_200 * 3 / 2,
        "{b200} B for {payload_200} B of values"
    );
    assert!(
        b200 * 10 <= b100 * 23,
        "200 steps {b200} B vs 100 steps {b100} B: not linear"
    );
    assert!(b200 * 50 <= full_copies_200);
    // The log itself: every record once, plus framing.
    assert!(
        wal_bytes_200 <= payload_200 * 2,
        "WAL grew {wal_bytes_200} B"
    );

    // Every checkpoint rebuilds from a snapshot plus fewer than EVERY deltas, and correctly.
    for m in t.list("n200", &ListFilter::default()).unwrap() {
        assert!(
            m.replay_depth < EVERY,
            "checkpoint {} replays {}",
            m.id,
            m.replay_depth
        );
        let cp = t.get("n200", m.id).unwrap().unwrap();
        assert_eq!(cp.state.len() as u64, m.id);
        assert_eq!(cp.replay_depth(), m.replay_depth);
    }
    let depths: std::collections::BTreeSet<u32> = t
        .list("n200", &ListFilter::default())
        .unwrap()
        .iter()
        .map(|m| m.replay_depth)
        .collect();
    assert_eq!(
        depths,
        (0..EVERY).collect(),
        "deltas are used between snapshots"
    );

    // Reopened from the WAL, the same states come back.
    let dir_path = wal.dir().to_path_buf();
    drop(wal);
    let backend = t.into_backend();
    drop(backend);
    let t = Threads::open(open_wal(dir_path).unwrap(), ThreadOptions::default()).unwrap();
    let cp = t.latest("n200").unwrap().unwrap();
    assert_eq!(cp.state.len(), 200);
    assert_eq!(cp.state["ch00123"], vec![123u8; VALUE]);
}
