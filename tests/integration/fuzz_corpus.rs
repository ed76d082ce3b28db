//! The fuzz targets' committed inputs, replayed on stable: every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` goes through the same `keel::fuzzing` function the fuzzer calls, so a fixed crash
//! that comes back fails the suite without nightly or libFuzzer.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{models_dir, repo};

/// The slowest one input may be (libFuzzer's `-timeout` in `scripts/fuzz.sh` is 10 s in an optimised build).
const MAX_PER_INPUT: Duration = Duration::from_secs(20);

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    out.sort();
    out
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| e.downcast_ref::<String>().cloned()).unwrap_or_default()
}

#[test]
fn every_committed_fuzz_input_runs_cleanly() {
    // The tokenizer target reads the chat model's vocabulary from KEEL_MODELS_DIR: fail clearly without it.
    models_dir();
    let fuzz = repo().join("fuzz");
    let names: BTreeSet<&str> = keel::fuzzing::TARGETS.iter().map(|(n, _)| *n).collect();

    // Every target has a fuzz target file calling it and a corpus; every corpus has a target.
    let named: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    let corpora: BTreeSet<String> = folders(&fuzz.join("corpus")).into_iter().collect();
    assert_eq!(corpora, named, "the folders of fuzz/corpus and the targets of keel::fuzzing differ");
    let regressions: BTreeSet<String> = folders(&fuzz.join("regressions")).into_iter().collect();
    assert!(regressions.is_subset(&named), "fuzz/regressions has folders of no target: {regressions:?}");
    for name in &names {
        let source = std::fs::read_to_string(fuzz.join(format!("fuzz_targets/{name}.rs"))).unwrap_or_default();
        assert!(source.contains(&format!("keel::fuzzing::{name}(data)")), "fuzz/fuzz_targets/{name}.rs does not call keel::fuzzing::{name}");
    }

    let started = Instant::now();
    let mut replayed = 0usize;
    let mut found = 0usize;
    for (name, target) in keel::fuzzing::TARGETS {
        let corpus = files(&fuzz.join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} is empty: the target would be replayed on nothing");
        let inputs: Vec<PathBuf> = corpus.into_iter().chain(files(&fuzz.join("regressions").join(name))).collect();
        found += inputs.len();
        for file in &inputs {
            let data = std::fs::read(file).unwrap();
            let at = Instant::now();
            // A panic fails the test naming the file (it is not swallowed: it is raised again with the name).
            if let Err(e) = std::panic::catch_unwind(|| target(&data)) {
                panic!("fuzz target {name} panicked on {}: {}", file.display(), panic_message(&*e));
            }
            let took = at.elapsed();
            assert!(took <= MAX_PER_INPUT, "fuzz target {name} took {took:?} on {}", file.display());
            replayed += 1;
        }
    }
    // Positive control: every file found was run.
    assert_eq!(replayed, found);
    assert!(replayed >= keel::fuzzing::TARGETS.len());
    eprintln!("replayed {replayed} fuzz inputs of {} targets in {:?}", names.len(), started.elapsed());
}

/// The names of the folders in `dir`.
fn folders(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.map(|e| e.unwrap().path()).filter(|p| p.is_dir()).map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
}
