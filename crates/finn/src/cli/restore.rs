//! `finn restore`: point-in-time restore of a data directory from the object store.
//!
//! Plan (base checkpoint, objects, bytes, exact point) → stage (files and WAL into
//! `recovery/staging/<ulid>/`) → for a point in the past, fork the lineage so what is written
//! next never mixes with the abandoned future → swap into place, the old state and WAL moved to
//! `recovery/aside/<ulid>/`. See `docs/restore.md`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use finn::checkpoint::{
    Error as CheckpointError, LineageMode, RestoreOptions, RestorePlan, RestoreProgress,
    RestoreReport, RestoreTarget,
};
use finn::wal::Wal;
use serde_json::{Value, json};

use super::args::RestoreArgs;
use super::ops::{builder, tokio_runtime};
use super::{Context, print_json};

/// Parses `--to-time`: RFC 3339 (`2026-11-22T14:02:00Z`) or milliseconds since the Unix epoch.
pub(crate) fn parse_time(s: &str) -> Result<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).with_context(|| {
        format!("--to-time {s:?} is neither RFC 3339 (2026-11-22T14:02:00Z) nor milliseconds")
    })?;
    u64::try_from(t.timestamp_millis()).context("--to-time is before 1970")
}

fn target(args: &RestoreArgs) -> Result<RestoreTarget> {
    Ok(match (args.to_lsn, &args.to_time, args.to_checkpoint) {
        (Some(n), None, None) => RestoreTarget::Lsn(finn::wal::Lsn::new(n)),
        (None, Some(t), None) => RestoreTarget::Time(parse_time(t)?),
        (None, None, Some(v)) => RestoreTarget::Checkpoint(v),
        (None, None, None) => RestoreTarget::Latest,
        _ => bail!("give at most one of --to-lsn, --to-time, --to-checkpoint"),
    })
}

/// Whether `dir` exists and holds anything.
fn non_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

fn plan_json(plan: &RestorePlan) -> Value {
    json!({
        "target": plan.target,
        "lineage": plan.lineage.to_string(),
        "base": plan.base.as_ref().map(|b| json!({
            "version": b.version,
            "covered_lsn": b.covered_lsn.get(),
            "created_at_ms": b.created_at_ms,
            "files": b.files,
            "bytes": b.size,
            "stored_bytes": b.stored_size,
        })),
        "skipped_checkpoints": plan.skipped,
        "wal_objects": plan.wal_objects.len(),
        "wal_bytes": plan.wal_bytes,
        "download_bytes": plan.download_bytes(),
        "reach_lsn": plan.reach_lsn.get(),
        "reach_time_ms": plan.reach_time_ms,
        "forks": plan.needs_fork(),
    })
}

fn print_plan(plan: &RestorePlan) {
    println!("target: {}", plan.target);
    match &plan.base {
        Some(b) => println!(
            "base: checkpoint v{} covering LSN {} ({} files, {} bytes stored)",
            b.version, b.covered_lsn, b.files, b.stored_size
        ),
        None => println!("base: none (replay from the first record)"),
    }
    for s in &plan.skipped {
        println!("skipped: checkpoint v{}: {}", s.version, s.reason);
    }
    println!(
        "wal: {} objects, {} bytes; reaches LSN {}{}",
        plan.wal_objects.len(),
        plan.wal_bytes,
        plan.reach_lsn,
        plan.reach_time_ms
            .map(|t| format!(" (record time {t} ms)"))
            .unwrap_or_default()
    );
    println!("download: {} bytes", plan.download_bytes());
    if plan.needs_fork() {
        println!("the point is in the past: writing on will fork a new lineage");
    }
}

fn report_json(plan: &RestorePlan, report: &RestoreReport, aside: Option<&Path>) -> Value {
    json!({
        "plan": plan_json(plan),
        "base_version": report.base_version,
        "reached_lsn": report.reached_lsn.get(),
        "reached_time_ms": report.reached_time_ms,
        "records": report.records,
        "wal_objects": report.wal_objects,
        "wal_bytes": report.wal_bytes,
        "files": report.files,
        "elapsed_ms": report.elapsed_ms,
        "forked": plan.needs_fork(),
        "moved_aside": aside.map(|p| p.display().to_string()),
    })
}

