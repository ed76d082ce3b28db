//! How the guard's layers become one score: a logistic regression over what each layer found.
//!
//! The features of a text are which pattern rules fired (one indicator per rule), the patterns' noisy-or score,
//! where the text came from, three numbers from the similarity layer (the best window's margin between the
//! nearest attack and benign exemplars, the highest attack similarity of any window, and the benign similarity
//! of the best window) and, in a fit that lists it (`--fit` does; the committed one does not yet), the lexical
//! layer's score ([`super::lexical`]). Each is standardised with the train split's mean and deviation, weighted,
//! and passed through a sigmoid, so the score reads as a probability and the [`Thresholds`](super::guard::Thresholds) keep
//! their meaning.
//!
//! The weights are fitted by `keel eval guard --fit` on the train split of `tests/evals/guard/set/`
//! (L2-regularised, by Newton's method, so the fit is deterministic), the regularisation and the flag
//! threshold chosen on the validation split; the result is committed as `guard_combiner.json` and compiled in.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::signals::{Reason, Source};

/// The committed fit.
pub const COMMITTED: &str = include_str!("guard_combiner.json");

/// What the similarity layer found, as the combiner reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nearest {
    /// max over windows of (mean of the nearest attack similarities − mean of the nearest benign ones).
    pub margin: f32,
    /// The highest nearest-attack mean of any window.
    pub attack: f32,
    /// The nearest-benign mean of the window with the best margin.
    pub benign: f32,
}

/// Everything the combiner looks at for one text.
pub struct Evidence<'a> {
    pub reasons: &'a [Reason],
    pub pattern_score: f32,
    pub source: Source,
    /// The lexical layer's score of the text ([`super::lexical::Lexical::explain`]; 0 when not computed).
    pub lexical: f32,
    pub nearest: Nearest,
}

/// The fitted combiner, as committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Combiner {
    /// Feature names: `rule:<id>`, `pattern_score`, `source:<source>`, `lexical`, `knn_margin`, `knn_attack`,
    /// `knn_benign`.
    pub features: Vec<String>,
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    pub weights: Vec<f32>,
    pub intercept: f32,
    /// The regularisation chosen on the validation split (`1/C`-style: larger is smoother).
    pub l2: f32,
    /// The flag threshold on the score, chosen on the validation split at 1% false positives.
    pub flag: f32,
    /// Where and how it was fitted, for the record.
    pub fitted_on: String,
}

const SOURCES: [Source; 5] = [Source::User, Source::Document, Source::Tool, Source::Memory, Source::Web];

/// The feature names for a set of rule ids.
pub fn feature_names(rule_ids: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = rule_ids.iter().map(|r| format!("rule:{r}")).collect();
    names.push("pattern_score".into());
    names.extend(SOURCES.iter().map(|s| format!("source:{}", s.as_str())));
    names.push("lexical".into());
    names.extend(["knn_margin", "knn_attack", "knn_benign"].map(String::from));
    names
}

