//! SIGKILL torture: a child process adds and transitions learnings with synchronous appends and
//! streams each operation to the parent over a pipe — `B <op>` before it starts, `A <op>` once
//! the store acknowledged it. The parent kills the child with SIGKILL at a random point, reopens
//! the store and checks that its state is exactly the acknowledged operations, plus at most the
//! one operation that had begun but was not yet acknowledged.
//!
//! The child is this test binary re-executed with `FINN_LEARNING_CRASH_CHILD` set, running the
//! `crash::child_process` test. 100 kills by default; set `FINN_LEARNING_CRASH_KILLS` for more.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use finn_learning::{Action, LearningId, LearningStore, Status, Target};
use serde::{Deserialize, Serialize};

use crate::util::{good_about, open};

const CHILD_ENV: &str = "FINN_LEARNING_CRASH_CHILD";
const SEED_ENV: &str = "FINN_LEARNING_CRASH_SEED";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum CrashOp {
    Add {
        n: u64,
        target: Target,
        id: Option<LearningId>,
    },
    Transition {
        id: LearningId,
        action: Action,
    },
    Apply {
        id: LearningId,
        success: bool,
    },
    Snapshot,
}

/// splitmix64: small, seedable, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the parent expects of one learning.
#[derive(Clone, Debug, PartialEq)]
struct Expected {
    status: Status,
    applications: u32,
    successes: u32,
    transitions: usize,
    trigger: String,
}

fn trigger_of(n: u64) -> String {
    good_about(&format!("svc{n}"), Target::Openclaw).trigger
}

fn apply(model: &mut BTreeMap<LearningId, Expected>, op: &CrashOp) {
    match op {
        CrashOp::Add { n, target, id } => {
            let id = id.clone().expect("acknowledged adds carry their id");
            model.insert(
                id,
                Expected {
                    status: if *target == Target::Loa {
                        Status::Pending
                    } else {
                        Status::Active
                    },
                    applications: 0,
                    successes: 0,
                    transitions: 0,
                    trigger: trigger_of(*n),
                },
            );
        }
        CrashOp::Transition { id, action } => {
            let e = model.get_mut(id).expect("transition of a known learning");
            e.status = action.edge().1;
            e.transitions += 1;
        }
        CrashOp::Apply { id, success } => {
            let e = model.get_mut(id).expect("application of a known learning");
            e.applications += 1;
            e.successes += u32::from(*success);
        }
        CrashOp::Snapshot => {}
    }
}

fn observed(store: &LearningStore) -> BTreeMap<LearningId, Expected> {
    store
        .list(None)
        .into_iter()
        .map(|l| {
            let e = l.effectiveness.unwrap_or_default();
            let exp = Expected {
                status: l.status,
                applications: e.applications,
                successes: e.successes,
                transitions: store.history(&l.id).len(),
                trigger: l.trigger.clone(),
            };
            (l.id, exp)
        })
        .collect()
}

/// The child: open the store, then run random operations forever, announcing each.
fn run_child(dir: &Path, seed: u64) {
    let (store, _) = open(dir);
    let mut rng = Rng(seed);
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut say = |tag: &str, op: &CrashOp| {
        let line = format!("{tag} {}\n", serde_json::to_string(op).unwrap());
        out.write_all(line.as_bytes()).unwrap();
        out.flush().unwrap();
    };
    loop {
        let all = store.list(None);
        let roll = rng.below(100);
        let op = if all.is_empty() || roll < 30 {
            CrashOp::Add {
                n: rng.next(),
                target: if rng.below(2) == 0 {
                    Target::Loa
                } else {
                    Target::Openclaw
                },
                id: None,
            }
        } else if roll < 65 {
            let l = &all[rng.below(all.len() as u64) as usize];
            let next: Vec<Action> = [
                Action::Approve,
                Action::Reject,
                Action::Activate,
                Action::Archive,
                Action::Restore,
            ]
            .into_iter()
            .filter(|a| a.edge().0 == l.status)
            .collect();
            if next.is_empty() {
                continue;
            }
            CrashOp::Transition {
                id: l.id.clone(),
                action: next[rng.below(next.len() as u64) as usize],
            }
        } else if roll < 97 {
            let l = &all[rng.below(all.len() as u64) as usize];
            CrashOp::Apply {
                id: l.id.clone(),
                success: rng.below(3) > 0,
            }
        } else {
            CrashOp::Snapshot
        };
        say("B", &op);
        let done = match op {
            CrashOp::Add { n, target, .. } => {
                let mut new = good_about(&format!("svc{n}"), target);
                new.target = target;
                let l = store.add(new).unwrap();
                CrashOp::Add {
                    n,
                    target,
                    id: Some(l.id),
                }
            }
            CrashOp::Transition { ref id, action } => {
                store.transition(id, action, "crash-child", None).unwrap();
                op
            }
            CrashOp::Apply { ref id, success } => {
                store.record_application(id, success).unwrap();
                op
            }
            CrashOp::Snapshot => {
                store.snapshot().unwrap();
                op
            }
        };
        say("A", &done);
    }
}

