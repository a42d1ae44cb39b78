//! `cargo xtask crash`: SIGKILL campaigns against real workloads, reproducible by seed.
//!
//! The children are the ones the crates' own crash tests already have (each test binary
//! re-executes itself as the writer, streams every acknowledgement to the parent over a pipe,
//! is killed with SIGKILL at a random moment, and the parent reopens and checks the
//! invariants against what was acknowledged). This task only scales them up and fixes their
//! seed, so a campaign of thousands of kills is the same code CI runs at 200:
//!
//! | target     | child                                                        | knobs set here |
//! |------------|--------------------------------------------------------------|----------------|
//! | `wal`      | `finn-wal` `tests/crash.rs` `sigkill_torture_…` (8 threads)  | `FINN_CRASH_ITERATIONS` |
//! | `beads`    | `finn-beads` `tests/it/crash.rs` (random bead mutations)     | `FINN_BEADS_CRASH_ROUNDS` |
//! | `learning` | `finn-learning` `tests/it/crash.rs` (adds, transitions)      | `FINN_LEARNING_CRASH_KILLS` |
//! | `recovery` | `finn-recovery` `tests/it/crash.rs` (kill during restore)    | `FINN_RECOVERY_CRASH_REPS` |
//! | `runtime`  | `finn drill` in a loop: writer killed, disk wiped, recovered | one drill per iteration |
//!
//! Every target gets `FINN_CRASH_SEED`; the tests derive their kill moments and workloads from
//! it when it is set.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::shell;

const TARGETS: &[&str] = &["wal", "beads", "learning", "recovery", "runtime"];
/// Most kills in one run of a crate's crash test.
const RUN_CAP: u64 = 250;

struct Args {
    targets: Vec<String>,
    iterations: Option<u64>,
    seed: u64,
    max_run_ms: u64,
    release: bool,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut out = Args {
        targets: Vec::new(),
        iterations: None,
        seed: default_seed(),
        max_run_ms: 1500,
        release: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<String> {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--target" | "-t" => {
                let t = value("--target")?;
                for t in t.split(',') {
                    if t == "all" {
                        out.targets.extend(TARGETS.iter().map(|s| (*s).to_owned()));
                    } else if TARGETS.contains(&t) {
                        out.targets.push(t.to_owned());
                    } else {
                        bail!("unknown crash target `{t}` (one of {TARGETS:?} or all)");
                    }
                }
            }
            "--iterations" | "-n" => {
                out.iterations = Some(value("--iterations")?.parse().context("--iterations")?);
            }
            "--seed" => out.seed = value("--seed")?.parse().context("--seed")?,
            "--max-run-ms" => {
                out.max_run_ms = value("--max-run-ms")?.parse().context("--max-run-ms")?;
            }
            "--release" => out.release = true,
            other => bail!("unknown option `{other}` for crash"),
        }
    }
    if out.targets.is_empty() {
        bail!("crash needs --target {{{}}} (or all)", TARGETS.join(", "));
    }
    Ok(out)
}

fn default_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    splitmix(nanos ^ u64::from(std::process::id()))
}

/// splitmix64: one step of a seedable, dependency-free generator.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let args = parse(args)?;
    eprintln!(
        "crash campaign, seed {} (replay with --seed {})",
        args.seed, args.seed
    );
    let mut summary = Vec::new();
    for target in &args.targets {
        let started = Instant::now();
        let line = match target.as_str() {
            "runtime" => runtime(&args)?,
            other => crate_campaign(other, &args)?,
        };
        let line = format!(
            "{target}: {line} in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        summary.push(line);
    }
    println!("crash campaign (seed {}) passed:", args.seed);
    for line in summary {
        println!("  {line}");
    }
    Ok(())
}

