//! Constrained decoding: which byte strings can still grow into a JSON value that satisfies a JSON Schema.
//!
//! The local backend asks [`JsonConstraint::check`] about the reply so far plus each candidate token, best
//! logit first, and takes the first candidate that keeps the reply viable; once the reply is a complete valid
//! value, generation stops. So even a 135M-parameter model's tool calls always parse and validate.
//!
//! The checker is a nondeterministic recursive-descent parser over bytes that reports, for a prefix, every way
//! it can end: a complete value ending at some offset, or "open" (the input ran out while still consistent).
//! It understands the subset of JSON Schema that tool contracts use: `type` (object, string, integer, number,
//! boolean, null, array, and lists of types), `properties`, `required`, `additionalProperties: false`, `const`,
//! `enum`, `anyOf`/`oneOf`, `minLength`/`maxLength`, integer `minimum`/`maximum`, `items`, `minItems`/
//! `maxItems`. A part of a schema it does not understand (`$ref`, `pattern`, formats) accepts any JSON value
//! there; the runner validates the whole value with the full JSON Schema validator afterwards, as for every
//! backend. Outside strings at most two white-space characters may follow each other, so a model cannot stall
//! in white space. The state is the prefix itself: nothing is kept between calls.

use serde_json::Value;

/// What a prefix can still become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No extension of it satisfies the schema.
    Dead,
    /// Some extension does.
    Viable,
    /// It is a complete valid value (trailing white space allowed); nothing may follow.
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    /// A value ends at this offset.
    At(usize),
    /// The input ran out while the value was still consistent.
    Open,
}

const MAX_DEPTH: usize = 24;
const MAX_WHITESPACE_RUN: usize = 2;

pub struct JsonConstraint<'s> {
    schema: &'s Value,
}

impl<'s> JsonConstraint<'s> {
    pub fn new(schema: &'s Value) -> Self {
        JsonConstraint { schema }
    }

    pub fn check(&self, prefix: &[u8]) -> Verdict {
        let Some(start) = ws(prefix, 0) else { return Verdict::Dead };
        let ends = value(self.schema, prefix, start, 0);
        if ends.iter().any(|e| matches!(e, End::At(i) if ws(prefix, *i) == Some(prefix.len()))) {
            return Verdict::Complete;
        }
        if ends.contains(&End::Open) { Verdict::Viable } else { Verdict::Dead }
    }

    /// The fewest bytes found that make the viable `prefix` a complete value by closing what is open: the string
    /// in hand, a number's missing digits, a literal's letters, then its arrays and objects. A search over the
    /// closing characters alone, so `None` when completing needs more (a required key not yet written, say) or
    /// more than [`MAX_CLOSING`] bytes. The decoder forces it when the token budget would otherwise cut the value.
    pub fn shortest_completion(&self, prefix: &[u8]) -> Option<Vec<u8>> {
        let mut text = prefix.to_vec();
        (1..=MAX_CLOSING).find_map(|depth| self.close(&mut text, prefix.len(), depth).then(|| text[prefix.len()..].to_vec()))
    }

    /// Depth-first: whether `text` can be completed with at most `depth` more closing bytes (left in `text`).
    fn close(&self, text: &mut Vec<u8>, start: usize, depth: usize) -> bool {
        for &b in CLOSING_BYTES {
            text.push(b);
            match self.check(text) {
                Verdict::Complete => return true,
                Verdict::Viable if depth > 1 && self.close(text, start, depth - 1) => return true,
                _ => {}
            }
            text.pop();
        }
        false
    }
}

/// What [`JsonConstraint::shortest_completion`] closes with, tried in this order: the end of a string, of an
/// object, of an array, a digit, and the letters that finish `true`, `false` and `null`.
const CLOSING_BYTES: &[u8] = b"\"}]0elsrua";

/// The longest completion [`JsonConstraint::shortest_completion`] looks for.
pub const MAX_CLOSING: usize = 12;

/// Skips white space; `None` when a run is longer than allowed.
fn ws(b: &[u8], mut i: usize) -> Option<usize> {
    let start = i;
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\t' | b'\r') {
        i += 1;
    }
    (i - start <= MAX_WHITESPACE_RUN).then_some(i)
}

fn dedup(mut v: Vec<End>) -> Vec<End> {
    v.sort();
    v.dedup();
    v
}

