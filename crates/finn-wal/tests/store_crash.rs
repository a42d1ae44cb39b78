//! SIGKILL crash tests of the agent-state stores.
//!
//! The child is this test binary re-executed with `FINN_STORE_CRASH_CHILD` set, running the
//! `child` test: it writes through a store and prints `ACK <n>` on stdout after each
//! acknowledged operation. The parent kills it (SIGKILL) at a random moment, reopens the store
//! and checks what was acknowledged. Rounds continue on the same directory, so recovery of one
//! crash is followed by more crashes.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use finn_wal::store::WalBackend;
use finn_wal::store::journal::{JournalOptions, Journals};
use finn_wal::store::kv::{Kv, KvOptions};
use finn_wal::store::txn::{StateDir, TEMP_PREFIX};
use finn_wal::{Options, Wal};

const CHILD_ENV: &str = "FINN_STORE_CRASH_CHILD";
const DIR_ENV: &str = "FINN_STORE_CRASH_DIR";
const ROUNDS: usize = 6;
/// Transactions get more kills: the window between the intent and the files is short.
const TXN_ROUNDS: usize = 16;
const FILES: usize = 10;

fn options() -> Options {
    Options {
        segment_size: 4 << 20,
        ..Options::default()
    }
}

fn backend(dir: &Path, ns: &str) -> WalBackend {
    let (wal, _) = Wal::open(dir.join("wal"), options()).unwrap();
    WalBackend::open(Arc::new(wal), ns).unwrap()
}

fn ack(n: u64) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACK {n}").unwrap();
    out.flush().unwrap();
}

/// List of u64s, little-endian: the journal state records every entry it folded.
fn collect(state: &mut Vec<u8>, entry: &[u8]) {
    state.extend_from_slice(entry);
}

fn file_body(generation: u64, i: usize) -> Vec<u8> {
    // 16 KiB per file so a kill often lands while files are being applied.
    let mut body = format!("{generation}\n").into_bytes();
    body.resize(16 * 1024, b'a' + (i as u8));
    body
}

fn generation_of(bytes: &[u8]) -> u64 {
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    std::str::from_utf8(line).unwrap().parse().unwrap()
}

