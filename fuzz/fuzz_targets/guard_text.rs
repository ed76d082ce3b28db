//! Fuzz target: `keel::fuzzing::guard_text` (see src/fuzzing.rs for what it covers).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel::fuzzing::guard_text(data));
