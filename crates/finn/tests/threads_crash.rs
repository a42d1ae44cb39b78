//! SIGKILL crash test of threads on the WAL.
//!
//! The child is this test binary re-executed with `FINN_THREADS_CRASH_CHILD` set, running the
//! `child` test. It records steps on thread `main` (each with a pending write of a sub-task),
//! forks `main` into new threads, deletes old forks and prunes `main`, printing one line on
//! stdout after each acknowledged operation. The parent kills it with SIGKILL at a random
//! moment, reopens, and checks that every acknowledged operation is present and that no
//! thread is half-written, half-deleted, half-forked or half-pruned. Rounds continue on the
//! same WAL, so each recovery is followed by more crashes.
//!
//! `FINN_CRASH_SEED` fixes the kill schedule; `FINN_THREADS_CRASH_ROUNDS` overrides the 32
//! rounds.
#![cfg(feature = "wal")]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use finn::threads::{
    Backend, ListFilter, Source, State, StepInput, ThreadOptions, Threads, WalBackend,
};
use finn::wal::{Options, Wal};

const CHILD_ENV: &str = "FINN_THREADS_CRASH_CHILD";
const MAIN: &str = "main";
/// `main` is pruned to this many checkpoints every `PRUNE_EVERY` steps.
const KEEP: usize = 3;
const PRUNE_EVERY: u64 = 5;
/// A fork every `FORK_EVERY` steps; fork `f<i>` is deleted at step `i + FORK_LIFE`.
const FORK_EVERY: u64 = 2;
const FORK_LIFE: u64 = 6;

fn options() -> ThreadOptions {
    ThreadOptions {
        snapshot_every: 4,
        ..ThreadOptions::default()
    }
}

fn open(dir: &Path) -> Threads<WalBackend> {
    let (wal, _) = Wal::open(
        dir.join("wal"),
        Options {
            segment_size: 4 << 20,
            ..Options::default()
        },
    )
    .unwrap();
    Threads::open(
        WalBackend::open(Arc::new(wal), "threads").unwrap(),
        options(),
    )
    .unwrap()
}

/// The state of `main` after step `i`: `last = i`, and `c<k>` holds the newest step `j <= i`
/// with `j % 4 == k`.
fn expected(i: u64) -> State {
    let mut s = State::new();
    for j in i.saturating_sub(3).max(1)..=i {
        s.insert(format!("c{}", j % 4), j.to_le_bytes().to_vec());
    }
    s.insert("last".into(), i.to_le_bytes().to_vec());
    s
}

fn last_of(state: &State) -> u64 {
    u64::from_le_bytes(state["last"].as_slice().try_into().unwrap())
}

fn ack(line: String) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACK {line}").unwrap();
    out.flush().unwrap();
}

#[test]
fn child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only meaningful when re-executed by the crash test
    };
    let t = open(Path::new(&dir));
    let mut i = t.latest(MAIN).unwrap().map_or(0, |c| last_of(&c.state));
    // Forks whose delete a kill skipped.
    for name in t.threads().unwrap() {
        if let Some(f) = name.strip_prefix('f').and_then(|n| n.parse::<u64>().ok())
            && f + FORK_LIFE <= i
        {
            t.delete(&name).unwrap();
            ack(format!("DEL {f}"));
        }
    }
    loop {
        i += 1;
        let mut step = StepInput::new(if i == 1 { Source::Input } else { Source::Loop }, i as i64)
            .set(format!("c{}", i % 4), i.to_le_bytes().to_vec())
            .set("last", i.to_le_bytes().to_vec())
            .idempotent(format!("s{i}"));
        if i.is_multiple_of(4) {
            // Exercise channel deletes too; re-set at once so the expected state stays simple.
            step = step.unset("c0").set("c0", i.to_le_bytes().to_vec());
        }
        let id = t.put(MAIN, step).unwrap().id;
        ack(format!("STEP {i} {id}"));
        t.put_writes(
            MAIN,
            id,
            "task",
            vec![("out".into(), i.to_le_bytes().to_vec())],
        )
        .unwrap();
        ack(format!("PW {id}"));
        if i.is_multiple_of(FORK_EVERY) {
            t.fork(MAIN, id, &format!("f{i}")).unwrap();
            ack(format!("FORK {i}"));
        }
        if i > FORK_LIFE && (i - FORK_LIFE).is_multiple_of(FORK_EVERY) {
            t.delete(&format!("f{}", i - FORK_LIFE)).unwrap();
            ack(format!("DEL {}", i - FORK_LIFE));
        }
        if i.is_multiple_of(PRUNE_EVERY) {
            t.prune(MAIN, KEEP).unwrap();
            ack(format!("PRUNE {i}"));
        }
    }
}