/// A bar over the plan's files and WAL objects, fed by the restore's counters.
fn progress_bar(
    json: bool,
    plan: &RestorePlan,
    progress: Arc<RestoreProgress>,
) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let files = plan.base.as_ref().map_or(0, |b| b.files as u64);
    let total = files + plan.wal_objects.len() as u64;
    let bar = indicatif::ProgressBar::new(total.max(1));
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
    ) {
        bar.set_style(style);
    }
    let ticking = bar.clone();
    std::thread::spawn(move || {
        while !ticking.is_finished() {
            ticking.set_position(progress.files() + progress.wal_objects());
            ticking.set_message(format!(
                "{} files, {} records",
                progress.files(),
                progress.records()
            ));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    bar
}

pub(crate) fn restore(ctx: &Context, args: RestoreArgs) -> Result<ExitCode> {
    let target = target(&args)?;
    let config = &ctx.config;
    let (state_dir, wal_dir) = (config.state_dir(), config.wal_dir());
    let local = non_empty(&state_dir) || non_empty(&wal_dir);
    if local && args.if_not_exists {
        if ctx.json {
            print_json(&json!({"restored": false, "reason": "local state exists"}))?;
        } else {
            eprintln!(
                "local state exists in {}; nothing to do",
                config.data_dir.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio_runtime()?;
    rt.block_on(async {
        let b = builder(ctx)?;
        let reader = b.reader()?;
        let plan = match reader.plan_restore(target).await {
            Ok(p) => p,
            Err(CheckpointError::NothingToRestore) if args.if_remote_exists => {
                if ctx.json {
                    print_json(&json!({"restored": false, "reason": "nothing in the object store"}))?;
                } else {
                    eprintln!("the object store holds nothing to restore; nothing to do");
                }
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => return Err(e).context("cannot plan the restore"),
        };
        if args.dry_run {
            if ctx.json {
                print_json(&json!({"dry_run": true, "plan": plan_json(&plan)}))?;
            } else {
                print_plan(&plan);
            }
            return Ok(ExitCode::SUCCESS);
        }
        if local && !args.force {
            bail!(
                "{} already holds state; pass --force to replace it (the old state is moved aside, not deleted)",
                config.data_dir.display()
            );
        }
        let lineage = if plan.needs_fork() {
            match plan.fork_parent() {
                Some(parent) => LineageMode::Fork(parent),
                None => bail!(
                    "{} is before the first checkpoint; a restore there cannot be continued (inspect it with time travel instead)",
                    plan.target
                ),
            }
        } else {
            LineageMode::Continue
        };
        // The lease before anything is staged: a running agent makes this fail, a zombie is
        // fenced off.
        let checkpointer = b
            .open_checkpointer(lineage)
            .await
            .context("cannot take the object-store lease (is the agent still running?)")?;
        let layout = finn::recovery::Layout::new(&config.data_dir);
        let id = ulid::Ulid::new().to_string();
        let staging = layout.staging_root().join(&id);
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("cannot create {}", staging.display()))?;
        let (staged_state, staged_wal) = (staging.join("state"), staging.join("wal"));
        let (wal, _) = Wal::open(&staged_wal, finn::wal::Options::default())
            .context("cannot create the staging WAL")?;
        let progress = RestoreProgress::new();
        let mut options = RestoreOptions::default().progress(progress.clone());
        if non_empty(&state_dir) {
            // Delta restore: files that already match are copied, not downloaded.
            options = options.reuse_local(&state_dir);
        }
        let bar = progress_bar(ctx.json, &plan, progress);
        let restored = reader.restore(&plan, &staged_state, &wal, &options).await;
        bar.finish_and_clear();
        let report = restored.context("restore failed; the data directory is untouched")?;
        if plan.needs_fork() {
            checkpointer
                .adopt_restore(&plan, &report, &staged_state, &wal)
                .await
                .context("cannot start the forked lineage")?;
        }
        wal.advance_to(checkpointer.high_water().await.lsn.next())?;
        drop(wal);

        // Swap: old state and WAL aside, staged ones in.
        let aside = layout.aside_root().join(&id);
        let mut moved = false;
        for (live, name) in [(&state_dir, "state"), (&wal_dir, "wal")] {
            if live.exists() {
                std::fs::create_dir_all(&aside)?;
                std::fs::rename(live, aside.join(name))
                    .with_context(|| format!("cannot move {} aside", live.display()))?;
                moved = true;
            }
        }
        // The boot journal describes the replaced WAL (its high-water mark would read as "the WAL
        // went backwards" and make the next boot set the restored state aside): it goes too.
        let journal = layout.journal_path();
        if journal.exists() {
            std::fs::create_dir_all(&aside)?;
            std::fs::rename(&journal, aside.join("boot-journal.json"))
                .with_context(|| format!("cannot move {} aside", journal.display()))?;
            moved = true;
        }
        std::fs::rename(&staged_state, &state_dir)
            .with_context(|| format!("cannot install {}", state_dir.display()))?;
        std::fs::rename(&staged_wal, &wal_dir)
            .with_context(|| format!("cannot install {}", wal_dir.display()))?;
        finn::wal::fs::sync_dir(&config.data_dir)?;
        let _ = std::fs::remove_dir(&staging);
        checkpointer.release().await.context("cannot release the lease")?;
        let aside = moved.then_some(aside);
        if ctx.json {
            print_json(&report_json(&plan, &report, aside.as_deref()))?;
        } else {
            println!(
                "restored {} to LSN {}{} from checkpoint {} + {} records ({} WAL objects) in {} ms",
                config.data_dir.display(),
                report.reached_lsn,
                report
                    .reached_time_ms
                    .map(|t| format!(" (record time {t} ms)"))
                    .unwrap_or_default(),
                report
                    .base_version
                    .map_or("none".to_owned(), |v| format!("v{v}")),
                report.records,
                report.wal_objects,
                report.elapsed_ms
            );
            println!(
                "files: {} ({} reused locally, {} bytes downloaded)",
                report.files.files, report.files.reused_files, report.files.downloaded
            );
            if plan.needs_fork() {
                println!("forked a new lineage from checkpoint v{}", report.base_version.unwrap_or(0));
            }
            if let Some(a) = &aside {
                println!("previous state and WAL moved to {}", a.display());
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