/// Feeds one line of the child's output into the model; true if it acknowledged an operation.
fn handle_line(
    line: &str,
    pending: &mut Option<CrashOp>,
    model: &mut BTreeMap<LearningId, Expected>,
) -> bool {
    let Some((tag, json)) = line.split_once(' ') else {
        return false; // test-harness chatter
    };
    let Ok(op) = serde_json::from_str::<CrashOp>(json) else {
        return false;
    };
    match tag {
        "B" => *pending = Some(op),
        "A" => {
            apply(model, &op);
            *pending = None;
            return true;
        }
        _ => {}
    }
    false
}

/// Entry point of the child process; does nothing unless re-executed by `sigkill_100_times`.
#[test]
fn child_process() {
    let (Some(dir), Some(seed)) = (std::env::var_os(CHILD_ENV), std::env::var_os(SEED_ENV)) else {
        return;
    };
    let seed = seed.to_string_lossy().parse().unwrap();
    run_child(Path::new(&dir), seed);
}

#[test]
fn sigkill_100_times() {
    let kills: usize = std::env::var("FINN_LEARNING_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // `cargo xtask crash --seed S` sets FINN_CRASH_SEED to run a different, replayable campaign.
    let mut rng = Rng(std::env::var("FINN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_F1AA));
    let mut model: BTreeMap<LearningId, Expected> = BTreeMap::new();
    let mut acked_total = 0usize;
    let mut in_flight_applied = 0usize;
    for round in 0..kills {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(SEED_ENV, rng.next().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a random number of acknowledgements (0 = while it is still opening).
        let kill_after = rng.below(25);
        let mut acks = 0u64;
        let mut pending: Option<CrashOp> = None;
        if kill_after > 0 {
            for line in lines.by_ref() {
                let line = line.unwrap();
                if handle_line(&line, &mut pending, &mut model) {
                    acks += 1;
                    acked_total += 1;
                    if acks >= kill_after {
                        break;
                    }
                }
            }
        } else {
            std::thread::sleep(std::time::Duration::from_millis(rng.below(5)));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Whatever the child acknowledged before dying still counts.
        for line in lines {
            let Ok(line) = line else { break };
            if handle_line(&line, &mut pending, &mut model) {
                acked_total += 1;
            }
        }

        let (store, _) = open(dir.path());
        let state = observed(&store);
        drop(store);
        if state == model {
            continue;
        }
        // Otherwise the one begun-but-unacknowledged operation must have completed.
        let Some(op) = pending.take() else {
            panic!(
                "round {round}: state differs from the acknowledged operations\nstate {state:#?}\nmodel {model:#?}"
            );
        };
        let op = match op {
            CrashOp::Add { n, target, .. } => {
                let new: Vec<&LearningId> =
                    state.keys().filter(|k| !model.contains_key(*k)).collect();
                assert_eq!(new.len(), 1, "round {round}: one in-flight add at most");
                CrashOp::Add {
                    n,
                    target,
                    id: Some(new[0].clone()),
                }
            }
            other => other,
        };
        apply(&mut model, &op);
        assert_eq!(
            state, model,
            "round {round}: state is acknowledged ops + the in-flight op"
        );
        in_flight_applied += 1;
    }
    println!(
        "{kills} SIGKILLs, {acked_total} acknowledged operations, {} learnings, {in_flight_applied} in-flight operations found durable",
        model.len()
    );
    assert!(acked_total > kills, "the children made progress");
}
