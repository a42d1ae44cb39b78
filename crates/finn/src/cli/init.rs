//! `finn init` and `finn status`.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use finn::config::CONFIG_FILE_NAME;
use finn::confirm::Confirmed;
use finn::wal::{Options, Wal};
use serde_json::json;

use super::args::InitArgs;
use super::{Context, print_json};

pub(crate) fn init(ctx: &Context, args: InitArgs) -> Result<ExitCode> {
    let data_dir = &ctx.config.data_dir;
    let config_path = data_dir.join(CONFIG_FILE_NAME);
    if config_path.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to rewrite the config file (the WAL and keys are never touched)",
            config_path.display()
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let mut config = ctx.config.clone();
    config.data_dir = ".".into();
    if let Some(store) = args.store {
        config.store.url = Some(store);
    }
    config.validate()?;
    finn::wal::fs::write_atomic(&config_path, config.to_toml().as_bytes())
        .with_context(|| format!("cannot write {}", config_path.display()))?;

    // Opening creates the WAL directory and proves the lock works here.
    let wal_dir = ctx.config.wal_dir();
    let (wal, _) = Wal::open(&wal_dir, Options::default())
        .with_context(|| format!("cannot create WAL {}", wal_dir.display()))?;
    drop(wal);
    let key = super::keys::ensure_signing_key(ctx)?;

    if ctx.json {
        print_json(&json!({
            "data_dir": data_dir,
            "config": config_path,
            "wal": wal_dir,
            "signing_key": key,
        }))?;
    } else {
        println!("initialised {}", data_dir.display());
        println!("  config      {}", config_path.display());
        println!("  WAL         {}", wal_dir.display());
        if let Some(key) = key {
            println!("  signing key {}", key.display());
        }
        println!("next: finn --data-dir {} run", data_dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn status(ctx: &Context) -> Result<ExitCode> {
    ctx.require_data_dir()?;
    // A running `finn run` serving metrics knows everything: tasks, requests, verification.
    if let Some(listen) = &ctx.config.metrics.listen
        && let Some(live) = live_status(listen)
    {
        if ctx.json {
            print_json(&json!({"source": "running", "status": live}))?;
        } else {
            print_live(&live);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let wal_dir = ctx.config.wal_dir();
    let wal = Wal::open_read_only(&wal_dir, Options::default())
        .with_context(|| format!("cannot open WAL {}", wal_dir.display()))?;
    let status = wal.status();
    let confirmed = Confirmed::load(&ctx.config.data_dir)?;
    let store = ctx.config.store_url()?.as_url_string();
    let lag = Lag::measure(&wal, confirmed.checkpointed_lsn.max(confirmed.shipped_lsn));
    if ctx.json {
        print_json(&json!({
            "source": "data_dir",
            "data_dir": ctx.config.data_dir,
            "store": store,
            "wal": status,
            "confirmed": confirmed,
            "local_lsn": status.last_lsn.get(),
            "durable_lsn": status.durable_lsn.get(),
            "shipped_lsn": confirmed.shipped_lsn.get(),
            "checkpointed_lsn": confirmed.checkpointed_lsn.get(),
            "lag_records": lag.records,
            "lag_seconds": lag.seconds,
            "pending_bytes": lag.bytes,
            "in_sync": lag.records == 0,
        }))?;
    } else {
        println!("data dir      {}", ctx.config.data_dir.display());
        println!("object store  {store}");
        println!(
            "WAL           LSN {} ..= {}, {} segments, {} bytes, pressure {:?}",
            status.first_lsn.map_or("-".into(), |l| l.to_string()),
            status.last_lsn,
            status.segments,
            status.wal_bytes,
            status.pressure
        );
        println!(
            "confirmed     checkpointed through LSN {}, shipped through LSN {}",
            confirmed.checkpointed_lsn, confirmed.shipped_lsn
        );
        println!(
            "lag           {} records, {:.1} s, {} bytes pending ({})",
            lag.records,
            lag.seconds,
            lag.bytes,
            if lag.records == 0 {
                "in sync"
            } else {
                "NOT in sync"
            }
        );
        println!(
            "tasks         set metrics.listen and run 'finn run' to see scheduled tasks and request counts here"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Records durable locally but not yet in the object store, from the WAL.
struct Lag {
    records: u64,
    seconds: f64,
    bytes: u64,
}

impl Lag {
    fn measure(wal: &Wal, remote_durable: finn::wal::Lsn) -> Lag {
        let durable = wal.durable_lsn();
        let mut lag = Lag {
            records: 0,
            seconds: 0.0,
            bytes: 0,
        };
        let mut oldest = None;
        if durable > remote_durable
            && let Ok(iter) = wal.iter_from(remote_durable.next())
        {
            for r in iter.flatten() {
                if r.lsn > durable {
                    break;
                }
                oldest.get_or_insert(r.timestamp_ms);
                lag.records += 1;
                lag.bytes += (r.payload.len() + r.key.as_ref().map_or(0, String::len)) as u64;
            }
        }
        if let Some(t) = oldest {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            lag.seconds = now.saturating_sub(t) as f64 / 1000.0;
        }
        lag
    }
}

/// `GET /status` from a running `finn run` (one second to answer), if there is one.
fn live_status(listen: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = listen.parse().ok()?;
    let timeout = std::time::Duration::from_secs(1);
    let mut sock = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    sock.set_read_timeout(Some(timeout)).ok()?;
    sock.write_all(b"GET /status HTTP/1.1\r\nhost: finn\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then_some(())?;
    serde_json::from_str(body).ok()
}

fn print_live(s: &serde_json::Value) {
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    println!("source        the running runtime");
    println!(
        "LSN           local {}, durable {}, shipped {}, checkpointed {}",
        n("local_lsn"),
        n("durable_lsn"),
        n("shipped_lsn"),
        n("checkpointed_lsn")
    );
    println!(
        "lag           {} records, {:.1} s, {} bytes pending ({})",
        n("lag_records"),
        s["lag_seconds"].as_f64().unwrap_or(0.0),
        n("pending_bytes"),
        if s["in_sync"] == true {
            "in sync"
        } else {
            "NOT in sync"
        }
    );
    if let Some(v) = s["verification"].as_object() {
        println!(
            "verification  {} at {} ms, restorable through LSN {}",
            if v["ok"] == true { "ok" } else { "FINDINGS" },
            v["at_ms"],
            v["restorable_lsn"]
        );
    }
    if let Some(d) = s["drill"].as_object() {
        println!(
            "restore drill {} , restorable as of {} ms",
            if d["ok"] == true { "passed" } else { "FAILED" },
            d["restorable_as_of_ms"]
        );
    }
    let r = &s["remote_requests"];
    println!(
        "requests      put {} multipart {} get {} head {} list {} delete {} (failed {})",
        r["put"], r["multipart"], r["get"], r["head"], r["list"], r["delete"], r["failures"]
    );
    for t in s["tasks"].as_array().into_iter().flatten() {
        println!(
            "task          {:<18} {:<10} last success {} ms, last failure {} ms {}",
            t["id"].as_str().unwrap_or(""),
            t["state"].as_str().unwrap_or(""),
            t["last_success_ms"],
            t["last_failure_ms"],
            t["last_error"].as_str().unwrap_or("")
        );
    }
}
