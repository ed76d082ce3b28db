//! Whether a tool call may go ahead: the approval rules, decided from the call's effect, the user's standing
//! policy and what is in the context.
//!
//! `Pure` and `Read` calls go ahead. `Write` and `External` calls need the user's approval unless the user's
//! policy allows that tool, and always need it while untrusted content (what a tool read or fetched, an MCP
//! server's output, a document or a memory not from the user) is in the run's context: taint gates effects,
//! and the approval prompt names the untrusted sources. The guard's decisions on flagged text are here too.

use super::events::{PolicyDecision, RunEvent};
use super::state::RunState;
use crate::interface::guard::{Scan, Screen, Source, Verdict};
use crate::interface::{Accepted, Door};
use crate::interface::intent::Intent;
use crate::tools::{Effect, Origin, ToolSpec};

pub use super::events::GuardAction;

/// The policy for a checked text, by where it came from and what the user meant: the user's own flagged
/// message is a warning (it is their assistant) unless it scores as near-certain, or it asks Keel to remember
/// it (a flagged instruction is not stored as a trusted fact); flagged text from anywhere else is quarantined.
pub fn on_scan(scan: &Scan, source: Source, intent: Option<Intent>) -> (GuardAction, String) {
    let rules: Vec<&str> = scan.reasons.iter().map(|r| r.rule.as_str()).collect();
    let why = format!("it reads as a prompt injection (score {:.2}: {})", scan.score, rules.join(", "));
    match (scan.verdict, source.is_trusted()) {
        (Verdict::Allow, _) => (GuardAction::Allow, "nothing suspicious".into()),
        (Verdict::Block, true) => (GuardAction::Block, format!("Keel did not send this message: {why}. Rephrase it if this was not meant as one.")),
        (Verdict::Flag, true) if intent == Some(Intent::Remember) => {
            (GuardAction::Block, format!("Keel did not remember this: {why}."))
        }
        (Verdict::Flag, true) => (GuardAction::Warn, format!("sent, with a warning: {why}")),
        (_, false) => (GuardAction::Quarantine, format!("withheld from the model as data only: {why}")),
    }
}

/// Checks a text entering the run and returns the `InputChecked` event that records the decision, or `None`
/// when there is nothing to record (the text is allowed).
pub fn checked(accepted: &Accepted, origin: String) -> Option<RunEvent> {
    let scan = &accepted.scan;
    let (action, explanation) = on_scan(scan, accepted.source, Some(accepted.intent.intent));
    (action != GuardAction::Allow).then(|| RunEvent::InputChecked {
        origin,
        source: accepted.source,
        verdict: scan.verdict,
        score: scan.score,
        reasons: scan.reasons.clone(),
        action,
        explanation,
    })
}

/// Brings an outside text (a tool's output, a recalled memory) through the front door and records the guard's
/// decision on it, as [`checked`] does.
pub fn screen_text(screen: &dyn Screen, text: &str, source: Source, origin: String) -> Option<RunEvent> {
    checked(&Door::new(screen).inspect(text, source), origin)
}

/// Where a tool's output counts as coming from, when it is not Keel's own computation: what a tool reads
/// (files, memory) or fetches, and anything an MCP server returns, is untrusted. A tool's declared origin is
/// believed only when it lowers no guard: a tool that reads the user's data or reaches outside is never
/// trusted, whatever its spec says.
pub fn output_source(spec: &ToolSpec) -> Option<Source> {
    match spec.origin {
        Origin::Document => Some(Source::Document),
        Origin::Memory => Some(Source::Memory),
        Origin::Web => Some(Source::Web),
        Origin::External => Some(Source::Tool),
        Origin::Keel if matches!(spec.effect, Effect::Read | Effect::External) => Some(Source::Tool),
        Origin::Keel => None,
    }
}

/// The decision for one call, with the reason recorded next to it.
pub fn check(spec: &ToolSpec, state: &RunState, approved: bool) -> (PolicyDecision, String) {
    if !state.tools_offered.iter().any(|t| *t == spec.name) && !state.tools_offered.is_empty() {
        return (PolicyDecision::Refuse, format!("{} was not offered to this run", spec.name));
    }
    if !spec.effect.has_side_effects() {
        return (PolicyDecision::Allow, format!("{} has no side effects ({:?})", spec.name, spec.effect));
    }
    if approved {
        return (PolicyDecision::Allow, "approved by the user".into());
    }
    if let Some(source) = tainted_by(state) {
        return (
            PolicyDecision::NeedsApproval,
            format!("{} can change things ({:?}) and untrusted content from {source} is in the context", spec.name, spec.effect),
        );
    }
    if state.auto_approve.iter().any(|t| *t == spec.name) {
        return (PolicyDecision::Allow, "allowed by the user's policy".into());
    }
    (PolicyDecision::NeedsApproval, format!("{} can change things ({:?}); the user decides", spec.name, spec.effect))
}

/// The untrusted sources in the run's context, named for the approval prompt.
fn tainted_by(state: &RunState) -> Option<String> {
    (!state.untrusted.is_empty()).then(|| state.untrusted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, effect: Effect, origin: Origin) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: String::new(),
            input_schema: serde_json::json!({"type": "object"}),
            output_schema: serde_json::json!({"type": "object"}),
            effect,
            timeout_ms: 1_000,
            idempotent: true,
            capability: None,
            origin,
        }
    }

    /// Trust follows the declared origin, not the name, and a tool that reads or reaches outside is never
    /// trusted even when it claims to be Keel's own computation.
    #[test]
    fn output_trust_follows_the_origin_and_the_effect() {
        let cases = [
            (spec("calculator", Effect::Pure, Origin::Keel), None),
            (spec("files_write", Effect::Write, Origin::Keel), None),
            (spec("files_read", Effect::Read, Origin::Document), Some(Source::Document)),
            (spec("recall", Effect::Read, Origin::Memory), Some(Source::Memory)),
            (spec("fetch", Effect::External, Origin::Web), Some(Source::Web)),
            // Names that used to decide trust decide nothing now.
            (spec("memory_search_helper", Effect::Pure, Origin::Keel), None),
            (spec("http_status", Effect::Pure, Origin::External), Some(Source::Tool)),
            (spec("notes.lookup", Effect::Pure, Origin::External), Some(Source::Tool)),
            (spec("sneaky", Effect::Read, Origin::Keel), Some(Source::Tool)),
            (spec("sneaky", Effect::External, Origin::Keel), Some(Source::Tool)),
        ];
        for (spec, want) in cases {
            assert_eq!(output_source(&spec), want, "{} ({:?}, {:?})", spec.name, spec.effect, spec.origin);
        }
    }

    /// A spec written before `origin` existed reads as external, the untrusted default.
    #[test]
    fn a_spec_without_an_origin_is_untrusted() {
        let mut v = serde_json::to_value(spec("old", Effect::Pure, Origin::Keel)).unwrap();
        v.as_object_mut().unwrap().remove("origin");
        let old: ToolSpec = serde_json::from_value(v).unwrap();
        assert_eq!(old.origin, Origin::External);
        assert_eq!(output_source(&old), Some(Source::Tool));
    }
}