/// Runs one crate's crash test with the campaign's size and seed.
fn crate_campaign(target: &str, args: &Args) -> Result<String> {
    let (package, test_bin, test, knob, default) = match target {
        "wal" => (
            "finn-wal",
            "crash",
            "sigkill_torture_loses_no_acknowledged_append",
            "FINN_CRASH_ITERATIONS",
            200,
        ),
        "beads" => (
            "finn-beads",
            "it",
            "crash::crash_sigkill_rounds_keep_exactly_the_acknowledged_state",
            "FINN_BEADS_CRASH_ROUNDS",
            100,
        ),
        "learning" => (
            "finn-learning",
            "it",
            "crash::sigkill_100_times",
            "FINN_LEARNING_CRASH_KILLS",
            100,
        ),
        "recovery" => (
            "finn-recovery",
            "it",
            "crash::sigkill_during_restore_leaves_the_old_or_the_new_state_never_a_mix",
            "FINN_RECOVERY_CRASH_REPS",
            50,
        ),
        other => bail!("no crate campaign for `{other}`"),
    };
    let n = args.iterations.unwrap_or(default);
    // Each run reopens and re-verifies the whole log after every kill, so the cost of a run
    // grows with the square of its length; big campaigns are several runs on fresh
    // directories, each with its own seed derived from the campaign's.
    let runs = n.div_ceil(RUN_CAP).max(1);
    let mut left = n;
    let mut seed = args.seed;
    for run in 0..runs {
        let this = left.min(RUN_CAP);
        left -= this;
        if run > 0 {
            seed = splitmix(seed);
        }
        eprintln!(
            "{target}: run {}/{runs}, {this} kills, FINN_CRASH_SEED={seed}",
            run + 1
        );
        let mut cmd = shell::cargo();
        cmd.args(["test", "-p", package, "--test", test_bin]);
        if args.release {
            cmd.arg("--release");
        }
        cmd.args(["--", "--exact", test, "--nocapture", "--test-threads=1"])
            .env(knob, this.to_string())
            .env("FINN_CRASH_SEED", seed.to_string());
        shell::run(&mut cmd).with_context(|| {
            format!(
                "{target} crash run {} failed (FINN_CRASH_SEED={seed})",
                run + 1
            )
        })?;
    }
    Ok(format!(
        "{n} SIGKILLs in {runs} run(s), every invariant held"
    ))
}

/// `finn drill` in a loop: each iteration SIGKILLs a writer running the whole runtime, deletes
/// its data directory and recovers from the object store; a lost acknowledged write fails the
/// campaign with the seed that replays it (`finn drill --seed <seed>`).
fn runtime(args: &Args) -> Result<String> {
    let mut build = shell::cargo();
    build.args(["build", "-p", "finn", "--bin", "finn"]);
    if args.release {
        build.arg("--release");
    }
    shell::run(&mut build)?;
    let exe = target_dir()
        .join(if args.release { "release" } else { "debug" })
        .join("finn");
    let n = args.iterations.unwrap_or(50);
    let mut state = args.seed;
    let (mut acked, mut written, mut without_ack, mut checkpoints) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..n {
        state = splitmix(state);
        let seed = state;
        let out = Command::new(&exe)
            .args(["drill", "--json", "--seed", &seed.to_string()])
            .args(["--max-run-ms", &args.max_run_ms.to_string()])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).with_context(|| {
            format!(
                "drill {i} (finn drill --seed {seed}) printed no report ({}): {stdout}",
                out.status
            )
        })?;
        let get = |k: &str| {
            report
                .get(k)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        if get("lost") > 0 {
            bail!(
                "drill {i} lost acknowledged writes; replay with `finn drill --seed {seed} --max-run-ms {}`:\n{report:#}",
                args.max_run_ms
            );
        }
        if get("acknowledged") == 0 {
            // Killed before the first checkpoint covered anything: nothing to check, but
            // recovery itself still had to succeed for the report to exist.
            without_ack += 1;
        } else if !out.status.success() {
            bail!(
                "drill {i} (seed {seed}) failed ({}):\n{report:#}",
                out.status
            );
        }
        acked += get("acknowledged");
        written += get("written");
        checkpoints += get("checkpoints");
        if (i + 1) % 10 == 0 {
            eprintln!(
                "runtime: {} drills, {acked} acknowledged writes checked",
                i + 1
            );
        }
    }
    if without_ack == n {
        bail!("no drill acknowledged a write; raise --max-run-ms");
    }
    Ok(format!(
        "{n} drills (SIGKILL + data directory deleted + recovery), {written} writes, \
         {acked} acknowledged and all found, {checkpoints} checkpoints, {without_ack} killed before the first acknowledgement"
    ))
}

fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| shell::workspace_root().join("target"))
}
