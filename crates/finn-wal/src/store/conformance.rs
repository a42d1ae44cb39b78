//! The [`Backend`] contract as a reusable suite: write it once, run it against every backend.
//!
//! ```
//! use finn_wal::store::{MemoryBackend, StoreError, conformance::{self, BackendFactory}};
//! struct Memory;
//! impl BackendFactory for Memory {
//!     type Backend = MemoryBackend;
//!     fn create(&mut self) -> Result<MemoryBackend, StoreError> { Ok(MemoryBackend::new()) }
//!     fn reopen(&mut self, b: MemoryBackend) -> Result<MemoryBackend, StoreError> { Ok(b) }
//! }
//! let passed = conformance::run(&mut Memory).map_err(|f| f.to_string())?;
//! assert!(passed.contains(&"reopen keeps acknowledged batches"));
//! # Ok::<(), String>(())
//! ```

use std::time::Duration;

use super::journal::{JournalOptions, Journals};
use super::kv::{Kv, KvOptions};
use super::{Backend, Mutation, StoreError};

/// Creates backends for the suite.
pub trait BackendFactory {
    /// The backend under test.
    type Backend: Backend;
    /// A new, empty backend.
    fn create(&mut self) -> Result<Self::Backend, StoreError>;
    /// A restart: drop `backend` (without any shutdown call) and open the same storage again.
    fn reopen(&mut self, backend: Self::Backend) -> Result<Self::Backend, StoreError>;
}

/// A check of the suite that did not hold.
#[derive(Debug, thiserror::Error)]
#[error("conformance check {check:?} failed: {detail}")]
pub struct Failure {
    /// The check's name.
    pub check: &'static str,
    /// What was observed.
    pub detail: String,
}

type Check<F> = fn(&mut F) -> Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn s(e: StoreError) -> String {
    format!("{e}: {e:?}")
}

/// Runs every check; returns the names of the checks (all passed) or the first failure.
pub fn run<F: BackendFactory>(factory: &mut F) -> Result<Vec<&'static str>, Failure> {
    let checks: Vec<(&'static str, Check<F>)> = vec![
        ("put get delete", put_get_delete::<F>),
        ("range and prefix scans are ordered and bounded", scans::<F>),
        ("later writes in a batch win", batch_order::<F>),
        ("reopen keeps acknowledged batches", reopen_keeps::<F>),
        (
            "kv versions never repeat across delete and reopen",
            kv_versions::<F>,
        ),
        ("kv ttl deadline survives reopen", kv_ttl::<F>),
        (
            "journal restore is snapshot plus later entries",
            journal_restore::<F>,
        ),
    ];
    let mut passed = Vec::with_capacity(checks.len());
    for (name, check) in checks {
        check(factory).map_err(|detail| Failure {
            check: name,
            detail,
        })?;
        passed.push(name);
    }
    Ok(passed)
}

fn put_get_delete<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let b = f.create().map_err(s)?;
    ensure!(b.get("a").map_err(s)?.is_none(), "fresh backend has key a");
    b.commit(vec![Mutation::Put("a".into(), b"1".to_vec())])
        .map_err(s)?;
    ensure!(
        b.get("a").map_err(s)? == Some(b"1".to_vec()),
        "put not visible"
    );
    b.commit(vec![
        Mutation::Delete("a".into()),
        Mutation::Delete("nope".into()),
    ])
    .map_err(s)?;
    ensure!(b.get("a").map_err(s)?.is_none(), "delete not visible");
    Ok(())
}

