//! Fuzz target: `keel::fuzzing::import_pdf` (see src/fuzzing.rs for what it covers).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel::fuzzing::import_pdf(data));
