//! Fuzz target `wal_batch`: see [`finn_fuzz::wal_batch`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| finn_fuzz::wal_batch(data));
