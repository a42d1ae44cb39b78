//! `finn drill`: a disaster-recovery drill on embedded defaults.
//!
//! The parent starts a writer child (this binary, hidden `drill-writer` command) that runs an
//! agent workload through the full runtime and checkpoints continuously. The child prints one
//! JSON line per event on stdout: `ready`, `w` (a write became locally durable), `ack` (a write
//! became remotely durable: a published checkpoint covers its LSN) and `ckpt`. The parent
//! SIGKILLs the child at a random moment, deletes the child's data directory (the object store
//! stands for the remote and is kept), boots a fresh runtime there — which must come up through
//! the recovery cascade — and checks that every acknowledged write is present.
//!
//! "Acknowledged" is deliberately the remote kind: a write that was only fdatasynced locally
//! cannot survive the loss of the disk, and the drill destroys the disk.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command as Process, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use finn::Finn;
use finn::checkpoint::StoreOptions;
use finn::config::StoreUrl;
use finn::wal::Kind;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::args::{DrillArgs, DrillWriterArgs};
use super::{Context, print_json};

/// Exit code when acknowledged writes were lost.
const EXIT_LOSS: u8 = 3;

/// A value the workload writes: a sequence number per key so overwrites can be ordered.
#[derive(Serialize, Deserialize)]
struct Value {
    seq: u64,
    body: String,
}

/// One line of the child's protocol.
#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Line {
    Ready {
        pid: u32,
    },
    W {
        lsn: u64,
    },
    Ack {
        kind: String,
        key: String,
        seq: u64,
        hash: String,
        lsn: u64,
    },
    Ckpt {
        lsn: u64,
        ms: u64,
    },
    Fail {
        error: String,
    },
}

fn kind_of(name: &str) -> Option<Kind> {
    Some(match name {
        "session" => Kind::Session,
        "config" => Kind::Config,
        "memory" => Kind::Memory,
        "state" => Kind::State,
        _ => return None,
    })
}

fn hash_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn store_options_from(
    endpoint: Option<&str>,
    region: &str,
    allow_http: bool,
    id: Option<&str>,
    secret: Option<&str>,
) -> StoreOptions {
    let mut o = StoreOptions::default()
        .region(region.to_owned())
        .allow_http(allow_http);
    if let Some(e) = endpoint {
        o = o.endpoint(e.to_owned());
    }
    if let (Some(id), Some(secret)) = (id, secret) {
        o = o.credentials(id.to_owned(), secret.to_owned());
    }
    o
}

/// Why an acknowledged write is not in the recovered runtime, or `None` when it is.
fn check(finn: &Finn, kind: &str, key: &str, seq: u64, hash: &str) -> Option<String> {
    match kind {
        "bead" => finn
            .beads()
            .get(key)
            .is_none()
            .then(|| "bead missing".to_owned()),
        "learning" => {
            let Ok(id) = finn::learning::LearningId::parse(key) else {
                return Some("unparsable learning id".to_owned());
            };
            finn.learnings()
                .get(&id)
                .is_none()
                .then(|| "learning missing".to_owned())
        }
        "identity" => {
            let text = finn.state().get(Kind::State, key)?;
            let on_disk = finn.identity().and_then(|l| std::fs::read(l.path()).ok());
            if on_disk.as_deref() != Some(&text[..]) {
                return Some("identity file differs from the WAL's newest text".to_owned());
            }
            let revision = revision_of(&text)?;
            (revision < seq || (revision == seq && hash_hex(&text) != hash))
                .then(|| format!("identity revision {revision} older than acknowledged {seq}"))
        }
        _ => {
            let Some(k) = kind_of(kind) else {
                return Some("unknown kind".to_owned());
            };
            match finn.state().get(k, key) {
                None => Some("missing".to_owned()),
                Some(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v) if v.seq > seq => None,
                    Ok(v) if v.seq == seq && hash_hex(&bytes) == hash => None,
                    Ok(v) => Some(format!(
                        "older value (seq {} < {seq}) or different bytes",
                        v.seq
                    )),
                    Err(_) => Some("undecodable value".to_owned()),
                },
            }
        }
    }
}

