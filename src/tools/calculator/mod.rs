//! The calculator tool: exact decimal arithmetic, so the assistant never does sums in its head.
//!
//! A 135M-parameter model gets `0.1 + 0.2` or `17 * 23` wrong often enough that arithmetic is handed to this
//! tool, and the orchestrator's verification pass calls [`evaluate`] to recompute the numbers an answer claims.
//! Numbers are `rust_decimal::Decimal` (a 96-bit integer scaled by up to 28 decimal places), never binary floats,
//! so `0.1 + 0.2` is exactly `0.3`. Addition, subtraction, multiplication, remainder and whole powers are exact
//! while the result fits in 28 decimal places; division rounds at Decimal's 28–29 significant digits (`10 / 3` is
//! `3.3333333333333333333333333333`) and `sqrt` rounds to 20 decimal places. A result beyond Decimal's range
//! (about ±7.9e28) is an overflow error, never a wrong number.
//!
//! The grammar, loosest binding first (positions in error messages count characters from 1):
//!
//! - `a + b`, `a - b` (left-associative);
//! - `a * b`, `a / b`, `a % b` (remainder, with the sign of `a`), also `×` and `÷` (left-associative);
//! - unary `-a`, `+a`, which bind looser than `^`, so `-2^2` is `-4` as in mathematics;
//! - `a ^ b`, also `a ** b` (right-associative, so `2^3^2` is `2^9`); `b` must be a whole number;
//! - numbers (`12`, `0.5`, `.5`, `1.5e3`; no thousands separators), parentheses, and the functions `abs(x)`,
//!   `round(x)` / `round(x, places)` (halves round away from zero), `floor(x)`, `ceil(x)`, `min(a, b, …)`,
//!   `max(a, b, …)` and `sqrt(x)`.
//!
//! The tool owns no state. Syntax is checked in full before any arithmetic error is reported, so `1/0 +` is a
//! syntax error, not a division by zero.

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

use super::{object_schema, CallContext, Effect, Origin, Tool, ToolError, ToolSpec};

/// The longest expression accepted, in characters; the input schema says the same.
const MAX_LENGTH: usize = 1000;

/// How deeply parentheses, unary signs, function calls and `^` chains may nest. Parsing recurses once per level,
/// so this bound is what keeps hostile input such as ten thousand `(` from overflowing the stack.
const MAX_DEPTH: usize = 64;

/// The largest exponent written in a number (`1e100`); anything bigger overflows Decimal or rounds to nothing.
const MAX_NUMBER_EXPONENT: i64 = 100;

/// The largest whole power `^` computes. Bases other than 0 and ±1 overflow or round to zero long before this;
/// the cap only bounds the work a call like `1 ^ 999999999` can ask for.
const MAX_POWER: u128 = 10_000;

/// `sqrt` is rounded to this many decimal places: enough for any practical answer, and short of the 28 digits
/// Decimal holds so that the last Newton step's rounding never shows (`sqrt(16)` is exactly `4`).
const SQRT_PLACES: u32 = 20;

/// Newton's method from above halves the error's magnitude at worst, so 200 steps cover Decimal's whole range.
const SQRT_STEPS: usize = 200;

const DIVISION_BY_ZERO: &str = "division by zero";

/// The `calculator` tool.
pub struct Calculator {
    spec: ToolSpec,
}

impl Calculator {
    pub fn new() -> Calculator {
        let spec = ToolSpec {
            name: "calculator".into(),
            description: "Evaluate an arithmetic expression exactly, e.g. (12.5 + 3) * 4. \
                          Supports + - * / % ^, parentheses, round(x, places), sqrt, min, max, abs, floor, ceil."
                .into(),
            input_schema: object_schema(
                json!({
                    "expression": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_LENGTH,
                        "description": "The arithmetic to evaluate, e.g. 17 * 23 or round(10 / 3, 2)",
                    },
                }),
                &["expression"],
            ),
            output_schema: object_schema(
                json!({
                    "expression": { "type": "string" },
                    "result": { "type": "string", "description": "The exact decimal result, e.g. 0.3" },
                }),
                &["expression", "result"],
            ),
            effect: Effect::Pure,
            timeout_ms: 2000,
            idempotent: true,
            capability: Some("arithmetic".into()),
            origin: Origin::Keel,
        };
        Calculator { spec }
    }
}