fn value(s: &Value, b: &[u8], i: usize, depth: usize) -> Vec<End> {
    if depth > MAX_DEPTH {
        return Vec::new();
    }
    if i >= b.len() {
        return vec![End::Open];
    }
    if let Some(alts) = s.get("anyOf").or_else(|| s.get("oneOf")).and_then(Value::as_array) {
        return dedup(alts.iter().flat_map(|a| value(a, b, i, depth + 1)).collect());
    }
    if let Some(c) = s.get("const") {
        return literal(&serde_json::to_string(c).unwrap_or_default(), b, i);
    }
    if let Some(options) = s.get("enum").and_then(Value::as_array) {
        return dedup(options.iter().flat_map(|o| literal(&serde_json::to_string(o).unwrap_or_default(), b, i)).collect());
    }
    match s.get("type") {
        Some(Value::String(t)) => typed(t, s, b, i, depth),
        Some(Value::Array(types)) => dedup(types.iter().filter_map(Value::as_str).flat_map(|t| typed(t, s, b, i, depth)).collect()),
        _ => any(b, i, depth),
    }
}

fn typed(t: &str, s: &Value, b: &[u8], i: usize, depth: usize) -> Vec<End> {
    match t {
        "object" => object(s, b, i, depth),
        "array" => array(s, b, i, depth),
        "string" => string(s, b, i),
        "integer" => number(s, b, i, true),
        "number" => number(s, b, i, false),
        "boolean" => dedup([literal("true", b, i), literal("false", b, i)].concat()),
        "null" => literal("null", b, i),
        _ => any(b, i, depth),
    }
}

/// Any JSON value, by its first byte.
fn any(b: &[u8], i: usize, depth: usize) -> Vec<End> {
    static EMPTY: Value = Value::Null;
    let open = &EMPTY;
    match b[i] {
        b'{' => object(open, b, i, depth),
        b'[' => array(open, b, i, depth),
        b'"' => string(open, b, i),
        b'-' | b'0'..=b'9' => number(open, b, i, false),
        b't' => literal("true", b, i),
        b'f' => literal("false", b, i),
        b'n' => literal("null", b, i),
        _ => Vec::new(),
    }
}

fn literal(text: &str, b: &[u8], i: usize) -> Vec<End> {
    let t = text.as_bytes();
    let rest = &b[i..];
    if rest.len() < t.len() {
        if t.starts_with(rest) { vec![End::Open] } else { Vec::new() }
    } else if rest.starts_with(t) {
        vec![End::At(i + t.len())]
    } else {
        Vec::new()
    }
}

/// A string's content so far, decoded enough to count characters and check escapes.
enum Scanned {
    /// Closed at this offset (after the quote), with this many characters and these bytes of content.
    Closed(usize, usize, Vec<u8>),
    /// The input ended inside the string, with this many characters and this content so far.
    Open(usize, Vec<u8>),
    Bad,
}

fn scan_string(b: &[u8], i: usize) -> Scanned {
    if b[i] != b'"' {
        return Scanned::Bad;
    }
    let (mut j, mut chars, mut content) = (i + 1, 0usize, Vec::new());
    while j < b.len() {
        match b[j] {
            b'"' => return Scanned::Closed(j + 1, chars, content),
            b'\\' => {
                let Some(&e) = b.get(j + 1) else { return Scanned::Open(chars, content) };
                match e {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                        // The decoded byte, so that `"expressio\n"` is not mistaken for the key `expression`.
                        content.push(match e {
                            b'b' => 0x08,
                            b'f' => 0x0C,
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            other => other,
                        });
                        j += 2;
                    }
                    b'u' => {
                        let hex = &b[(j + 2).min(b.len())..(j + 6).min(b.len())];
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Scanned::Bad;
                        }
                        if hex.len() < 4 {
                            return Scanned::Open(chars, content);
                        }
                        content.push(b'?');
                        j += 6;
                    }
                    _ => return Scanned::Bad,
                }
                chars += 1;
            }
            c if c < 0x20 => return Scanned::Bad,
            c => {
                // Count characters, not bytes: UTF-8 continuation bytes do not start one.
                if c & 0xC0 != 0x80 {
                    chars += 1;
                }
                content.push(c);
                j += 1;
            }
        }
    }
    Scanned::Open(chars, content)
}

fn string(s: &Value, b: &[u8], i: usize) -> Vec<End> {
    let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = s.get("maxLength").and_then(Value::as_u64).map(|m| m as usize).unwrap_or(usize::MAX);
    match scan_string(b, i) {
        Scanned::Closed(end, chars, _) if chars >= min && chars <= max => vec![End::At(end)],
        Scanned::Open(chars, _) if chars <= max => vec![End::Open],
        _ => Vec::new(),
    }
}

