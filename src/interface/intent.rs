//! Intent detection: what a user's message asks for (chat, remember, recall, a task needing tools, a slash
//! command), with a confidence.
//!
//! Rules decide the unambiguous cases (a leading `/`, "remember that …", an arithmetic expression, a URL).
//! Everything else goes to a nearest-centroid classifier over the message's MiniLM embedding (given by the
//! caller, since this layer knows no model): one centroid per intent, the mean of its training examples'
//! unit vectors, and a softmax over the cosines as the confidence. Without an embedding the keyword rules of
//! `needs_tools` give a low-confidence guess. [`detect`] is the one place an intent is decided: the front door
//! ([`super::Door::accept`]) calls it through its screen, with the classifier when the screen has one.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Chat,
    Remember,
    Recall,
    Task,
    Command,
}

impl Intent {
    pub const ALL: [Intent; 5] = [Intent::Chat, Intent::Remember, Intent::Recall, Intent::Task, Intent::Command];

    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Chat => "chat",
            Intent::Remember => "remember",
            Intent::Recall => "recall",
            Intent::Task => "task",
            Intent::Command => "command",
        }
    }

    pub fn parse(s: &str) -> Option<Intent> {
        Intent::ALL.into_iter().find(|i| i.as_str() == s)
    }
}

/// The detected intent, how sure the detector is (0–1), and what decided it (`rule`, `centroid`, `keywords`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct IntentGuess {
    pub intent: Intent,
    pub confidence: f32,
    pub by: String,
}

/// The labelled examples the centroids are fitted on: the train split of the committed intent set (its test
/// split is what `keel eval intent` measures).
pub const TRAINING_SET: &str = include_str!("../../tests/evals/intent/intent.jsonl");

/// The labelled lines of `TRAINING_SET`-shaped text in one split.
pub fn examples(jsonl: &str, split: &str) -> Vec<(String, Intent)> {
    jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["split"] == split)
        .filter_map(|v| Some((v["text"].as_str()?.to_owned(), Intent::parse(v["intent"].as_str()?)?)))
        .collect()
}

/// The unambiguous cases.
pub fn by_rules(text: &str) -> Option<IntentGuess> {
    let t = text.trim_start();
    let guess = |intent, confidence| Some(IntentGuess { intent, confidence, by: "rule".into() });
    if t.starts_with('/') && t[1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
        return guess(Intent::Command, 1.0);
    }
    if super::remember_request(t).is_some() {
        return guess(Intent::Remember, 0.95);
    }
    let lower = t.to_lowercase();
    if lower.contains("http://") || lower.contains("https://") || super::has_arithmetic(&lower) {
        return guess(Intent::Task, 0.9);
    }
    const REMEMBER: &[&str] = &["note that ", "don't forget that ", "dont forget that ", "keep in mind that ", "save this: ", "make a note that "];
    if REMEMBER.iter().any(|p| lower.starts_with(p)) && !lower.ends_with('?') {
        return guess(Intent::Remember, 0.9);
    }
    const RECALL: &[&str] = &["what did i tell you", "what did i say about", "did i tell you", "did i mention", "do you remember what i", "what have i told you", "what do you remember about"];
    if RECALL.iter().any(|p| lower.contains(p)) {
        return guess(Intent::Recall, 0.9);
    }
    None
}

/// One unit centroid per intent.
#[derive(Debug, Clone)]
pub struct Centroids {
    centroids: Vec<(Intent, Vec<f32>)>,
}

/// Sharpens the cosine differences into a confidence.
const TEMPERATURE: f32 = 0.05;

