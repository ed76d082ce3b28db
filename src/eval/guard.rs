//! `keel eval guard` and `keel eval intent`: the interface layer measured on its committed labelled sets.
//!
//! Guard: every text is normalised, cut into windows and embedded, then scored by the patterns alone, the
//! similarity layer alone and the combiner over both ([`crate::interface::combiner`]). Each is measured at the
//! threshold Keel ships for it (the similarity layer, never used alone, at the one chosen on validation as the
//! lowest that flags at most 1% of its benign texts, which is reported for every layer); the test
//! split is then scored at that threshold (detection of direct and of indirect injections, and the
//! false-positive rate it really gives), and, for reference, at the threshold that gives 1% false positives on
//! the test split itself. `--fit` first fits the combiner on the train split (each train text's own exemplar
//! left out of its similarity features) and chooses its regularisation and flag threshold on validation.
//!
//! Intent: accuracy and the confusion matrix of the rules plus nearest-centroid classifier on the test split.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::interface::combiner::{self, Combiner, Evidence, Nearest};
use crate::interface::guard::{self, Exemplars, Reason, Source};
use crate::interface::intent::{self, Intent, IntentGuess};
use crate::interface::normalise::{normalise, Destination};
use crate::memory::embed::Embedder;

/// What the evaluation measures of the guard's model (`App`'s `GuardModel` is one): its exemplars and where
/// they came from, the embedder and the intent classifier. A trait, so that evaluation sits below `App`.
pub trait GuardUnderTest {
    fn exemplars(&self) -> &Exemplars;
    /// The guard-set ids the attack and benign exemplars were taken from.
    fn exemplar_sources(&self) -> (&[Option<String>], &[Option<String>]);
    fn embedder(&self) -> &Embedder;
    fn intent(&self, text: &str, embedding: Option<&[f32]>) -> IntentGuess;
}

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
    /// The threshold the figures below are at: the one Keel ships for this layer (the combiner's `flag`, the
    /// patterns-only `patterns_flag`); for a layer Keel does not use alone, the one chosen on validation.
    pub threshold: f32,
    /// True when `threshold` is the one Keel ships, not one chosen again by this run.
    pub shipped: bool,
    /// The lowest score flagged with at most 1% of the validation split's benign texts flagged (a reference).
    pub validation_threshold: f32,
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
    /// The combiner's raw features (for fitting) and its score.
    features: Vec<f32>,
    combined: f32,
}

