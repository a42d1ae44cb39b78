//! `finn run`, `health`, `checkpoint …`, `recover` and `keys …`: operating a data directory.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use finn::checkpoint::{SigningKey, VerifyingKey};
use finn::runtime::{Finn, FinnBuilder};
use finn::scheduler::{ComponentHealth, Health, HealthAggregator, HealthReport};
use finn::wal::{Options, Pressure, Wal};
use serde_json::{Value, json};

use super::args::{CheckpointCommand, KeysCommand, RecoverArgs, RetentionArgs, RunArgs};
use super::{Context, print_json};

/// A current-thread-free async runtime for one command.
pub(crate) fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn builder(ctx: &Context) -> Result<FinnBuilder> {
    Ok(FinnBuilder::from_config(&ctx.config)?)
}

/// Opens the runtime for a one-shot command (no scheduler), runs `f`, and shuts it down
/// (which checkpoints, so the command's writes are remotely durable when it returns).
pub(crate) fn with_runtime<T>(ctx: &Context, f: impl FnOnce(&Finn) -> Result<T>) -> Result<T> {
    ctx.require_data_dir()?;
    let rt = tokio_runtime()?;
    rt.block_on(async {
        let bar = super::spinner(ctx.json, "opening (recovering if needed)");
        let finn = builder(ctx)?
            .scheduler(false)
            .open()
            .await
            .context("cannot open the runtime")?;
        bar.set_message("working");
        let result = f(&finn);
        bar.set_message("shipping the WAL and checkpointing");
        let shutdown = finn.shutdown().await.context("shutdown checkpoint failed");
        bar.finish_and_clear();
        let value = result?;
        shutdown?;
        Ok(value)
    })
}

pub(crate) fn recovery_json(finn: &Finn) -> Value {
    let r = finn.recovery_report();
    json!({
        "state": format!("{:?}", r.state),
        "degraded": r.degraded.as_ref().map(|d| format!("{d:?}")),
        "source": r.source.as_ref().map(|s| s.name.clone()),
        "files_restored": r.files_restored,
        "wal_records_restored": r.wal_records_restored,
        "wal_last_lsn": r.wal_last_lsn.get(),
        "warnings": r.warnings.iter().map(|w| format!("{w:?}")).collect::<Vec<_>>(),
        "boot_ms": finn.boot_time().as_millis() as u64,
    })
}

