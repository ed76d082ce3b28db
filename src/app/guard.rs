//! `App`'s guard: the interface layer's normalisation, intent detection and injection scoring, composed with the
//! memory layer's MiniLM embedder (which the interface layer may not know).
//!
//! The similarity layer's exemplars and the intent centroids are embedded once per embedding model and cached
//! next to the models (`.cache/guard-<hash>.f32`), so a fresh data dir does not pay for them again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use sha2::{Digest, Sha256};
use ts_rs::TS;

use super::status::LoadProgress;
use super::App;
use crate::error::{AppError, ErrorKind};
use crate::interface::guard::{self, Exemplars, Reason, Scan, Screen, Source, Thresholds, Verdict};
use crate::interface::intent::{self, Centroids, Intent, IntentGuess};
use crate::interface::normalise::Change;
use crate::interface::{clean_document, Door};
use crate::eval::guard::GuardUnderTest;
use crate::memory::embed::Embedder;
use crate::memory::Memory;

/// The attack and benign exemplars of the similarity layer: the train split of the committed guard set, cut
/// to their first window (`scripts/build_guard_set.py` writes it).
pub const EXEMPLARS: &str = include_str!("../interface/guard_exemplars.jsonl");

/// What the guard made of one text: `keel guard`'s output line.
#[derive(Debug, Clone, Serialize, TS)]
pub struct GuardReport {
    pub verdict: Verdict,
    pub score: f32,
    pub reasons: Vec<Reason>,
    pub intent: Intent,
    pub intent_confidence: f32,
    pub normalised: String,
    pub changes: Vec<Change>,
}

/// The embedded exemplars and centroids, with the embedder they came from.
pub struct GuardModel {
    memory: Arc<Memory>,
    exemplars: Exemplars,
    /// The guard-set id each exemplar was taken from (attacks, benign), so a fit can leave a text's own out.
    exemplar_from: (Vec<Option<String>>, Vec<Option<String>>),
    centroids: Centroids,
    /// Window vectors computed ahead for a batch of texts ([`GuardChecker::check_many`]), by window text.
    primed: Mutex<HashMap<String, Vec<f32>>>,
}

impl GuardModel {
    /// Scores `text` (already normalised; `scanned` is what the patterns read, see [`guard::scanned_text`])
    /// from `source`, embedding its windows.
    pub fn scan(&self, text: &str, scanned: &str, source: Source, thresholds: Thresholds) -> Scan {
        let vectors = self.vectors(&guard::windows(text));
        guard::scan(scanned, source, &vectors, &self.exemplars, thresholds)
    }

    /// The vectors of `windows`: those primed for the batch being checked, the rest embedded now. None at all
    /// when the embedder fails (the scan then goes on with the patterns alone).
    fn vectors(&self, windows: &[String]) -> Vec<Vec<f32>> {
        let known: Vec<Option<Vec<f32>>> = {
            let primed = self.primed.lock().unwrap_or_else(PoisonError::into_inner);
            windows.iter().map(|w| primed.get(w).cloned()).collect()
        };
        let missing: Vec<&str> = windows.iter().zip(&known).filter(|(_, k)| k.is_none()).map(|(w, _)| w.as_str()).collect();
        let fresh = if missing.is_empty() { Vec::new() } else { self.embedder().embed(&missing).unwrap_or_default() };
        if fresh.len() != missing.len() {
            return Vec::new();
        }
        let mut fresh = fresh.into_iter();
        known.into_iter().map(|k| k.or_else(|| fresh.next()).unwrap_or_default()).collect()
    }

    /// Embeds the windows of all `texts` (as the front door will normalise them) in one call, for
    /// [`GuardModel::vectors`] to find; replaces what was primed before.
    fn prime(&self, texts: &[&str]) {
        let mut windows: Vec<String> = texts.iter().flat_map(|t| guard::windows(&clean_document(t))).collect();
        windows.sort_unstable();
        windows.dedup();
        let refs: Vec<&str> = windows.iter().map(String::as_str).collect();
        let vectors = self.embedder().embed(&refs).unwrap_or_default();
        let mut primed = self.primed.lock().unwrap_or_else(PoisonError::into_inner);
        primed.clear();
        primed.extend(windows.into_iter().zip(vectors));
    }

    fn forget_primed(&self) {
        let mut primed = self.primed.lock().unwrap_or_else(PoisonError::into_inner);
        primed.clear();
        primed.shrink_to_fit();
    }
}

impl GuardUnderTest for GuardModel {
    fn exemplars(&self) -> &Exemplars {
        &self.exemplars
    }

    fn exemplar_sources(&self) -> (&[Option<String>], &[Option<String>]) {
        (&self.exemplar_from.0, &self.exemplar_from.1)
    }

    fn embedder(&self) -> &Embedder {
        self.memory.embedder()
    }

