//! SIGKILL at random points of a restore, in a child process: the state directory always holds
//! the complete old state or the complete new one, never a mix (anchors.md §4.5-4: the anchors
//! wrote restored files one by one into the live directory).

use std::path::Path;
use std::time::Duration;

use finn_recovery::{Cascade, Layout, LoopPolicy, SourceKind};
use rand::Rng;

use crate::util::*;

const FILES: usize = 24;
/// Marker that makes the local state fail its integrity check, so every boot restores.
const BROKEN: &str = "zz-broken";

fn generation(tag: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = state(tag, FILES);
    files.insert("generation".into(), tag.as_bytes().to_vec());
    files
}

/// The child: restores forever, alternating generations `a` and `b`.
#[tokio::test]
async fn restore_child() {
    if child_role().as_deref() != Some("restore") {
        return;
    }
    let data = std::path::PathBuf::from(std::env::var("FINN_TEST_DATA").unwrap());
    let layout = Layout::new(&data);
    loop {
        let current = std::fs::read(layout.state_dir().join("generation")).unwrap_or_default();
        let next = if current == b"a" { "b" } else { "a" };
        let _ = std::os::unix::fs::symlink("/nonexistent", layout.state_dir().join(BROKEN));
        Cascade::builder(layout.clone())
            .wal_options(wal_options())
            .loop_policy(LoopPolicy {
                max_failures: 0,
                ..LoopPolicy::default()
            })
            .source(FakeSource::new(
                "remote",
                SourceKind::ObjectStore,
                generation(next),
            ))
            .build()
            .run()
            .await
            .unwrap();
    }
}

fn check(state_dir: &Path) -> &'static str {
    let mut tree = read_tree(state_dir);
    tree.remove(BROKEN);
    if tree == generation("a") {
        "a"
    } else if tree == generation("b") {
        "b"
    } else {
        panic!("state is a mix: {:?}", tree.keys().collect::<Vec<_>>());
    }
}

#[test]
fn sigkill_during_restore_leaves_the_old_or_the_new_state_never_a_mix() {
    if child_role().is_some() {
        return;
    }
    let reps: usize = std::env::var("FINN_RECOVERY_CRASH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let layout = Layout::new(&data);
    write_tree(layout.state_dir(), &generation("a"));
    // `cargo xtask crash --seed S` sets FINN_CRASH_SEED so a campaign's kill moments replay.
    let seed = std::env::var("FINN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (FINN_CRASH_SEED={seed} replays it)");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..reps {
        let mut child = spawn_child(
            "crash::restore_child",
            &[
                (CHILD_ENV, "restore".into()),
                ("FINN_TEST_DATA", data.display().to_string()),
            ],
        );
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..250)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        *seen.entry(check(layout.state_dir())).or_insert(0) += 1;
    }
    // Both generations were observed (the kills did land in the middle of restores), and no
    // staging or swap leftovers ever reached the state directory.
    assert!(seen.len() == 2 || reps < 10, "{seen:?}");
    let outside: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        outside,
        ["data"],
        "nothing written outside the data directory"
    );
}