fn revision_of(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let rest = &text[text.find("revision ")? + "revision ".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

type Write = (String, String, u64, String, u64);

/// A keyed put of a [`Value`]; returns what the parent must find after recovery.
fn put_value(finn: &Finn, kind: &str, key: String, seq: u64, body: String) -> Result<Write> {
    let value = serde_json::to_vec(&Value { seq, body }).context("encode")?;
    let hash = hash_hex(&value);
    let k = kind_of(kind).context("unknown kind")?;
    let lsn = finn.put(k, key.clone(), value)?;
    Ok((kind.to_owned(), key, seq, hash, lsn.get()))
}

/// A valid identity document whose revision line changes with every edit.
fn identity_text(revision: u64) -> String {
    format!(
        "# Drill Agent - Identity Document\n\n> **Version**: 1.{revision}.0\n\n## Identity\n\nI am the drill agent, revision {revision}.\n\n\
         ## Core Principles\n\n### 1. Survival is a Feature\n\nAcknowledged writes outlive the disk.\n\n\
         ## Interaction Style\n\n### Concise\n\n- Lead with the answer\n\n\
         ## Boundaries\n\n### What I Won't Do\n\n1. **Lose an acknowledged write**\n\n\
         ## Recovery Protocol\n\n```\n1. restore from the object store\n2. replay the WAL\n3. continue\n```\n"
    )
}

pub(crate) fn drill(ctx: &Context, args: DrillArgs) -> Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(|| rand::thread_rng().r#gen());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (scratch, _temp) = match &args.scratch {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            (dir.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("finn-drill-")
                .tempdir()
                .context("cannot create a scratch directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let data = scratch.join("data");
    if data.exists() {
        bail!(
            "{} already exists; pass an empty --scratch directory",
            data.display()
        );
    }
    let store = match &args.store {
        None => format!("file://{}", scratch.join("objects").display()),
        Some(url) => match StoreUrl::parse(url)
            .map_err(|reason| anyhow::anyhow!("invalid --store {url:?}: {reason}"))?
        {
            StoreUrl::Local(dir) => format!(
                "file://{}",
                dir.join(format!("drill-{}", ulid::Ulid::new())).display()
            ),
            StoreUrl::Remote(u) => format!(
                "{}/drill-{}",
                u.as_str().trim_end_matches('/'),
                ulid::Ulid::new()
            ),
        },
    };
    let allow_http = args.allow_http
        || args
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
    let store_options = store_options_from(
        args.endpoint.as_deref(),
        &args.region,
        allow_http,
        args.access_key_id.as_deref(),
        args.secret_access_key.as_deref(),
    );
    // A signing key the parent keeps, so recovery trusts exactly the writer's checkpoints.
    let key_path = scratch.join("signing.pem");
    if !key_path.exists() {
        finn::checkpoint::SigningKey::generate()
            .save_new(&key_path)
            .with_context(|| format!("cannot write {}", key_path.display()))?;
    }

    // --- Phase 1: the writer, killed at a random moment.
    let exe =
        std::env::current_exe().context("cannot find the finn executable to start the writer")?;
    let mut cmd = Process::new(exe);
    cmd.arg("drill-writer")
        .arg("--writer-data")
        .arg(&data)
        .arg("--writer-store")
        .arg(&store)
        .arg("--writer-key")
        .arg(&key_path)
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--region")
        .arg(&args.region)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if allow_http {
        cmd.arg("--allow-http");
    }
    if let Some(e) = &args.endpoint {
        cmd.arg("--endpoint").arg(e);
    }
    // Credentials travel by environment, never on a command line other users can read.
    if let (Some(id), Some(secret)) = (&args.access_key_id, &args.secret_access_key) {
        cmd.env("R2_ACCESS_KEY_ID", id)
            .env("R2_SECRET_ACCESS_KEY", secret);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start the writer process")?;
    let stdout = child.stdout.take().context("writer has no stdout")?;
    let stderr = child.stderr.take().context("writer has no stderr")?;
    let (tx, rx) = mpsc::channel::<Line>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // A line cut by the kill is not an acknowledgement.
            if let Ok(parsed) = serde_json::from_str::<Line>(&line)
                && tx.send(parsed).is_err()
            {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    // Wait for the writer to come up (its own boot includes opening the object store).
    let mut lines = Vec::new();
    let ready_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Line::Ready { .. }) => break,
            Ok(Line::Fail { error }) => {
                let _ = child.kill();
                bail!("the writer failed to start: {error}");
            }
            Ok(other) => lines.push(other),
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < ready_deadline => {
                if let Ok(Some(status)) = child.try_wait() {
                    let err = err_reader.join().unwrap_or_default();
                    bail!(
                        "the writer exited before it was ready ({status}): {}",
                        err.lines().last().unwrap_or("")
                    );
                }
            }
            Err(_) => {
                let _ = child.kill();
                bail!("the writer did not become ready within 60 s");
            }
        }
    }
    let ready_at = started.elapsed();
    // The kill moment is drawn within the steady state: after the first published checkpoint,
    // so a drill always has acknowledged writes at stake.
    let first_ckpt_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line @ Line::Ckpt { .. }) => {
                lines.push(line);
                break;
            }
            Ok(Line::Fail { error }) => {
                let _ = child.kill();
                bail!("the writer failed: {error}");
            }
            Ok(line) => lines.push(line),
            Err(_) if Instant::now() > first_ckpt_deadline => {
                let _ = child.kill();
                bail!("the writer published no checkpoint within 60 s");
            }
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("the writer died on its own ({status})");
                }
            }
        }
    }
    let run_for =
        Duration::from_millis(rng.gen_range(args.max_run_ms / 4..=args.max_run_ms.max(1)));
    let kill_at = Instant::now() + run_for;
    while Instant::now() < kill_at {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(5)) {
            lines.push(line);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let err = err_reader.join().unwrap_or_default();
            bail!(
                "the writer died on its own ({status}): {}",
                err.lines().last().unwrap_or("")
            );
        }
    }
    // std's kill is SIGKILL on Unix: no destructor, no flush, no goodbye.
    child.kill().context("cannot SIGKILL the writer")?;
    let _ = child.wait();
    let killed_after = started.elapsed();
    let _ = reader.join();
    lines.extend(rx.try_iter());
    let _ = err_reader.join();

    let mut written = 0u64;
    let mut checkpoints = 0u64;
    let mut acks: BTreeMap<(String, String), (u64, String, u64)> = BTreeMap::new();
    let mut acked = 0u64;
    let mut last_checkpoint_lsn = 0u64;
    let mut max_acked_lsn = 0u64;
    for line in &lines {
        match line {
            Line::W { .. } => written += 1,
            Line::Ckpt { lsn, .. } => {
                checkpoints += 1;
                last_checkpoint_lsn = last_checkpoint_lsn.max(*lsn);
            }
            Line::Ack {
                kind,
                key,
                seq,
                hash,
                lsn,
            } => {
                acked += 1;
                max_acked_lsn = max_acked_lsn.max(*lsn);
                let slot = acks
                    .entry((kind.clone(), key.clone()))
                    .or_insert((0, String::new(), 0));
                if *seq >= slot.0 {
                    *slot = (*seq, hash.clone(), *lsn);
                }
            }
            Line::Ready { .. } | Line::Fail { .. } => {}
        }
    }

    // --- Phase 2: the disk is gone.
    std::fs::remove_dir_all(&data).with_context(|| format!("cannot delete {}", data.display()))?;

    // --- Phase 3: recover through the cascade and verify.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let bar = super::spinner(
        ctx.json,
        "data directory deleted; recovering through the cascade",
    );
    let recover_started = Instant::now();
    let finn = rt
        .block_on(
            Finn::builder(&data)
                .store_url(&store)
                .store_options(store_options)
                .signing_key_file(&key_path, false)
                .identity(data.join("state").join("BEAUVOIR.md"))
                .force_takeover(true)
                .scheduler(false)
                .open(),
        )
        .context("recovery failed")?;
    let recovery_time = recover_started.elapsed();
    bar.finish_and_clear();
    let report = finn.recovery_report().clone();
    let verify_started = Instant::now();
    let mut lost = Vec::new();
    for ((kind, key), (seq, hash, lsn)) in &acks {
        if let Some(why) = check(&finn, kind, key, *seq, hash) {
            lost.push(json!({"kind": kind, "key": key, "lsn": lsn, "why": why}));
        }
    }
    let verify_time = verify_started.elapsed();
    let source = report
        .source
        .as_ref()
        .map_or_else(|| "local".to_owned(), |s| s.name.clone());
    let recovered_keys = finn.state().len();
    drop(finn);
    drop(rt);

    let ok = lost.is_empty() && acked > 0;
    let summary = json!({
        "ok": ok,
        "seed": seed,
        "store": store,
        "scratch": scratch,
        "written": written,
        "acknowledged": acked,
        "acknowledged_keys": acks.len(),
        "lost": lost.len(),
        "lost_writes": lost,
        "local_only_at_kill": written.saturating_sub(acked),
        "checkpoints": checkpoints,
        "last_checkpoint_lsn": last_checkpoint_lsn,
        "max_acknowledged_lsn": max_acked_lsn,
        "recovered_keys": recovered_keys,
        "recovery": {
            "state": format!("{:?}", report.state),
            "source": source,
            "files_restored": report.files_restored,
            "wal_records_restored": report.wal_records_restored,
            "wal_last_lsn": report.wal_last_lsn.get(),
        },
        "timings_ms": {
            "writer_ready": ready_at.as_millis() as u64,
            "killed_after": killed_after.as_millis() as u64,
            "recovery": recovery_time.as_millis() as u64,
            "verify": verify_time.as_millis() as u64,
        },
    });
    if ctx.json {
        print_json(&summary)?;
    } else {
        println!("finn drill (seed {seed})");
        println!("  object store        {store}");
        println!(
            "  writer killed       after {} ms (SIGKILL), data directory deleted",
            killed_after.as_millis()
        );
        println!("  written             {written} (locally durable)");
        println!(
            "  acknowledged        {acked} (in the object store: shipped WAL or checkpoint; {} keys)",
            acks.len()
        );
        println!(
            "  local-only at kill  {} (expected to go with the disk)",
            written.saturating_sub(acked)
        );
        println!(
            "  checkpoints         {checkpoints} (last covers LSN {last_checkpoint_lsn}); WAL shipped through LSN {max_acked_lsn} or more"
        );
        println!(
            "  recovered from      {source}, {} files, {} WAL records",
            report.files_restored, report.wal_records_restored
        );
        println!(
            "  recovery            {} ms (state {:?}), verify {} ms",
            recovery_time.as_millis(),
            report.state,
            verify_time.as_millis()
        );
        println!("  lost                {}", lost.len());
        for l in lost.iter().take(10) {
            println!("    {l}");
        }
        println!(
            "{}",
            if ok {
                "PASS: every acknowledged write survived"
            } else if acked == 0 {
                "FAIL: nothing was acknowledged before the kill (raise --max-run-ms)"
            } else {
                "FAIL: acknowledged writes were lost"
            }
        );
    }
    if ok {
        if let Some(t) = _temp {
            let _ = t.close();
        }
        Ok(ExitCode::SUCCESS)
    } else {
        if let Some(t) = _temp {
            // Keep the evidence.
            let kept = t.keep();
            eprintln!("scratch directory kept at {}", kept.display());
        }
        Ok(ExitCode::from(if acked == 0 { 1 } else { EXIT_LOSS }))
    }
}

