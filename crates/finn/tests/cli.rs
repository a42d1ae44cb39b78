//! Drives the `finn` binary as an operator would: real processes, real files, JSON output checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;
use support::{FINN, deployment, finn, ok_json};

#[test]
fn init_run_write_checkpoint_wipe_recover_keeps_beads_and_learnings() {
    let dir = tempfile::tempdir().unwrap();
    let config = deployment(dir.path());
    let data = dir.path().join("data");

    let init = ok_json(&config, &["init", "--json"]);
    assert!(
        init["signing_key"]
            .as_str()
            .unwrap()
            .ends_with("signing.pem")
    );

    // The runtime in the background, stopped the way an operator stops it (SIGINT).
    let mut run = Command::new(FINN)
        .arg("--config")
        .arg(&config)
        .args(["run"])
        .spawn()
        .unwrap();
    // While it runs, writers are refused with one clear line and status still reads.
    let mut refused = None;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let out = finn(&config, &["beads", "ready"]);
        if !out.status.success() {
            refused = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let refused =
        refused.expect("a second writer was refused while `finn run` held the data directory");
    assert_eq!(refused.trim().lines().count(), 1, "{refused}");
    let status = ok_json(&config, &["status", "--json"]);
    assert_eq!(status["wal"]["read_only"], true);
    let stopped = Command::new("kill")
        .arg("-INT")
        .arg(run.id().to_string())
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(run.wait().unwrap().success(), "finn run exits 0 on SIGINT");

    // Writes through the component commands.
    let fixture = std::env::var_os("FINN_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("fixtures/beads/loa-finn-issues.jsonl");
    let jsonl = if fixture.is_file() {
        fixture
    } else {
        if std::env::var_os("FINN_XTASK").is_some() {
            panic!("fixture {} is missing", fixture.display());
        }
        eprintln!(
            "fixture {} missing; using a two-bead file",
            fixture.display()
        );
        let p = dir.path().join("issues.jsonl");
        std::fs::write(
            &p,
            "{\"id\":\"bd-a1\",\"title\":\"first\",\"status\":\"open\",\"priority\":1,\"issue_type\":\"task\",\"created_at\":\"2026-01-01T00:00:00Z\",\"updated_at\":\"2026-01-01T00:00:00Z\"}\n\
             {\"id\":\"bd-a2\",\"title\":\"second\",\"status\":\"open\",\"priority\":2,\"issue_type\":\"task\",\"created_at\":\"2026-01-01T00:00:00Z\",\"updated_at\":\"2026-01-01T00:00:00Z\"}\n",
        )
        .unwrap();
        p
    };
    let imported = ok_json(
        &config,
        &["beads", "import", jsonl.to_str().unwrap(), "--json"],
    );
    let created = imported["created"].as_u64().unwrap();
    assert!(created >= 2, "{imported}");
    let ready = ok_json(&config, &["beads", "ready", "--json"]);
    assert!(!ready.as_array().unwrap().is_empty());
    let claim = ok_json(&config, &["beads", "claim", "--owner", "agent-1", "--json"]);
    let claimed = claim["bead_id"].as_str().unwrap().to_owned();
    let learning = ok_json(
        &config,
        &[
            "learnings",
            "add",
            "--trigger",
            "When the build fails and if the deploy step reports an error",
            "--pattern",
            "A common pattern: a stale lockfile breaks the build; the same approach fixes every package manager",
            "--solution",
            "Delete the lockfile with `rm package-lock.json`, reinstall; tested and verified.",
            "--json",
        ],
    );
    let learning_id = learning["id"].as_str().unwrap().to_owned();
    let ckpt = ok_json(&config, &["checkpoint", "create", "--json"]);
    let covered = ckpt["covered_lsn"].as_u64().unwrap();
    assert!(covered >= created, "{ckpt}");
    let list = ok_json(&config, &["checkpoint", "list", "--json"]);
    assert_eq!(list[0]["covered_lsn"].as_u64(), Some(covered), "{list}");
    assert_eq!(list[0]["verified"], true);

    // The disk is lost.
    std::fs::remove_dir_all(&data).unwrap();
    let plan = ok_json(&config, &["recover", "--dry-run", "--json"]);
    assert_eq!(plan["local_state"], false);
    assert_eq!(
        plan["newest_checkpoint"]["covered_lsn"].as_u64(),
        Some(covered)
    );
    assert!(!data.exists(), "a dry run touches nothing");

    let recovered = ok_json(&config, &["recover", "--json"]);
    assert_eq!(recovered["source"], "object-store", "{recovered}");
    assert_eq!(recovered["state"], "Running");

    // Everything is back: the claimed bead with its assignee, the learning.
    let bead = ok_json(&config, &["beads", "show", &claimed, "--json"]);
    assert_eq!(bead["status"], "in_progress", "{bead}");
    assert_eq!(bead["assignee"], "agent-1");
    let learnings = ok_json(&config, &["learnings", "list", "--json"]);
    assert!(
        learnings
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == learning_id.as_str()),
        "{learnings}"
    );
    let health = ok_json(&config, &["health", "--json"]);
    assert_eq!(health["overall"], "healthy", "{health}");
    let verify = ok_json(&config, &["wal", "verify", "--json"]);
    assert_eq!(verify["ok"], true);
}

fn assert_one_line_failure(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains(needle),
        "{stderr:?} should mention {needle:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_arguments_and_bad_files_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = deployment(dir.path());

    // Unknown flag: usage error, exit 2.
    let out = finn(&config, &["wal", "dump", "--frm", "3"]);
    assert_one_line_failure(&out, 2, "--frm");

    // A value of the wrong type.
    let out = finn(&config, &["wal", "dump", "--from", "minus-one"]);
    assert_one_line_failure(&out, 2, "minus-one");

    // No data directory yet.
    let out = finn(&config, &["status"]);
    assert_one_line_failure(&out, 1, "finn init");

    // A config file with an unknown key names it.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[sync]\nintervl_ms = 5000\n").unwrap();
    let out = finn(&bad, &["status"]);
    assert_one_line_failure(&out, 1, "intervl_ms");

    // A config value out of range names the key.
    std::fs::write(&bad, "[sync]\ninterval_ms = 5\n").unwrap();
    let out = finn(&bad, &["status"]);
    assert_one_line_failure(&out, 1, "sync.interval_ms");

    // An environment variable that is not a number names the variable.
    let out = Command::new(FINN)
        .args(["--config", config.to_str().unwrap(), "status"])
        .env("SYNC_INTERVAL_MS", "soon")
        .output()
        .unwrap();
    assert_one_line_failure(&out, 1, "SYNC_INTERVAL_MS");

    // A key file that is not a key.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    let out = finn(&config, &["keys", "id", junk.to_str().unwrap()]);
    assert_one_line_failure(&out, 1, "junk.pem");

    // Missing input file for an import.
    ok_json(&config, &["init", "--json"]);
    let out = finn(&config, &["beads", "import", "/nonexistent/issues.jsonl"]);
    assert_one_line_failure(&out, 1, "/nonexistent/issues.jsonl");

    // A garbage segment in the WAL is reported, not panicked on.
    let wal = dir.path().join("data/wal");
    for entry in std::fs::read_dir(&wal).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wal") {
            std::fs::write(&path, b"garbage garbage garbage garbage").unwrap();
        }
    }
    let out = finn(&config, &["wal", "verify"]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));

    // Refusing to prune what is not checkpointed.
    let out = finn(&config, &["wal", "prune", "--through", "5"]);
    assert!(!out.status.success());
}

