//! Fuzz target: `keel::fuzzing::tool_args` (see src/fuzzing.rs for what it covers).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel::fuzzing::tool_args(data));
