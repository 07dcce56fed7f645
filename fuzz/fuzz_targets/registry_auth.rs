#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_fuzz::run(env!("CARGO_BIN_NAME"), data));