#[test]
fn every_command_has_help_with_an_example() {
    let commands: &[&[&str]] = &[
        &["init"],
        &["run"],
        &["status"],
        &["health"],
        &["wal", "dump"],
        &["wal", "verify"],
        &["wal", "stats"],
        &["wal", "compact"],
        &["wal", "prune"],
        &["checkpoint", "create"],
        &["checkpoint", "list"],
        &["checkpoint", "verify"],
        &["checkpoint", "gc"],
        &["retention"],
        &["recover"],
        &["keys", "generate"],
        &["keys", "id"],
        &["beads", "import"],
        &["beads", "export"],
        &["beads", "ready"],
        &["beads", "claim"],
        &["beads", "release"],
        &["beads", "show"],
        &["learnings", "add"],
        &["learnings", "list"],
        &["learnings", "score"],
        &["learnings", "import"],
        &["learnings", "match"],
        &["identity", "check"],
        &["identity", "show"],
        &["identity", "watch"],
        &["drill"],
    ];
    for cmd in commands {
        let out = Command::new(FINN)
            .args(*cmd)
            .arg("--help")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd:?} --help failed");
        assert!(
            text.contains("Example"),
            "{cmd:?} --help has no example:\n{text}"
        );
        assert!(
            text.contains(&format!("finn {}", cmd[0])) || text.contains("finn "),
            "{cmd:?}"
        );
    }
}
