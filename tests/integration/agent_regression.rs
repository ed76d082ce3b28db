//! The 30-task regression subset (`tests/evals/agent/regression.jsonl`) on the embedded model, through the `keel`
//! binary as a user runs it: success must not fall below the committed baseline by more than the noise measured
//! over 4 repeats (`regression.baseline.json`, written by `scripts/agent_regression_baseline.sh`).

use serde::Deserialize;

use super::common::{keel, repo, stderr, stdout};

#[derive(Deserialize)]
struct Baseline {
    backend: String,
    tasks: usize,
    /// Success of each of the 4 repeats.
    repeats: Vec<f64>,
}

#[test]
fn the_regression_subset_on_the_embedded_model_holds_its_baseline() {
    let baseline: Baseline =
        serde_json::from_str(&std::fs::read_to_string(repo().join("tests/evals/agent/regression.baseline.json")).unwrap()).unwrap();
    assert!(baseline.repeats.len() >= 4, "the baseline needs the success of 4 repeats to measure the noise");
    let mean = baseline.repeats.iter().sum::<f64>() / baseline.repeats.len() as f64;
    // The noise is the spread of the 4 repeats. On one machine greedy decoding repeats itself exactly (a spread of
    // 0), so the margin is at least one task: the smallest change the subset can show, and room for another CPU's
    // floating point (AVX2 or portable kernels) turning one reply.
    let spread = baseline.repeats.iter().cloned().fold(f64::MIN, f64::max) - baseline.repeats.iter().cloned().fold(f64::MAX, f64::min);
    let noise = spread.max(1.0 / baseline.tasks as f64);

    let home = tempfile::tempdir().unwrap();
    let suite = repo().join("tests/evals/agent/regression.jsonl");
    let out = keel(home.path()).args(["eval", "run", "--tasks"]).arg(&suite).arg("--json").output().unwrap();
    assert!(out.status.success(), "keel eval run failed: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["backend"], baseline.backend.as_str(), "the subset must run on the embedded model");
    assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{}", report["errors"]);
    assert_eq!(report["tasks"].as_array().unwrap().len(), baseline.tasks);
    let success = report["total"]["success"].as_f64().unwrap();
    let failed: Vec<String> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| !t["attempts"][0]["passed"].as_bool().unwrap())
        .map(|t| format!("{}: {}", t["id"], t["attempts"][0]["failures"]))
        .collect();
    eprintln!("regression subset: success {success:.3} (baseline {mean:.3}, noise {noise:.3}); failed:\n{}", failed.join("\n"));
    assert!(
        success + 1e-9 >= mean - noise,
        "success {success:.3} is below the baseline {mean:.3} by more than the measured noise {noise:.3}; failed tasks:\n{}",
        failed.join("\n")
    );
}
