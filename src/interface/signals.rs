//! The words the guard and its combiner share: where a text came from ([`Source`]), what the guard concludes
//! ([`Verdict`]) and why ([`Reason`]). A leaf of the interface layer, so that `guard` (which uses the combiner)
//! and `combiner` (which reads reasons) do not import each other.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Where a text came from. Only the user and Keel itself are trusted; everything else is data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    User,
    System,
    Document,
    Tool,
    Memory,
    Web,
}

impl Source {
    pub fn is_trusted(self) -> bool {
        matches!(self, Source::User | Source::System)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::User => "user",
            Source::System => "system",
            Source::Document => "document",
            Source::Tool => "tool",
            Source::Memory => "memory",
            Source::Web => "web",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        Some(match s {
            "user" => Source::User,
            "system" => Source::System,
            "document" => Source::Document,
            "tool" => Source::Tool,
            "memory" => Source::Memory,
            "web" => Source::Web,
            _ => return None,
        })
    }
}

/// What the scorer concludes about one text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Flag,
    Block,
}

/// One reason a text scored: the rule, what matched, and the rule's weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Reason {
    pub rule: String,
    /// The matched words (cut to 80 characters), or the nearest exemplar's similarity.
    pub evidence: String,
    pub weight: f32,
}

