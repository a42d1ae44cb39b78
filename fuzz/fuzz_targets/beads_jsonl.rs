//! Fuzz target `beads_jsonl`: see [`finn_fuzz::beads_jsonl`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| finn_fuzz::beads_jsonl(data));