impl Default for Calculator {
    fn default() -> Calculator {
        Calculator::new()
    }
}

impl Tool for Calculator {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call(&self, args: &Value, _cx: &CallContext) -> Result<Value, ToolError> {
        let expression = args.get("expression").and_then(Value::as_str).ok_or_else(|| ToolError::InvalidArguments {
            tool: self.spec.name.clone(),
            errors: vec!["\"expression\" must be a string, e.g. \"2 + 2\"".into()],
        })?;
        let result =
            evaluate(expression).map_err(|message| ToolError::Failed { tool: self.spec.name.clone(), message })?;
        Ok(json!({ "expression": expression, "result": result.to_string() }))
    }
}

/// Evaluates `expression` exactly and returns the normalised result (no trailing zeros: `1.50 * 2` is `3`).
///
/// The error is a sentence for the model or the user: a syntax error names the character position (counted from
/// 1), an arithmetic error says what went wrong ("division by zero", an overflow, a fractional power).
pub fn evaluate(expression: &str) -> Result<Decimal, String> {
    if expression.chars().count() > MAX_LENGTH {
        return Err(format!("the expression is longer than {MAX_LENGTH} characters"));
    }
    if expression.trim().is_empty() {
        return Err("the expression is empty; write one like (12.5 + 3) * 4".into());
    }
    let mut parser = Parser { lexemes: tokenize(expression)?, next: 0, depth: 0 };
    let outcome = parser.expression(0)?;
    let rest = parser.advance();
    if rest.token != Token::End {
        return Err(unexpected(&rest.token, rest.position));
    }
    outcome.map(|value| value.normalize())
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(Decimal),
    Name(String),
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
    Open,
    Close,
    Comma,
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Number(value) => format!("number {value}"),
            Token::Name(name) => format!("'{name}'"),
            Token::Plus => "'+'".into(),
            Token::Minus => "'-'".into(),
            Token::Star => "'*'".into(),
            Token::Slash => "'/'".into(),
            Token::Percent => "'%'".into(),
            Token::Caret => "'^'".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::Comma => "','".into(),
            Token::End => "end of the expression".into(),
        }
    }
}

/// A token and the position (in characters, from 1) where it starts.
#[derive(Debug, Clone)]
struct Lexeme {
    token: Token,
    position: usize,
}

/// Splits the expression into tokens, ending with [`Token::End`] one past the last character.
fn tokenize(expression: &str) -> Result<Vec<Lexeme>, String> {
    let chars: Vec<char> = expression.chars().collect();
    let mut lexemes = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let position = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || c == '.' {
            let (value, next) = lex_number(&chars, i)?;
            lexemes.push(Lexeme { token: Token::Number(value), position });
            i = next;
            continue;
        }
        if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            lexemes.push(Lexeme { token: Token::Name(chars[start..i].iter().collect()), position });
            continue;
        }
        // Python's `**` is what a model trained on code often writes for a power.
        if c == '*' && chars.get(i + 1) == Some(&'*') {
            lexemes.push(Lexeme { token: Token::Caret, position });
            i += 2;
            continue;
        }
        let token = match c {
            '+' => Token::Plus,
            // U+2212 is the minus sign typographic text uses; models copy it from prose.
            '-' | '\u{2212}' => Token::Minus,
            '*' | '×' => Token::Star,
            '/' | '÷' => Token::Slash,
            '%' => Token::Percent,
            '^' => Token::Caret,
            '(' => Token::Open,
            ')' => Token::Close,
            ',' => Token::Comma,
            other => return Err(format!("unexpected character '{other}' at position {position}")),
        };
        lexemes.push(Lexeme { token, position });
        i += 1;
    }
    lexemes.push(Lexeme { token: Token::End, position: chars.len() + 1 });
    Ok(lexemes)
}

