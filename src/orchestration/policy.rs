//! Whether a tool call may go ahead: the approval rules, decided from the call's effect, the user's standing
//! policy and what is in the context.
//!
//! `Pure` and `Read` calls go ahead. `Write` and `External` calls need the user's approval unless the user's
//! policy allows that tool, and always need it while untrusted content (the result of an `External` call, such
//! as a web page or an MCP server's output) is in the run's context: taint gates effects.

use super::events::PolicyDecision;
use super::state::RunState;
use crate::tools::{Effect, ToolSpec};

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

/// The first untrusted source whose output is in the context: a successful `External` call's result.
fn tainted_by(state: &RunState) -> Option<String> {
    state
        .tools_used
        .iter()
        .find(|u| u.effect == Effect::External && u.ok == Some(true))
        .map(|u| format!("the {} tool", u.tool))
}
