//! Fuzz target `identity`: see [`finn_fuzz::identity`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| finn_fuzz::identity(data));
