//! Command implementations. `args` holds the surface; one module per command family.

pub(crate) mod args;
#[cfg(feature = "full")]
mod components;
#[cfg(all(feature = "recovery", feature = "scheduler"))]
mod drill;
#[cfg(feature = "wal")]
mod init;
mod keys;
#[cfg(feature = "full")]
mod ops;
#[cfg(feature = "full")]
mod restore;
#[cfg(feature = "wal")]
mod wal;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use finn::config::{CONFIG_FILE_NAME, Config};

use args::{Cli, Command};

/// Prints a clap error as one line (help and version go out in full) and picks the exit code.
pub(crate) fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let rendered = err.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("error: {first} (see 'finn --help')");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr; `RUST_LOG` wins over `-v`.
pub(crate) fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// What every command gets: the loaded configuration and the output mode.
pub(crate) struct Context {
    pub config: Config,
    pub json: bool,
}

impl Context {
    fn load(global: &args::Global) -> Result<Self> {
        // Explicit --config wins; otherwise <data-dir>/finn.toml when it exists.
        let data_dir_hint = global
            .data_dir
            .clone()
            .or_else(|| std::env::var_os("DATA_DIR").map(PathBuf::from))
            .unwrap_or_else(|| Config::default().data_dir);
        let file = match &global.config {
            Some(path) => Some(path.clone()),
            None => {
                let candidate = data_dir_hint.join(CONFIG_FILE_NAME);
                candidate.is_file().then_some(candidate)
            }
        };
        let mut config = Config::load(file.as_deref())?;
        if let Some(dir) = &global.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(Self {
            config,
            json: global.json,
        })
    }

    /// Fails unless the data directory exists (commands other than `init` never create it).
    pub(crate) fn require_data_dir(&self) -> Result<()> {
        if !self.config.data_dir.is_dir() {
            bail!(
                "data directory {} does not exist; run 'finn init --data-dir {}' first",
                self.config.data_dir.display(),
                self.config.data_dir.display()
            );
        }
        Ok(())
    }
}

/// A spinner on stderr for long work (uploads, restores); hidden for `--json` and when stderr
/// is not a terminal, so scripts see clean output.
pub(crate) fn spinner(json: bool, message: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json(value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON output")?;
    println!("{text}");
    Ok(())
}

/// The error for a command whose crate has not landed in this build.
pub(crate) fn not_available(command: &str, krate: &str) -> anyhow::Error {
    anyhow::anyhow!("'finn {command}' is not available yet: {krate} is not built into this finn")
}

pub(crate) fn dispatch(cli: Cli) -> Result<ExitCode> {
    // The drill's writer gets everything on its command line; it never reads a config file.
    if let Command::DrillWriter(args) = cli.command {
        #[cfg(all(feature = "recovery", feature = "scheduler"))]
        return drill::writer(args);
        #[cfg(not(all(feature = "recovery", feature = "scheduler")))]
        {
            let _ = args;
            return Err(not_available("drill", "the full runtime"));
        }
    }
    let ctx = Context::load(&cli.global)?;
    run(&ctx, cli.command)
}

fn run(ctx: &Context, command: Command) -> Result<ExitCode> {
    match command {
        #[cfg(feature = "wal")]
        Command::Init(args) => init::init(ctx, args),
        #[cfg(feature = "wal")]
        Command::Status => init::status(ctx),
        #[cfg(feature = "wal")]
        Command::Wal(command) => wal::run(ctx, command),
        #[cfg(not(feature = "wal"))]
        Command::Init(_) => Err(not_available("init", "finn-wal")),
        #[cfg(not(feature = "wal"))]
        Command::Status => Err(not_available("status", "finn-wal")),
        #[cfg(not(feature = "wal"))]
        Command::Wal(_) => Err(not_available("wal", "finn-wal")),
        #[cfg(feature = "full")]
        Command::Run(args) => ops::run(ctx, args),
        #[cfg(feature = "full")]
        Command::Health => ops::health(ctx),
        #[cfg(feature = "full")]
        Command::Checkpoint(c) => ops::checkpoint(ctx, c),
        #[cfg(feature = "full")]
        Command::Retention(args) => ops::retention(ctx, args),
        #[cfg(feature = "full")]
        Command::Recover(args) => ops::recover(ctx, args),
        #[cfg(feature = "full")]
        Command::Restore(args) => restore::restore(ctx, args),
        #[cfg(feature = "full")]
        Command::Keys(c) => ops::keys(ctx, c),
        #[cfg(feature = "full")]
        Command::Beads(c) => components::beads(ctx, c),
        #[cfg(feature = "full")]
        Command::Learnings(c) => components::learnings(ctx, c),
        #[cfg(feature = "full")]
        Command::Identity(c) => components::identity(ctx, c),
        #[cfg(not(feature = "full"))]
        Command::Run(_) => Err(not_available("run", "the full runtime")),
        #[cfg(not(feature = "full"))]
        Command::Health => Err(not_available("health", "finn-scheduler")),
        #[cfg(not(feature = "full"))]
        Command::Checkpoint(_) => Err(not_available("checkpoint", "finn-checkpoint")),
        #[cfg(not(feature = "full"))]
        Command::Retention(_) => Err(not_available("retention", "finn-checkpoint")),
        #[cfg(not(feature = "full"))]
        Command::Recover(_) => Err(not_available("recover", "finn-recovery")),
        #[cfg(not(feature = "full"))]
        Command::Restore(_) => Err(not_available("restore", "finn-checkpoint")),
        #[cfg(not(feature = "full"))]
        Command::Keys(_) => Err(not_available("keys", "finn-checkpoint")),
        #[cfg(not(feature = "full"))]
        Command::Beads(_) => Err(not_available("beads", "finn-beads")),
        #[cfg(not(feature = "full"))]
        Command::Learnings(_) => Err(not_available("learnings", "finn-learning")),
        #[cfg(not(feature = "full"))]
        Command::Identity(_) => Err(not_available("identity", "finn-identity")),
        #[cfg(all(feature = "recovery", feature = "scheduler"))]
        Command::Drill(args) => drill::drill(ctx, args),
        #[cfg(not(all(feature = "recovery", feature = "scheduler")))]
        Command::Drill(_) => Err(not_available("drill", "the full runtime")),
        Command::DrillWriter(_) => Err(not_available("drill-writer", "the full runtime")),
    }
}
