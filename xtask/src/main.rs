//! Project automation for finn, in the cargo-xtask style: `cargo xtask <task>`.
//!
//! Every task runs from the workspace root. The tasks are what CI runs (`cargo xtask ci`), so a
//! developer can reproduce CI locally with one command.

mod bench;
mod ci;
mod crash;
mod deny;
mod fuzz;
mod graph;
mod services;
mod shell;
mod test;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  test [-- <test args>]   unit and integration tests of the whole workspace, with a moto S3
                          server on loopback and the shared fixtures (what the README promises)
  check-graph             fail if a crate depends on a finn crate outside the layer graph
  deny                    cargo-deny, fully offline, against ../shared/advisory-db.tar.gz
  bench [--quick]         criterion benchmarks; writes target/finn-bench/report.{md,json}
  crash --target T [--iterations N] [--seed S]
                          SIGKILL campaign, T in wal, beads, learning, recovery, runtime, all
                          (reproducible by seed; runtime = `finn drill` in a loop)
  fuzz [--time SECS] [--target T]
                          every cargo-fuzz target in fuzz/ for SECS seconds (default 60)
  ci                      fmt check, clippy -D warnings, check-graph, deny, tests, docs, bench --quick
";

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    shell::enter_workspace_root()?;
    match task.as_str() {
        "test" => test::run(&rest),
        "check-graph" => graph::run(),
        "deny" => deny::run(),
        "bench" => bench::run(&rest),
        "ci" => ci::run(),
        "crash" => crash::run(&rest),
        "fuzz" => fuzz::run(&rest),
        "" | "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown task `{other}`\n\n{USAGE}"),
    }
}
