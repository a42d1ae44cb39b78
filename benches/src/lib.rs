//! Cross-crate benchmarks for finn. Not built yet: the benchmark issue fills this crate.
