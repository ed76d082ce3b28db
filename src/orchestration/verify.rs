//! The verification pass: deterministic checks of an answer before the user sees it.
//!
//! Checks that need no model come first: every calculator result the run relied on is recomputed from its
//! expression; arithmetic the answer states (`12 * 7 = 84`) is recomputed; memories the answer cites
//! (`memory #12`) must exist; and once a tool has failed with nothing taking its place, every number the answer
//! states must come from something the run had (the conversation, memory, a tool that did answer, the error, or
//! arithmetic that checks out), or it is the failed tool's value invented. A failed check is fed back to the
//! model once; a second failure ends the run as `Partial`, with the answer marked unverified rather than shown as
//! if it were right (an invented value is not shown at all, see [`UNGROUNDED`]).

use rust_decimal::Decimal;

use super::routed::numbers;
use super::state::RunState;
use crate::tools::calculator;
use crate::tools::memory::MemoryPort;

/// One check: its name, whether it passed, and what was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub check: String,
    pub passed: bool,
    pub detail: String,
}

/// The name of the check that an answer states the result of the call code chose (`RunEvent::Routed`).
pub const ROUTED_RESULT: &str = "states the routed result";

/// The name of the check that an answer states no value a failed tool should have given.
pub const UNGROUNDED: &str = "grounded after a failed tool";

/// Every check that applies to `answer` in this run; empty when none applies. `known` are the texts the run was
/// given (the conversation, the memory section): numbers found there are not invented.
/// `question` is the user's message the run answers.
pub fn checks(answer: &str, state: &RunState, memory: Option<&dyn MemoryPort>, known: &[&str], question: &str) -> Vec<Check> {
    let mut out = Vec::new();
    for used in state.tools_used.iter().filter(|u| u.tool == "calculator" && u.ok == Some(true)) {
        let Some(expr) = used.arguments["expression"].as_str() else { continue };
        let claimed = used.result.as_ref().and_then(|r| r["result"].as_str()).unwrap_or_default();
        match calculator::evaluate(expr) {
            Ok(v) if same_number(claimed, v) => out.push(pass("recompute tool result", format!("{expr} = {claimed}"))),
            Ok(v) => out.push(fail("recompute tool result", format!("the calculator said {expr} = {claimed}, but it is {}", v.normalize()))),
            Err(e) => out.push(fail("recompute tool result", format!("{expr} cannot be evaluated: {e}"))),
        }
    }
    for (expr, claimed) in stated_arithmetic(answer) {
        if let Ok(v) = calculator::evaluate(&expr) {
            if same_number(&claimed, v) {
                out.push(pass("recompute arithmetic", format!("{expr} = {claimed}")));
            } else {
                out.push(fail("recompute arithmetic", format!("the answer says {expr} = {claimed}, but it is {}", v.normalize())));
            }
        }
    }
    if let Some((expression, result)) = routed_result(state) {
        // "397.8% of 2340" does not state 397.8 as the result: a number read as a percentage is not the result.
        let stated = number_spans(answer).iter().any(|(n, after)| same_number(&n.to_string(), result) && !after.trim_start().starts_with('%'));
        out.push(if stated {
            pass(ROUTED_RESULT, format!("{expression} = {}", result.normalize()))
        } else {
            fail(ROUTED_RESULT, format!("the answer does not state {expression} = {}", result.normalize()))
        });
    }
    if let Some((plain, needs)) = super::routed::plain_answer(state, question) {
        out.push(if needs.iter().all(|n| super::routed::states(answer, n)) {
            pass(ROUTED_RESULT, plain)
        } else {
            fail(ROUTED_RESULT, format!("the answer does not state what the tool gave: {plain}"))
        });
    }
    if let Some(check) = grounded_after_failure(answer, state, known) {
        out.push(check);
    }
    if let Some(memory) = memory {
        for id in cited_memories(answer) {
            if memory.exists(id) {
                out.push(pass("cited memory exists", format!("memory #{id}")));
            } else {
                out.push(fail("cited memory exists", format!("the answer cites memory #{id}, which does not exist")));
            }
        }
    }
    out
}

