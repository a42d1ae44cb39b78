//! Operating a deployment from the command line: `finn run` serving metrics and status,
//! `finn status` reading the running runtime, `finn checkpoint verify --remote [--drill]`,
//! `finn retention` (dry run by default, then `--apply`), and a damaged remote failing loudly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::{FINN, finn, json_of, ok_json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn deployment(root: &Path, port: u16) -> PathBuf {
    let config = root.join("finn.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\n\
             [store]\nurl = \"file://{}\"\n\
             [keys]\nsigning_key = \"{}\"\n\
             [sync]\ninterval_ms = 200\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n\
             [verify]\ninterval_ms = 400\ndrill_interval_ms = 600\n",
            root.join("remote").display(),
            root.join("keys/signing.pem").display()
        ),
    )
    .unwrap();
    config
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    sock.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = String::new();
    sock.read_to_string(&mut raw).ok()?;
    Some(raw.split_once("\r\n\r\n")?.1.to_owned())
}

#[test]
fn run_serves_status_and_metrics_then_verify_and_retention_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = deployment(dir.path(), port);
    ok_json(&config, &["init", "--json"]);

    let mut run = Command::new(FINN)
        .arg("--config")
        .arg(&config)
        .args(["run"])
        .spawn()
        .unwrap();
    // `finn status` reads the running runtime once its endpoint is up and the verification
    // tasks have run.
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        std::thread::sleep(Duration::from_millis(100));
        let s = ok_json(&config, &["status", "--json"]);
        let ran = |id: &str| {
            s["status"]["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["id"] == id && t["last_success_ms"].is_u64())
        };
        if s["source"] == "running" && ran("remote_verify") && ran("restore_drill") {
            break s;
        }
        assert!(Instant::now() < deadline, "the runtime never reported: {s}");
    };
    assert!(live["status"]["remote_requests"]["put"].as_u64().unwrap() > 0);
    assert_eq!(live["status"]["verification"]["ok"], true);
    assert_eq!(live["status"]["drill"]["ok"], true);
    let metrics = http_get(port, "/metrics").unwrap();
    assert!(metrics.contains("finn_ship_lag_records"), "{metrics}");
    assert!(metrics.ends_with("# EOF\n"));
    let stopped = Command::new("kill")
        .arg("-INT")
        .arg(run.id().to_string())
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(run.wait().unwrap().success());

    // Stopped: status falls back to the data directory.
    let s = ok_json(&config, &["status", "--json"]);
    assert_eq!(s["source"], "data_dir");
    assert_eq!(s["in_sync"], true, "{s}");

    // Verification by hand, with a drill.
    let v = ok_json(
        &config,
        &["checkpoint", "verify", "--remote", "--drill", "--json"],
    );
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["drill"]["ok"], true);
    let checkpoints = v["validation"]["manifests"].as_u64().unwrap();
    assert!(checkpoints >= 2, "{v}");

    // Retention: a dry run by default, then for real.
    let plan = ok_json(&config, &["retention", "--keep-last", "1", "--json"]);
    assert_eq!(plan["dry_run"], true);
    let doomed = plan["deleted_manifests"].as_array().unwrap().len() as u64;
    assert_eq!(doomed, checkpoints - 1, "{plan}");
    let again = ok_json(&config, &["checkpoint", "verify", "--remote", "--json"]);
    assert_eq!(
        again["validation"]["manifests"], checkpoints,
        "a dry run deletes nothing"
    );
    let applied = ok_json(
        &config,
        &["retention", "--keep-last", "1", "--apply", "--json"],
    );
    assert_eq!(applied["dry_run"], false);
    assert_eq!(applied["undeleted"].as_array().unwrap().len(), 0);
    assert_eq!(
        applied["retained_bytes"],
        applied["expected_retained_bytes"]
    );
    let after = ok_json(&config, &["checkpoint", "verify", "--remote", "--json"]);
    assert_eq!(after["ok"], true, "{after}");

    // Lost objects fail verification with exit 1, named.
    let objects = walk(&dir.path().join("remote/objects"));
    assert!(!objects.is_empty());
    for object in objects {
        std::fs::remove_file(&object).unwrap();
    }
    let out = finn(&config, &["checkpoint", "verify", "--remote", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let broken = json_of(&out, &["checkpoint", "verify", "--remote"]);
    assert_eq!(broken["ok"], false);
    assert!(
        broken["validation"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "object_missing"),
        "{broken}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