fn scans<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let b = f.create().map_err(s)?;
    let keys = ["p/b", "p/a", "p0", "p", "q/a", "p/a/x"];
    b.commit(
        keys.iter()
            .map(|k| Mutation::Put((*k).into(), k.as_bytes().to_vec()))
            .collect(),
    )
    .map_err(s)?;
    let got: Vec<String> = b
        .scan_prefix("p/")
        .map_err(s)?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    ensure!(got == ["p/a", "p/a/x", "p/b"], "prefix scan gave {got:?}");
    let got: Vec<String> = b
        .range("p/a/x", Some("q"))
        .map_err(s)?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    ensure!(got == ["p/a/x", "p/b", "p0"], "range gave {got:?}");
    ensure!(
        b.range("q", Some("p")).map_err(s)?.is_empty(),
        "inverted range not empty"
    );
    let got = b.keys("p/a/x", Some("q")).map_err(s)?;
    ensure!(got == ["p/a/x", "p/b", "p0"], "keys gave {got:?}");
    let got = b.keys("p/", None).map_err(s)?;
    ensure!(
        got == ["p/a", "p/a/x", "p/b", "p0", "q/a"],
        "keys gave {got:?}"
    );
    ensure!(
        b.keys("q", Some("p")).map_err(s)?.is_empty(),
        "inverted key range not empty"
    );
    Ok(())
}

fn batch_order<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let b = f.create().map_err(s)?;
    b.commit(vec![
        Mutation::Put("k".into(), b"1".to_vec()),
        Mutation::Delete("k".into()),
        Mutation::Put("k".into(), b"3".to_vec()),
        Mutation::Put("j".into(), b"x".to_vec()),
        Mutation::Delete("j".into()),
    ])
    .map_err(s)?;
    ensure!(
        b.get("k").map_err(s)? == Some(b"3".to_vec()),
        "last put in batch lost"
    );
    ensure!(
        b.get("j").map_err(s)?.is_none(),
        "last delete in batch lost"
    );
    let b = f.reopen(b).map_err(s)?;
    ensure!(
        b.get("k").map_err(s)? == Some(b"3".to_vec()),
        "batch order differs after reopen"
    );
    ensure!(
        b.get("j").map_err(s)?.is_none(),
        "batch delete lost after reopen"
    );
    Ok(())
}

fn reopen_keeps<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let b = f.create().map_err(s)?;
    for i in 0..50u32 {
        b.commit(vec![Mutation::Put(
            format!("k{i:03}"),
            i.to_le_bytes().to_vec(),
        )])
        .map_err(s)?;
    }
    b.commit_relaxed(vec![Mutation::Put("relaxed".into(), b"r".to_vec())])
        .map_err(s)?;
    b.commit(vec![Mutation::Delete("k007".into())]).map_err(s)?;
    let b = f.reopen(b).map_err(s)?;
    let all = b.scan_prefix("k").map_err(s)?;
    ensure!(all.len() == 49, "{} keys after reopen, want 49", all.len());
    ensure!(b.get("k007").map_err(s)?.is_none(), "deleted key is back");
    ensure!(
        b.get("relaxed").map_err(s)? == Some(b"r".to_vec()),
        "relaxed commit followed by a durable one was lost"
    );
    Ok(())
}

fn kv_versions<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let kv = Kv::open(f.create().map_err(s)?, KvOptions::default()).map_err(s)?;
    let v1 = kv.put("n", "a", b"1".to_vec(), None).map_err(s)?;
    let v2 = kv.put("n", "b", b"1".to_vec(), None).map_err(s)?;
    ensure!(v2 > v1, "versions did not increase: {v1} then {v2}");
    ensure!(
        kv.delete("n", "b").map_err(s)?,
        "delete of a live key returned false"
    );
    let b = f.reopen(kv.into_backend()).map_err(s)?;
    let kv = Kv::open(b, KvOptions::default()).map_err(s)?;
    let v3 = kv.put("n", "b", b"2".to_vec(), None).map_err(s)?;
    ensure!(
        v3 > v2,
        "version {v3} reused after delete and reopen (had {v2})"
    );
    ensure!(
        matches!(
            kv.put_if("n", "b", Some(v2), vec![], None),
            Err(StoreError::VersionConflict { .. })
        ),
        "compare-and-set with a stale version succeeded"
    );
    ensure!(
        matches!(
            kv.put_if("n", "a", None, vec![], None),
            Err(StoreError::VersionConflict { .. })
        ),
        "create-if-absent over a live key succeeded"
    );
    kv.put_if("n", "a", Some(v1), b"ok".to_vec(), None)
        .map_err(s)?;
    Ok(())
}