pub(crate) fn run(ctx: &Context, args: RunArgs) -> Result<ExitCode> {
    ctx.require_data_dir()?;
    let rt = tokio_runtime()?;
    rt.block_on(async {
        let finn = builder(ctx)?
            .force_takeover(args.force_takeover)
            .open()
            .await
            .context("cannot start the runtime")?;
        let _endpoint = match &ctx.config.metrics.listen {
            Some(listen) => {
                let addr = listen
                    .parse()
                    .with_context(|| format!("metrics.listen {listen:?} is not an address"))?;
                let endpoint = finn
                    .serve_http(addr)
                    .await
                    .context("cannot serve metrics")?;
                eprintln!(
                    "metrics on http://{0}/metrics (also /status, /health)",
                    endpoint.local_addr()
                );
                Some(endpoint)
            }
            None => None,
        };
        let r = finn.recovery_report();
        tracing::info!(state = ?r.state, source = ?r.source.as_ref().map(|s| &s.name), last_lsn = %finn.wal().last_lsn(), "finn is running");
        eprintln!(
            "finn running on {} (recovery: {:?}, WAL at LSN {}); Ctrl-C to stop",
            ctx.config.data_dir.display(),
            r.state,
            finn.wal().last_lsn()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot listen for SIGTERM")?;
        let until = async {
            match args.duration {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            () = until => {}
        }
        eprintln!("stopping: flushing, checkpointing, releasing the lease");
        finn.shutdown().await.context("shutdown failed")?;
        Ok(ExitCode::SUCCESS)
    })
}

fn health_json(report: &HealthReport) -> Value {
    json!({
        "overall": report.overall.to_string(),
        "components": report.components.iter().map(|c| json!({
            "name": c.name,
            "health": c.health.to_string(),
            "reasons": c.reasons,
            "details": c.details,
        })).collect::<Vec<_>>(),
    })
}

/// Health from the data directory alone (works while `finn run` holds the lock): the WAL,
/// the object store, the identity document, aggregated with finn-scheduler's rules.
pub(crate) fn health(ctx: &Context) -> Result<ExitCode> {
    ctx.require_data_dir()?;
    let agg = HealthAggregator::new();
    let wal_dir = ctx.config.wal_dir();
    match Wal::open_read_only(&wal_dir, Options::default()) {
        Ok(wal) => {
            let s = wal.status();
            let h = match s.pressure {
                Pressure::Critical => ComponentHealth::unhealthy("wal", "disk pressure critical"),
                Pressure::Warning => ComponentHealth::degraded("wal", "disk pressure warning"),
                _ => ComponentHealth::healthy("wal"),
            };
            agg.report(
                h.with_detail("last_lsn", s.last_lsn)
                    .with_detail("segments", s.segments)
                    .with_detail("bytes", s.wal_bytes),
            );
        }
        Err(e) => agg.report(ComponentHealth::unhealthy(
            "wal",
            format!("{:#}", anyhow::Error::from(e)),
        )),
    }
    let confirmed = finn::confirm::Confirmed::load(&ctx.config.data_dir)?;
    let rt = tokio_runtime()?;
    let store = rt.block_on(async {
        let reader = builder(ctx)?.reader()?;
        let newest = reader.newest().await?;
        anyhow::Ok(newest.map(|m| m.signed().manifest().covered_lsn.get()))
    });
    agg.report(match store {
        Ok(Some(lsn)) => ComponentHealth::healthy("object_store")
            .with_detail("newest_checkpoint_lsn", lsn)
            .with_detail("confirmed_lsn", confirmed.checkpointed_lsn),
        Ok(None) => ComponentHealth::degraded("object_store", "no checkpoint yet"),
        Err(e) => ComponentHealth::degraded("object_store", format!("{e:#}")),
    });
    if let Some(path) = &ctx.config.identity.path {
        let path = ctx.config.resolve(path);
        let loader = finn::identity::Loader::new(&path, finn::identity::Options::default());
        agg.report(match loader.load() {
            Ok(_) => ComponentHealth::healthy("identity"),
            Err(e) => ComponentHealth::degraded("identity", e.to_string()),
        });
    }
    let report = rt.block_on(agg.check());
    if ctx.json {
        print_json(&health_json(&report))?;
    } else {
        println!("overall: {}", report.overall);
        for c in &report.components {
            println!(
                "  {:<13} {:<9} {}",
                c.name,
                c.health.to_string(),
                c.reasons.join("; ")
            );
        }
    }
    Ok(if report.overall == Health::Healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) fn checkpoint(ctx: &Context, command: CheckpointCommand) -> Result<ExitCode> {
    match command {
        CheckpointCommand::Create => {
            let (report, lsn) = with_runtime(ctx, |finn| {
                let rt = tokio::runtime::Handle::current();
                let report = tokio::task::block_in_place(|| rt.block_on(finn.checkpoint()))?;
                Ok((report, finn.remote_durable_lsn()))
            })?;
            let value = match &report {
                Some(r) => {
                    json!({"created": true, "version": r.version, "covered_lsn": lsn.get(), "files": r.files, "uploaded_objects": r.uploaded_objects, "uploaded_bytes": r.uploaded_bytes, "reused_objects": r.reused_objects})
                }
                None => {
                    json!({"created": false, "covered_lsn": lsn.get(), "reason": "nothing changed since the last checkpoint"})
                }
            };
            if ctx.json {
                print_json(&value)?;
            } else if let Some(r) = report {
                println!(
                    "checkpoint {} published: covers LSN {lsn}, {} files ({} uploaded, {} reused)",
                    r.version, r.files, r.uploaded_objects, r.reused_objects
                );
            } else {
                println!("nothing changed since the last checkpoint (LSN {lsn})");
            }
            Ok(ExitCode::SUCCESS)
        }
        CheckpointCommand::List => {
            ctx.require_data_dir()?;
            let rt = tokio_runtime()?;
            let list = rt.block_on(async {
                let reader = builder(ctx)?.reader()?;
                let mut out = Vec::new();
                let mut versions = reader.versions().await?;
                versions.sort_by_key(|v| std::cmp::Reverse(v.version));
                for v in versions {
                    match reader.load(v.version).await {
                        Ok(m) => {
                            let m = m.signed().manifest();
                            out.push(json!({"version": m.version, "covered_lsn": m.covered_lsn.get(), "created_at_ms": m.created_at_ms, "files": m.files.len(), "bytes": m.total_size(), "signer": m.signer.to_string(), "verified": true}));
                        }
                        Err(e) => out.push(json!({"version": v.version, "verified": false, "error": e.to_string()})),
                    }
                }
                anyhow::Ok(out)
            })?;
            if ctx.json {
                print_json(&Value::Array(list))?;
            } else if list.is_empty() {
                println!("no checkpoints in {}", builder(ctx)?.store_url_in_effect());
            } else {
                for c in &list {
                    if c["verified"] == true {
                        println!(
                            "v{:<5} LSN {:<8} {} files {} bytes",
                            c["version"], c["covered_lsn"], c["files"], c["bytes"]
                        );
                    } else {
                        println!(
                            "v{:<5} REJECTED: {}",
                            c["version"],
                            c["error"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CheckpointCommand::Verify {
            remote: true,
            full,
            sample,
            drill,
            ..
        } => verify_remote(ctx, full, sample, drill),
        CheckpointCommand::Verify { id, .. } => {
            ctx.require_data_dir()?;
            let rt = tokio_runtime()?;
            let result = rt.block_on(async {
                let reader = builder(ctx)?.reader()?;
                let m = match &id {
                    Some(v) => {
                        let v: u64 = v.trim_start_matches('v').parse().with_context(|| {
                            format!("checkpoint id {v:?} is not a version number")
                        })?;
                        reader.load(v).await?
                    }
                    None => reader.newest().await?.context("no checkpoint to verify")?,
                };
                let manifest = m.signed().manifest().clone();
                let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
                let bar = super::spinner(
                    ctx.json,
                    &format!(
                        "downloading and hash-checking {} files",
                        manifest.files.len()
                    ),
                );
                let fetched = reader.fetch_files(&manifest, dir.path(), 8).await?;
                bar.finish_and_clear();
                anyhow::Ok((manifest, fetched))
            });
            let (manifest, _fetched) = result?;
            if ctx.json {
                print_json(
                    &json!({"ok": true, "version": manifest.version, "covered_lsn": manifest.covered_lsn.get(), "files": manifest.files.len(), "bytes": manifest.total_size()}),
                )?;
            } else {
                println!(
                    "checkpoint {} ok: signature verified, {} files ({} bytes) downloaded and hash-checked",
                    manifest.version,
                    manifest.files.len(),
                    manifest.total_size()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CheckpointCommand::Gc => {
            let report = with_runtime(ctx, |finn| {
                let rt = tokio::runtime::Handle::current();
                Ok(tokio::task::block_in_place(|| rt.block_on(finn.gc()))?)
            })?;
            if ctx.json {
                print_json(
                    &json!({"retained": report.retained_manifests, "deleted": report.deleted_manifests, "deleted_objects": report.deleted_objects, "deleted_intents": report.deleted_intents, "deleted_batches": report.deleted_batches}),
                )?;
            } else {
                println!(
                    "kept {} checkpoints, deleted {} checkpoints and {} objects",
                    report.retained_manifests.len(),
                    report.deleted_manifests.len(),
                    report.deleted_objects
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `finn checkpoint verify --remote`: validation (and a drill) from the bucket alone.
fn verify_remote(
    ctx: &Context,
    full: bool,
    sample: Option<usize>,
    drill: bool,
) -> Result<ExitCode> {
    use finn::checkpoint::remote_index::RemoteIndex;
    use finn::checkpoint::{DrillOptions, ValidateOptions};
    ctx.require_data_dir()?;
    let rt = tokio_runtime()?;
    let index_path = ctx.config.data_dir.join("remote-index.json");
    let (report, drilled) = rt.block_on(async {
        let reader = builder(ctx)?.reader()?;
        let mut index = RemoteIndex::load_or_new(&index_path, reader.remote());
        let options = ValidateOptions::default()
            .full(full)
            .sample(sample.unwrap_or(ctx.config.verify.sample));
        let bar = super::spinner(ctx.json, "validating the remote");
        let report = reader.validate(&mut index, &options).await?;
        index.save(&index_path)?;
        let drilled = if drill {
            bar.set_message("restore drill");
            let confirmed = finn::confirm::Confirmed::load(&ctx.config.data_dir)?;
            let expect = confirmed.checkpointed_lsn.max(confirmed.shipped_lsn);
            let live = Wal::open_read_only(ctx.config.wal_dir(), Options::default()).ok();
            let scratch = ctx.config.data_dir.join(".drill");
            let options =
                DrillOptions::default().expect_lsn(finn::checkpoint::Lsn::new(expect.get()));
            Some(
                reader
                    .restore_drill(&scratch, live.as_ref(), &options)
                    .await,
            )
        } else {
            None
        };
        bar.finish_and_clear();
        anyhow::Ok((report, drilled))
    })?;
    let drill_ok = drilled.as_ref().is_none_or(|d| d.is_ok());
    let ok = report.is_ok() && drill_ok;
    if ctx.json {
        let drill_json = drilled.as_ref().map(|d| match d {
            Ok(r) => json!({"ok": true, "report": r}),
            Err(e) => json!({"ok": false, "error": finn::checkpoint::error_chain(e)}),
        });
        print_json(&json!({
            "ok": ok,
            "validation": report,
            "findings": report.findings.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "drill": drill_json,
        }))?;
    } else {
        println!(
            "{} manifests, {} objects ({} downloaded, {} sampled), {} shipped WAL objects ({} downloaded)",
            report.manifests,
            report.objects,
            report.objects_downloaded,
            report.objects_sampled,
            report.wal_objects,
            report.wal_objects_downloaded
        );
        match report.restorable_as_of_ms {
            Some(t) => println!(
                "restorable through LSN {} as of {} ms since the epoch",
                report.restorable_lsn, t
            ),
            None => println!("nothing restorable"),
        }
        for f in &report.findings {
            println!("FINDING: {f}");
        }
        match &drilled {
            Some(Ok(r)) => println!(
                "restore drill passed: LSN {} restored ({} files, {} records, {} compared with the local WAL) in {} ms",
                r.restored_lsn, r.files, r.records, r.compared_records, r.duration_ms
            ),
            Some(Err(e)) => println!("RESTORE DRILL FAILED: {}", finn::checkpoint::error_chain(e)),
            None => {}
        }
        println!("{}", if ok { "remote ok" } else { "REMOTE DAMAGED" });
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `finn retention`: plan (default) or apply.
pub(crate) fn retention(ctx: &Context, args: RetentionArgs) -> Result<ExitCode> {
    use finn::checkpoint::{RetentionMode, RetentionPolicy};
    ctx.require_data_dir()?;
    let mut policy: RetentionPolicy = ctx.config.retention_policy();
    if let Some(n) = args.keep_last {
        if n == 0 {
            bail!("--keep-last must be at least 1");
        }
        policy = policy.keep_last(n);
    }
    if let Some(d) = args.keep_within {
        policy = policy.keep_within(d);
    }
    if let Some(d) = args.pitr_window {
        policy = policy.pitr_window(d);
    }
    for v in &args.pin {
        policy = policy.pin(*v);
    }
    let report = if args.apply {
        with_runtime(ctx, |finn| {
            let rt = tokio::runtime::Handle::current();
            Ok(tokio::task::block_in_place(|| {
                rt.block_on(finn.retention(&policy, RetentionMode::Delete))
            })?)
        })?
    } else {
        let rt = tokio_runtime()?;
        rt.block_on(async {
            let reader = builder(ctx)?.reader()?;
            anyhow::Ok(reader.plan_retention(&policy, None, None).await?)
        })?
    };
    if ctx.json {
        print_json(&serde_json::to_value(&report)?)?;
    } else {
        let verb = if report.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for k in &report.kept {
            let why: Vec<String> = k
                .reasons
                .iter()
                .map(|r| format!("{r:?}").to_lowercase())
                .collect();
            println!("keep   v{:<6} ({})", k.version, why.join(", "));
        }
        for v in &report.deleted_manifests {
            println!("{verb} v{v}");
        }
        println!(
            "{verb} {} checkpoints, {} shipped WAL objects, {} objects: {} bytes; {} bytes stay",
            report.deleted_manifests.len(),
            report.deleted_wal.len(),
            report.deleted_objects.len(),
            report.deleted_bytes,
            report.expected_retained_bytes
        );
        if report.dry_run {
            println!("dry run: nothing was deleted (add --apply)");
        } else if let Some(b) = report.retained_bytes {
            println!(
                "verified: {} bytes retained, {} expected",
                b, report.expected_retained_bytes
            );
        }
        for k in &report.undeleted {
            println!("NOT DELETED (the store acknowledged the delete): {k}");
        }
    }
    Ok(if report.is_verified() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) fn recover(ctx: &Context, args: RecoverArgs) -> Result<ExitCode> {
    if args.dry_run {
        let rt = tokio_runtime()?;
        let newest = rt.block_on(async {
            let b = builder(ctx)?;
            let reader = b.reader()?;
            anyhow::Ok(
                reader
                    .newest()
                    .await?
                    .map(|m| m.signed().manifest().clone()),
            )
        })?;
        let local = ctx.config.state_dir().is_dir() && ctx.config.wal_dir().is_dir();
        let plan = match (&newest, local) {
            (_, true) => {
                "keep the local state and replay the local WAL (the cascade verifies it first)"
            }
            (Some(_), false) => {
                "restore the newest verified checkpoint, then replay the WAL after it"
            }
            (None, false) => "start from the template (no local state, no checkpoint)",
        };
        if ctx.json {
            print_json(&json!({
                "dry_run": true,
                "local_state": local,
                "newest_checkpoint": newest.as_ref().map(|m| json!({"version": m.version, "covered_lsn": m.covered_lsn.get(), "files": m.files.len()})),
                "plan": plan,
            }))?;
        } else {
            println!("local state present: {local}");
            match &newest {
                Some(m) => println!(
                    "newest checkpoint: v{} covering LSN {}, {} files",
                    m.version,
                    m.covered_lsn,
                    m.files.len()
                ),
                None => println!("newest checkpoint: none"),
            }
            println!("would: {plan}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&ctx.config.data_dir)
        .with_context(|| format!("cannot create {}", ctx.config.data_dir.display()))?;
    let rt = tokio_runtime()?;
    let value = rt.block_on(async {
        let bar = super::spinner(ctx.json, "recovering through the cascade");
        let finn = builder(ctx)?
            .scheduler(false)
            .force_takeover(args.force_takeover)
            .open()
            .await
            .context("recovery failed")?;
        bar.finish_and_clear();
        let mut value = recovery_json(&finn);
        value["keys"] = json!(finn.state().len());
        value["last_lsn"] = json!(finn.wal().last_lsn().get());
        finn.shutdown().await.context("shutdown failed")?;
        anyhow::Ok(value)
    })?;
    if ctx.json {
        print_json(&value)?;
    } else {
        println!(
            "recovered: state {}, source {}, {} files restored, {} WAL records restored, last LSN {}",
            value["state"].as_str().unwrap_or("?"),
            value["source"].as_str().unwrap_or("local"),
            value["files_restored"],
            value["wal_records_restored"],
            value["last_lsn"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn keys(ctx: &Context, command: KeysCommand) -> Result<ExitCode> {
    match command {
        KeysCommand::Generate { out, force } => {
            let path = out.unwrap_or_else(|| ctx.config.signing_key_path());
            if path.exists() {
                if !force {
                    bail!(
                        "{} already exists; pass --force to replace it (checkpoints it signed stay trusted only if you keep its public key)",
                        path.display()
                    );
                }
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot replace {}", path.display()))?;
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let key = SigningKey::generate();
            key.save_new(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            print_key(ctx, &path, &key.verifying_key())
        }
        KeysCommand::Id { file } => {
            let path = file.unwrap_or_else(|| ctx.config.signing_key_path());
            let vk = match SigningKey::load(&path) {
                Ok(k) => k.verifying_key(),
                Err(_) => VerifyingKey::load(&path).with_context(|| {
                    format!(
                        "{} is neither a signing key nor a public key",
                        path.display()
                    )
                })?,
            };
            print_key(ctx, &path, &vk)
        }
    }
}

fn print_key(ctx: &Context, path: &Path, vk: &VerifyingKey) -> Result<ExitCode> {
    let pem = vk
        .to_public_key_pem()
        .context("cannot encode the public key")?;
    if ctx.json {
        print_json(&json!({"file": path, "key_id": vk.id().to_string(), "public_key_pem": pem}))?;
    } else {
        println!("{}  {}", vk.id(), path.display());
        print!("{pem}");
    }
    Ok(ExitCode::SUCCESS)
}
