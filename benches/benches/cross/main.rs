//! finn next to its peers and the physical limit of the machine, in one run.
//!
//! Every workload measures finn and its baselines side by side in the same process, because
//! the machines this runs on are shared and noisy: only ratios from one run mean anything.
//! `cargo xtask bench [--quick]` runs this binary (and the crates' own benches), then turns
//! criterion's estimates plus the extra numbers written here into
//! `target/finn-bench/report.{md,json}` and an SVG plot.
//!
//! Environment (set by the xtask):
//! - `FINN_BENCH_QUICK=1`: CI smoke sizes (small workloads, sub-second measurements).
//! - `FINN_BENCH_OUT`: directory for `extras.jsonl` (numbers criterion cannot hold: bytes
//!   uploaded, record counts, group-commit factors). Default `target/finn-bench`.
//! - `FINN_BENCH_DIR`: where the benchmarks create their files (default: the system temp
//!   directory, which on the reference machine is the same disk as the project).
//! - `FINN_SHARED_DIR`: the shared fixtures (`beads/loa-finn-issues.jsonl`).
//!
//! Every id is `<group>/<function>[/<parameter>]`; the xtask's report maps them to workloads.

use std::time::Duration;

use criterion::Criterion;

mod append;
mod baseline;
mod beads;
mod checkpoint;
mod compaction;
mod extras;
mod replay;
mod sqlite;

/// Sizes and times of one run.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// CI smoke run.
    pub quick: bool,
    /// Records replayed in the 256 B replay workload.
    pub replay_records_256: u64,
    /// Records replayed in the 4 KiB replay workload.
    pub replay_records_4k: u64,
    /// Records in the WAL that is compacted (10 % of them live).
    pub compaction_records_256: u64,
    /// Same, 4 KiB records.
    pub compaction_records_4k: u64,
    /// Files of the checkpointed state (1 % of the bytes change between checkpoints).
    pub checkpoint_files: usize,
    /// Size of each of them.
    pub checkpoint_file_size: usize,
    /// Segment size of the WALs under test.
    pub segment_size: u64,
    /// Size of the preallocated file of the physical baseline.
    pub prealloc_bytes: u64,
    /// Records after the checkpoint that the recovery cascade restores from shipped WAL.
    pub cascade_wal_records: u64,
}

impl Scale {
    fn from_env() -> Scale {
        let quick = std::env::var("FINN_BENCH_QUICK").is_ok_and(|v| v == "1");
        if quick {
            Scale {
                quick,
                replay_records_256: 50_000,
                replay_records_4k: 5_000,
                compaction_records_256: 20_000,
                compaction_records_4k: 2_000,
                checkpoint_files: 100,
                checkpoint_file_size: 64 << 10,
                segment_size: 8 << 20,
                prealloc_bytes: 16 << 20,
                cascade_wal_records: 1_000,
            }
        } else {
            Scale {
                quick,
                replay_records_256: 1_000_000,
                replay_records_4k: 100_000,
                compaction_records_256: 200_000,
                compaction_records_4k: 20_000,
                checkpoint_files: 100,
                checkpoint_file_size: 1 << 20,
                segment_size: 64 << 20,
                prealloc_bytes: 256 << 20,
                cascade_wal_records: 10_000,
            }
        }
    }

    /// Applies the run's sample count and times to a benchmark group.
    pub fn configure<M: criterion::measurement::Measurement>(
        &self,
        group: &mut criterion::BenchmarkGroup<'_, M>,
    ) {
        group.sampling_mode(criterion::SamplingMode::Flat);
        group.sample_size(10);
        if self.quick {
            group.warm_up_time(Duration::from_millis(150));
            group.measurement_time(Duration::from_millis(400));
        } else {
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(4));
        }
    }
}

/// A temp directory for one benchmark, under `FINN_BENCH_DIR` if set.
pub fn scratch(label: &str) -> tempfile::TempDir {
    let prefix = format!("finn-bench-{label}-");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    let dir = match std::env::var_os("FINN_BENCH_DIR") {
        Some(base) => builder.tempdir_in(base),
        None => builder.tempdir(),
    };
    dir.expect("cannot create a scratch directory for the benchmark")
}

/// Deterministic, incompressible-looking payload bytes (so neither zstd nor the filesystem can
/// shortcut them).
pub fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn main() {
    let scale = Scale::from_env();
    let mut c = Criterion::default().configure_from_args();
    extras::note(
        "run",
        serde_json::json!({
            "quick": scale.quick,
            "replay_records_256": scale.replay_records_256,
            "replay_records_4k": scale.replay_records_4k,
        }),
    );
    append::durable(&mut c, scale);
    append::unsynced(&mut c, scale);
    append::batched(&mut c, scale);
    replay::bench(&mut c, scale);
    compaction::bench(&mut c, scale);
    checkpoint::checkpoint(&mut c, scale);
    checkpoint::cascade(&mut c, scale);
    beads::bench(&mut c, scale);
    c.final_summary();
}
