//! `finn beads …`, `finn learnings …`, `finn identity …`: the components, through the runtime.
//!
//! Every writing command opens the runtime (recovering if needed), writes through the shared
//! WAL, and checkpoints on the way out, so its writes are remotely durable when it returns.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::args::{BeadsCommand, IdentityCommand, LearningsCommand};
use super::ops::with_runtime;
use super::{Context, print_json};

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub(crate) fn beads(ctx: &Context, command: BeadsCommand) -> Result<ExitCode> {
    let json = ctx.json;
    let out = with_runtime(ctx, |finn| {
        let store = finn.beads();
        Ok(match command {
            BeadsCommand::Import { file } => {
                let r = store
                    .import_path(&file, &finn::beads::ImportOptions::default())
                    .with_context(|| format!("cannot import {}", file.display()))?;
                let v = json!({"created": r.created.len(), "updated": r.updated.len(), "unchanged": r.unchanged, "skipped_older": r.skipped_older.len(), "conflicts": r.conflicts, "records_written": r.records_written});
                (
                    v,
                    format!(
                        "imported {}: {} created, {} updated, {} unchanged",
                        file.display(),
                        r.created.len(),
                        r.updated.len(),
                        r.unchanged
                    ),
                )
            }
            BeadsCommand::Export { out } => {
                let mut buf = Vec::new();
                store.export_to(&mut buf).context("cannot export beads")?;
                let lines = buf.iter().filter(|b| **b == b'\n').count();
                match out {
                    Some(path) => {
                        finn::wal::fs::write_atomic(&path, &buf)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        (
                            json!({"file": path, "beads": lines}),
                            format!("exported {lines} beads to {}", path.display()),
                        )
                    }
                    None => (
                        Value::Null,
                        String::from_utf8_lossy(&buf).trim_end().to_owned(),
                    ),
                }
            }
            BeadsCommand::Ready => {
                let ready = store.ready(&finn::beads::ReadyQuery::default());
                let text = ready
                    .iter()
                    .map(|b| format!("{}  {}", b.id, b.title))
                    .collect::<Vec<_>>()
                    .join("\n");
                (
                    to_json(&ready),
                    if text.is_empty() {
                        "no ready beads".to_owned()
                    } else {
                        text
                    },
                )
            }
            BeadsCommand::Claim { owner, lease_secs } => {
                match store.claim(
                    &owner,
                    Duration::from_secs(lease_secs),
                    &finn::beads::ReadyQuery::default(),
                )? {
                    Some(c) => (
                        to_json(&c),
                        format!(
                            "claimed {} (claim {}) until {}",
                            c.bead_id, c.claim_id, c.expires_at
                        ),
                    ),
                    None => (Value::Null, "nothing ready to claim".to_owned()),
                }
            }
            BeadsCommand::Release {
                id,
                claim,
                owner,
                blocked,
            } => {
                let claim = finn::beads::Claim {
                    bead_id: id.clone(),
                    claim_id: claim,
                    worker: owner,
                    expires_at: finn::beads::Timestamp::now(),
                };
                let outcome = match blocked {
                    Some(reason) => finn::beads::Outcome::Blocked { reason },
                    None => finn::beads::Outcome::Done,
                };
                store.release(&claim, outcome)?;
                (json!({"released": id}), format!("released {id}"))
            }
            BeadsCommand::Show { id } => {
                let Some(bead) = store.get(&id) else {
                    bail!("no bead {id:?}");
                };
                (
                    to_json(&bead),
                    serde_json::to_string_pretty(&bead).unwrap_or_default(),
                )
            }
        })
    })?;
    emit(json, out)
}

