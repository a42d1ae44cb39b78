//! `cargo xtask test`: every test of the workspace, with the real services they need.

use anyhow::{Result, bail};

use crate::{services, shell};

pub(crate) fn run(extra: &[String]) -> Result<()> {
    let shared = shell::shared_dir();
    if !shared.join("fixtures").is_dir() {
        bail!(
            "the shared fixtures are missing at {}; put ../shared beside the checkout or set FINN_SHARED_DIR",
            shared.display()
        );
    }
    services::check_git()?;
    let moto = services::start_moto()?;

    let nextest = shell::has_program("cargo-nextest", &["nextest", "--version"]);
    let mut cmd = shell::cargo();
    if nextest {
        // One process per test: fail points and crash tests are process-global.
        cmd.args(["nextest", "run", "--no-fail-fast"]);
    } else {
        cmd.args(["test", "--no-fail-fast"]);
    }
    // `cargo xtask test -p finn-wal` narrows the run; without a package selection it is everything.
    let selects_packages = extra
        .iter()
        .any(|a| a == "-p" || a.starts_with("--package"));
    if !selects_packages {
        cmd.arg("--workspace");
    }
    cmd.args(extra)
        .env("FINN_XTASK", "1")
        .env("FINN_SHARED_DIR", &shared)
        .env("FINN_TEST_S3_ENDPOINT", &moto.endpoint)
        .env("FINN_TEST_S3_BUCKET", services::BUCKET);
    let result = shell::run(&mut cmd);
    drop(moto);
    result
}
