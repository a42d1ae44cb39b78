//! Shared helpers.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use finn_beads::{Options, Store, Timestamp};

/// The real beads file, or `None` (with a printed reason) when it is missing outside the xtask.
pub fn fixture() -> Option<PathBuf> {
    let shared = match std::env::var_os("FINN_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    let path = shared.join("fixtures/beads/loa-finn-issues.jsonl");
    if path.exists() {
        return Some(path);
    }
    if std::env::var("FINN_XTASK").as_deref() == Ok("1") {
        panic!("fixture {} is missing (FINN_XTASK=1)", path.display());
    }
    eprintln!(
        "skipping: fixture {} not found; set FINN_SHARED_DIR",
        path.display()
    );
    None
}

/// A clock tests move by hand.
#[derive(Clone)]
pub struct TestClock(Arc<AtomicU64>);

impl TestClock {
    /// Starts at 2026-03-01T00:00:00Z.
    pub fn new() -> Self {
        TestClock(Arc::new(AtomicU64::new(1_772_323_200_000)))
    }
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
    pub fn now(&self) -> Timestamp {
        Timestamp::from_system_time(self.system_time())
    }
    fn system_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
    pub fn options(&self) -> Options {
        let c = self.clone();
        Options {
            clock: Arc::new(move || c.system_time()),
            ..Options::default()
        }
    }
}

pub fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, Options::default()).unwrap()
}

pub fn open_with(dir: &std::path::Path, clock: &TestClock) -> Store {
    Store::open(dir, clock.options()).unwrap()
}

/// Parses JSONL text into values, sorted by their text so two exports compare as sets.
pub fn json_set(text: &str) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    v.sort_by_key(canonical);
    v
}

/// JSON text with object keys sorted, so equal values give equal strings whatever the key order.
pub fn canonical(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

pub fn export_string(store: &Store) -> String {
    let mut out = Vec::new();
    store.export_to(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}
