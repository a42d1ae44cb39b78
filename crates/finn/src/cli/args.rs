//! The whole command-line surface: every command, flag and `--help` example lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// finn: crash-resilient state for AI-agent runtimes.
#[derive(Debug, Parser)]
#[command(
    name = "finn",
    version,
    about = "Crash-resilient state for AI-agent runtimes: WAL, signed checkpoints, recovery cascade",
    after_help = "Examples:\n  finn drill                      # disaster-recovery drill on embedded defaults\n  finn init --data-dir ./agent    # create a data directory with a signing key\n  finn --data-dir ./agent run     # run the full runtime until Ctrl-C\n  finn --data-dir ./agent status --json",
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Data directory (WAL, state, keys). Default: ./finn-data, or DATA_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file. Default: <data-dir>/finn.toml when it exists.
    #[arg(long, global = true, value_name = "FILE", env = "FINN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Machine-readable JSON output (one document on stdout) for read commands.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (repeat for more: -v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a data directory: config file, signing key, empty WAL.
    #[command(after_help = "Example:\n  finn init --data-dir ./agent --store s3://my-bucket/agent")]
    Init(InitArgs),
    /// Run the full runtime in the foreground (recover, replay, schedule) until Ctrl-C.
    #[command(
        after_help = "Example:\n  finn --data-dir ./agent run\n  RUST_LOG=debug finn --data-dir ./agent run"
    )]
    Run(RunArgs),
    /// Show the state of a data directory: WAL, last checkpoint, recovery, health.
    #[command(after_help = "Example:\n  finn --data-dir ./agent status --json")]
    Status,
    /// Health report with the anchors' aggregation rules (exit 0 healthy, 1 degraded or unhealthy).
    #[command(after_help = "Example:\n  finn --data-dir ./agent health --json")]
    Health,
    /// Inspect and maintain the write-ahead log.
    #[command(subcommand)]
    Wal(WalCommand),
    /// Create, list, verify and garbage-collect checkpoints in the object store.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Plan (default) or apply retention: which checkpoints and shipped WAL to keep, and why.
    #[command(
        after_help = "Examples:\n  finn retention --keep-last 10 --pitr-window 3d --pin 42   # dry run\n  finn retention --keep-last 10 --pitr-window 3d --apply    # delete (runtime stopped)"
    )]
    Retention(RetentionArgs),
    /// Rebuild local state through the recovery cascade (object store → git → template).
    #[command(
        after_help = "Example:\n  finn --data-dir ./agent recover --dry-run --json\n  finn --data-dir ./agent recover"
    )]
    Recover(RecoverArgs),
    /// Restore the data directory to a point in time: the latest, an LSN, a moment or a checkpoint.
    #[command(
        after_help = "Examples:\n  finn --data-dir ./agent restore --to-time 2026-11-22T14:02:00Z --dry-run\n  finn --data-dir ./agent restore --to-lsn 48211 --force\n  finn --data-dir ./agent restore --to-checkpoint 17 --force --json\n  finn --data-dir /data restore --if-not-exists --if-remote-exists   # container entrypoint\n\nSee docs/restore.md."
    )]
    Restore(RestoreArgs),
    /// Manage Ed25519 signing keys for checkpoint manifests.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Work items (beads): import/export issues.jsonl, ready queue, claims.
    #[command(subcommand)]
    Beads(BeadsCommand),
    /// The compound learning store.
    #[command(subcommand)]
    Learnings(LearningsCommand),
    /// Identity documents (BEAUVOIR.md).
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Disaster-recovery drill: write, SIGKILL, wipe the data dir, recover, verify nothing acknowledged is lost.
    #[command(
        after_help = "Examples:\n  finn drill\n  finn drill --json --seed 42\n  finn drill --store s3://bucket/drill --endpoint http://127.0.0.1:5055 --allow-http"
    )]
    Drill(DrillArgs),
    /// The drill's writer process (internal).
    #[command(hide = true)]
    DrillWriter(DrillWriterArgs),
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Object store URL for checkpoints (file:///dir, s3://bucket/prefix). Default: <data-dir>/objects.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Overwrite an existing config file (never an existing key or WAL).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// Take the object-store lease over from a writer known to be dead (instead of waiting up
    /// to its 60 s TTL).
    #[arg(long)]
    pub force_takeover: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RecoverArgs {
    /// Show what recovery would restore, without touching the data directory.
    #[arg(long)]
    pub dry_run: bool,
    /// Take the object-store lease over from a writer known to be dead.
    #[arg(long)]
    pub force_takeover: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// Restore the state after the last record at or below this LSN.
    #[arg(long, value_name = "LSN", conflicts_with_all = ["to_time", "to_checkpoint"])]
    pub to_lsn: Option<u64>,
    /// Restore the state after the last record stamped at or before this time (RFC 3339, or
    /// milliseconds since the Unix epoch).
    #[arg(long, value_name = "TIME", conflicts_with = "to_checkpoint")]
    pub to_time: Option<String>,
    /// Restore exactly this checkpoint version (no WAL replay).
    #[arg(long, value_name = "VERSION")]
    pub to_checkpoint: Option<u64>,
    /// Print the plan (base, objects, bytes, the exact LSN reached) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do nothing (exit 0) when the data directory already holds state.
    #[arg(long)]
    pub if_not_exists: bool,
    /// Do nothing (exit 0) when the object store holds nothing to restore.
    #[arg(long)]
    pub if_remote_exists: bool,
    /// Replace a data directory that holds state (the old state and WAL are moved aside).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WalCommand {
    /// Print records (LSN, kind, op, key, payload).
    #[command(after_help = "Example:\n  finn wal dump --from 100 --limit 20 --json")]
    Dump {
        /// First LSN to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Print at most this many records.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Read every record and check every frame; exit 1 on damage.
    #[command(after_help = "Example:\n  finn wal verify --json")]
    Verify,
    /// Segment count, sizes, LSN range, disk pressure.
    #[command(after_help = "Example:\n  finn wal stats --json")]
    Stats,
    /// Fold keyed records to the latest value per key (needs the writer stopped).
    #[command(after_help = "Example:\n  finn wal compact")]
    Compact,
    /// Delete whole segments at or below an LSN that is checkpointed (needs the writer stopped).
    #[command(after_help = "Example:\n  finn wal prune --through 5000")]
    Prune {
        /// Prune through this LSN. It must be covered by a checkpoint and shipped.
        #[arg(long, value_name = "LSN")]
        through: u64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CheckpointCommand {
    /// Checkpoint the data directory to the object store now.
    #[command(after_help = "Example:\n  finn --data-dir ./agent checkpoint create")]
    Create,
    /// List checkpoints in the object store, newest first.
    #[command(after_help = "Example:\n  finn --data-dir ./agent checkpoint list --json")]
    List,
    /// Download and verify a checkpoint (signature and every file's hash), or with --remote
    /// the whole remote: every manifest and chain link, every object, shipped WAL without gaps.
    #[command(
        after_help = "Examples:\n  finn checkpoint verify                  # the newest checkpoint\n  finn checkpoint verify 7                # checkpoint 7\n  finn checkpoint verify --remote         # the whole remote, incrementally\n  finn checkpoint verify --remote --full --drill --json"
    )]
    Verify {
        /// Checkpoint id; default: the newest.
        id: Option<String>,
        /// Validate the whole remote (exit 1 on any finding).
        #[arg(long, conflicts_with = "id")]
        remote: bool,
        /// With --remote: download and check every object again, ignoring the local index.
        #[arg(long, requires = "remote")]
        full: bool,
        /// With --remote: already-verified objects downloaded again at random.
        #[arg(long, requires = "remote", value_name = "N")]
        sample: Option<usize>,
        /// With --remote: also run a restore drill into a scratch directory.
        #[arg(long, requires = "remote")]
        drill: bool,
    },
    /// Delete checkpoints beyond the retention count (10 newest), stale intents and unreferenced objects.
    #[command(after_help = "Example:\n  finn checkpoint gc --json")]
    Gc,
}

#[derive(Debug, Args)]
pub(crate) struct RetentionArgs {
    /// Newest checkpoints kept, by recorded creation time. Default: retention.keep_last (10).
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep checkpoints younger than this (90s, 30m, 12h, 7d). Default: retention.keep_within_secs.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub keep_within: Option<std::time::Duration>,
    /// Keep shipped WAL (and the checkpoint it starts from) for point-in-time restores this far
    /// back. Default: retention.pitr_window_secs.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub pitr_window: Option<std::time::Duration>,
    /// A checkpoint version that never expires (repeatable; adds to retention.pinned).
    #[arg(long, value_name = "VERSION")]
    pub pin: Vec<u64>,
    /// Delete for real (takes the object-store lease: stop `finn run` first). Default: dry run.
    #[arg(long)]
    pub apply: bool,
}

/// `90s`, `30m`, `12h`, `7d`, or plain seconds.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 12h or 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("unknown unit {unit:?} in {s:?}; use s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Generate an Ed25519 signing key (PEM, mode 0600).
    #[command(after_help = "Example:\n  finn keys generate --out ./agent/keys/signing.pem")]
    Generate {
        /// Output file. Default: the configured signing key path.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Overwrite an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Print the key id (16 hex) and public key of a signing or public key file.
    #[command(after_help = "Example:\n  finn keys id ./agent/keys/signing.pem --json")]
    Id {
        /// Key file. Default: the configured signing key.
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BeadsCommand {
    /// Import a beads issues.jsonl file into the WAL.
    #[command(after_help = "Example:\n  finn beads import .beads/issues.jsonl")]
    Import {
        /// The issues.jsonl file.
        file: PathBuf,
    },
    /// Export every bead as issues.jsonl (stdout, or a file).
    #[command(after_help = "Example:\n  finn beads export --out issues.jsonl")]
    Export {
        /// Output file. Default: stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List beads that are ready to work on, highest priority first.
    #[command(after_help = "Example:\n  finn beads ready --json")]
    Ready,
    /// Claim the best ready bead for a worker with a time-limited lease (prints the claim id).
    #[command(after_help = "Example:\n  finn beads claim --owner agent-1 --lease-secs 600 --json")]
    Claim {
        /// Who claims it.
        #[arg(long)]
        owner: String,
        /// Lease length in seconds.
        #[arg(long, default_value_t = 900)]
        lease_secs: u64,
    },
    /// Release a claimed bead: done (closes it) or blocked.
    #[command(
        after_help = "Example:\n  finn beads release bd-12 --claim 01J… --owner agent-1\n  finn beads release bd-12 --claim 01J… --owner agent-1 --blocked \"waiting for review\""
    )]
    Release {
        /// Bead id.
        id: String,
        /// Claim id printed by 'finn beads claim'.
        #[arg(long)]
        claim: String,
        /// Who holds the claim.
        #[arg(long)]
        owner: String,
        /// Mark the bead blocked with this reason instead of closing it.
        #[arg(long, value_name = "REASON")]
        blocked: Option<String>,
    },
    /// Show one bead.
    #[command(after_help = "Example:\n  finn beads show bd-12 --json")]
    Show {
        /// Bead id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum LearningsCommand {
    /// Add a learning (it passes the quality gates or is rejected with the failing gate).
    #[command(
        after_help = "Example:\n  finn learnings add --trigger \"When cargo test hangs and if tests share a port\" \\\n    --pattern \"A common pattern: parallel tests bind the same port\" \\\n    --solution \"Run with --test-threads=1; tested and verified.\""
    )]
    Add {
        /// When this learning applies.
        #[arg(long)]
        trigger: String,
        /// The recurring pattern behind it.
        #[arg(long)]
        pattern: String,
        /// What to do.
        #[arg(long)]
        solution: String,
    },
    /// List learnings.
    #[command(after_help = "Example:\n  finn learnings list --json")]
    List,
    /// Score a candidate learning against the quality gates without storing it.
    #[command(
        after_help = "Example:\n  finn learnings score --trigger \"…\" --solution \"…\" --json"
    )]
    Score {
        /// When this learning applies.
        #[arg(long)]
        trigger: String,
        /// The recurring pattern behind it.
        #[arg(long)]
        pattern: String,
        /// What to do.
        #[arg(long)]
        solution: String,
    },
    /// Import learnings from a Loa learnings JSON file.
    #[command(after_help = "Example:\n  finn learnings import learnings.json")]
    Import {
        /// The file.
        file: PathBuf,
    },
    /// Find learnings that match a situation.
    #[command(after_help = "Example:\n  finn learnings match \"tests hang on CI\" --json")]
    Match {
        /// Free text describing the situation.
        query: String,
        /// At most this many results.
        #[arg(long, default_value_t = 5)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Parse and validate an identity document; exit 1 if invalid.
    #[command(after_help = "Example:\n  finn identity check BEAUVOIR.md --json")]
    Check {
        /// The document. Default: the configured identity path.
        file: Option<PathBuf>,
    },
    /// Show the parsed document: sections, principles, boundaries, checksum.
    #[command(after_help = "Example:\n  finn identity show BEAUVOIR.md --json")]
    Show {
        /// The document. Default: the configured identity path.
        file: Option<PathBuf>,
    },
    /// Watch a document and print every validated change until Ctrl-C.
    #[command(after_help = "Example:\n  finn identity watch BEAUVOIR.md")]
    Watch {
        /// The document. Default: the configured identity path.
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DrillArgs {
    /// Object store standing in for the remote: default a local directory in the scratch dir;
    /// `s3://bucket/prefix` for S3-compatible stores.
    #[arg(long, value_name = "URL", env = "FINN_DRILL_STORE")]
    pub store: Option<String>,
    /// S3 endpoint (R2, MinIO, moto), e.g. http://127.0.0.1:5055.
    #[arg(long, value_name = "URL", env = "R2_ENDPOINT")]
    pub endpoint: Option<String>,
    /// S3 access key id.
    #[arg(
        long,
        value_name = "ID",
        env = "R2_ACCESS_KEY_ID",
        hide_env_values = true
    )]
    pub access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(
        long,
        value_name = "SECRET",
        env = "R2_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub secret_access_key: Option<String>,
    /// S3 region.
    #[arg(long, value_name = "REGION", default_value = "us-east-1")]
    pub region: String,
    /// Allow a plain-http endpoint.
    #[arg(long)]
    pub allow_http: bool,
    /// Random seed (kill moment and workload); printed in the report so a failure can be replayed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Kill the writer at a random moment between 25% and 100% of this many milliseconds.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    pub max_run_ms: u64,
    /// Scratch directory (kept afterwards). Default: a fresh temporary directory, removed on success.
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct DrillWriterArgs {
    /// Data directory of the writer.
    #[arg(long)]
    pub writer_data: PathBuf,
    /// Object store URL.
    #[arg(long)]
    pub writer_store: String,
    /// Signing key file (made by the parent).
    #[arg(long)]
    pub writer_key: PathBuf,
    /// S3 endpoint.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// S3 region.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Allow a plain-http endpoint.
    #[arg(long)]
    pub allow_http: bool,
    /// Workload seed.
    #[arg(long)]
    pub seed: u64,
    /// Checkpoint period in milliseconds.
    #[arg(long, default_value_t = 400)]
    pub checkpoint_ms: u64,
    /// WAL shipping period in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub ship_ms: u64,
}