#[derive(Debug, Default)]
struct Acked {
    step: u64,
    /// Step -> checkpoint id.
    ids: BTreeMap<u64, u64>,
    pending: BTreeSet<u64>,
    forks: BTreeSet<u64>,
    deleted: BTreeSet<u64>,
    prune: u64,
    /// This round's lines, printed when a check fails.
    log: Vec<String>,
}

impl Acked {
    /// Records an acknowledgement; returns whether `line` was one.
    fn take(&mut self, line: &str) -> bool {
        // libtest may print "test child ... " on the same line before the first ack.
        let Some(at) = line.find("ACK ") else {
            return false;
        };
        let line = &line[at + 4..];
        let mut words = line.split(' ');
        let op = words.next();
        if !matches!(op, Some("STEP" | "PW" | "FORK" | "DEL" | "PRUNE")) {
            return false; // the test harness's own output
        }
        self.log.push(line.to_owned());
        let parts: Vec<u64> = words.map(|n| n.parse().unwrap()).collect();
        match op {
            Some("STEP") => {
                self.step = self.step.max(parts[0]);
                self.ids.insert(parts[0], parts[1]);
            }
            Some("PW") => {
                self.pending.insert(parts[0]);
            }
            Some("FORK") => {
                self.forks.insert(parts[0]);
            }
            Some("DEL") => {
                self.deleted.insert(parts[0]);
            }
            Some("PRUNE") => self.prune = self.prune.max(parts[0]),
            _ => {}
        }
        true
    }
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs the child until it acknowledged something and a random extra time passed, then kills it
/// with SIGKILL; every line it wrote before dying counts as acknowledged.
fn run_and_kill(dir: &Path, rng: &mut Rng, acked: &mut Acked) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(give_up.saturating_duration_since(Instant::now()))
            .expect("child acknowledged nothing");
        if acked.take(&line) {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_millis(5 + rng.below(120));
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(1)) {
            acked.take(&line);
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    while let Ok(line) = rx.try_recv() {
        acked.take(&line);
    }
}

/// Checks everything that must hold after any crash; returns the step `main` is at.
fn verify(t: &Threads<WalBackend>, acked: &Acked, round: usize) -> u64 {
    // Every thread with any key is whole: its meta and at least one checkpoint exist.
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, _) in t.backend().range("", None).unwrap() {
        let (thread, rest) = k.split_once('/').unwrap();
        keys.entry(thread.to_owned())
            .or_default()
            .push(rest.to_owned());
    }
    for (thread, rest) in &keys {
        assert!(
            rest.iter().any(|r| r == "meta") && rest.iter().any(|r| r.starts_with("c/")),
            "round {round}: thread {thread} is half there: {rest:?}"
        );
    }

