//! Reload latency: time from a rename-replace save of the identity document until the new
//! document is on the watch channel, as p50 / p99 / max over a series of saves, next to the
//! configured debounce. A measurement harness, not a test: it asserts nothing and prints whether
//! p99 met the target (debounce + 50 ms).
//!
//! `cargo bench -p finn-identity --bench reload_latency`
//! Environment: `FINN_IDENTITY_BENCH_DEBOUNCE_MS` (comma-separated, default `50,100`),
//! `FINN_IDENTITY_BENCH_SAVES` (default 100), `FINN_IDENTITY_BENCH_MODE` (`native` or `poll`,
//! default `native`).

use std::path::Path;
use std::time::{Duration, Instant};

use finn_identity::{Loader, Options, WatchMode};

fn document(version: usize) -> String {
    format!(
        "# BEAUVOIR\n\n> **Version**: 1.0.{version}\n\n## Core Principles\n\n### 1. Measure\n\n\
         Numbers, not **guesses**.\n\n**In practice**: run the bench.\n\n## Boundaries\n\n\
         ### What I Won't Do\n\n1. **Guess** - ever\n\n## Interaction Style\n\n### Concise\n\n\
         - Short\n\n## Recovery Protocol\n\n```\n1. Restore\n```\n"
    )
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rename_replace(path: &Path, content: &str) -> Instant {
    let temp = path.with_file_name(".BEAUVOIR.md.tmp");
    std::fs::write(&temp, content).expect("write temp");
    let saved = Instant::now();
    std::fs::rename(&temp, path).expect("rename over the document");
    saved
}

async fn measure(debounce: Duration, saves: usize, mode: WatchMode) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("BEAUVOIR.md");
    std::fs::write(&path, document(0)).expect("initial document");
    let options = Options {
        debounce,
        watch_mode: mode,
        poll_interval: Duration::from_millis(20),
        ..Options::default()
    };
    let loader = Loader::new(&path, options);
    let _guard = loader.watch().expect("watch");
    let mut rx = loader.subscribe();
    let mut latencies = Vec::with_capacity(saves);
    for i in 1..=saves {
        let want = format!("1.0.{i}");
        let saved = rename_replace(&path, &document(i));
        loop {
            let arrived = rx
                .borrow_and_update()
                .as_ref()
                .is_some_and(|d| d.metadata.version.as_deref() == Some(want.as_str()));
            if arrived {
                break;
            }
            tokio::time::timeout(Duration::from_secs(30), rx.changed())
                .await
                .expect("document arrives within 30 s")
                .expect("loader alive");
        }
        latencies.push(saved.elapsed());
    }
    latencies
}

fn main() {
    let saves: usize = env_or("FINN_IDENTITY_BENCH_SAVES", "100")
        .parse()
        .expect("FINN_IDENTITY_BENCH_SAVES is a number");
    let mode = match env_or("FINN_IDENTITY_BENCH_MODE", "native").as_str() {
        "poll" => WatchMode::Poll,
        _ => WatchMode::Native,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("reload latency, rename-replace save -> watch channel, {saves} saves, {mode:?}");
    println!("| debounce | tick | p50 | p99 | max | p99 target (debounce + 50 ms) |");
    println!("|---|---|---|---|---|---|");
    for debounce_ms in env_or("FINN_IDENTITY_BENCH_DEBOUNCE_MS", "50,100").split(',') {
        let debounce = Duration::from_millis(debounce_ms.trim().parse().expect("debounce in ms"));
        let tick = (debounce / 4).min(finn_identity::MAX_DEFAULT_TICK);
        let mut latencies = runtime.block_on(measure(debounce, saves, mode));
        latencies.sort();
        let p99 = percentile(&latencies, 0.99);
        let target = debounce + Duration::from_millis(50);
        println!(
            "| {:.0} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            ms(debounce),
            ms(tick),
            ms(percentile(&latencies, 0.50)),
            ms(p99),
            ms(*latencies.last().expect("at least one save")),
            if p99 <= target { "met" } else { "MISSED" }
        );
    }
}
