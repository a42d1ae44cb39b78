//! finn's cross-crate benchmark suite: finn next to its peers (SQLite in WAL mode with
//! `synchronous=FULL`, okaywal) and the physical limit of the machine (`write` + `fdatasync` on
//! a preallocated file), in one run.
//!
//! The benchmarks live in `benches/cross/`; run them with `cargo xtask bench [--quick]`, which
//! writes `target/finn-bench/report.md`, `report.json` and `appends.svg`. The peers are
//! dev-dependencies of this package only, so they never reach a finn crate's dependency graph.
//! This library is intentionally empty.
