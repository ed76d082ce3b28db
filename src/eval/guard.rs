//! `keel eval guard` and `keel eval intent`: the interface layer measured on its committed labelled sets.
//!
//! Guard: every validation and test text is normalised, cut into windows and embedded, then scored by the
//! patterns alone, the similarity layer alone and both combined. For each, the flag threshold is chosen on the
//! validation split as the lowest that flags at most 1% of its benign texts; the test split is then scored at
//! that threshold (detection of direct and of indirect injections, and the false-positive rate it really
//! gives), and, for reference, at the threshold that gives 1% false positives on the test split itself.
//!
//! Intent: accuracy and the confusion matrix of the rules plus nearest-centroid classifier on the test split.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::app_guard::GuardModel;
use crate::interface::guard::{self, Source};
use crate::interface::intent::{self, Intent};
use crate::interface::normalise::{normalise, Destination};

#[derive(Debug, Clone, Deserialize)]
pub struct GuardItem {
    pub id: String,
    pub text: String,
    pub source: String,
    pub label: String,
    pub kind: String,
    pub split: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerFigures {
    pub layer: String,
    /// Chosen on the validation split: the lowest score flagged with at most 1% of its benign texts flagged.
    pub threshold: f32,
    pub test_direct_detected: f64,
    pub test_indirect_detected: f64,
    pub test_false_positive_rate: f64,
    /// Detection on the test split at the threshold that flags 1% of its own benign texts (a reference only).
    pub test_direct_at_1pct: f64,
    pub test_indirect_at_1pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemScores {
    pub id: String,
    pub split: String,
    pub kind: String,
    pub patterns: f32,
    pub similarity: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct GuardEvalReport {
    pub dataset: String,
    pub counts: BTreeMap<String, usize>,
    pub layers: Vec<LayerFigures>,
    /// Test injections the combined layer missed at the validation threshold (ids), for inspection.
    pub missed: Vec<String>,
    /// Test benign texts it flagged (ids).
    pub false_positives: Vec<String>,
    /// Every scored text's layer scores, for analysis.
    pub scores: Vec<ItemScores>,
    pub duration_ms: u64,
}

struct Scored<'a> {
    item: &'a GuardItem,
    patterns: f32,
    similarity: f32,
}

impl Scored<'_> {
    fn score(&self, layer: &str) -> f32 {
        match layer {
            "patterns" => self.patterns,
            "similarity" => self.similarity,
            _ => guard::combine(self.patterns, Some(self.similarity)),
        }
    }
}

/// The lowest threshold at which at most `rate` of `benign` scores are at or above it.
fn threshold_at(benign: &mut [f32], rate: f64) -> f32 {
    benign.sort_by(|a, b| b.total_cmp(a));
    let allowed = (benign.len() as f64 * rate).floor() as usize;
    // Flag only scores strictly above the (allowed+1)-th highest benign score.
    match benign.get(allowed) {
        Some(s) => next_up(*s),
        None => 0.0,
    }
}

fn next_up(x: f32) -> f32 {
    f32::from_bits(x.to_bits() + 1).max(f32::MIN_POSITIVE)
}

fn rate(items: &[&Scored], layer: &str, threshold: f32) -> f64 {
    if items.is_empty() {
        return 0.0;
    }
    items.iter().filter(|s| s.score(layer) >= threshold).count() as f64 / items.len() as f64
}

pub fn load(jsonl: &str) -> Result<Vec<GuardItem>, String> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// The validation and test texts, normalised as the guard sees them (embed their windows with
/// `App::guard_windows` for [`evaluate`]).
pub fn texts(items: &[GuardItem]) -> Vec<String> {
    items.iter().filter(|i| i.split != "train").map(|i| normalise(&i.text, Destination::Model).text).collect()
}

/// Scores the validation and test splits and reports each layer. `windows` are the embedded windows of
/// [`texts`], in order.
pub fn evaluate(model: &GuardModel, dataset: &str, items: &[GuardItem], windows: &[Vec<Vec<f32>>]) -> Result<GuardEvalReport, String> {
    let started = std::time::Instant::now();
    let mut counts = BTreeMap::new();
    for i in items {
        *counts.entry(format!("{}/{}", i.split, i.kind)).or_insert(0) += 1;
    }
    let used: Vec<&GuardItem> = items.iter().filter(|i| i.split != "train").collect();
    let texts = texts(items);
    if windows.len() != texts.len() {
        return Err(format!("{} texts but {} embedded", texts.len(), windows.len()));
    }
    let scored: Vec<Scored> = used
        .iter()
        .zip(&texts)
        .zip(windows)
        .map(|((item, text), w)| {
            let source = Source::parse(&item.source).unwrap_or(Source::Document);
            Scored {
                item,
                patterns: guard::pattern_scan(text, source).0,
                similarity: guard::similarity_scan(w, model.exemplars()).map_or(0.0, |(s, _)| s),
            }
        })
        .collect();
    let pick = |split: &str, kind: &str| -> Vec<&Scored> { scored.iter().filter(|s| s.item.split == split && s.item.kind == kind).collect() };
    let mut layers = Vec::new();
    let mut combined_threshold = 1.0;
    for layer in ["patterns", "similarity", "combined"] {
        let mut val_benign: Vec<f32> = pick("validation", "benign").iter().map(|s| s.score(layer)).collect();
        let threshold = threshold_at(&mut val_benign, 0.01);
        let mut test_benign: Vec<f32> = pick("test", "benign").iter().map(|s| s.score(layer)).collect();
        let own = threshold_at(&mut test_benign, 0.01);
        if layer == "combined" {
            combined_threshold = threshold;
        }
        layers.push(LayerFigures {
            layer: layer.into(),
            threshold,
            test_direct_detected: rate(&pick("test", "direct"), layer, threshold),
            test_indirect_detected: rate(&pick("test", "indirect"), layer, threshold),
            test_false_positive_rate: rate(&pick("test", "benign"), layer, threshold),
            test_direct_at_1pct: rate(&pick("test", "direct"), layer, own),
            test_indirect_at_1pct: rate(&pick("test", "indirect"), layer, own),
        });
    }
    let test: Vec<&Scored> = scored.iter().filter(|s| s.item.split == "test").collect();
    let missed = test.iter().filter(|s| s.item.label == "injection" && s.score("combined") < combined_threshold).map(|s| s.item.id.clone()).collect();
    let false_positives = test.iter().filter(|s| s.item.label == "benign" && s.score("combined") >= combined_threshold).map(|s| s.item.id.clone()).collect();
    let scores = scored
        .iter()
        .map(|s| ItemScores { id: s.item.id.clone(), split: s.item.split.clone(), kind: s.item.kind.clone(), patterns: s.patterns, similarity: s.similarity })
        .collect();
    Ok(GuardEvalReport { dataset: dataset.into(), counts, layers, missed, false_positives, scores, duration_ms: started.elapsed().as_millis() as u64 })
}

#[derive(Debug, Clone, Serialize)]
pub struct IntentEvalReport {
    pub examples: usize,
    pub accuracy: f64,
    /// Rows are the true intent, columns the detected one, in `labels` order.
    pub labels: Vec<String>,
    pub confusion: Vec<Vec<usize>>,
    /// How many were decided by each path (`rule`, `centroid`, `keywords`).
    pub decided_by: BTreeMap<String, usize>,
    pub mistakes: Vec<(String, String, String)>,
}

/// The intent detector on the test split of the committed intent set.
pub fn evaluate_intent(model: &GuardModel) -> Result<IntentEvalReport, String> {
    let test = intent::examples(intent::TRAINING_SET, "test");
    let texts: Vec<&str> = test.iter().map(|(t, _)| t.as_str()).collect();
    let vectors = model.embedder().embed(&texts).map_err(|e| e.to_string())?;
    let index = |i: Intent| Intent::ALL.iter().position(|x| *x == i).unwrap_or(0);
    let mut confusion = vec![vec![0usize; Intent::ALL.len()]; Intent::ALL.len()];
    let mut decided_by = BTreeMap::new();
    let mut mistakes = Vec::new();
    for ((text, truth), v) in test.iter().zip(&vectors) {
        let guess = model.intent(text, Some(v));
        confusion[index(*truth)][index(guess.intent)] += 1;
        *decided_by.entry(guess.by.clone()).or_insert(0) += 1;
        if guess.intent != *truth {
            mistakes.push((text.clone(), truth.as_str().into(), guess.intent.as_str().into()));
        }
    }
    let right: usize = (0..Intent::ALL.len()).map(|i| confusion[i][i]).sum();
    Ok(IntentEvalReport {
        examples: test.len(),
        accuracy: right as f64 / test.len().max(1) as f64,
        labels: Intent::ALL.iter().map(|i| i.as_str().to_owned()).collect(),
        confusion,
        decided_by,
        mistakes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_flags_at_most_the_allowed_share_of_benign_scores() {
        let mut benign: Vec<f32> = (0..200).map(|i| i as f32 / 200.0).collect();
        let t = threshold_at(&mut benign, 0.01);
        let flagged = benign.iter().filter(|s| **s >= t).count();
        assert_eq!(flagged, 2);
        let mut none: Vec<f32> = vec![0.0; 50];
        assert!(threshold_at(&mut none, 0.01) > 0.0);
    }
}