fn number(s: &Value, b: &[u8], i: usize, integer: bool) -> Vec<End> {
    let mut j = i;
    let negative = b[j] == b'-';
    if negative {
        // No dead ends: a minus sign only where a negative number is allowed.
        if integer && bounds(s).0 >= 0 {
            return Vec::new();
        }
        j += 1;
    }
    let digits_start = j;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    let int_digits = &b[digits_start..j];
    if int_digits.len() > 1 && int_digits[0] == b'0' {
        return Vec::new();
    }
    if j == b.len() {
        return if integer && !int_digits.is_empty() && !integer_can_reach(s, negative, int_digits) { Vec::new() } else { vec![End::Open] };
    }
    if int_digits.is_empty() {
        return Vec::new();
    }
    if !integer && b[j] == b'.' {
        j += 1;
        let frac = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j == b.len() {
            return vec![End::Open];
        }
        if j == frac {
            return Vec::new();
        }
    }
    if !integer && (b[j] == b'e' || b[j] == b'E') {
        j += 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j == b.len() {
            return vec![End::Open];
        }
        if j == exp {
            return Vec::new();
        }
    }
    if integer && !integer_in_range(s, negative, int_digits) {
        return Vec::new();
    }
    vec![End::At(j)]
}

fn bounds(s: &Value) -> (i128, i128) {
    let min = s.get("minimum").and_then(Value::as_i64).map(i128::from).unwrap_or(i128::from(i64::MIN));
    let max = s.get("maximum").and_then(Value::as_i64).map(i128::from).unwrap_or(i128::from(i64::MAX));
    (min, max)
}

fn parse_digits(d: &[u8]) -> Option<i128> {
    if d.len() > 19 {
        return None;
    }
    std::str::from_utf8(d).ok()?.parse().ok()
}

fn integer_in_range(s: &Value, negative: bool, digits: &[u8]) -> bool {
    let (min, max) = bounds(s);
    match parse_digits(digits) {
        Some(v) => {
            let v = if negative { -v } else { v };
            v >= min && v <= max
        }
        None => false,
    }
}

/// Whether some integer in range starts with these digits (written so far).
fn integer_can_reach(s: &Value, negative: bool, digits: &[u8]) -> bool {
    let (min, max) = bounds(s);
    let Some(p) = parse_digits(digits) else { return false };
    if digits == b"0" {
        return 0 >= min && 0 <= max;
    }
    for extra in 0..=(19 - digits.len().min(19)) {
        let scale = 10i128.pow(extra as u32);
        let (lo, hi) = (p * scale, (p + 1) * scale - 1);
        let (lo, hi) = if negative { (-hi, -lo) } else { (lo, hi) };
        if lo <= max && hi >= min {
            return true;
        }
    }
    false
}

fn object(s: &Value, b: &[u8], i: usize, depth: usize) -> Vec<End> {
    if b[i] != b'{' {
        return Vec::new();
    }
    let Some(j) = ws(b, i + 1) else { return Vec::new() };
    if j == b.len() {
        return vec![End::Open];
    }
    if b[j] == b'}' {
        return if missing_required(s, &[]) { Vec::new() } else { vec![End::At(j + 1)] };
    }
    members(s, b, j, depth, Vec::new())
}

fn missing_required(s: &Value, seen: &[String]) -> bool {
    s.get("required").and_then(Value::as_array).is_some_and(|r| r.iter().filter_map(Value::as_str).any(|k| !seen.iter().any(|x| x == k)))
}

/// The members of an object from the key at `i` on, with `seen` keys before it.
fn members(s: &Value, b: &[u8], i: usize, depth: usize, seen: Vec<String>) -> Vec<End> {
    let props = s.get("properties").and_then(Value::as_object);
    let closed = s.get("additionalProperties") == Some(&Value::Bool(false));
    let allowed = |key: &str| !seen.iter().any(|k| k == key) && (!closed || props.is_some_and(|p| p.contains_key(key)));
    // A declared key never needs an escape, and a half-written escape could lead nowhere: refuse them there.
    if closed && b[i + 1..].iter().take_while(|c| **c != b'"').any(|c| *c == b'\\') {
        return Vec::new();
    }
    let (key, after_key) = match scan_string(b, i) {
        Scanned::Bad => return Vec::new(),
        Scanned::Open(_, partial) => {
            let partial = String::from_utf8_lossy(&partial).into_owned();
            let possible = !closed || props.is_some_and(|p| p.keys().any(|k| k.starts_with(&partial) && allowed(k)));
            return if possible { vec![End::Open] } else { Vec::new() };
        }
        Scanned::Closed(end, _, content) => (String::from_utf8_lossy(&content).into_owned(), end),
    };
    if !allowed(&key) {
        return Vec::new();
    }
    let Some(j) = ws(b, after_key) else { return Vec::new() };
    if j == b.len() {
        return vec![End::Open];
    }
    if b[j] != b':' {
        return Vec::new();
    }
    let Some(j) = ws(b, j + 1) else { return Vec::new() };
    static ANY: Value = Value::Null;
    let sub = props.and_then(|p| p.get(&key)).unwrap_or(&ANY);
    let mut seen = seen;
    seen.push(key);
    let more = !closed || props.is_some_and(|p| p.keys().any(|k| !seen.contains(k)));
    // A comma promises another member: only where one is still allowed.
    after_value(value(sub, b, j, depth + 1), b, (b'}', !missing_required(s, &seen)), more, |n| members(s, b, n, depth, seen.clone()))
}

