//! `cargo xtask deny`: cargo-deny with no network, against the advisory database snapshot that CI
//! places in `../shared/advisory-db.tar.gz` (recipe B of ../shared/reference/infra.md §2.6).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::shell;

/// Tested with this release; `--locked` keeps its own dependencies as its authors tested them.
const CARGO_DENY: &str = "cargo-deny@0.20.2";
/// cargo-deny names its copy of the default advisory database by a hash of the database URL.
const DB_DIR: &str = "target/advisory-dbs/advisory-db-3157b0e258782691";

pub(crate) fn run() -> Result<()> {
    if !shell::has_program("cargo-deny", &["deny", "--version"]) {
        shell::run(shell::cargo().args(["install", "--locked", CARGO_DENY]))?;
    }
    unpack_advisory_db()?;
    // `--offline` makes cargo-deny read the database in `db-path` without fetching it; `-L info`
    // prints each accepted advisory (`note[advisory-ignored]`) with the reason from deny.toml.
    shell::run(shell::cargo().args(["deny", "--offline", "-L", "info", "check"]))
}

/// Unpacks the snapshot into the directory cargo-deny expects and makes it a git repository,
/// because cargo-deny reads the database's age from git.
fn unpack_advisory_db() -> Result<()> {
    let archive = shell::shared_dir().join("advisory-db.tar.gz");
    if !archive.is_file() {
        bail!(
            "advisory database snapshot missing at {}",
            archive.display()
        );
    }
    let db = Path::new(DB_DIR);
    if db.exists() {
        std::fs::remove_dir_all(db).with_context(|| format!("cannot remove stale {DB_DIR}"))?;
    }
    std::fs::create_dir_all(db).with_context(|| format!("cannot create {DB_DIR}"))?;
    shell::run(
        Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .arg("-C")
            .arg(db),
    )?;
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(db).args(args);
        cmd
    };
    shell::run(&mut git(&["init", "-q", "-b", "main"]))?;
    shell::run(&mut git(&["add", "-A"]))?;
    shell::run(&mut git(&[
        "-c",
        "user.name=finn-ci",
        "-c",
        "user.email=ci@localhost",
        "commit",
        "-qm",
        "advisory-db snapshot",
    ]))
}