/// The routed calculator call's expression and result, when it succeeded.
pub fn routed_result(state: &RunState) -> Option<(String, Decimal)> {
    let id = state.routed.as_deref()?;
    let used = state.tools_used.iter().find(|u| u.call_id == id && u.tool == "calculator" && u.ok == Some(true))?;
    let expression = used.arguments["expression"].as_str()?.to_owned();
    let result = used.result.as_ref()?["result"].as_str()?.replace(',', "").parse::<Decimal>().ok()?;
    Some((expression, result))
}

/// The tools that failed in this run and never answered (neither they nor another tool in their place).
pub fn failed_tools(state: &RunState) -> Vec<&str> {
    let answered = state.tools_used.iter().any(|u| u.ok == Some(true));
    let mut out: Vec<&str> = Vec::new();
    for u in state.tools_used.iter().filter(|u| u.ok == Some(false)) {
        let later_ok = state.tools_used.iter().any(|v| v.tool == u.tool && v.ok == Some(true));
        if !later_ok && !answered && !out.contains(&u.tool.as_str()) {
            out.push(&u.tool);
        }
    }
    out
}

/// With a tool failed and none answering, the numbers the answer states must each be found in what the run had.
/// Numbers below 10 are not judged (list markers, counts of things the user said).
fn grounded_after_failure(answer: &str, state: &RunState, known: &[&str]) -> Option<Check> {
    let failed = failed_tools(state);
    if failed.is_empty() {
        return None;
    }
    let mut sources: Vec<Decimal> = Vec::new();
    for text in known.iter().copied().chain(state.errors.iter().map(|e| e.message.as_str())) {
        sources.extend(numbers(text));
    }
    for u in &state.tools_used {
        sources.extend(numbers(&u.arguments.to_string()));
        if let Some(r) = &u.result {
            sources.extend(numbers(&r.to_string()));
        }
    }
    for (expr, claimed) in stated_arithmetic(answer) {
        if calculator::evaluate(&expr).is_ok_and(|v| same_number(&claimed, v)) {
            sources.extend(numbers(&claimed));
        }
    }
    let invented: Vec<Decimal> = numbers(answer).into_iter().filter(|n| n.abs() >= Decimal::TEN && !sources.contains(n)).collect();
    let tools = failed.join(", ");
    Some(match invented.first() {
        None => pass(UNGROUNDED, format!("{tools} failed; the answer states no value from nowhere")),
        Some(n) => fail(UNGROUNDED, format!("{tools} failed and gave no result, but the answer states {n}, which no tool, message or memory gave")),
    })
}

/// The numbers written in `text`, each with the text that follows it.
fn number_spans(text: &str) -> Vec<(Decimal, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        let part = c.is_ascii_digit() || (start.is_some() && (c == '.' || c == ','));
        match (part, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.extend(numbers(&text[s..i]).into_iter().map(|n| (n, &text[i..])));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.extend(numbers(&text[s..]).into_iter().map(|n| (n, &text[bytes.len()..])));
    }
    out
}

fn pass(check: &str, detail: String) -> Check {
    Check { check: check.into(), passed: true, detail }
}

fn fail(check: &str, detail: String) -> Check {
    Check { check: check.into(), passed: false, detail }
}

fn same_number(claimed: &str, value: Decimal) -> bool {
    let cleaned: String = claimed.chars().filter(|c| *c != ',').collect();
    match cleaned.trim().parse::<Decimal>() {
        Ok(c) => c == value || (c - value).abs() <= Decimal::new(1, 6).max((value * Decimal::new(1, 9)).abs()),
        Err(_) => false,
    }
}

