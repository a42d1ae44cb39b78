//! `finn wal {dump, verify, stats, compact, prune}`.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use finn::wal::{Kind, Lsn, Op, Options, Record, RecoveryMode, Wal};
use serde_json::{Value, json};

use super::args::WalCommand;
use super::{Context, print_json};

pub(crate) fn run(ctx: &Context, command: WalCommand) -> Result<ExitCode> {
    ctx.require_data_dir()?;
    let dir = ctx.config.wal_dir();
    if !dir.is_dir() {
        bail!("no WAL at {}; run 'finn init' first", dir.display());
    }
    match command {
        WalCommand::Dump { from, limit } => dump(ctx, from, limit),
        WalCommand::Verify => verify(ctx),
        WalCommand::Stats => stats(ctx),
        WalCommand::Compact => compact(ctx),
        WalCommand::Prune { through } => prune(ctx, through),
    }
}

fn open_read_only(ctx: &Context) -> Result<Wal> {
    let dir = ctx.config.wal_dir();
    Wal::open_read_only(&dir, Options::default())
        .with_context(|| format!("cannot open WAL {}", dir.display()))
}

fn open_writer(ctx: &Context) -> Result<Wal> {
    let dir = ctx.config.wal_dir();
    let (wal, _report) = Wal::open(&dir, Options::default())
        .with_context(|| format!("cannot open WAL {} for maintenance", dir.display()))?;
    Ok(wal)
}

/// A record as JSON: the payload as text when it is UTF-8, hex otherwise.
pub(crate) fn record_json(record: &Record) -> Value {
    let mut value = json!({
        "lsn": record.lsn.get(),
        "id": record.id.to_string(),
        "timestamp_ms": record.timestamp_ms,
        "kind": kind_name(record.kind),
        "op": op_name(record.op),
        "key": record.key,
    });
    match std::str::from_utf8(&record.payload) {
        Ok(text) => value["payload"] = json!(text),
        Err(_) => value["payload_hex"] = json!(hex_string(&record.payload)),
    }
    value
}

pub(crate) fn kind_name(kind: Kind) -> String {
    match kind {
        Kind::Session => "session".into(),
        Kind::Bead => "bead".into(),
        Kind::Memory => "memory".into(),
        Kind::Config => "config".into(),
        Kind::Audit => "audit".into(),
        Kind::Learning => "learning".into(),
        Kind::Checkpoint => "checkpoint".into(),
        Kind::State => "state".into(),
        Kind::User(n) => format!("user({n})"),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Event => "event",
        Op::Put => "put",
        Op::Delete => "delete",
    }
}

fn hex_string(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn dump(ctx: &Context, from: u64, limit: Option<usize>) -> Result<ExitCode> {
    let wal = open_read_only(ctx)?;
    let iter = wal.iter_from(Lsn::new(from)).context("cannot read WAL")?;
    let mut out = Vec::new();
    for record in iter.take(limit.unwrap_or(usize::MAX)) {
        let record = record.context("cannot read WAL")?;
        if ctx.json {
            out.push(record_json(&record));
        } else {
            let payload = match std::str::from_utf8(&record.payload) {
                Ok(text) if text.len() <= 120 => text.to_owned(),
                Ok(text) => format!("{}…", text.chars().take(120).collect::<String>()),
                Err(_) => format!("<{} bytes>", record.payload.len()),
            };
            println!(
                "{:>8} {} {:<10} {:<6} {:<24} {}",
                record.lsn.get(),
                record.id,
                kind_name(record.kind),
                op_name(record.op),
                record.key.as_deref().unwrap_or("-"),
                payload
            );
        }
    }
    if ctx.json {
        print_json(&Value::Array(out))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(ctx: &Context) -> Result<ExitCode> {
    // Read-only with no repair allowed: a torn tail is reported, not cut.
    let dir = ctx.config.wal_dir();
    let options = Options {
        recovery_mode: RecoveryMode::AbsoluteConsistency,
        ..Options::default()
    };
    let opened = Wal::open_read_only(&dir, options);
    let (ok, records, last, problem) = match opened {
        Err(e) => (false, 0, 0, Some(format!("{:#}", anyhow::Error::from(e)))),
        Ok(wal) => {
            let mut count = 0u64;
            let mut last = 0u64;
            let mut problem = None;
            match wal.iter_from(Lsn::ZERO) {
                Err(e) => problem = Some(format!("{:#}", anyhow::Error::from(e))),
                Ok(iter) => {
                    for record in iter {
                        match record {
                            Ok(r) => {
                                if r.lsn.get() <= last {
                                    problem = Some(format!(
                                        "LSN {} follows LSN {last}: not increasing",
                                        r.lsn
                                    ));
                                    break;
                                }
                                last = r.lsn.get();
                                count += 1;
                            }
                            Err(e) => {
                                problem = Some(format!("{:#}", anyhow::Error::from(e)));
                                break;
                            }
                        }
                    }
                }
            }
            (problem.is_none(), count, last, problem)
        }
    };
    if ctx.json {
        print_json(&json!({"ok": ok, "records": records, "last_lsn": last, "problem": problem}))?;
    } else if ok {
        println!("WAL ok: {records} records, last LSN {last}");
    } else {
        println!(
            "WAL damaged after {records} good records (last good LSN {last}): {}",
            problem.as_deref().unwrap_or("unknown")
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn stats(ctx: &Context) -> Result<ExitCode> {
    let wal = open_read_only(ctx)?;
    let status = wal.status();
    if ctx.json {
        print_json(&serde_json::to_value(&status).context("cannot encode status")?)?;
    } else {
        println!("directory     {}", wal.dir().display());
        println!(
            "LSN range     {} ..= {}",
            status.first_lsn.map_or("-".into(), |l| l.to_string()),
            status.last_lsn
        );
        println!("segments      {}", status.segments);
        println!("bytes         {}", status.wal_bytes);
        println!("garbage bytes {}", status.garbage_bytes);
        println!(
            "free bytes    {}",
            status
                .free_bytes
                .map_or("unknown".into(), |b| b.to_string())
        );
        println!("pressure      {:?}", status.pressure);
    }
    Ok(ExitCode::SUCCESS)
}

fn compact(ctx: &Context) -> Result<ExitCode> {
    let wal = open_writer(ctx)?;
    let report = wal.compact().context("compaction failed")?;
    if ctx.json {
        print_json(&serde_json::to_value(&report).context("cannot encode report")?)?;
    } else {
        println!(
            "compacted {} segments: {} → {} records, {} → {} bytes",
            report.segments_in,
            report.records_in,
            report.records_out,
            report.bytes_in,
            report.bytes_out
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn prune(ctx: &Context, through: u64) -> Result<ExitCode> {
    // Only what a checkpoint covers AND what was shipped may go: otherwise a disk loss would
    // lose the pruned records for good.
    let confirmed = finn::confirm::Confirmed::load(&ctx.config.data_dir)
        .context("cannot read the confirmation marker")?;
    let safe = confirmed.safe_to_prune();
    if through > safe.get() {
        bail!(
            "refusing to prune through LSN {through}: only LSN {safe} is both checkpointed and shipped; run 'finn checkpoint create' first"
        );
    }
    let wal = open_writer(ctx)?;
    let report = wal
        .prune_through(Lsn::new(through))
        .context("prune failed")?;
    if ctx.json {
        print_json(&serde_json::to_value(&report).context("cannot encode report")?)?;
    } else {
        println!(
            "removed {} segments ({} bytes); oldest retained LSN {}",
            report.segments_removed,
            report.bytes_removed,
            report.first_lsn.map_or("-".into(), |l| l.to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}
