//! What every libFuzzer binary of keel runs: the target of keel_init::fuzzing::all()
//! named as the binary (looked up once).

use std::sync::OnceLock;

/// Feed `data` to the target called `name` (the binary's own name).
pub fn run(name: &str, data: &[u8]) {
    static TARGET: OnceLock<fn(&[u8])> = OnceLock::new();
    TARGET.get_or_init(|| keel_init::fuzzing::find(name).unwrap_or_else(|| panic!("no fuzz target called {name}")).run)(data)
}