impl Centroids {
    /// Fits the centroids on unit vectors with their labels; intents with no example get no centroid.
    pub fn fit(examples: &[(Intent, Vec<f32>)]) -> Centroids {
        let mut centroids = Vec::new();
        for intent in Intent::ALL {
            let members: Vec<&Vec<f32>> = examples.iter().filter(|(i, _)| *i == intent).map(|(_, v)| v).collect();
            let Some(first) = members.first() else { continue };
            let mut sum = vec![0.0f32; first.len()];
            for v in &members {
                for (s, x) in sum.iter_mut().zip(v.iter()) {
                    *s += x;
                }
            }
            let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::EPSILON);
            centroids.push((intent, sum.into_iter().map(|x| x / norm).collect()));
        }
        Centroids { centroids }
    }

    /// The nearest centroid, with the softmax of the cosines as the confidence.
    pub fn classify(&self, v: &[f32]) -> Option<IntentGuess> {
        let sims: Vec<(Intent, f32)> =
            self.centroids.iter().map(|(i, c)| (*i, c.iter().zip(v).map(|(a, b)| a * b).sum::<f32>())).collect();
        let (best, top) = sims.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
        let total: f32 = sims.iter().map(|(_, s)| ((s - top) / TEMPERATURE).exp()).sum();
        Some(IntentGuess { intent: best, confidence: 1.0 / total, by: "centroid".into() })
    }
}

/// Rules first, then the centroids when an embedding is given, then keywords.
pub fn detect(text: &str, embedding: Option<&[f32]>, centroids: Option<&Centroids>) -> IntentGuess {
    if let Some(g) = by_rules(text) {
        return g;
    }
    if let (Some(v), Some(c)) = (embedding, centroids) {
        // Slash commands are rule-only: the classifier never guesses one for text without a slash.
        if let Some(g) = c.classify(v).filter(|g| g.intent != Intent::Command) {
            return g;
        }
    }
    let intent = if needs_tools(text) { Intent::Task } else { Intent::Chat };
    IntentGuess { intent, confidence: 0.5, by: "keywords".into() }
}

/// The keyword cues of a task that needs tools (arithmetic, the time or date, files, a web page): the guess
/// when neither a rule nor the classifier decides.
fn needs_tools(text: &str) -> bool {
    let lower = text.to_lowercase();
    let arithmetic = super::has_arithmetic(&lower);
    const CUES: &[&str] = &[
        "calculate", "compute", "how much is", "what time", "the time in", "today's date", "what date", "what day",
        "which day", "file", "folder", "http://", "https://", "fetch", "download", "search my memory", "look up",
    ];
    arithmetic || CUES.iter().any(|c| lower.contains(c))
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_take_the_unambiguous_cases() {
        assert_eq!(by_rules("/help").unwrap().intent, Intent::Command);
        assert_eq!(by_rules("  /memory search tea").unwrap().intent, Intent::Command);
        assert!(by_rules("/ not a command").is_none());
        assert_eq!(by_rules("Remember that I like tea.").unwrap().intent, Intent::Remember);
        assert_eq!(by_rules("what is 12*7").unwrap().intent, Intent::Task);
        assert_eq!(by_rules("summarise https://example.org").unwrap().intent, Intent::Task);
        assert!(by_rules("tell me a joke").is_none());
    }

    #[test]
    fn the_nearest_centroid_wins_with_a_softmax_confidence() {
        let c = Centroids::fit(&[
            (Intent::Chat, vec![1.0, 0.0]),
            (Intent::Chat, vec![0.8, 0.6]),
            (Intent::Recall, vec![0.0, 1.0]),
        ]);
        let g = c.classify(&[0.98, 0.2]).unwrap();
        assert_eq!(g.intent, Intent::Chat);
        assert!(g.confidence > 0.5 && g.confidence <= 1.0);
        assert_eq!(c.classify(&[0.0, 1.0]).unwrap().intent, Intent::Recall);
        assert_eq!(detect("what's my sister's name", Some(&[0.0, 1.0]), Some(&c)).intent, Intent::Recall);
        assert_eq!(detect("what's my sister's name", None, None).by, "keywords");
    }

    #[test]
    fn the_committed_set_has_both_splits_for_every_intent() {
        for split in ["train", "test"] {
            let ex = examples(TRAINING_SET, split);
            for intent in Intent::ALL {
                assert!(ex.iter().filter(|(_, i)| *i == intent).count() >= 20, "{split} has too few {intent:?}");
            }
        }
    }
}