    /// Rules first, then the centroids with the text's embedding, then keywords ([`intent::detect`]).
    fn intent(&self, text: &str, embedding: Option<&[f32]>) -> IntentGuess {
        intent::detect(text, embedding, Some(&self.centroids))
    }
}

fn embed_err(e: impl std::fmt::Display) -> AppError {
    AppError::new(ErrorKind::ModelCorrupt, format!("the embedding model failed: {e}"), Some("run `keel models fetch`".into()))
}

/// The thresholds in force: the defaults, or `KEEL_GUARD_FLAG` / `KEEL_GUARD_PATTERNS_FLAG` /
/// `KEEL_GUARD_BLOCK` when set.
pub fn thresholds() -> Thresholds {
    let read = |name: &str, default: f32| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let d = Thresholds::default();
    Thresholds {
        flag: read("KEEL_GUARD_FLAG", d.flag),
        patterns_flag: read("KEEL_GUARD_PATTERNS_FLAG", d.patterns_flag),
        block: read("KEEL_GUARD_BLOCK", d.block),
    }
}

/// One exemplar: its text and the guard-set id it was taken from.
type ExemplarText = (String, Option<String>);

/// The exemplar texts by class (`attack` or `benign`).
fn exemplar_texts() -> (Vec<ExemplarText>, Vec<ExemplarText>) {
    let (mut attacks, mut benign) = (Vec::new(), Vec::new());
    for line in EXEMPLARS.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let Some(text) = v["text"].as_str() else { continue };
        let entry = (text.to_owned(), v["from"].as_str().map(str::to_owned));
        match v["class"].as_str() {
            Some("attack") => attacks.push(entry),
            Some("benign") => benign.push(entry),
            _ => {}
        }
    }
    (attacks, benign)
}

impl App {
    /// The windows of many texts embedded, for evaluations: read from the cache beside the models when the same
    /// windows were embedded by the same model before, computed (with progress) and cached otherwise.
    pub fn guard_windows(&self, model: &GuardModel, texts: &[&str], on_progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<Vec<Vec<f32>>>, AppError> {
        let windows: Vec<Vec<String>> = texts.iter().map(|t| guard::windows(t)).collect();
        let flat: Vec<&str> = windows.iter().flatten().map(String::as_str).collect();
        let vectors = self.cached_embeddings(model.embedder(), &flat, "embedding the texts' windows", &mut |p| {
            on_progress(p.done as usize, p.total as usize)
        })?;
        let mut it = vectors.into_iter();
        Ok(windows.iter().map(|w| it.by_ref().take(w.len()).collect()).collect())
    }

    /// `texts` embedded by `embedder`, through a cache file named by the model and the texts.
    fn cached_embeddings(
        &self,
        embedder: &Embedder,
        texts: &[&str],
        stage: &str,
        on_progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Vec<Vec<f32>>, AppError> {
        let cache = self.guard_cache(embedder.model_id(), texts);
        let dim = embedder.dim();
        let cached: Option<Vec<Vec<f32>>> = std::fs::read(&cache).ok().filter(|b| b.len() == texts.len() * dim * 4).map(|b| {
            b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<f32>>().chunks(dim).map(<[f32]>::to_vec).collect()
        });
        if let Some(v) = cached {
            return Ok(v);
        }
        let v = embedder
            .embed_with_progress(texts, &mut |done, total| on_progress(LoadProgress { stage: stage.into(), done: done as u64, total: total as u64 }))
            .map_err(embed_err)?;
        let bytes: Vec<u8> = v.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
        // The cache is only a speed-up: a failure to write it is not an error.
        if let Some(dir) = cache.parent() {
            let _ = std::fs::create_dir_all(dir);
            let tmp = cache.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, bytes).is_ok() {
                let _ = std::fs::rename(&tmp, &cache);
            }
        }
        Ok(v)
    }

    fn guard_cache(&self, model_id: &str, texts: &[&str]) -> PathBuf {
        let mut h = Sha256::new();
        h.update(model_id.as_bytes());
        for t in texts {
            h.update(t.as_bytes());
            h.update([0]);
        }
        let hash = hex::encode(h.finalize());
        self.inner.models.root().join(".cache").join(format!("guard-{}.f32", &hash[..16]))
    }

    /// The guard's model, built on first use: the memory layer's embedder, the exemplars and the intent
    /// centroids embedded (or read from their cache), with progress.
    pub fn guard_model(&self, on_progress: &mut dyn FnMut(LoadProgress)) -> Result<Arc<GuardModel>, AppError> {
        self.inner.guard.get_or_init(|| {
            let memory = self.memory(on_progress)?;
            let embedder = memory.embedder();
            let (attacks, benign) = exemplar_texts();
            let intents = intent::examples(intent::TRAINING_SET, "train");
            let texts: Vec<&str> =
                attacks.iter().chain(&benign).map(|(t, _)| t.as_str()).chain(intents.iter().map(|(t, _)| t.as_str())).collect();
            let vectors = self.cached_embeddings(embedder, &texts, "embedding the guard's examples", on_progress)?;
            let mut it = vectors.into_iter();
            let exemplars = Exemplars { attacks: it.by_ref().take(attacks.len()).collect(), benign: it.by_ref().take(benign.len()).collect() };
            let labelled: Vec<(Intent, Vec<f32>)> = intents.iter().map(|(_, i)| *i).zip(it).collect();
            let exemplar_from = (attacks.into_iter().map(|(_, f)| f).collect(), benign.into_iter().map(|(_, f)| f).collect());
            Ok(GuardModel {
                memory: memory.clone(),
                exemplars,
                exemplar_from,
                centroids: Centroids::fit(&labelled),
                primed: Mutex::new(HashMap::new()),
            })
        })
    }

    /// The checker `keel guard` uses: each text through the front door's inspection (normalised for the model,
    /// scored, its intent detected with the classifier; nothing refused). With `patterns_only`, or when no
    /// embedding model is installed, the similarity layer and the classifier are left out. Loading shows progress.
    pub fn guard_checker(&self, patterns_only: bool, on_progress: &mut dyn FnMut(LoadProgress)) -> Result<GuardChecker, AppError> {
        let screen = match patterns_only {
            true => AppScreen::Patterns(guard::Patterns(thresholds())),
            false => AppScreen::Full(self.guard_model(on_progress)?, thresholds()),
        };
        Ok(GuardChecker { screen })
    }

    /// The screen for a run.
    pub(crate) fn screen(&self) -> AppScreen {
        match self.guard_model(&mut |_| {}) {
            Ok(model) => AppScreen::Full(model, thresholds()),
            Err(_) => AppScreen::Patterns(guard::Patterns(thresholds())),
        }
    }
}

/// Checks one text at a time, so that a caller can write each answer as soon as it is computed.
pub struct GuardChecker {
    screen: AppScreen,
}

impl GuardChecker {
    /// What the guard makes of `text` from `source`. Memory and time are bounded by the text's length whatever
    /// its shape: the similarity layer embeds at most [`guard::MAX_WINDOWS`] windows.
    pub fn check(&self, text: &str, source: Source) -> GuardReport {
        let classifying = Classifying(&self.screen);
        let accepted = Door::new(&classifying).inspect(text, source);
        GuardReport {
            verdict: accepted.scan.verdict,
            score: accepted.scan.score,
            reasons: accepted.scan.reasons,
            intent: accepted.intent.intent,
            intent_confidence: accepted.intent.confidence,
            normalised: accepted.text,
            changes: accepted.changes,
        }
    }

