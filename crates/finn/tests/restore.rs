//! `finn restore` as an operator drives it: dry run, idempotent entrypoint flags, a restore to a
//! point in the past that forks, and a lost disk restored to the latest point.

use std::path::Path;

mod support;
use support::{deployment, finn, ok_json};

fn add_learning(config: &Path, what: &str) -> String {
    let trigger = format!("When the {what} step fails and if the deploy reports an error");
    let v = ok_json(
        config,
        &[
            "learnings",
            "add",
            "--trigger",
            &trigger,
            "--pattern",
            "A common pattern: a stale lockfile breaks the build; the same approach fixes every package manager",
            "--solution",
            "Delete the lockfile with `rm package-lock.json`, reinstall; tested and verified.",
            "--json",
        ],
    );
    v["id"].as_str().unwrap().to_owned()
}

fn learning_ids(config: &Path) -> Vec<String> {
    ok_json(config, &["learnings", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn restore_to_the_past_forks_and_a_lost_disk_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = deployment(dir.path());
    let data = dir.path().join("data");

    ok_json(&config, &["init", "--json"]);
    // Nothing in the store yet: an entrypoint with --if-remote-exists does nothing, calmly.
    let empty = ok_json(&config, &["restore", "--if-remote-exists", "--json"]);
    assert_eq!(empty["restored"], false, "{empty}");

    let first = add_learning(&config, "build");
    let point = ok_json(&config, &["checkpoint", "create", "--json"])["covered_lsn"]
        .as_u64()
        .unwrap();
    let second = add_learning(&config, "test");
    assert_eq!(learning_ids(&config).len(), 2);

    // The dry run: base, objects, bytes, the exact LSN, and that writing on forks.
    let to = point.to_string();
    let plan = ok_json(
        &config,
        &["restore", "--to-lsn", &to, "--dry-run", "--json"],
    );
    assert_eq!(plan["plan"]["reach_lsn"].as_u64(), Some(point), "{plan}");
    assert_eq!(plan["plan"]["forks"], true);
    assert!(plan["plan"]["base"]["version"].as_u64().is_some());

    // Local state exists: --if-not-exists does nothing, and without --force it is refused.
    let skipped = ok_json(&config, &["restore", "--if-not-exists", "--json"]);
    assert_eq!(skipped["restored"], false);
    let refused = finn(&config, &["restore", "--to-lsn", &to, "--json"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Back to the point: the first learning, not the second.
    let restored = ok_json(&config, &["restore", "--to-lsn", &to, "--force", "--json"]);
    assert_eq!(restored["reached_lsn"].as_u64(), Some(point), "{restored}");
    assert_eq!(restored["forked"], true);
    assert!(restored["moved_aside"].as_str().is_some());
    let ids = learning_ids(&config);
    assert!(ids.contains(&first) && !ids.contains(&second), "{ids:?}");

    // Writing on, then losing the disk: the latest state is the fork's, nothing of the
    // abandoned future.
    let third = add_learning(&config, "lint");
    std::fs::remove_dir_all(&data).unwrap();
    let back = ok_json(&config, &["restore", "--if-not-exists", "--json"]);
    assert!(back["reached_lsn"].as_u64().is_some(), "{back}");
    let ids = learning_ids(&config);
    assert!(
        ids.contains(&first) && ids.contains(&third) && !ids.contains(&second),
        "{ids:?}"
    );
}