fn kv_ttl<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let now = Arc::new(AtomicU64::new(1_000_000));
    let clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let b = f.create().map_err(s)?;
    let kv = Kv::open(
        b,
        KvOptions {
            clock: clock.clone(),
        },
    )
    .map_err(s)?;
    let v = kv
        .put("n", "t", b"x".to_vec(), Some(Duration::from_secs(10)))
        .map_err(s)?;
    kv.put("n", "forever", b"y".to_vec(), None).map_err(s)?;
    ensure!(kv.delete("n", "forever").map_err(s)?, "delete failed");
    let top = kv.revision();
    let b = f.reopen(kv.into_backend()).map_err(s)?;
    let kv = Kv::open(
        b,
        KvOptions {
            clock: clock.clone(),
        },
    )
    .map_err(s)?;
    ensure!(
        kv.revision() >= top,
        "revision went back from {top} to {}",
        kv.revision()
    );
    ensure!(
        kv.get("n", "t").map_err(s)?.map(|e| e.version) == Some(v),
        "value with ttl lost before its deadline"
    );
    now.store(1_000_000 + 10_000, Ordering::SeqCst);
    ensure!(
        kv.get("n", "t").map_err(s)?.is_none(),
        "value visible at its deadline"
    );
    let b = f.reopen(kv.into_backend()).map_err(s)?;
    let kv = Kv::open(b, KvOptions { clock }).map_err(s)?;
    ensure!(
        kv.get("n", "t").map_err(s)?.is_none(),
        "expired value back after reopen"
    );
    ensure!(
        kv.purge_expired().map_err(s)? == 1,
        "purge did not remove the expired value"
    );
    let next = kv.put("n", "t", vec![], None).map_err(s)?;
    ensure!(next > top, "version {next} reused (revision was {top})");
    Ok(())
}

fn journal_restore<F: BackendFactory>(f: &mut F) -> Result<(), String> {
    let sum = |state: &mut Vec<u8>, e: &[u8]| {
        let n = u64::from_le_bytes(state.as_slice().try_into().unwrap_or([0; 8]));
        *state = (n + u64::from(e.first().copied().unwrap_or(0)))
            .to_le_bytes()
            .to_vec();
    };
    let b = f.create().map_err(s)?;
    let j = Journals::open(
        b,
        JournalOptions {
            snapshot_every: Some(10),
        },
    )
    .map_err(s)?
    .with_reducer(sum);
    for i in 1..=25u8 {
        j.append("a", vec![i]).map_err(s)?;
        j.append("b", vec![1]).map_err(s)?;
    }
    let snap = j.latest_snapshot("a").map_err(s)?.map(|x| x.cursor);
    ensure!(snap == Some(20), "snapshot cursor {snap:?}, want 20");
    ensure!(
        j.read("a", ..).map_err(s)?.len() == 5,
        "entries not trimmed"
    );
    ensure!(
        matches!(j.trim("a", 21), Err(StoreError::TrimBeyondSnapshot { .. })),
        "trim beyond the snapshot accepted"
    );
    j.delete("b").map_err(s)?;
    let b = f.reopen(j.into_backend()).map_err(s)?;
    let j = Journals::open(b, JournalOptions::default())
        .map_err(s)?
        .with_reducer(sum);
    let (state, cursor) = j.restore_state("a").map_err(s)?;
    ensure!(cursor == 25, "cursor {cursor} after reopen");
    ensure!(
        state == 325u64.to_le_bytes(),
        "state {state:?} after reopen"
    );
    ensure!(
        j.streams() == ["a"],
        "streams after reopen: {:?}",
        j.streams()
    );
    ensure!(
        j.append("a", vec![0]).map_err(s)? == 26,
        "sequence restarted after reopen"
    );
    Ok(())
}