    /// What the guard makes of each text, in order, each given to `on_report` as soon as it is scored. With the
    /// embedding model, the windows of all the texts are embedded together first (one batched pass instead of
    /// one per text), which is most of the work.
    pub fn check_many(&self, texts: &[(&str, Source)], on_report: &mut dyn FnMut(usize, GuardReport)) {
        let model = match &self.screen {
            AppScreen::Full(model, _) if texts.len() > 1 => Some(model),
            _ => None,
        };
        if let Some(model) = model {
            model.prime(&texts.iter().map(|(t, _)| *t).collect::<Vec<_>>());
        }
        for (i, (text, source)) in texts.iter().enumerate() {
            on_report(i, self.check(text, *source));
        }
        if let Some(model) = model {
            model.forget_primed();
        }
    }
}

/// The guard as the front door sees it: the full scorer when the embedding model is there, the patterns alone
/// otherwise. A run's intent comes from the rules and keywords (the trait's default).
pub(crate) enum AppScreen {
    Full(Arc<GuardModel>, Thresholds),
    Patterns(guard::Patterns),
}

impl Screen for AppScreen {
    fn scan(&self, text: &str, scanned: &str, source: Source) -> Scan {
        match self {
            AppScreen::Full(model, thresholds) => model.scan(text, scanned, source, *thresholds),
            AppScreen::Patterns(p) => p.scan(text, scanned, source),
        }
    }
}

/// `keel guard`'s screen: the run's, with the intent classifier when the embedding model is there.
struct Classifying<'a>(&'a AppScreen);

impl Screen for Classifying<'_> {
    fn scan(&self, text: &str, scanned: &str, source: Source) -> Scan {
        self.0.scan(text, scanned, source)
    }

    fn intent(&self, text: &str) -> IntentGuess {
        match self.0 {
            AppScreen::Full(model, _) => {
                // A short text is one window, whose vector is the text's own (primed, or embedded again).
                let windows = guard::windows(text);
                let vectors = if windows.len() == 1 { model.vectors(&windows) } else { Vec::new() };
                model.intent(text, vectors.first().map(Vec::as_slice))
            }
            AppScreen::Patterns(_) => intent::detect(text, None, None),
        }
    }
}
