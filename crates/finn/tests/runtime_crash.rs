//! Runtime crash campaign: `finn drill` many times in a row, each with its own seed. Every
//! drill runs the whole runtime in a writer process (sessions, memory, config, beads,
//! learnings, identity edits, WAL shipping, checkpoints), SIGKILLs it at a random moment after
//! its first checkpoint, deletes its data directory, recovers through the cascade and checks
//! every write that was remotely acknowledged (streamed to the parent over a pipe).
//!
//! 50 drills per run; `FINN_RUNTIME_CRASH_ITERATIONS=N` for more, `FINN_CRASH_SEED=S` to
//! replay a campaign (`cargo xtask crash --target runtime` runs the same drills at any size).

use std::process::Command;

use serde_json::Value;

const FINN: &str = env!("CARGO_BIN_EXE_finn");

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// splitmix64, so each drill's seed follows from the campaign's.
fn next_seed(z: &mut u64) -> u64 {
    *z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut x = *z;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[test]
fn fifty_drills_lose_no_acknowledged_write() {
    let iterations = env_u64("FINN_RUNTIME_CRASH_ITERATIONS").unwrap_or(50);
    let campaign = env_u64("FINN_CRASH_SEED").unwrap_or(0x0D01_11A5);
    eprintln!("campaign seed {campaign} (FINN_CRASH_SEED replays it)");
    let mut state = campaign;
    let (mut acknowledged, mut written, mut without_ack) = (0, 0, 0);
    for i in 0..iterations {
        let seed = next_seed(&mut state);
        let out = Command::new(FINN)
            .args(["drill", "--json", "--max-run-ms", "400", "--seed"])
            .arg(seed.to_string())
            .output()
            .expect("the finn binary runs");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "drill {i} (seed {seed}) printed no report ({e}); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(
            report["lost"], 0,
            "drill {i} lost acknowledged writes; replay with `finn drill --seed {seed} --max-run-ms 400`: {report}"
        );
        let acked = report["acknowledged"].as_u64().unwrap_or(0);
        if acked == 0 {
            without_ack += 1;
        } else {
            assert!(
                out.status.success(),
                "drill {i} (seed {seed}) failed: {report}"
            );
        }
        acknowledged += acked;
        written += report["written"].as_u64().unwrap_or(0);
    }
    eprintln!(
        "{iterations} drills: {written} writes, {acknowledged} acknowledged and all recovered, \
         {without_ack} killed before anything was acknowledged"
    );
    assert!(
        without_ack < iterations,
        "no drill acknowledged anything: the campaign checked nothing"
    );
}