/// The child: runs the workload until killed.
pub(crate) fn writer(args: DrillWriterArgs) -> Result<ExitCode> {
    let out = std::io::stdout();
    let emit = move |line: &Line| {
        let mut lock = out.lock();
        // If the parent is gone there is nobody to tell; stop quietly.
        let _ = serde_json::to_writer(&mut lock, line);
        let _ = lock.write_all(b"\n");
        let _ = lock.flush();
    };
    let result = writer_inner(&args, &emit);
    if let Err(e) = &result {
        emit(&Line::Fail {
            error: format!("{e:#}"),
        });
    }
    result
}

fn writer_inner(args: &DrillWriterArgs, emit: &(dyn Fn(&Line) + Sync)) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let secret = std::env::var("R2_SECRET_ACCESS_KEY").ok();
    let id = std::env::var("R2_ACCESS_KEY_ID").ok();
    let store_options = store_options_from(
        args.endpoint.as_deref(),
        &args.region,
        args.allow_http,
        id.as_deref(),
        secret.as_deref(),
    );
    // Small segments so the drill crosses segment boundaries.
    let wal_options = finn::wal::Options {
        segment_size: 1 << 20,
        ..finn::wal::Options::default()
    };
    let finn = rt
        .block_on(
            Finn::builder(&args.writer_data)
                .store_url(&args.writer_store)
                .store_options(store_options)
                .signing_key_file(&args.writer_key, false)
                .identity(args.writer_data.join("state").join("BEAUVOIR.md"))
                .wal_options(wal_options)
                .scheduler(false)
                .open(),
        )
        .context("writer boot failed")?;
    emit(&Line::Ready {
        pid: std::process::id(),
    });

    // Writes run on their own thread (the agent); checkpoints on the async runtime (the sync task).
    let (tx, rx) = mpsc::channel::<Write>();
    let worker = finn.clone();
    let seed = args.seed;
    // Set when the sync loop fails, so the agent thread stops and the error reaches the parent
    // (a scope would otherwise wait forever for the endless workload).
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stop = &stop;
    std::thread::scope(|scope| -> Result<ExitCode> {
        scope.spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut config_seq = 0u64;
            let mut identity_seq = 0u64;
            for i in 0u64.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let step = rng.gen_range(0..100);
                let result = match step {
                    0..=49 => {
                        let tokens = rng.gen_range(10..2000);
                        put_value(&worker, "session", format!("session/{i}"), i, format!("turn {i}: user asked, agent answered with {tokens} tokens"))
                    }
                    50..=64 => {
                        let len = rng.gen_range(0..512);
                        put_value(&worker, "memory", format!("memory/{i}"), i, format!("observation {i}: {}", "x".repeat(len)))
                    }
                    65..=74 => {
                        config_seq += 1;
                        let t = rng.gen_range(0..100);
                        put_value(&worker, "config", "config/agent".to_owned(), config_seq, format!("{{\"temperature\":{t}}}"))
                    }
                    75..=86 => {
                        let id = format!("bd-drill{i}");
                        worker
                            .beads()
                            .create(finn::beads::Bead::new(id.clone(), format!("drill task {i}")))
                            .map(|id| ("bead".to_owned(), id, i, String::new(), worker.wal().last_lsn().get()))
                            .map_err(|e| anyhow::anyhow!("bead create: {e}"))
                    }
                    87..=94 => {
                        let l = finn::learning::NewLearning::new(
                            finn::learning::Source::ErrorCycle,
                            finn::learning::Target::Devcontainer,
                            format!("When the build fails with error E{i} and if the deploy step reports an error"),
                            format!("A common pattern: a stale lockfile {i} breaks the build; the same approach fixes every package manager"),
                            format!("Delete the lockfile number {i} with `rm package-lock.json`, reinstall; tested and verified."),
                        );
                        worker
                            .learnings()
                            .add(l)
                            .map(|l| ("learning".to_owned(), l.id.to_string(), i, String::new(), worker.wal().last_lsn().get()))
                            .map_err(|e| anyhow::anyhow!("learning add: {e}"))
                    }
                    _ => {
                        identity_seq += 1;
                        let text = identity_text(identity_seq);
                        worker
                            .update_identity(&text)
                            .map(|lsn| ("identity".to_owned(), finn::runtime::IDENTITY_KEY.to_owned(), identity_seq, hash_hex(text.as_bytes()), lsn.get()))
                            .map_err(|e| anyhow::anyhow!("identity edit: {e}"))
                    }
                };
                match result {
                    Ok((kind, key, seq, hash, lsn)) => {
                        emit(&Line::W { lsn });
                        if tx.send((kind, key, seq, hash, lsn)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        emit(&Line::Fail { error: format!("write failed: {e:#}") });
                        return;
                    }
                }
                if rng.gen_range(0..4) == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        let result = sync_loop(&rt, &finn, args, &rx, emit);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    })
}