fn array(s: &Value, b: &[u8], i: usize, depth: usize) -> Vec<End> {
    if b[i] != b'[' {
        return Vec::new();
    }
    let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = s.get("maxItems").and_then(Value::as_u64).map(|m| m as usize).unwrap_or(usize::MAX);
    static ANY: Value = Value::Null;
    let items = s.get("items").unwrap_or(&ANY);
    let Some(j) = ws(b, i + 1) else { return Vec::new() };
    if j == b.len() {
        return vec![End::Open];
    }
    if b[j] == b']' {
        return if min == 0 { vec![End::At(j + 1)] } else { Vec::new() };
    }
    elements(items, b, j, depth, 1, min, max)
}

fn elements(items: &Value, b: &[u8], i: usize, depth: usize, n: usize, min: usize, max: usize) -> Vec<End> {
    if n > max {
        return Vec::new();
    }
    after_value(value(items, b, i, depth + 1), b, (b']', n >= min), n < max, |m| elements(items, b, m, depth, n + 1, min, max))
}

/// What may follow a member's or an element's value: white space, then the closing bracket (when `close.1`
/// allows it) or a comma and the next one (when `more` allows it), parsed by `next` from its offset.
fn after_value(ends: Vec<End>, b: &[u8], close: (u8, bool), more: bool, next: impl Fn(usize) -> Vec<End>) -> Vec<End> {
    let mut out = Vec::new();
    for end in ends {
        let End::At(k) = end else {
            out.push(End::Open);
            continue;
        };
        let Some(k) = ws(b, k) else { continue };
        if k == b.len() {
            out.push(End::Open);
            continue;
        }
        if b[k] == close.0 && close.1 {
            out.push(End::At(k + 1));
        } else if b[k] == b',' && more {
            let Some(n) = ws(b, k + 1) else { continue };
            if n == b.len() {
                out.push(End::Open);
            } else {
                out.extend(next(n));
            }
        }
    }
    dedup(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verdicts(schema: &Value, text: &str) -> Vec<Verdict> {
        let c = JsonConstraint::new(schema);
        (0..=text.len()).map(|n| c.check(&text.as_bytes()[..n])).collect()
    }

    #[test]
    fn a_valid_call_is_viable_at_every_prefix_and_complete_at_the_end() {
        let schema = json!({"anyOf": [
            {"type": "object", "properties": {"tool": {"const": "calculator"}, "arguments": {"type": "object", "properties": {"expression": {"type": "string", "minLength": 1}}, "required": ["expression"], "additionalProperties": false}}, "required": ["tool", "arguments"], "additionalProperties": false},
            {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"], "additionalProperties": false}
        ]});
        let text = r#"{"tool": "calculator", "arguments": {"expression": "2 * (3 + 4)"}}"#;
        let v = verdicts(&schema, text);
        assert!(v[..v.len() - 1].iter().all(|v| *v == Verdict::Viable), "{v:?}");
        assert_eq!(*v.last().unwrap(), Verdict::Complete);
        let c = JsonConstraint::new(&schema);
        for dead in [
            r#"{"tool": "calc""#,
            r#"{"tool": "calculator", "arguments": {"expr""#,
            r#"{"tool": "calculator", "arguments": {"expression": ""}"#,
            r#"{"tool": "calculator", "arguments": {"expression": "1"}, "extra""#,
            r#"{"answer": "hi", "answer""#,
            r#"{"tool": "calculator"}"#,
            r#"{"tool": "calculator", "arguments": {"expression": "1", "#,
            r#"{"tool": "calculator", "arguments": {"expressio\n""#,
            r#"{"tool": "calculator", "arguments": {"expressio\u03b"#,
            "{   ",
            "[",
        ] {
            assert_eq!(c.check(dead.as_bytes()), Verdict::Dead, "{dead}");
        }
        assert_eq!(c.check(br#"{"answer": "a \"quoted\" \u00e9 word"}"#), Verdict::Complete);
    }

    #[test]
    fn the_shortest_completion_closes_what_is_open_and_nothing_else() {
        let schema = json!({"type": "object", "properties": {"tool": {"const": "calculator"}, "arguments": {"type": "object", "properties": {"expression": {"type": "string"}, "exact": {"type": "boolean"}, "n": {"type": "number"}}, "required": ["expression"], "additionalProperties": false}}, "required": ["tool", "arguments"], "additionalProperties": false});
        let c = JsonConstraint::new(&schema);
        for (prefix, tail) in [
            (r#"{"tool": "calculator", "arguments": {"expression": "12.5 + 3 * 4.000"#, Some(r#""}}"#)),
            (r#"{"tool": "calculator", "arguments": {"expression": "a \"#, Some(r#"""}}"#)),
            (r#"{"tool": "calculator", "arguments": {"expression": "1", "n": 4.0E+"#, Some("0}}")),
            (r#"{"tool": "calculator", "arguments": {"expression": "1", "exact": tr"#, Some("ue}}")),
            (r#"{"tool": "calculator", "arguments": {"expression": "1"}"#, Some("}")),
            // A required key not written yet is not a matter of closing.
            (r#"{"tool": "calculator", "arguments": {"#, None),
        ] {
            assert_eq!(c.check(prefix.as_bytes()), Verdict::Viable, "{prefix}");
            let found = c.shortest_completion(prefix.as_bytes());
            assert_eq!(found.as_deref(), tail.map(str::as_bytes), "{prefix}");
            if let Some(tail) = found {
                assert_eq!(c.check(&[prefix.as_bytes(), &tail].concat()), Verdict::Complete, "{prefix}");
            }
        }
    }

    #[test]
    fn integers_are_kept_within_their_bounds_and_never_reach_a_dead_end() {
        let schema = json!({"type": "object", "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": 20}}, "required": ["limit"], "additionalProperties": false});
        let c = JsonConstraint::new(&schema);
        assert_eq!(c.check(br#"{"limit": 1"#), Verdict::Viable);
        assert_eq!(c.check(br#"{"limit": 12}"#), Verdict::Complete);
        assert_eq!(c.check(br#"{"limit": 3"#), Verdict::Viable, "3 can still close");
        assert_eq!(c.check(br#"{"limit": 30"#), Verdict::Dead);
        assert_eq!(c.check(br#"{"limit": 0"#), Verdict::Dead, "0 cannot grow into 1..=20");
        assert_eq!(c.check(br#"{"limit": 21}"#), Verdict::Dead);
        assert_eq!(c.check(br#"{"limit": 1.5"#), Verdict::Dead);
        assert_eq!(c.check(br#"{"limit": -"#), Verdict::Dead, "no negative number is in range");
    }

    #[test]
    fn strings_respect_their_length_and_enums_their_values() {
        let s = json!({"type": "object", "properties": {"tz": {"enum": ["UTC", "Europe/Paris"]}, "q": {"type": "string", "maxLength": 3}}, "additionalProperties": false});
        let c = JsonConstraint::new(&s);
        assert_eq!(c.check(br#"{"tz": "Europe/"#), Verdict::Viable);
        assert_eq!(c.check(br#"{"tz": "Europe/Rome"#), Verdict::Dead);
        assert_eq!(c.check(br#"{"q": "abcd"#), Verdict::Dead);
        assert_eq!(c.check("{\"q\": \"é日本\"}".as_bytes()), Verdict::Complete, "characters, not bytes");
        assert_eq!(c.check(b"{}"), Verdict::Complete);
        assert_eq!(c.check(b"{\"q\": \"a\nb\"}"), Verdict::Dead, "raw control characters are not JSON");
    }

    #[test]
    fn a_plan_of_steps_or_the_answer_marker() {
        let step = json!({"type": "object", "properties": {"tool": {"const": "t"}, "arguments": {"type": "object"}}, "required": ["tool", "arguments"]});
        let s = json!({"type": "object", "properties": {"plan": {"type": "array", "minItems": 1, "items": {"anyOf": [step, {"const": "answer"}]}}}, "required": ["plan"], "additionalProperties": false});
        let c = JsonConstraint::new(&s);
        assert_eq!(c.check(br#"{"plan": [{"tool": "t", "arguments": {"x": [1, {"y": null}]}}, "answer"]}"#), Verdict::Complete);
        assert_eq!(c.check(br#"{"plan": []}"#), Verdict::Dead);
        assert_eq!(c.check(br#"{"plan": ["ans"#), Verdict::Viable);
    }
}
