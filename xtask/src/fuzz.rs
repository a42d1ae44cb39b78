//! `cargo xtask fuzz`: runs every cargo-fuzz target in `fuzz/` for a while.
//!
//! Only the stable toolchain is installed, so the fuzz build runs with `RUSTC_BOOTSTRAP=1`
//! (cargo-fuzz passes a few `-Z` flags) and `--sanitizer none` (finn forbids `unsafe`, so
//! AddressSanitizer would mostly watch the standard library; the fuzzer still gets
//! SanitizerCoverage instrumentation, debug assertions and overflow checks). Each target starts
//! from its committed seeds (`fuzz/seeds/<target>/`) plus, when present, the real-world
//! fixtures in `../shared/fixtures/`; new inputs go to `fuzz/corpus/<target>/` (not committed).
//! A crash fails the task and names the reproducer under `fuzz/artifacts/<target>/`; it then
//! becomes a regression test in the crate that owns the code.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::shell;

/// Every target, with the shared fixture directory that seeds it further (if any).
/// The target triple cargo-fuzz builds for (it always passes `--target`).
const HOST: &str = "x86_64-unknown-linux-gnu";

const TARGETS: &[(&str, Option<&str>)] = &[
    ("wal_segment", None),
    ("wal_batch", None),
    ("manifest", None),
    ("identity", Some("identity")),
    ("beads_jsonl", Some("beads")),
    ("learnings_import", Some("learnings")),
];

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut time = 60u64;
    let mut only: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--time" => {
                time = it
                    .next()
                    .context("--time needs seconds")?
                    .parse()
                    .context("--time")?;
            }
            "--target" => only.extend(
                it.next()
                    .context("--target needs a name")?
                    .split(',')
                    .map(str::to_owned),
            ),
            other => bail!("unknown option `{other}` for fuzz"),
        }
    }
    for t in &only {
        if !TARGETS.iter().any(|(name, _)| name == t) {
            bail!("unknown fuzz target `{t}`");
        }
    }
    ensure_cargo_fuzz()?;
    let root = shell::workspace_root();
    let fuzz_dir = root.join("fuzz");
    let shared = shell::shared_dir().join("fixtures");

    let started = Instant::now();
    shell::run(fuzz_cmd(&fuzz_dir).args(["build", "--sanitizer", "none", "--release"]))?;
    eprintln!(
        "fuzz: targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let mut summary = Vec::new();
    for (target, fixture) in TARGETS {
        if !only.is_empty() && !only.iter().any(|t| t == target) {
            continue;
        }
        let work = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&work)
            .with_context(|| format!("cannot create {}", work.display()))?;
        let artifacts = fuzz_dir.join("artifacts").join(target);
        std::fs::create_dir_all(&artifacts)
            .with_context(|| format!("cannot create {}", artifacts.display()))?;
        // The binary cargo-fuzz built, run directly: `cargo fuzz run` would check (and, with
        // sources changing under it, redo) the build for every target.
        let mut cmd = Command::new(
            fuzz_dir
                .join("target")
                .join(HOST)
                .join("release")
                .join(target),
        );
        cmd.current_dir(&fuzz_dir)
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(format!("-max_total_time={time}"))
            // A hang or a runaway allocation is a finding too.
            .arg("-timeout=20")
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1")
            .arg(&work)
            .arg(fuzz_dir.join("seeds").join(target));
        if let Some(f) = fixture {
            let dir = shared.join(f);
            if dir.is_dir() {
                cmd.arg(dir);
            }
        }
        let t = Instant::now();
        shell::run(&mut cmd).with_context(|| {
            format!(
                "fuzz target {target} failed; the reproducer is in {}",
                artifacts.display()
            )
        })?;
        summary.push(format!(
            "{target}: {:.0} s, no crash, corpus {} inputs",
            t.elapsed().as_secs_f64(),
            count(&work)
        ));
    }
    println!("fuzz: every target ran without a crash");
    for line in summary {
        println!("  {line}");
    }
    Ok(())
}

fn fuzz_cmd(fuzz_dir: &Path) -> Command {
    let mut cmd = shell::cargo();
    cmd.arg("fuzz")
        .current_dir(fuzz_dir)
        // cargo-fuzz passes -Z flags; this lets the stable compiler accept them.
        .env("RUSTC_BOOTSTRAP", "1");
    cmd
}

/// Tested with this release on the stable toolchain (`RUSTC_BOOTSTRAP=1`, `--sanitizer none`);
/// pinned so that a newer release cannot change CI under us.
const CARGO_FUZZ: &str = "cargo-fuzz@0.13.2";

fn ensure_cargo_fuzz() -> Result<()> {
    if shell::has_program("cargo-fuzz", &["fuzz", "--version"]) {
        return Ok(());
    }
    eprintln!("installing {CARGO_FUZZ} (first use only)");
    shell::run(shell::cargo().args(["install", "--locked", CARGO_FUZZ]))
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}