/// The raw (unstandardised) value of each named feature.
pub fn features(names: &[String], evidence: &Evidence) -> Vec<f32> {
    names
        .iter()
        .map(|name| match name.as_str() {
            "pattern_score" => evidence.pattern_score,
            "lexical" => evidence.lexical,
            "knn_margin" => evidence.nearest.margin,
            "knn_attack" => evidence.nearest.attack,
            "knn_benign" => evidence.nearest.benign,
            n => {
                if let Some(rule) = n.strip_prefix("rule:") {
                    f32::from(evidence.reasons.iter().any(|r| r.rule == rule))
                } else if let Some(source) = n.strip_prefix("source:") {
                    f32::from(evidence.source.as_str() == source)
                } else {
                    0.0
                }
            }
        })
        .collect()
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Combiner {
    /// The committed combiner (checked by a test, so this cannot fail in a build that passed).
    pub fn committed() -> &'static Combiner {
        static C: OnceLock<Combiner> = OnceLock::new();
        C.get_or_init(|| serde_json::from_str(COMMITTED).expect("src/interface/guard_combiner.json is valid"))
    }

    /// The score of a text: the probability the fit gives it of being an injection.
    pub fn score(&self, evidence: &Evidence) -> f32 {
        self.score_raw(&features(&self.features, evidence))
    }

    pub fn score_raw(&self, x: &[f32]) -> f32 {
        let z: f64 = self.intercept as f64
            + x.iter()
                .zip(&self.mean)
                .zip(&self.scale)
                .zip(&self.weights)
                .map(|(((x, m), s), w)| ((x - m) / s) as f64 * *w as f64)
                .sum::<f64>();
        sigmoid(z) as f32
    }

    /// Fits on `x` (raw features, one row per text) and `y` (injection or not): standardisation from `x`, then
    /// L2-regularised logistic regression (the intercept unpenalised) by Newton's method.
    pub fn fit(features: Vec<String>, x: &[Vec<f32>], y: &[bool], l2: f32) -> Combiner {
        let d = features.len();
        let n = x.len().max(1) as f64;
        let mut mean = vec![0f64; d];
        for row in x {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += *v as f64 / n;
            }
        }
        let mut scale = vec![0f64; d];
        for row in x {
            for ((s, v), m) in scale.iter_mut().zip(row).zip(&mean) {
                *s += (*v as f64 - m).powi(2) / n;
            }
        }
        // A feature that never varies on the train split gets scale 1 (and so a zero weight).
        let scale: Vec<f64> = scale.into_iter().map(|v| if v > 1e-12 { v.sqrt() } else { 1.0 }).collect();
        let z: Vec<Vec<f64>> = x
            .iter()
            .map(|row| {
                let mut r: Vec<f64> = row.iter().zip(&mean).zip(&scale).map(|((v, m), s)| (*v as f64 - m) / s).collect();
                r.push(1.0);
                r
            })
            .collect();
        // Parameters: d weights then the intercept. Loss: l2/2·|w|² + Σ logloss.
        let p = d + 1;
        let mut w = vec![0f64; p];
        for _ in 0..100 {
            let mut grad = vec![0f64; p];
            let mut hess = vec![vec![0f64; p]; p];
            for j in 0..d {
                grad[j] = l2 as f64 * w[j];
                hess[j][j] = l2 as f64;
            }
            for (row, label) in z.iter().zip(y) {
                let prob = sigmoid(row.iter().zip(&w).map(|(a, b)| a * b).sum());
                let err = prob - f64::from(u8::from(*label));
                let curv = (prob * (1.0 - prob)).max(1e-10);
                for a in 0..p {
                    grad[a] += err * row[a];
                    for b in 0..=a {
                        hess[a][b] += curv * row[a] * row[b];
                    }
                }
            }
            for a in 0..p {
                for b in 0..a {
                    hess[b][a] = hess[a][b];
                }
                // Keeps the system solvable when a feature is constant (its column is all zero).
                hess[a][a] += 1e-9;
            }
            let step = solve(hess, grad);
            let size: f64 = step.iter().map(|s| s * s).sum::<f64>().sqrt();
            w.iter_mut().zip(&step).for_each(|(w, s)| *w -= s);
            if size < 1e-10 {
                break;
            }
        }
        Combiner {
            features,
            mean: mean.iter().map(|v| *v as f32).collect(),
            scale: scale.iter().map(|v| *v as f32).collect(),
            weights: w[..d].iter().map(|v| *v as f32).collect(),
            intercept: w[d] as f32,
            l2,
            flag: 0.5,
            fitted_on: String::new(),
        }
    }
}

/// Solves `a·x = b` by Gaussian elimination with partial pivoting (`a` is small and positive definite).
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        let diag = a[col][col];
        if diag.abs() < 1e-300 {
            continue;
        }
        for row in col + 1..n {
            let f = a[row][col] / diag;
            if f != 0.0 {
                for k in col..n {
                    a[row][k] -= f * a[col][k];
                }
                b[row] -= f * b[col];
            }
        }
    }
    let mut x = vec![0f64; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = if a[row][row].abs() < 1e-300 { 0.0 } else { (b[row] - s) / a[row][row] };
    }
    x
}

/// The similarity layer's numbers for a text's windows, leaving out the exemplars `skip` names (a train text's
/// own exemplar, when fitting). `None` without windows or exemplars.
pub fn nearest(
    windows: &[Vec<f32>],
    attacks: &[Vec<f32>],
    benign: &[Vec<f32>],
    k: usize,
    skip_attack: &dyn Fn(usize) -> bool,
    skip_benign: &dyn Fn(usize) -> bool,
) -> Option<Nearest> {
    if attacks.is_empty() || benign.is_empty() {
        return None;
    }
    nearest_from(&similarities(windows, attacks, benign), k, skip_attack, skip_benign)
}