#[test]
fn child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return; // only meaningful when re-executed by a crash test
    };
    let dir = PathBuf::from(std::env::var(DIR_ENV).unwrap());
    match mode.as_str() {
        "txn" => {
            let (state, _) = StateDir::open(dir.join("files"), backend(&dir, "txn"), "t").unwrap();
            let mut g = state.read("f0").unwrap().map_or(0, |b| generation_of(&b));
            loop {
                g += 1;
                let mut t = state.begin();
                for i in 0..FILES {
                    t.write(
                        &format!("d{}/f{i}", i % 3).replace("d0/", ""),
                        file_body(g, i),
                    )
                    .unwrap();
                }
                if g % 2 == 1 {
                    t.mkdir("odd").unwrap();
                } else {
                    t.delete("odd").unwrap();
                }
                t.commit().unwrap();
                ack(g);
            }
        }
        "journal" => {
            let j = Journals::open(
                backend(&dir, "journal"),
                JournalOptions {
                    snapshot_every: Some(10),
                },
            )
            .unwrap()
            .with_reducer(collect);
            let mut n = (0..3).map(|s| j.last_seq(&format!("s{s}"))).sum::<u64>();
            loop {
                n += 1;
                j.append(&format!("s{}", n % 3), n.to_le_bytes().to_vec())
                    .unwrap();
                ack(n);
            }
        }
        "kv" => {
            let kv = Kv::open(backend(&dir, "kv"), KvOptions::default()).unwrap();
            let mut n = kv
                .get("c", "counter")
                .unwrap()
                .map_or(0, |e| u64::from_le_bytes(e.value.try_into().unwrap()));
            loop {
                n += 1;
                // Deleting first means "counter = c" implies every delete of keys below c.
                // The delete's result is not asserted: a run killed between this delete and
                // the counter update has already applied it, so the retry finds nothing.
                if n % 5 == 0 {
                    kv.delete("keys", &format!("k{:08}", n - 1)).unwrap();
                }
                kv.put("keys", &format!("k{n:08}"), n.to_le_bytes().to_vec(), None)
                    .unwrap();
                let current = kv.get("c", "counter").unwrap().map(|e| e.version);
                kv.put_if("c", "counter", current, n.to_le_bytes().to_vec(), None)
                    .unwrap();
                ack(n);
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

struct Rng(u64);
impl Rng {
    fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        println!("rng seed {seed}");
        Rng(seed | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs the child until it acknowledged at least one op and a random extra time passed, kills
/// it with SIGKILL, and returns the highest acknowledged number (0 if none).
fn run_and_kill(mode: &str, dir: &Path, rng: &mut Rng) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .env(DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("ACK ") {
                let _ = tx.send(n.parse::<u64>().unwrap());
            }
        }
    });
    let mut last = 0;
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("child acknowledged nothing");
    last = last.max(first);
    let deadline = Instant::now() + Duration::from_millis(20 + rng.below(250));
    while Instant::now() < deadline {
        if let Ok(n) = rx.recv_timeout(Duration::from_millis(1)) {
            last = last.max(n);
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    // Acks written before the kill but not yet read still count as acknowledged.
    while let Ok(n) = rx.try_recv() {
        last = last.max(n);
    }
    last
}

#[test]
fn transactions_leave_old_or_new_version_of_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new();
    let mut mixed_before_recovery = 0;
    let mut acked_max = 0;
    for round in 0..TXN_ROUNDS {
        let acked = run_and_kill("txn", dir.path(), &mut rng);
        acked_max = acked_max.max(acked);
        let files = dir.path().join("files");
        let path_of = |i: usize| files.join(format!("d{}/f{i}", i % 3).replace("d0/", ""));
        // Raw view before recovery: a kill during the apply phase shows a mix here.
        let raw: BTreeSet<u64> = (0..FILES)
            .filter_map(|i| std::fs::read(path_of(i)).ok())
            .map(|b| generation_of(&b))
            .collect();
        if raw.len() > 1 {
            mixed_before_recovery += 1;
        }
        let (state, report) = StateDir::open(&files, backend(dir.path(), "txn"), "t").unwrap();
        let gens: Vec<u64> = (0..FILES)
            .map(|i| generation_of(&std::fs::read(path_of(i)).unwrap()))
            .collect();
        let g = gens[0];
        assert!(
            gens.iter().all(|x| *x == g),
            "round {round}: mixed generations {gens:?}"
        );
        for i in 0..FILES {
            assert_eq!(
                std::fs::read(path_of(i)).unwrap(),
                file_body(g, i),
                "file {i} torn"
            );
        }
        assert!(
            g >= acked_max,
            "round {round}: acknowledged {acked_max} but found {g}"
        );
        assert!(
            g <= acked_max + 1,
            "round {round}: found {g}, acknowledged only {acked_max}"
        );
        assert_eq!(
            files.join("odd").is_dir(),
            g % 2 == 1,
            "round {round}: odd dir of {g}"
        );
        assert_eq!(
            state.read("f0").unwrap().map(|b| generation_of(&b)),
            Some(g)
        );
        let stray = walk(&files)
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(TEMP_PREFIX)
            })
            .count();
        assert_eq!(stray, 0, "temp files left after recovery ({report:?})");
        acked_max = g;
    }
    println!("{mixed_before_recovery}/{TXN_ROUNDS} kills landed inside the apply phase");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn journals_keep_every_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new();
    let mut acked_max = 0;
    for round in 0..ROUNDS {
        acked_max = acked_max.max(run_and_kill("journal", dir.path(), &mut rng));
        let j = Journals::open(
            backend(dir.path(), "journal"),
            JournalOptions {
                snapshot_every: Some(10),
            },
        )
        .unwrap()
        .with_reducer(collect);
        let mut seen = BTreeSet::new();
        let mut total = 0;
        for s in 0..3 {
            let stream = format!("s{s}");
            let (state, cursor) = j.restore_state(&stream).unwrap();
            assert_eq!(
                cursor,
                j.last_seq(&stream),
                "round {round}: restore stops early"
            );
            assert_eq!(
                state.len() as u64,
                cursor * 8,
                "round {round}: entries missing in {stream}"
            );
            for chunk in state.chunks(8) {
                let n = u64::from_le_bytes(chunk.try_into().unwrap());
                assert_eq!(n % 3, s, "entry {n} in the wrong stream");
                assert!(seen.insert(n), "entry {n} twice");
            }
            total += cursor;
            if let Some(snap) = j.latest_snapshot(&stream).unwrap() {
                assert!(
                    j.read(&stream, ..=snap.cursor).unwrap().is_empty(),
                    "round {round}: snapshot and trim not atomic"
                );
            }
        }
        // Entries are appended in order: what is present is exactly 1..=total.
        assert_eq!(
            seen.iter().copied().collect::<Vec<_>>(),
            (1..=total).collect::<Vec<_>>()
        );
        assert!(
            total >= acked_max,
            "round {round}: acknowledged {acked_max}, present {total}"
        );
        acked_max = total;
    }
}

#[test]
fn kv_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new();
    let mut acked_max = 0;
    for round in 0..ROUNDS {
        acked_max = acked_max.max(run_and_kill("kv", dir.path(), &mut rng));
        let kv = Kv::open(backend(dir.path(), "kv"), KvOptions::default()).unwrap();
        let counter = kv
            .get("c", "counter")
            .unwrap()
            .map_or(0, |e| u64::from_le_bytes(e.value.try_into().unwrap()));
        assert!(
            counter >= acked_max,
            "round {round}: counter {counter} < acknowledged {acked_max}"
        );
        let keys = kv.scan_prefix("keys", "k").unwrap();
        for n in 1..=counter {
            let present = kv.get("keys", &format!("k{n:08}")).unwrap();
            if n == counter && n % 5 == 4 {
                // The killed iteration may have deleted it before writing its own key.
            } else {
                let deleted = n % 5 == 4;
                assert_eq!(
                    present.is_some(),
                    !deleted,
                    "round {round}: key {n} (counter {counter})"
                );
            }
            if let Some(e) = present {
                assert_eq!(e.value, n.to_le_bytes());
            }
        }
        let mut versions: Vec<u64> = keys.iter().map(|(_, e)| e.version).collect();
        versions.sort_unstable();
        versions.dedup();
        assert_eq!(
            versions.len(),
            keys.len(),
            "round {round}: a version was issued twice"
        );
        acked_max = counter;
    }
}
