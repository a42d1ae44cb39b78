//! `cargo xtask ci`: exactly what CI runs, in order of cost, failing at the first broken step.

use anyhow::Result;

use crate::{bench, deny, fuzz, graph, shell, test};

pub(crate) fn run() -> Result<()> {
    shell::run(shell::cargo().args(["fmt", "--all", "--", "--check"]))?;
    graph::run()?;
    shell::run(shell::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    deny::run()?;
    test::run(&[])?;
    // A short run of every fuzz target: the seeds and the shared fixtures replayed, then ten
    // seconds of mutation each (`cargo xtask fuzz --time 600` for a real campaign).
    fuzz::run(&["--time".to_owned(), "10".to_owned()])?;
    shell::run(
        shell::cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    bench::run(&["--quick".to_owned()])
}
