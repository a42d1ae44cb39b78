//! Boot-loop detection across real processes: each boot is a new process (the test binary
//! re-executing itself), as under a supervisor restarting a crashing agent. The anchors kept the
//! failure count in memory and never saw such a loop (anchors.md §4.5-1).

use std::path::Path;
use std::time::Duration;

use finn_recovery::{Cascade, Layout, LoopPolicy, SourceKind, TemplateSource};

use crate::util::*;

const T0: u64 = 1_763_000_000_000;
const MINUTE: u64 = 60_000;

/// The child: one boot. `FINN_TEST_REMOTE` = `crash` makes the remote source kill the process
/// mid-restore; `good` makes it work. Writes the report as JSON to `FINN_TEST_OUT`.
#[tokio::test]
async fn boot_child() {
    if child_role().as_deref() != Some("boot") {
        return;
    }
    let data = std::env::var("FINN_TEST_DATA").unwrap();
    let now: u64 = std::env::var("FINN_TEST_NOW_MS").unwrap().parse().unwrap();
    let remote = match std::env::var("FINN_TEST_REMOTE").unwrap().as_str() {
        "crash" => Behaviour::Abort,
        _ => Behaviour::Good,
    };
    let result = Cascade::builder(Layout::new(&data))
        .wal_options(wal_options())
        .clock(ManualClock::at(now))
        .loop_policy(LoopPolicy {
            max_failures: 3,
            window: Duration::from_secs(600),
        })
        .source(
            FakeSource::new("remote", SourceKind::ObjectStore, state("remote", 3)).behaving(remote),
        )
        .source(
            TemplateSource::bundled("template")
                .with_file("default.json", b"{}".to_vec())
                .unwrap(),
        )
        .build()
        .run()
        .await;
    let report = match &result {
        Ok(r) => serde_json::to_string(r.report()).unwrap(),
        Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
    };
    std::fs::write(std::env::var("FINN_TEST_OUT").unwrap(), report).unwrap();
}

fn boot(data: &Path, now: u64, remote: &str) -> Option<serde_json::Value> {
    let out = data.with_extension(format!("boot-{now}.json"));
    let status = spawn_child(
        "boot_loop::boot_child",
        &[
            (CHILD_ENV, "boot".into()),
            ("FINN_TEST_DATA", data.display().to_string()),
            ("FINN_TEST_NOW_MS", now.to_string()),
            ("FINN_TEST_REMOTE", remote.into()),
            ("FINN_TEST_OUT", out.display().to_string()),
        ],
    )
    .wait()
    .unwrap();
    if !status.success() {
        return None;
    }
    Some(serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap())
}

#[test]
fn a_crash_loop_across_processes_is_detected_and_ends_after_the_window() {
    if child_role().is_some() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // Three boots die while restoring (a poisoned checkpoint, an OOM): each leaves a `pending`
    // attempt in the journal, which the next boot counts as a failure.
    for i in 0..3 {
        assert!(
            boot(&data, T0 + i * 1000, "crash").is_none(),
            "boot {i} must crash"
        );
    }
    // The fourth boot inside the window does not touch the remote source (which would crash
    // again): it comes up from the template, LOOP_DETECTED, with the reason.
    let fourth = boot(&data, T0 + 3000, "crash").expect("the fourth boot comes up");
    assert_eq!(fourth["state"], "LOOP_DETECTED", "{fourth:#}");
    assert_eq!(fourth["degraded"]["reason"], "boot_loop");
    assert_eq!(fourth["degraded"]["failures"], 3);
    assert_eq!(fourth["source"]["name"], "template");
    // Still inside the window: still handled as a loop (a degraded start is not a failure, but
    // it does not erase the crashes either).
    let fifth = boot(&data, T0 + 5 * MINUTE, "crash").expect("comes up again");
    assert_eq!(fifth["state"], "LOOP_DETECTED");
    // After the window, remote restores are tried again; the remote has been fixed.
    let sixth = boot(&data, T0 + 11 * MINUTE, "good").expect("normal boot");
    assert_eq!(sixth["state"], "RUNNING", "{sixth:#}");
    assert_eq!(sixth["source"]["name"], "remote");
    // A good boot reset the journal: one more crash is one failure, not a loop.
    let journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("recovery/boot-journal.json")).unwrap())
            .unwrap();
    assert_eq!(journal["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(journal["attempts"][0]["outcome"], "running");
}
