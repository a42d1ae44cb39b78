//! The backend conformance suite, run against both shipped backends.

use std::path::PathBuf;
use std::sync::Arc;

use finn_wal::store::conformance::{self, BackendFactory};
use finn_wal::store::{MemoryBackend, StoreError, WalBackend};
use finn_wal::{Options, Wal};

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

impl OnWal {
    fn open(dir: PathBuf) -> Result<WalBackend, StoreError> {
        let options = Options {
            segment_size: 4 << 20,
            ..Options::default()
        };
        let (wal, _) = Wal::open(dir, options)?;
        WalBackend::open(Arc::new(wal), "conformance")
    }
}

impl BackendFactory for OnWal {
    type Backend = WalBackend;
    fn create(&mut self) -> Result<WalBackend, StoreError> {
        self.n += 1;
        Self::open(self.root.path().join(format!("wal-{}", self.n)))
    }
    fn reopen(&mut self, b: WalBackend) -> Result<WalBackend, StoreError> {
        let dir = b.wal().dir().to_path_buf();
        drop(b);
        Self::open(dir)
    }
}

#[test]
fn memory_backend_conforms() {
    let passed = conformance::run(&mut Memory).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(passed.len(), 7);
}

#[test]
fn wal_backend_conforms() {
    let mut f = OnWal {
        root: tempfile::tempdir().unwrap(),
        n: 0,
    };
    let passed = conformance::run(&mut f).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(passed.len(), 7);
}

/// A backend that loses relaxed commits must fail the suite: the suite can fail.
#[test]
fn a_backend_that_drops_relaxed_commits_fails() {
    #[derive(Clone, Default)]
    struct Lossy(MemoryBackend);
    impl finn_wal::store::Backend for Lossy {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.get(key)
        }
        fn range(
            &self,
            start: &str,
            end: Option<&str>,
        ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            self.0.range(start, end)
        }
        fn commit(&self, batch: Vec<finn_wal::store::Mutation>) -> Result<(), StoreError> {
            self.0.commit(batch)
        }
        fn commit_relaxed(&self, _: Vec<finn_wal::store::Mutation>) -> Result<(), StoreError> {
            Ok(())
        }
    }
    struct F;
    impl BackendFactory for F {
        type Backend = Lossy;
        fn create(&mut self) -> Result<Lossy, StoreError> {
            Ok(Lossy::default())
        }
        fn reopen(&mut self, b: Lossy) -> Result<Lossy, StoreError> {
            Ok(b)
        }
    }
    let failure = conformance::run(&mut F).unwrap_err();
    assert_eq!(failure.check, "reopen keeps acknowledged batches");
}
