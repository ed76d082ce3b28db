//! The verification pass: deterministic checks of an answer before the user sees it.
//!
//! Checks that need no model come first: every calculator result the run relied on is recomputed from its
//! expression; arithmetic the answer states (`12 * 7 = 84`) is recomputed; memories the answer cites
//! (`memory #12`) must exist. A failed check is fed back to the model once; a second failure ends the run as
//! `Partial`, with the answer marked unverified rather than shown as if it were right.

use rust_decimal::Decimal;

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

/// Every check that applies to `answer` in this run; empty when none applies.
pub fn checks(answer: &str, state: &RunState, memory: Option<&dyn MemoryPort>) -> Vec<Check> {
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
    fn cited_memories_are_found() {
        assert_eq!(cited_memories("As memory #12 says, and Memory 3 too; memory lane"), vec![12, 3]);
    }
}