fn emit(json: bool, (value, text): (Value, String)) -> Result<ExitCode> {
    if json && !value.is_null() {
        print_json(&value)?;
    } else if json {
        print_json(&json!(text))?;
    } else {
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

fn new_learning(trigger: String, pattern: String, solution: String) -> finn::learning::NewLearning {
    finn::learning::NewLearning::new(
        finn::learning::Source::Retrospective,
        finn::learning::Target::Devcontainer,
        trigger,
        pattern,
        solution,
    )
}

pub(crate) fn learnings(ctx: &Context, command: LearningsCommand) -> Result<ExitCode> {
    let json = ctx.json;
    let out = with_runtime(ctx, |finn| {
        let store = finn.learnings();
        Ok(match command {
            LearningsCommand::Add {
                trigger,
                pattern,
                solution,
            } => {
                let l = store.add(new_learning(trigger, pattern, solution))?;
                (to_json(&l), format!("added learning {}", l.id))
            }
            LearningsCommand::List => {
                let all = store.list(None);
                let text = all
                    .iter()
                    .map(|l| format!("{}  {}", l.id, l.trigger))
                    .collect::<Vec<_>>()
                    .join("\n");
                (
                    to_json(&all),
                    if text.is_empty() {
                        "no learnings".to_owned()
                    } else {
                        text
                    },
                )
            }
            LearningsCommand::Score {
                trigger,
                pattern,
                solution,
            } => {
                let (card, eval) = store.evaluate(&new_learning(trigger, pattern, solution));
                (
                    json!({"scorecard": to_json(&card), "evaluation": to_json(&eval)}),
                    format!("{card:?}\n{eval:?}"),
                )
            }
            LearningsCommand::Import { file } => {
                let r = store
                    .import_loa_file(&file)
                    .with_context(|| format!("cannot import {}", file.display()))?;
                (
                    json!({"report": format!("{r:?}")}),
                    format!("imported {}: {r:?}", file.display()),
                )
            }
            LearningsCommand::Match { query, limit } => {
                let found = store.find_matching(&query, limit);
                let v = found.iter().map(|f| json!({"score": f.score, "hits": f.hits, "learning": to_json(&f.learning)})).collect::<Vec<_>>();
                let text = found
                    .iter()
                    .map(|f| format!("{:.2}  {}  {}", f.score, f.learning.id, f.learning.trigger))
                    .collect::<Vec<_>>()
                    .join("\n");
                (
                    Value::Array(v),
                    if text.is_empty() {
                        "no match".to_owned()
                    } else {
                        text
                    },
                )
            }
        })
    })?;
    emit(json, out)
}

pub(crate) fn identity(ctx: &Context, command: IdentityCommand) -> Result<ExitCode> {
    let pick = |file: Option<std::path::PathBuf>| -> Result<std::path::PathBuf> {
        file.or_else(|| {
            ctx.config
                .identity
                .path
                .as_ref()
                .map(|p| ctx.config.resolve(p))
        })
        .context("no identity document given and none configured (identity.path)")
    };
    match command {
        IdentityCommand::Check { file } => {
            let path = pick(file)?;
            let loader = finn::identity::Loader::new(&path, finn::identity::Options::default());
            let result = loader.load();
            let ok = result.is_ok();
            let validation = loader.validate();
            if ctx.json {
                print_json(
                    &json!({"file": path, "ok": ok, "error": result.as_ref().err().map(ToString::to_string), "validation": to_json(&validation), "checksum": loader.health().checksum.map(|c| c.to_string())}),
                )?;
            } else {
                match &result {
                    Ok(_) => println!("{} is valid", path.display()),
                    Err(e) => println!("{} is invalid: {e}", path.display()),
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        IdentityCommand::Show { file } => {
            let path = pick(file)?;
            let loader = finn::identity::Loader::new(&path, finn::identity::Options::default());
            loader
                .load()
                .with_context(|| format!("cannot load {}", path.display()))?;
            let doc = loader.current().context("no document became active")?;
            if ctx.json {
                print_json(&to_json(&*doc))?;
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&*doc).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        IdentityCommand::Watch { file } => {
            let path = pick(file)?;
            let rt = super::ops::tokio_runtime()?;
            rt.block_on(async {
                let loader = finn::identity::Loader::new(&path, finn::identity::Options::default());
                if let Err(e) = loader.load() {
                    eprintln!("not valid yet: {e}");
                }
                let mut events = loader.events();
                let _guard = loader.watch().context("cannot watch the document")?;
                eprintln!("watching {}; Ctrl-C to stop", path.display());
                loop {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => break,
                        ev = events.recv() => match ev {
                            Ok(ev) => println!("{ev:?}"),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => eprintln!("missed {n} events"),
                            Err(_) => break,
                        },
                    }
                }
                anyhow::Ok(ExitCode::SUCCESS)
            })
        }
    }
}
