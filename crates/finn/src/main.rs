//! The `finn` command-line tool: operate a finn data directory and run disaster-recovery drills.
//!
//! Exit codes: 0 success, 1 failure (the error is one line on stderr), 2 bad usage,
//! 3 a drill found lost acknowledged writes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return cli::usage_error(&err),
    };
    cli::init_logging(cli.global.verbose);
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` joins the cause chain on one line: "cannot open WAL: I/O error on …: denied".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