/// Reads the number that starts at index `start` (a digit or a '.') and returns it with the index just past it.
///
/// The digits are read into an integer mantissa and a power of ten, and the Decimal is built from those, so a
/// number is either represented exactly or refused: nothing is rounded on the way in.
fn lex_number(chars: &[char], start: usize) -> Result<(Decimal, usize), String> {
    let position = start + 1;
    let digit_at = |i: usize| chars.get(i).filter(|c| c.is_ascii_digit()).map(|&c| c as u8 - b'0');
    let mut i = start;
    let mut integer = Vec::new();
    while let Some(digit) = digit_at(i) {
        integer.push(digit);
        i += 1;
    }
    let mut fraction = Vec::new();
    if chars.get(i) == Some(&'.') {
        let dot = i + 1;
        i += 1;
        while let Some(digit) = digit_at(i) {
            fraction.push(digit);
            i += 1;
        }
        if fraction.is_empty() {
            return Err(format!("expected a digit after the '.' at position {dot}"));
        }
    }
    let mut exponent: i64 = 0;
    if matches!(chars.get(i), Some('e' | 'E')) {
        let e_position = i + 1;
        let mut j = i + 1;
        let negative = match chars.get(j) {
            Some('-') => {
                j += 1;
                true
            }
            Some('+') => {
                j += 1;
                false
            }
            _ => false,
        };
        let digits_start = j;
        while let Some(digit) = digit_at(j) {
            exponent = exponent.saturating_mul(10).saturating_add(i64::from(digit));
            j += 1;
        }
        if j == digits_start {
            return Err(format!("expected digits after the exponent 'e' at position {e_position}"));
        }
        if exponent > MAX_NUMBER_EXPONENT {
            return Err(format!("the exponent at position {e_position} is too large (at most {MAX_NUMBER_EXPONENT})"));
        }
        if negative {
            exponent = -exponent;
        }
        i = j;
    }

    let too_large = || format!("the number at position {position} is too large: numbers go up to about 7.9e28");
    // Trailing zeros of the fraction carry no value; dropping them lets a long "0.5000…0" fit the mantissa.
    while fraction.last() == Some(&0) {
        fraction.pop();
    }
    let mut mantissa: i128 = 0;
    for &digit in integer.iter().chain(fraction.iter()) {
        mantissa = mantissa.checked_mul(10).and_then(|m| m.checked_add(i128::from(digit))).ok_or_else(too_large)?;
    }
    if mantissa == 0 {
        return Ok((Decimal::ZERO, i));
    }
    // The value is now mantissa × 10^power; a positive power is folded into the mantissa, a negative one becomes
    // the Decimal's scale (its count of decimal places).
    let mut power = exponent - fraction.len() as i64;
    while power > 0 {
        mantissa = mantissa.checked_mul(10).ok_or_else(too_large)?;
        power -= 1;
    }
    let max_scale = i64::from(Decimal::MAX_SCALE);
    while -power > max_scale && mantissa % 10 == 0 {
        mantissa /= 10;
        power += 1;
    }
    if -power > max_scale {
        return Err(format!("the number at position {position} has more than {max_scale} decimal places"));
    }
    let scale = u32::try_from(-power).map_err(|_| too_large())?;
    let value = Decimal::try_from_i128_with_scale(mantissa, scale).map_err(|_| too_large())?;
    Ok((value, i))
}

