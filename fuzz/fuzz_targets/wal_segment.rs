//! Fuzz target `wal_segment`: see [`finn_fuzz::wal_segment`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| finn_fuzz::wal_segment(data));