/// `expression = number` claims in the text, where the expression holds at least one operator.
fn stated_arithmetic(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let is_expr = |c: char| c.is_ascii_digit() || " .+-*/×÷()^%".contains(c);
    for (i, _) in text.match_indices('=') {
        let left: String = text[..i].chars().rev().take_while(|c| is_expr(*c)).collect::<Vec<_>>().into_iter().rev().collect();
        let right: String = text[i + 1..].trim_start().chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-' || *c == ',').collect();
        let expr = left.trim().replace('×', "*").replace('÷', "/");
        let right = right.trim_end_matches(['.', ',']).to_owned();
        let has_operator = expr.trim_start_matches('-').contains(['+', '-', '*', '/', '^', '%']);
        if has_operator && !right.is_empty() && expr.chars().any(|c| c.is_ascii_digit()) {
            out.push((expr, right));
        }
    }
    out
}

/// `memory #12` (or `memory 12`) citations.
fn cited_memories(text: &str) -> Vec<i64> {
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    for (i, _) in lower.match_indices("memory") {
        let rest = lower[i + "memory".len()..].trim_start().trim_start_matches('#');
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(id) = digits.parse() {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_claims_are_found_and_recomputed() {
        let claims = stated_arithmetic("So 12 * 7 = 84, and (1.5 + 2) = 3.5. Also x = 4 and 2026 = 2026.");
        assert_eq!(claims, vec![("12 * 7".to_string(), "84".to_string()), ("(1.5 + 2)".to_string(), "3.5".to_string())]);
        assert!(same_number("84", calculator::evaluate("12 * 7").unwrap()));
        assert!(!same_number("85", calculator::evaluate("12 * 7").unwrap()));
    }

    #[test]
    fn numbers_are_read_with_separators_and_decimals() {
        let got = numbers("It is 1,234.50 or 83810205, on 2025-12-25. Done.");
        let want: Vec<Decimal> = ["1234.5", "83810205", "2025", "12", "25"].iter().map(|s| s.parse::<Decimal>().unwrap().normalize()).collect();
        assert_eq!(got, want);
    }

    fn failed_calculator(ok: Option<bool>) -> RunState {
        let mut state = RunState::default();
        state.tools_used.push(super::super::state::ToolUse {
            call_id: "c1".into(),
            tool: "calculator".into(),
            arguments: serde_json::json!({ "expression": "12345 * 6789" }),
            attempts: 3,
            effect: crate::tools::Effect::Pure,
            untrusted_output: false,
            ok,
            result: ok.filter(|o| *o).map(|_| serde_json::json!({ "result": "83810205" })),
        });
        state
    }

    #[test]
    fn a_value_a_failed_tool_should_have_given_is_caught() {
        let known = ["What is 12345 * 6789?"];
        let state = failed_calculator(Some(false));
        let verdict = |answer: &str| grounded_after_failure(answer, &state, &known).map(|c| c.passed);
        assert_eq!(verdict("The result is 83810205."), Some(false));
        assert_eq!(verdict("The result is 83,810,206 roughly."), Some(false));
        assert_eq!(verdict("The calculator failed, so I cannot compute 12345 * 6789."), Some(true));
        assert_eq!(verdict("Working it out by hand: 12345 * 6789 = 83810205."), Some(true));
        assert_eq!(verdict("Step 1: it failed. Step 2: try later."), Some(true));
        // A tool that answered leaves the answer to the other checks.
        assert_eq!(grounded_after_failure("The result is 83810205.", &failed_calculator(Some(true)), &known), None);
    }

    #[test]
    fn a_percentage_is_not_the_stated_result() {
        let spans: Vec<(String, String)> = number_spans("is: 397.8% of 2340.").into_iter().map(|(n, a)| (n.to_string(), a.to_owned())).collect();
        assert_eq!(spans, vec![("397.8".into(), "% of 2340.".into()), ("2340".into(), "".into())]);
    }

    #[test]
    fn cited_memories_are_found() {
        assert_eq!(cited_memories("As memory #12 says, and Memory 3 too; memory lane"), vec![12, 3]);
    }
}
