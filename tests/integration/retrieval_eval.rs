//! Retrieval quality is measured, and held: nDCG@10 and recall@10 of BM25, vectors and hybrid on the judged set
//! fetched by `tests/evals/retrieval/fetch.py` (scripts/test.sh sets `KEEL_RETRIEVAL_DIR`). The test fails if
//! hybrid nDCG@10 drops below the committed baseline (`tests/evals/retrieval/baseline.json`) or below the better
//! of the two single rankings. `UPDATE_BASELINE=1` rewrites the baseline from this run.

use std::path::PathBuf;

use crate::common;

#[test]
fn hybrid_ndcg_holds_the_committed_baseline() {
    let dir = std::env::var_os("KEEL_RETRIEVAL_DIR").map(PathBuf::from).unwrap_or_else(|| {
        panic!("KEEL_RETRIEVAL_DIR is not set: run the suite with scripts/test.sh, which fetches the set into it")
    });
    assert!(dir.join("SOURCE.json").exists(), "{} has no SOURCE.json: run tests/evals/retrieval/fetch.py {}", dir.display(), dir.display());
    let work = tempfile::tempdir().unwrap();
    let report = keel::eval::retrieval::evaluate(
        &dir,
        &common::models_dir().join("all-minilm-l6-v2"),
        "all-minilm-l6-v2",
        work.path(),
        &mut |_, _, _| {},
    )
    .unwrap();
    let json = serde_json::to_string_pretty(&report).unwrap();
    eprintln!("{json}");
    let out = common::repo().join("test-output");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("retrieval.json"), &json);
    let baseline_path = common::repo().join("tests/evals/retrieval/baseline.json");
    if std::env::var_os("UPDATE_BASELINE").is_some() {
        let baseline = serde_json::json!({
            "hybrid_ndcg_at_10": (report.hybrid.ndcg_at_10 * 10_000.0).floor() / 10_000.0,
            "bm25": report.bm25, "vectors": report.vectors, "hybrid": report.hybrid,
            "documents": report.documents, "queries": report.queries,
        });
        std::fs::write(&baseline_path, serde_json::to_string_pretty(&baseline).unwrap() + "\n").unwrap();
    }
    let baseline: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&baseline_path).unwrap()).unwrap();
    let floor = baseline["hybrid_ndcg_at_10"].as_f64().unwrap();
    assert_eq!(report.queries, baseline["queries"].as_u64().unwrap() as usize);
    assert!(report.hybrid.ndcg_at_10 >= floor, "hybrid nDCG@10 {:.4} fell below the baseline {floor:.4}", report.hybrid.ndcg_at_10);
    assert!(report.hybrid_at_least_best, "hybrid {:?} is worse than BM25 {:?} or vectors {:?}", report.hybrid, report.bm25, report.vectors);
}