/// Each window's similarity (dot product of unit vectors) to every attack and to every benign exemplar.
pub fn similarities(windows: &[Vec<f32>], attacks: &[Vec<f32>], benign: &[Vec<f32>]) -> Vec<(Vec<f32>, Vec<f32>)> {
    let dots = |w: &[f32], set: &[Vec<f32>]| -> Vec<f32> { set.iter().map(|e| w.iter().zip(e).map(|(a, b)| a * b).sum()).collect() };
    windows.iter().map(|w| (dots(w, attacks), dots(w, benign))).collect()
}

/// [`nearest`] from the windows' [`similarities`], computed once when the same texts are scored against the
/// exemplars with different ones left out (a leave-one-source-out evaluation).
pub fn nearest_from(
    similarities: &[(Vec<f32>, Vec<f32>)],
    k: usize,
    skip_attack: &dyn Fn(usize) -> bool,
    skip_benign: &dyn Fn(usize) -> bool,
) -> Option<Nearest> {
    if similarities.is_empty() {
        return None;
    }
    let top = |sims: &[f32], skip: &dyn Fn(usize) -> bool| -> f32 {
        let mut best: Vec<f32> = Vec::with_capacity(k + 1);
        for (i, s) in sims.iter().enumerate() {
            if skip(i) {
                continue;
            }
            if best.len() < k || *s > best[best.len() - 1] {
                best.push(*s);
                best.sort_by(|a, b| b.total_cmp(a));
                best.truncate(k);
            }
        }
        if best.is_empty() { 0.0 } else { best.iter().sum::<f32>() / best.len() as f32 }
    };
    let mut out = Nearest { margin: f32::NEG_INFINITY, attack: f32::NEG_INFINITY, benign: 0.0 };
    for (to_attacks, to_benign) in similarities {
        let a = top(to_attacks, skip_attack);
        let b = top(to_benign, skip_benign);
        out.attack = out.attack.max(a);
        if a - b > out.margin {
            out.margin = a - b;
            out.benign = b;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_fit_is_well_formed() {
        let c = Combiner::committed();
        assert!(!c.features.is_empty());
        assert_eq!(c.features.len(), c.mean.len());
        assert_eq!(c.features.len(), c.scale.len());
        assert_eq!(c.features.len(), c.weights.len());
        assert!(c.scale.iter().all(|s| *s > 0.0));
        assert!(c.flag > 0.0 && c.flag < 1.0);
        // Every feature is one the combiner knows how to compute.
        let known = feature_names(&[]);
        for f in &c.features {
            assert!(f.starts_with("rule:") || known.contains(f), "unknown feature {f}");
        }
    }

    #[test]
    fn fitting_separates_a_separable_signal_and_ignores_noise() {
        // Feature 0 decides the label; feature 1 is noise; feature 2 is constant.
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..200 {
            let label = i % 2 == 0;
            let signal = if label { 1.0 } else { -1.0 } + ((i * 7919) % 13) as f32 / 26.0;
            x.push(vec![signal, ((i * 104729) % 17) as f32, 3.0]);
            y.push(label);
        }
        let c = Combiner::fit(names, &x, &y, 1.0);
        assert!(c.weights[0] > 2.0, "{:?}", c.weights);
        assert!(c.weights[1].abs() < 0.5, "{:?}", c.weights);
        assert!(c.weights[2].abs() < 1e-6, "{:?}", c.weights);
        let correct = x.iter().zip(&y).filter(|(r, l)| (c.score_raw(r) >= 0.5) == **l).count();
        assert!(correct >= 195, "{correct}/200");
        // Heavier regularisation shrinks the weights.
        let smooth = Combiner::fit(c.features.clone(), &x, &y, 100.0);
        assert!(smooth.weights[0].abs() < c.weights[0].abs());
    }

    #[test]
    fn nearest_takes_the_best_window_and_skips_what_it_is_told() {
        let attacks = vec![vec![1.0, 0.0], vec![0.8, 0.6]];
        let benign = vec![vec![0.0, 1.0]];
        let windows = vec![vec![0.0, 1.0], vec![1.0, 0.0]];
        let n = nearest(&windows, &attacks, &benign, 1, &|_| false, &|_| false).unwrap();
        assert_eq!(n, Nearest { margin: 1.0, attack: 1.0, benign: 0.0 });
        // Without the exact match, the second attack is nearest.
        let n = nearest(&windows, &attacks, &benign, 1, &|i| i == 0, &|_| false).unwrap();
        assert!((n.attack - 0.8).abs() < 1e-6);
        assert!(nearest(&[], &attacks, &benign, 1, &|_| false, &|_| false).is_none());
    }
}
