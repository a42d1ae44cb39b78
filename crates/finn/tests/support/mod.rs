//! What the CLI tests share: running the `finn` binary against a config file, reading its JSON,
//! and a deployment laid out as on a real machine.

// Each test binary includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The `finn` binary cargo built for these tests.
pub const FINN: &str = env!("CARGO_BIN_EXE_finn");

/// Runs `finn --config <config> <args>` with the environment variables that would override the
/// config removed, so the test sees exactly its own configuration.
pub fn finn(config: &Path, args: &[&str]) -> Output {
    Command::new(FINN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("DATA_DIR")
        .env_remove("R2_BUCKET")
        .env_remove("FINN_STORE_URL")
        .output()
        .expect("the finn binary runs")
}

/// The JSON a command printed, or a panic showing what it printed instead.
pub fn json_of(out: &Output, args: &[&str]) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "finn {args:?} printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs a command that must succeed and print JSON.
pub fn ok_json(config: &Path, args: &[&str]) -> Value {
    let out = finn(config, args);
    assert!(
        out.status.success(),
        "finn {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&out, args)
}

/// A deployment whose config, key and object store live outside the data directory, as they
/// would on a real machine (the data directory is what a disk loss takes).
pub fn deployment(root: &Path) -> PathBuf {
    let config = root.join("finn.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\n[store]\nurl = \"file://{}\"\n[keys]\nsigning_key = \"{}\"\n",
            root.join("remote").display(),
            root.join("keys/signing.pem").display()
        ),
    )
    .expect("the test directory is writable");
    config
}
