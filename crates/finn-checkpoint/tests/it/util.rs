//! Shared test helpers: backends, remotes, keys, file trees.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use finn_breaker::Breaker;
use finn_checkpoint::{Remote, RemoteOptions, SigningKey, StoreOptions, open_store};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

/// One backend under test.
pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn ObjectStore>,
    pub prefix: String,
    _dir: Option<tempfile::TempDir>,
}

pub fn unique(name: &str) -> String {
    format!("{name}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

pub fn memory() -> Backend {
    Backend {
        name: "memory",
        store: Arc::new(InMemory::new()),
        prefix: unique("mem"),
        _dir: None,
    }
}

pub fn local() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    Backend {
        name: "local",
        store,
        prefix: unique("local"),
        _dir: Some(dir),
    }
}

/// The moto S3 server, when `FINN_TEST_S3_ENDPOINT` is set. Without it the test is skipped
/// with a printed reason, except under `cargo xtask test` (`FINN_XTASK=1`), where it fails.
pub fn s3() -> Option<Backend> {
    let Ok(endpoint) = std::env::var("FINN_TEST_S3_ENDPOINT") else {
        if std::env::var("FINN_XTASK").is_ok_and(|v| v == "1") {
            panic!("FINN_TEST_S3_ENDPOINT is not set under cargo xtask test");
        }
        eprintln!("skipping the S3 backend: FINN_TEST_S3_ENDPOINT is not set");
        return None;
    };
    let bucket = std::env::var("FINN_TEST_S3_BUCKET").unwrap_or_else(|_| "finn-test".to_owned());
    let prefix = unique("s3");
    let options = StoreOptions::default()
        .endpoint(endpoint)
        .region("us-east-1")
        .allow_http(true)
        .credentials("finn-test", "finn-test");
    let (store, _) = open_store(&format!("s3://{bucket}/{prefix}"), &options).unwrap();
    Some(Backend {
        name: "s3",
        store,
        prefix,
        _dir: None,
    })
}

/// A remote whose breaker never opens (fault tests inject many failures on purpose).
pub fn remote(store: Arc<dyn ObjectStore>, prefix: &str) -> Remote {
    let breaker =
        Breaker::new(finn_breaker::Options::default().consecutive_failures(Some(1_000_000)))
            .unwrap();
    Remote::new(
        store,
        prefix,
        RemoteOptions::default()
            .breaker(Arc::new(breaker))
            .timeout(Duration::from_secs(10)),
    )
}

pub fn key() -> SigningKey {
    SigningKey::generate()
}

/// Reads every file under `dir` into a map keyed by `/`-separated relative path.
pub fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Deterministic pseudo-random bytes (incompressible).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Default writer options with `f` applied.
pub fn opts(
    f: impl FnOnce(&mut finn_checkpoint::CheckpointerOptions),
) -> finn_checkpoint::CheckpointerOptions {
    let mut o = finn_checkpoint::CheckpointerOptions::default();
    f(&mut o);
    o
}
