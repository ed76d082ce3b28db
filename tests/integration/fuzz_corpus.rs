//! The fuzz targets' committed inputs, replayed on stable: every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` goes through the same `keel::fuzzing` function the fuzzer calls, so a fixed crash
//! that comes back fails the suite without nightly or libFuzzer.
//!
//! Then each target is fuzzed for a bounded time (`FUZZ_SECONDS` each) on stable, from its committed corpus:
//! libFuzzer's mutations without its coverage feedback (bit flips, bytes set, inserted, erased and repeated,
//! boundary integers, splices of two corpus inputs), from a seed printed at the start (`KEEL_FUZZ_SEED` replays
//! one; the suite's script clears it). Each input is written to `test-output/fuzz-mutations/<target>.input`
//! before it runs, so one that aborts the process is kept; one that panics is saved beside it and named in the
//! failure. `scripts/fuzz.sh SECONDS` is the coverage-guided run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{models_dir, repo};

/// How long each target is fuzzed in the suite.
const FUZZ_SECONDS: u64 = 3;

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

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values at the edges of integer types, as libFuzzer inserts them: little- and big-endian.
const BOUNDARIES: &[u64] = &[0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, u64::MAX, u64::MAX / 2];

/// One to four of libFuzzer's byte-level mutations of `input`, `other` being another input of the corpus.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                data.drain(at..at + n);
            }
            4 if len > 0 => {
                // A piece repeated: long runs and deep nesting.
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(32));
                let piece = data[at..at + n].to_vec();
                let times = 1 + rng.below(64);
                let repeated: Vec<u8> = piece.iter().copied().cycle().take(n * times).collect();
                data.splice(at..at, repeated);
            }
            5 => {
                let v = BOUNDARIES[rng.below(BOUNDARIES.len())];
                let width = [1, 2, 4, 8][rng.below(4)];
                let bytes = if rng.below(2) == 0 { v.to_le_bytes() } else { v.to_be_bytes() };
                let bytes = if rng.below(2) == 0 { &bytes[..width] } else { &bytes[8 - width..] };
                if len >= width {
                    let at = rng.below(len - width + 1);
                    data[at..at + width].copy_from_slice(bytes);
                } else {
                    data.extend_from_slice(bytes);
                }
            }
            6 if !other.is_empty() => {
                // A splice: this input's head, the other's tail.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            7 if len > 0 => data.truncate(rng.below(len)),
            _ if len > 1 => {
                let (a, b) = (rng.below(len), rng.below(len));
                data.swap(a, b);
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data.truncate(1 << 20);
    data
}

#[test]
fn the_mutator_changes_inputs_in_every_way_it_claims() {
    let mut rng = Rng(7);
    let input = b"{\"tool\": \"calculator\", \"arguments\": {\"expression\": \"6*7\"}}".to_vec();
    let other = b"GGUF\x03\x00\x00\x00 the other input".to_vec();
    let outs: Vec<Vec<u8>> = (0..2000).map(|_| mutate(&mut rng, &input, &other)).collect();
    assert!(outs.iter().all(|o| o.len() <= 1 << 20));
    let changed = outs.iter().filter(|o| **o != input).count();
    assert!(changed > 1900, "only {changed} of 2000 mutations changed the input");
    assert!(outs.iter().any(|o| o.len() > input.len() + 16), "nothing grew");
    assert!(outs.iter().any(|o| o.len() < input.len() / 2), "nothing shrank");
    assert!(outs.iter().any(|o| o.windows(4).any(|w| w == b"GGUF")), "no splice");
    assert!(outs.iter().any(|o| o.windows(4).any(|w| w == [0xFF; 4])), "no boundary value");
}

#[test]
fn every_fuzz_target_survives_mutations_of_its_corpus_for_a_bounded_time() {
    models_dir();
    let fuzz = repo().join("fuzz");
    let out = repo().join("test-output/fuzz-mutations");
    std::fs::create_dir_all(&out).unwrap();
    let seed = match std::env::var("KEEL_FUZZ_SEED") {
        Ok(v) => u64::from_str_radix(v.trim().trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("KEEL_FUZZ_SEED={v} is not hex")),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    eprintln!("fuzzing each target for {FUZZ_SECONDS} s from seed {seed:#x} (KEEL_FUZZ_SEED={seed:x} replays it)");
    let mut report = Vec::new();
    for (t, (name, target)) in keel::fuzzing::TARGETS.iter().enumerate() {
        let corpus: Vec<Vec<u8>> = files(&fuzz.join("corpus").join(name))
            .into_iter()
            .chain(files(&fuzz.join("regressions").join(name)))
            .map(|f| std::fs::read(f).unwrap())
            .collect();
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} is empty");
        let mut rng = Rng(seed ^ (t as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let current = out.join(format!("{name}.input"));
        let started = Instant::now();
        let mut runs = 0u64;
        while started.elapsed() < Duration::from_secs(FUZZ_SECONDS) {
            let a = &corpus[rng.below(corpus.len())];
            let b = &corpus[rng.below(corpus.len())];
            let data = mutate(&mut rng, a, b);
            std::fs::write(&current, &data).unwrap();
            let at = Instant::now();
            if let Err(e) = std::panic::catch_unwind(|| target(&data)) {
                let kept = out.join(format!("{name}-crash-{seed:x}-{runs}"));
                std::fs::write(&kept, &data).unwrap();
                panic!(
                    "fuzz target {name} panicked on a mutated input, kept as {}: {}\n(add it to fuzz/regressions/{name}/ once fixed)",
                    kept.display(),
                    panic_message(&*e)
                );
            }
            let took = at.elapsed();
            if took > MAX_PER_INPUT {
                let kept = out.join(format!("{name}-slow-{seed:x}-{runs}"));
                std::fs::write(&kept, &data).unwrap();
                panic!("fuzz target {name} took {took:?} on a mutated input, kept as {}", kept.display());
            }
            runs += 1;
        }
        // Positive control: the target really ran, many times.
        assert!(runs >= 20, "fuzz target {name} ran only {runs} inputs in {FUZZ_SECONDS} s");
        report.push(format!("{name} {runs}"));
        let _ = std::fs::remove_file(&current);
    }
    eprintln!("executions per target: {}", report.join(", "));
}
