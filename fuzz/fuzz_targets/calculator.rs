//! Fuzz target: `keel::fuzzing::calculator` (see src/fuzzing.rs for what it covers).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel::fuzzing::calculator(data));