    // main: the latest step covers every acknowledged one, and at most one more.
    let latest = t.latest(MAIN).unwrap().expect("main lost");
    let last = last_of(&latest.state);
    assert!(
        last >= acked.step && last <= acked.step + 1,
        "round {round}: main at step {last}, acknowledged {}; this round: {:?}",
        acked.step,
        acked.log
    );
    // Checkpoint ids: a contiguous run ending at the latest, cut only by whole prunes.
    let ids: Vec<u64> = t
        .list(MAIN, &ListFilter::default())
        .unwrap()
        .iter()
        .map(|m| m.id)
        .rev()
        .collect();
    let lo = ids[0];
    assert_eq!(
        ids,
        (lo..=last).collect::<Vec<_>>(),
        "round {round}: main checkpoints not contiguous"
    );
    assert!(
        lo == 1 || (lo + KEEP as u64 - 1).is_multiple_of(PRUNE_EVERY),
        "round {round}: main starts at {lo}: a prune was applied partially"
    );
    if acked.prune > 0 {
        assert!(
            lo > acked.prune - KEEP as u64,
            "round {round}: acknowledged prune at {} not applied (first id {lo})",
            acked.prune
        );
    }
    for &id in &ids {
        let cp = t.get(MAIN, id).unwrap().unwrap();
        assert_eq!(cp.meta.step as u64, id, "round {round}: step of {id}");
        assert_eq!(
            cp.state,
            expected(id),
            "round {round}: state of checkpoint {id}"
        );
        // Pending writes are whole, and acknowledged ones are there.
        let pending = t.pending_writes(MAIN, id).unwrap();
        if acked.pending.contains(&id) {
            assert_eq!(
                pending.len(),
                1,
                "round {round}: pending write of {id} lost"
            );
        }
        for p in pending {
            assert_eq!(p.task, "task");
            assert_eq!(
                p.writes,
                vec![("out".to_owned(), id.to_le_bytes().to_vec())]
            );
        }
    }
    for (&step, &id) in &acked.ids {
        assert_eq!(step, id, "round {round}: step {step} got id {id}");
    }

    // Forks: acknowledged ones exist until their delete could have run; deleted ones are
    // gone; any fork present is a complete, self-contained copy.
    let threads: BTreeSet<String> = t.threads().unwrap().into_iter().collect();
    assert_eq!(
        threads,
        keys.keys().cloned().collect(),
        "round {round}: listed threads differ from stored ones"
    );
    for &f in &acked.forks {
        if last < f + FORK_LIFE {
            assert!(
                threads.contains(&format!("f{f}")),
                "round {round}: fork f{f} lost"
            );
        }
    }
    for &f in &acked.deleted {
        assert!(
            !threads.contains(&format!("f{f}")),
            "round {round}: f{f} came back"
        );
    }
    for name in threads.iter().filter(|n| *n != MAIN) {
        let i: u64 = name[1..].parse().unwrap();
        let ids: Vec<u64> = t
            .list(name, &ListFilter::default())
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, vec![1], "round {round}: fork {name} checkpoints");
        let cp = t.get(name, 1).unwrap().unwrap();
        assert_eq!(cp.state, expected(i), "round {round}: fork {name} state");
        assert_eq!(cp.meta.source, Source::Fork);
    }
    last
}

#[test]
fn acknowledged_thread_operations_survive_sigkill_and_nothing_is_half_done() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let seed = std::env::var("FINN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let rounds: usize = std::env::var("FINN_THREADS_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    println!("FINN_CRASH_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let dir: PathBuf = dir.path().to_path_buf();
    let mut acked = Acked::default();
    let mut forks_seen = 0;
    let mut last = 0;
    for round in 0..rounds {
        acked.log.clear();
        run_and_kill(&dir, &mut rng, &mut acked);
        let t = open(&dir);
        last = verify(&t, &acked, round);
        // What recovery showed is durable: later rounds measure from it.
        acked.step = last;
        forks_seen = forks_seen.max(t.threads().unwrap().len() - 1);
    }
    println!(
        "{rounds} kills: main reached step {last}, {} forks and {} deletes acknowledged, \
         up to {forks_seen} forks alive",
        acked.forks.len(),
        acked.deleted.len()
    );
    assert!(
        acked.prune >= PRUNE_EVERY && !acked.deleted.is_empty(),
        "the run never reached a prune and a delete; nothing was tested"
    );
}
