//! SIGKILL torture: a child process applies random mutations with `Sync` appends and reports each
//! acknowledged one over a pipe; the parent kills it at a random point, reopens the store and
//! checks that the state equals a model built from the acknowledged operations (plus, possibly,
//! the one in flight), with no bead duplicated. 100 rounds by default (`FINN_BEADS_CRASH_ROUNDS`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use finn_beads::{Bead, Priority, Status, Store};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

const CHILD_ENV: &str = "FINN_BEADS_CRASH_CHILD";

/// Small segments keep each child's open (which may start a preallocated segment) cheap.
fn options() -> finn_beads::Options {
    let mut o = finn_beads::Options::default();
    o.wal.segment_size = 1 << 20;
    o
}
const SEED_ENV: &str = "FINN_BEADS_CRASH_SEED";

#[derive(Clone, Debug, Serialize, Deserialize)]
enum MOp {
    Create { id: Option<String>, title: String },
    Title { id: String, title: String },
    Close { id: String },
    Reopen { id: String },
    Label { id: String, label: String },
    Unlabel { id: String, label: String },
    Comment { id: String },
    Priority { id: String, p: u8 },
    Delete { id: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MBead {
    title: String,
    status: &'static str,
    labels: BTreeSet<String>,
    comments: usize,
    priority: u8,
}

type Model = BTreeMap<String, MBead>;

fn apply_model(m: &mut Model, op: &MOp, created_id: Option<&str>) {
    match op {
        MOp::Create { id, title } => {
            let id = id.as_deref().or(created_id).expect("create has an id");
            m.insert(
                id.to_owned(),
                MBead {
                    title: title.clone(),
                    status: "open",
                    labels: BTreeSet::new(),
                    comments: 0,
                    priority: 2,
                },
            );
        }
        MOp::Title { id, title } => m.get_mut(id).unwrap().title = title.clone(),
        MOp::Close { id } => m.get_mut(id).unwrap().status = "closed",
        MOp::Reopen { id } => m.get_mut(id).unwrap().status = "open",
        MOp::Label { id, label } => {
            m.get_mut(id).unwrap().labels.insert(label.clone());
        }
        MOp::Unlabel { id, label } => {
            m.get_mut(id).unwrap().labels.remove(label);
        }
        MOp::Comment { id } => m.get_mut(id).unwrap().comments += 1,
        MOp::Priority { id, p } => m.get_mut(id).unwrap().priority = *p,
        MOp::Delete { id } => m.get_mut(id).unwrap().status = "tombstone",
    }
}

fn observe(store: &Store) -> Model {
    store.read(|s| {
        s.beads()
            .map(|b| {
                let status = match b.status {
                    Status::Open => "open",
                    Status::Closed => "closed",
                    Status::Tombstone => "tombstone",
                    _ => "other",
                };
                (
                    b.id.clone(),
                    MBead {
                        title: b.title.clone(),
                        status,
                        labels: b.labels.iter().cloned().collect(),
                        comments: b.comments.len(),
                        priority: b.priority.0,
                    },
                )
            })
            .collect()
    })
}

fn perform(store: &Store, op: &MOp) -> String {
    store
        .transact(|tx| {
            Ok(match op {
                MOp::Create { id, title } => {
                    tx.create(Bead::new(id.clone().unwrap_or_default(), title))?
                }
                MOp::Title { id, title } => {
                    let patch = finn_beads::Patch {
                        title: Some(title.clone()),
                        ..Default::default()
                    };
                    tx.update(id, patch)?;
                    id.clone()
                }
                MOp::Close { id } => {
                    tx.close(id, Some("done"))?;
                    id.clone()
                }
                MOp::Reopen { id } => {
                    tx.reopen(id)?;
                    id.clone()
                }
                MOp::Label { id, label } => {
                    tx.add_labels(id, &[label])?;
                    id.clone()
                }
                MOp::Unlabel { id, label } => {
                    tx.remove_labels(id, &[label])?;
                    id.clone()
                }
                MOp::Comment { id } => {
                    tx.comment(id, Some("crash"), "a comment")?;
                    id.clone()
                }
                MOp::Priority { id, p } => {
                    let patch = finn_beads::Patch {
                        priority: Some(Priority(*p)),
                        ..Default::default()
                    };
                    tx.update(id, patch)?;
                    id.clone()
                }
                MOp::Delete { id } => {
                    tx.delete(id, None, None)?;
                    id.clone()
                }
            })
        })
        .unwrap()
}

fn random_op(rng: &mut impl Rng, store: &Store, round: u64, n: u64) -> MOp {
    let live: Vec<String> = store.read(|s| {
        let mut v: Vec<String> = s
            .beads()
            .filter(|b| b.status != Status::Tombstone)
            .map(|b| b.id.clone())
            .collect();
        v.sort();
        v
    });
    if live.is_empty() || rng.gen_ratio(1, 4) {
        let id = rng.gen_bool(0.7).then(|| format!("c{round}-{n}"));
        return MOp::Create {
            id,
            title: format!("t{round}-{n}"),
        };
    }
    let id = live[rng.gen_range(0..live.len())].clone();
    let label = format!("l{}", rng.gen_range(0..4));
    match rng.gen_range(0..8) {
        0 => MOp::Title {
            id,
            title: format!("renamed {round}-{n}"),
        },
        1 => MOp::Close { id },
        2 => MOp::Reopen { id },
        3 => MOp::Label { id, label },
        4 => MOp::Unlabel { id, label },
        5 => MOp::Comment { id },
        6 => MOp::Priority {
            id,
            p: rng.gen_range(0..5),
        },
        _ => MOp::Delete { id },
    }
}

/// Child side (does nothing unless started by the crash test).
#[test]
fn crash_child_entry() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let seed: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let store = Store::open(&dir, options()).unwrap();
    let mut out = std::io::stdout().lock();
    for n in 0.. {
        let op = random_op(&mut rng, &store, seed, n);
        writeln!(out, "BEGIN {}", serde_json::to_string(&op).unwrap()).unwrap();
        out.flush().unwrap();
        let id = perform(&store, &op);
        writeln!(out, "ACK {id}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn crash_sigkill_rounds_keep_exactly_the_acknowledged_state() {
    let rounds: u64 = std::env::var("FINN_BEADS_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut model = Model::new();
    // `cargo xtask crash --seed S` sets FINN_CRASH_SEED to run a different, replayable campaign.
    let campaign_seed = std::env::var("FINN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(campaign_seed);
    let mut acked_total = 0usize;
    for round in 0..rounds {
        let kill_after = rng.gen_range(0..20usize);
        let mut child = Command::new(&exe)
            .args(["--exact", "crash::crash_child_entry", "--nocapture"])
            .env(CHILD_ENV, dir.path())
            .env(SEED_ENV, (round + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut pending: Option<MOp> = None;
        let mut acks = 0;
        let on_line = |line: &str, model: &mut Model, pending: &mut Option<MOp>| -> bool {
            if let Some(op) = line.strip_prefix("BEGIN ") {
                *pending = Some(serde_json::from_str(op).unwrap());
            } else if let Some(id) = line.strip_prefix("ACK ") {
                let op = pending.take().expect("ack without begin");
                apply_model(model, &op, Some(id));
                return true;
            }
            false
        };
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if on_line(&line, &mut model, &mut pending) {
                acks += 1;
                if acks >= kill_after {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        // Acks written before the kill are still in the pipe: they are acknowledged too.
        for line in lines.map_while(Result::ok) {
            if on_line(&line, &mut model, &mut pending) {
                acks += 1;
            }
        }
        child.wait().unwrap();
        acked_total += acks;

        let store = Store::open(dir.path(), options()).unwrap();
        let got = observe(&store);
        drop(store);
        if got == model {
            continue;
        }
        // The op in flight may have become durable before the kill.
        let op = pending
            .take()
            .unwrap_or_else(|| panic!("round {round}: state differs from the acknowledged model"));
        let mut with = model.clone();
        let created = match &op {
            MOp::Create { id: None, title } => got
                .iter()
                .find(|(id, b)| !model.contains_key(*id) && &b.title == title)
                .map(|(id, _)| id.clone()),
            _ => None,
        };
        apply_model(&mut with, &op, created.as_deref());
        assert_eq!(
            got, with,
            "round {round}: state is neither acked nor acked + in-flight"
        );
        model = with;
    }
    assert!(
        acked_total > rounds as usize,
        "children made too little progress"
    );
    // No bead is duplicated: every created title appears once.
    let mut titles: Vec<&String> = model
        .values()
        .map(|b| &b.title)
        .filter(|t| t.starts_with('t'))
        .collect();
    let n = titles.len();
    titles.sort();
    titles.dedup();
    assert_eq!(titles.len(), n);
}