/// The message for a token that cannot come where it stands.
fn unexpected(token: &Token, position: usize) -> String {
    match token {
        Token::End => {
            format!("the expression ends too early at position {position}: expected a number, '(' or a function")
        }
        Token::Comma => format!(
            "unexpected ',' at position {position} (write numbers without thousands separators, e.g. 1000 not 1,000)"
        ),
        other => format!("unexpected {} at position {position}", other.describe()),
    }
}

/// The value of a well-formed (sub)expression: a number, or the first arithmetic error met while computing it.
/// Arithmetic errors travel as values so that parsing goes on and a later syntax error is reported first.
type Outcome = Result<Decimal, String>;

#[derive(Debug, Clone, Copy)]
enum Operator {
    Add,
    Subtract,
    Multiply,
    Divide,
    Remainder,
    Power,
}

/// The binding power of unary `-` and `+`: tighter than `*` (so `-2 * 3` is `(-2) * 3`) and looser than `^`
/// (so `-2^2` is `-(2^2)`).
const UNARY_BINDING: u8 = 25;

/// The operator a token stands for between two operands, with its left and right binding powers. A right power
/// above the left makes an operator left-associative; below, right-associative (`^`).
fn infix(token: &Token) -> Option<(Operator, u8, u8)> {
    match token {
        Token::Plus => Some((Operator::Add, 10, 11)),
        Token::Minus => Some((Operator::Subtract, 10, 11)),
        Token::Star => Some((Operator::Multiply, 20, 21)),
        Token::Slash => Some((Operator::Divide, 20, 21)),
        Token::Percent => Some((Operator::Remainder, 20, 21)),
        Token::Caret => Some((Operator::Power, 30, 29)),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Function {
    Abs,
    Round,
    Floor,
    Ceil,
    Min,
    Max,
    Sqrt,
}

impl Function {
    const ALL: [Function; 7] =
        [Function::Abs, Function::Ceil, Function::Floor, Function::Max, Function::Min, Function::Round, Function::Sqrt];

    fn name(self) -> &'static str {
        match self {
            Function::Abs => "abs",
            Function::Round => "round",
            Function::Floor => "floor",
            Function::Ceil => "ceil",
            Function::Min => "min",
            Function::Max => "max",
            Function::Sqrt => "sqrt",
        }
    }

    /// Function names are matched without regard to case: a model writes `Round(` as readily as `round(`.
    fn named(name: &str) -> Option<Function> {
        let lower = name.to_ascii_lowercase();
        Function::ALL.into_iter().find(|f| f.name() == lower)
    }

    /// The least and the most arguments the function takes (`None`: no upper limit).
    fn arity(self) -> (usize, Option<usize>) {
        match self {
            Function::Abs | Function::Floor | Function::Ceil | Function::Sqrt => (1, Some(1)),
            Function::Round => (1, Some(2)),
            Function::Min | Function::Max => (1, None),
        }
    }

    fn arity_text(self) -> String {
        match self.arity() {
            (1, Some(1)) => "one argument".into(),
            (least, Some(most)) => format!("{least} or {most} arguments"),
            (least, None) => format!("at least {least} argument{}", if least == 1 { "" } else { "s" }),
        }
    }
}

fn function_list() -> String {
    Function::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
}

/// A Pratt parser that evaluates as it goes: no syntax tree is built, so nothing but the nesting depth recurses.
struct Parser {
    lexemes: Vec<Lexeme>,
    next: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Lexeme {
        // `tokenize` always ends the list with `End`, and `advance` never steps past it.
        &self.lexemes[self.next.min(self.lexemes.len() - 1)]
    }

    fn advance(&mut self) -> Lexeme {
        let lexeme = self.peek().clone();
        if lexeme.token != Token::End {
            self.next += 1;
        }
        lexeme
    }

    /// Parses operators that bind at least as tightly as `min_binding`, one nesting level deeper.
    fn expression(&mut self, min_binding: u8) -> Result<Outcome, String> {
        let position = self.peek().position;
        if self.depth >= MAX_DEPTH {
            return Err(format!(
                "the expression nests too deeply at position {position} \
                 (at most {MAX_DEPTH} levels of parentheses, signs and powers)"
            ));
        }
        self.depth += 1;
        let outcome = self.operators(min_binding);
        self.depth -= 1;
        outcome
    }

    fn operators(&mut self, min_binding: u8) -> Result<Outcome, String> {
        let mut left = self.operand()?;
        while let Some((operator, left_binding, right_binding)) = infix(&self.peek().token) {
            if left_binding < min_binding {
                break;
            }
            self.advance();
            let right = self.expression(right_binding)?;
            left = apply(operator, left, right);
        }
        Ok(left)
    }

    /// A number, a signed operand, a parenthesised expression or a function call.
    fn operand(&mut self) -> Result<Outcome, String> {
        let lexeme = self.advance();
        match lexeme.token {
            Token::Number(value) => Ok(Ok(value)),
            Token::Minus => Ok(self.expression(UNARY_BINDING)?.map(|value| -value)),
            Token::Plus => self.expression(UNARY_BINDING),
            Token::Open => {
                let inner = self.expression(0)?;
                let close = self.advance();
                match close.token {
                    Token::Close => Ok(inner),
                    Token::End => Err(format!("the '(' at position {} is never closed", lexeme.position)),
                    other => Err(unexpected(&other, close.position)),
                }
            }
            Token::Name(name) => self.call(&name, lexeme.position),
            other => Err(unexpected(&other, lexeme.position)),
        }
    }

    /// A function call; the name at `position` was just read.
    fn call(&mut self, name: &str, position: usize) -> Result<Outcome, String> {
        let function = Function::named(name).ok_or_else(|| {
            format!("unknown name '{name}' at position {position}; the functions are {}", function_list())
        })?;
        let open = self.advance();
        if open.token != Token::Open {
            return Err(format!("expected '(' after {} at position {}", function.name(), open.position));
        }
        let mut arguments = Vec::new();
        if self.peek().token == Token::Close {
            self.advance();
        } else {
            loop {
                arguments.push(self.expression(0)?);
                let separator = self.advance();
                match separator.token {
                    Token::Comma => continue,
                    Token::Close => break,
                    Token::End => return Err(format!("the '(' at position {} is never closed", open.position)),
                    other => return Err(unexpected(&other, separator.position)),
                }
            }
        }
        let (least, most) = function.arity();
        if arguments.len() < least || most.is_some_and(|most| arguments.len() > most) {
            return Err(format!(
                "{} at position {position} takes {}, not {}",
                function.name(),
                function.arity_text(),
                arguments.len()
            ));
        }
        Ok(apply_function(function, arguments))
    }
}

fn overflow() -> String {
    "the result is too large: numbers go up to about 7.9e28 (overflow)".into()
}

fn apply(operator: Operator, left: Outcome, right: Outcome) -> Outcome {
    let (a, b) = (left?, right?);
    match operator {
        Operator::Add => a.checked_add(b).ok_or_else(overflow),
        Operator::Subtract => a.checked_sub(b).ok_or_else(overflow),
        Operator::Multiply => a.checked_mul(b).ok_or_else(overflow),
        // `checked_div` and `checked_rem` answer `None` for a zero divisor and for an overflow alike, so the zero
        // is checked first to say which it was.
        Operator::Divide if b.is_zero() => Err(DIVISION_BY_ZERO.into()),
        Operator::Divide => a.checked_div(b).ok_or_else(overflow),
        Operator::Remainder if b.is_zero() => Err(DIVISION_BY_ZERO.into()),
        Operator::Remainder => a.checked_rem(b).ok_or_else(overflow),
        Operator::Power => power(a, b),
    }
}

/// `base ^ exponent` by repeated exact multiplication; a negative exponent is `1 / base ^ -exponent`.
fn power(base: Decimal, exponent: Decimal) -> Outcome {
    let exponent = exponent.normalize();
    if exponent.scale() != 0 {
        return Err(format!(
            "only whole-number powers are exact, and the exponent {exponent} is not a whole number \
             (use sqrt for square roots)"
        ));
    }
    let n = exponent.mantissa();
    if n.unsigned_abs() > MAX_POWER {
        return Err(format!("the exponent {n} is too large (at most {MAX_POWER})"));
    }
    let mut result = Decimal::ONE;
    for _ in 0..n.unsigned_abs() {
        result = result.checked_mul(base).ok_or_else(overflow)?;
    }
    if n < 0 {
        if result.is_zero() {
            // A nonzero base whose power rounded to zero has a reciprocal too large to hold.
            return Err(if base.is_zero() { DIVISION_BY_ZERO.into() } else { overflow() });
        }
        result = Decimal::ONE.checked_div(result).ok_or_else(overflow)?;
    }
    Ok(result)
}

fn apply_function(function: Function, arguments: Vec<Outcome>) -> Outcome {
    let values = arguments.into_iter().collect::<Result<Vec<Decimal>, String>>()?;
    let away = RoundingStrategy::MidpointAwayFromZero;
    match (function, values.as_slice()) {
        (Function::Abs, [x]) => Ok(x.abs()),
        (Function::Floor, [x]) => Ok(x.floor()),
        (Function::Ceil, [x]) => Ok(x.ceil()),
        (Function::Round, [x]) => Ok(x.round_dp_with_strategy(0, away)),
        (Function::Round, [x, places]) => Ok(x.round_dp_with_strategy(decimal_places(*places)?, away)),
        (Function::Min, _) => values.iter().copied().min().ok_or_else(|| "min needs at least one argument".to_owned()),
        (Function::Max, _) => values.iter().copied().max().ok_or_else(|| "max needs at least one argument".to_owned()),
        (Function::Sqrt, [x]) => square_root(*x),
        (function, _) => Err(format!("{} takes {}", function.name(), function.arity_text())),
    }
}

/// The second argument of `round`, which must be a whole number Decimal can hold as a scale.
fn decimal_places(places: Decimal) -> Result<u32, String> {
    let places = places.normalize();
    let max = i128::from(Decimal::MAX_SCALE);
    if places.scale() != 0 || !(0..=max).contains(&places.mantissa()) {
        return Err(format!("round's number of decimal places must be a whole number from 0 to {max}, not {places}"));
    }
    u32::try_from(places.mantissa()).map_err(|_| format!("round cannot keep {places} decimal places"))
}

/// The square root by Newton's method, rounded to [`SQRT_PLACES`] decimal places.
///
/// The iteration starts above the root (at `x` when `x > 1`, else at 1) and, in exact arithmetic, decreases
/// towards it; it stops when a step no longer decreases, which is where Decimal's own rounding takes over.
/// `rust_decimal`'s `maths` feature has a `sqrt`, but its precision is not documented; this one is ours to state.
fn square_root(x: Decimal) -> Outcome {
    if x < Decimal::ZERO {
        return Err(format!("sqrt of a negative number ({x}) has no real value"));
    }
    if x.is_zero() {
        return Ok(Decimal::ZERO);
    }
    let half = Decimal::new(5, 1);
    let mut guess = if x > Decimal::ONE { x } else { Decimal::ONE };
    for _ in 0..SQRT_STEPS {
        // Halving both terms before adding keeps `guess + x / guess` from overflowing near Decimal::MAX.
        let quotient = x.checked_div(guess).ok_or_else(overflow)?;
        let next = guess
            .checked_mul(half)
            .and_then(|g| quotient.checked_mul(half).and_then(|q| g.checked_add(q)))
            .ok_or_else(overflow)?;
        if next >= guess {
            break;
        }
        guess = next;
    }
    Ok(guess.round_dp_with_strategy(SQRT_PLACES, RoundingStrategy::MidpointAwayFromZero))
}

#[cfg(test)]
mod tests;
