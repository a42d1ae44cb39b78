//! Fuzz target `manifest`: see [`finn_fuzz::manifest`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| finn_fuzz::manifest(data));
