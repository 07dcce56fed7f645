//! One libFuzzer binary per target, all from this file: the binary's name picks the
//! target in `keel_init::fuzzing` (looked up once).
#![no_main]

use std::sync::OnceLock;

/// The target this binary runs.
fn target() -> fn(&[u8]) {
    static TARGET: OnceLock<fn(&[u8])> = OnceLock::new();
    *TARGET.get_or_init(|| {
        let name = env!("CARGO_BIN_NAME");
        keel_init::fuzzing::find(name).unwrap_or_else(|| panic!("no fuzz target called {name}")).run
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| target()(data));