/// Ships and checkpoints until killed; acknowledges writes as they become remotely durable.
fn sync_loop(
    rt: &tokio::runtime::Runtime,
    finn: &Finn,
    args: &DrillWriterArgs,
    rx: &mpsc::Receiver<Write>,
    emit: &(dyn Fn(&Line) + Sync),
) -> Result<ExitCode> {
    let mut pending: Vec<Write> = Vec::new();
    let mut last_checkpoint = Instant::now();
    loop {
        // The sync loop of a real deployment, sped up: ship the WAL often, checkpoint less.
        std::thread::sleep(Duration::from_millis(args.ship_ms));
        let t = Instant::now();
        rt.block_on(finn.ship()).context("WAL shipping failed")?;
        if last_checkpoint.elapsed() >= Duration::from_millis(args.checkpoint_ms) {
            rt.block_on(finn.checkpoint())
                .context("checkpoint failed")?;
            last_checkpoint = Instant::now();
            emit(&Line::Ckpt {
                lsn: finn.confirmed().checkpointed_lsn.get(),
                ms: t.elapsed().as_millis() as u64,
            });
        }
        let covered = finn.remote_durable_lsn().get();
        pending.extend(rx.try_iter());
        pending.retain(|(kind, key, seq, hash, lsn)| {
            if *lsn <= covered {
                emit(&Line::Ack {
                    kind: kind.clone(),
                    key: key.clone(),
                    seq: *seq,
                    hash: hash.clone(),
                    lsn: *lsn,
                });
                false
            } else {
                true
            }
        });
    }
}
