//! Tests of the calculator: exact decimals, the parser's errors, the tool contract.

use std::sync::Arc;

use super::*;
use crate::tools::Toolbox;

fn value(expression: &str) -> String {
    match evaluate(expression) {
        Ok(value) => value.to_string(),
        Err(error) => panic!("{expression:?} failed: {error}"),
    }
}

fn error(expression: &str) -> String {
    match evaluate(expression) {
        Ok(value) => panic!("{expression:?} gave {value}, expected an error"),
        Err(error) => error,
    }
}

#[test]
fn decimal_fractions_add_exactly() {
    assert_eq!(evaluate("0.1 + 0.2"), Ok(Decimal::new(3, 1)));
    assert_eq!(value("0.1+0.2"), "0.3");
}

#[test]
fn expressions_evaluate_to_their_exact_results() {
    let cases = [
        ("2+3*4", "14"),
        ("(2+3)*4", "20"),
        ("1 - 2 - 3", "-4"),
        ("100 / 10 / 5", "2"),
        ("2^3^2", "512"),
        ("-2^2", "-4"),
        ("(-2)^2", "4"),
        ("2^-2", "0.25"),
        ("2 ** 10", "1024"),
        ("2 * -3", "-6"),
        ("--2", "2"),
        ("+5", "5"),
        ("7 % 3", "1"),
        ("-7 % 3", "-1"),
        ("5.5 % 2", "1.5"),
        ("10/4", "2.5"),
        ("10/3", "3.3333333333333333333333333333"),
        ("1.50 * 2", "3"),
        ("12 × 3 ÷ 4", "9"),
        ("1e3", "1000"),
        ("1.5e3", "1500"),
        ("2.5E-3", "0.0025"),
        ("1.5e+2", "150"),
        (".5 + 1", "1.5"),
        ("0.10000000000000000000000000000000000000000", "0.1"),
        ("round(2.345, 2)", "2.35"),
        ("round(2.5)", "3"),
        ("round(-2.5)", "-3"),
        ("round(10 / 3, 2)", "3.33"),
        ("Round(1.25, 1)", "1.3"),
        ("floor(-1.5)", "-2"),
        ("ceil(1.2)", "2"),
        ("abs(-3.5)", "3.5"),
        ("min(3, 1.5, 2)", "1.5"),
        ("max(3, 1.5, 2)", "3"),
        ("max(-1)", "-1"),
        ("sqrt(16)", "4"),
        ("sqrt(2.25)", "1.5"),
        ("sqrt(2)", "1.4142135623730950488"),
        ("sqrt(0)", "0"),
        ("(12.5 + 3) * 4", "62"),
        ("  17 * 23  ", "391"),
    ];
    for (expression, expected) in cases {
        assert_eq!(value(expression), expected, "{expression}");
    }
}

#[test]
fn arithmetic_errors_are_named() {
    let cases = [
        ("1 / 0", "division by zero"),
        ("7 % 0", "division by zero"),
        ("0 ^ -1", "division by zero"),
        ("2 ^ 0.5", "only whole-number powers are exact"),
        ("10 ^ 40", "too large"),
        ("79228162514264337593543950335 + 1", "too large"),
        ("sqrt(-4)", "negative"),
        ("round(1.5, 0.5)", "whole number from 0 to 28"),
        ("round(1.5, 29)", "whole number from 0 to 28"),
    ];
    for (expression, expected) in cases {
        let message = error(expression);
        assert!(message.contains(expected), "{expression}: {message}");
    }
}

#[test]
fn syntax_errors_point_at_the_character() {
    let cases = [
        ("(1+2))", "unexpected ')' at position 6"),
        ("2 * (3 + )", "unexpected ')' at position 10"),
        ("1 + $", "unexpected character '$' at position 5"),
        ("(1 + 2", "the '(' at position 1 is never closed"),
        ("2 3", "unexpected number 3 at position 3"),
        ("1,000 + 1", "unexpected ',' at position 2 (write numbers without thousands separators"),
        ("1 +", "ends too early at position 4"),
        ("5. + 1", "expected a digit after the '.' at position 2"),
        ("2e + 1", "expected digits after the exponent 'e' at position 2"),
        ("x + 1", "unknown name 'x' at position 1"),
        ("abs 3", "expected '(' after abs at position 5"),
        ("abs(1, 2)", "abs at position 1 takes one argument, not 2"),
        ("max()", "max at position 1 takes at least 1 argument, not 0"),
        ("", "empty"),
    ];
    for (expression, expected) in cases {
        let message = error(expression);
        assert!(message.contains(expected), "{expression:?}: {message}");
    }
}

#[test]
fn a_syntax_error_is_reported_before_an_arithmetic_one() {
    assert!(error("1/0 +").contains("ends too early"));
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let shallow = format!("{}1{}", "(".repeat(60), ")".repeat(60));
    assert_eq!(value(&shallow), "1");
    let deep = format!("{}1{}", "(".repeat(400), ")".repeat(400));
    assert!(error(&deep).contains("nests too deeply"));
    assert!(error(&"-".repeat(999)).contains("nests too deeply"));
    assert!(error(&"(".repeat(100_000)).contains("longer than 1000 characters"));
}

#[test]
fn the_tool_returns_its_contract_through_the_toolbox() {
    let mut toolbox = Toolbox::new();
    toolbox.add(Arc::new(Calculator::new())).expect("the calculator's schemas compile");
    let result = toolbox.call("calculator", &json!({ "expression": "0.1 + 0.2" }), None, &|| false);
    assert_eq!(result, Ok(json!({ "expression": "0.1 + 0.2", "result": "0.3" })));
    let failed = toolbox.call("calculator", &json!({ "expression": "1 / 0" }), None, &|| false);
    assert_eq!(failed, Err(ToolError::Failed { tool: "calculator".into(), message: DIVISION_BY_ZERO.into() }));
    let invalid = toolbox.call("calculator", &json!({ "expression": "" }), None, &|| false);
    assert!(matches!(invalid, Err(ToolError::InvalidArguments { .. })), "{invalid:?}");
}
