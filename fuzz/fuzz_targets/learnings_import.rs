//! Fuzz target `learnings_import`: see [`finn_fuzz::learnings_import`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| finn_fuzz::learnings_import(data));