impl Scored<'_> {
    fn score(&self, layer: &str) -> f32 {
        match layer {
            "patterns" => self.patterns,
            "similarity" => self.similarity,
            _ => self.combined,
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

/// Every text, normalised as the guard sees them (embed their windows with `App::guard_windows` for
/// [`evaluate`]); the train split is needed to fit the combiner.
pub fn texts(items: &[GuardItem]) -> Vec<String> {
    items.iter().map(|i| normalise(&i.text, Destination::Model).text).collect()
}

/// The regularisation strengths tried when fitting; the validation split picks one.
const L2_GRID: [f32; 5] = [1.0, 3.0, 10.0, 30.0, 100.0];

/// Fits the combiner on the train split's features, choosing the regularisation and the flag threshold on the
/// validation split (the most validation injections found at 1% validation false positives; the smoother fit
/// on a tie).
fn fit(names: &[String], scored: &[Scored], dataset: &str) -> Combiner {
    let train: Vec<&Scored> = scored.iter().filter(|s| s.item.split == "train").collect();
    let x: Vec<Vec<f32>> = train.iter().map(|s| s.features.clone()).collect();
    let y: Vec<bool> = train.iter().map(|s| s.item.label == "injection").collect();
    let validation: Vec<&Scored> = scored.iter().filter(|s| s.item.split == "validation").collect();
    let mut best: Option<(usize, Combiner)> = None;
    for l2 in L2_GRID {
        let mut c = Combiner::fit(names.to_vec(), &x, &y, l2);
        let scores: Vec<(f32, bool)> = validation.iter().map(|s| (c.score_raw(&s.features), s.item.label == "injection")).collect();
        let mut benign: Vec<f32> = scores.iter().filter(|(_, inj)| !inj).map(|(s, _)| *s).collect();
        c.flag = threshold_at(&mut benign, 0.01);
        let found = scores.iter().filter(|(s, inj)| *inj && *s >= c.flag).count();
        if best.as_ref().is_none_or(|(f, _)| found >= *f) {
            best = Some((found, c));
        }
    }
    let (_, mut c) = best.expect("a non-empty grid");
    c.fitted_on = format!(
        "train split of {dataset} ({} texts); l2 {} and the flag threshold chosen on its validation split ({} texts) at 1% false positives",
        train.len(),
        c.l2,
        validation.len()
    );
    c
}

/// Scores every split and reports each layer on the test split. `windows` are the embedded windows of
/// [`texts`], in order. With `refit`, the combiner is fitted afresh (see [`fit`]) and both the report and the
/// returned fit use it; otherwise the committed combiner is measured.
pub fn evaluate(
    model: &dyn GuardUnderTest,
    dataset: &str,
    items: &[GuardItem],
    windows: &[Vec<Vec<f32>>],
    refit: bool,
) -> Result<(GuardEvalReport, Combiner), String> {
    let started = std::time::Instant::now();
    let mut counts = BTreeMap::new();
    for i in items {
        *counts.entry(format!("{}/{}", i.split, i.kind)).or_insert(0) += 1;
    }
    let texts = texts(items);
    if windows.len() != texts.len() {
        return Err(format!("{} texts but {} embedded", texts.len(), windows.len()));
    }
    let names = if refit { combiner::feature_names(&guard::rule_ids()) } else { Combiner::committed().features.clone() };
    let exemplars = model.exemplars();
    let (attack_from, benign_from) = model.exemplar_sources();
    let mut scored: Vec<Scored> = items
        .iter()
        .zip(&texts)
        .zip(windows)
        .map(|((item, text), w)| {
            let source = Source::parse(&item.source).unwrap_or(Source::Document);
            let (patterns, reasons): (f32, Vec<Reason>) = guard::pattern_scan(&guard::scanned_text(&item.text, text), source);
            // A train text is its own exemplar: leave it out, or it would find itself.
            let train = item.split == "train";
            let own_attack = |i: usize| train && attack_from[i].as_deref() == Some(item.id.as_str());
            let own_benign = |i: usize| train && benign_from[i].as_deref() == Some(item.id.as_str());
            let nearest = combiner::nearest(w, &exemplars.attacks, &exemplars.benign, guard::NEAREST, &own_attack, &own_benign)
                .unwrap_or(Nearest { margin: -1.0, attack: 0.0, benign: 0.0 });
            let features = combiner::features(&names, &Evidence { reasons: &reasons, pattern_score: patterns, source, nearest });
            Scored {
                item,
                patterns,
                similarity: guard::margin_score(nearest.margin),
                combined: 0.0,
                features,
            }
        })
        .collect();
    let combiner = if refit { fit(&names, &scored, dataset) } else { Combiner::committed().clone() };
    for s in &mut scored {
        s.combined = combiner.score_raw(&s.features);
    }
    let pick = |split: &str, kind: &str| -> Vec<&Scored> { scored.iter().filter(|s| s.item.split == split && s.item.kind == kind).collect() };
    let mut layers = Vec::new();
    let mut combined_threshold = 1.0;
    for layer in ["patterns", "similarity", "combined"] {
        let mut val_benign: Vec<f32> = pick("validation", "benign").iter().map(|s| s.score(layer)).collect();
        let validation_threshold = threshold_at(&mut val_benign, 0.01);
        // The figures are at the threshold Keel ships, so they are what a user gets; a new fit ships its own flag.
        let shipped = match layer {
            "combined" => Some(combiner.flag),
            "patterns" => Some(guard::Thresholds::default().patterns_flag),
            _ => None,
        };
        let threshold = shipped.unwrap_or(validation_threshold);
        let mut test_benign: Vec<f32> = pick("test", "benign").iter().map(|s| s.score(layer)).collect();
        let own = threshold_at(&mut test_benign, 0.01);
        if layer == "combined" {
            combined_threshold = threshold;
        }
        layers.push(LayerFigures {
            layer: layer.into(),
            threshold,
            shipped: shipped.is_some(),
            validation_threshold,
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
        .filter(|s| s.item.split != "train")
        .map(|s| ItemScores { id: s.item.id.clone(), split: s.item.split.clone(), kind: s.item.kind.clone(), patterns: s.patterns, similarity: s.similarity })
        .collect();
    let report = GuardEvalReport { dataset: dataset.into(), counts, layers, missed, false_positives, scores, duration_ms: started.elapsed().as_millis() as u64 };
    Ok((report, combiner))
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
pub fn evaluate_intent(model: &dyn GuardUnderTest) -> Result<IntentEvalReport, String> {
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
