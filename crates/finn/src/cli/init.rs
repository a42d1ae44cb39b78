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
    let wal_dir = ctx.config.wal_dir();
    let wal = Wal::open_read_only(&wal_dir, Options::default())
        .with_context(|| format!("cannot open WAL {}", wal_dir.display()))?;
    let status = wal.status();
    let confirmed = Confirmed::load(&ctx.config.data_dir)?;
    let store = ctx.config.store_url()?.as_url_string();
    if ctx.json {
        print_json(&json!({
            "data_dir": ctx.config.data_dir,
            "store": store,
            "wal": status,
            "confirmed": confirmed,
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
    }
    Ok(ExitCode::SUCCESS)
}
