//! Arithmetic in the user's own words, read by a grammar: "What is 12345 multiplied by 6789?", "17% of 2340",
//! "the square root of 144", "add twelve thousand and five to 3", "2 to the power of 10". The result is an
//! expression the calculator evaluates (`12345 * 6789`), or nothing.
//!
//! The message as a whole must be a request for one computation: a few words of request ("what is", "calculate",
//! "please") around one expression with at least one operation, and nothing else. Anything the grammar does not
//! consume ("I'm 17% sure", "the 2025 plan", "multiply our efforts", "what is 12 plus the cost of lunch") is not
//! claimed, and the model decides as before: a wrong claim is worse than none.
//!
//! The grammar, loosest first:
//! - `sum := product (("plus" | "+" | "minus" | "-") product)*`
//! - `product := power (("times" | "multiplied by" | "x" | "*" | "divided by" | "over" | "/") power)*`
//! - `power := unary (("to the power of" | "raised to the power of" | "^" | "**") unary | "squared" | "cubed")*`
//! - `unary := "-" unary | "the square root of" unary | NUMBER ("%" | "percent") "of" unary | "(" sum ")" |
//!   "add" sum ("and" | "to") sum | "subtract" sum "from" sum | "multiply" sum "by" sum | "divide" sum "by" sum |
//!   "the sum of" sum "and" sum | "the product of" sum "and" sum | "the difference between" sum "and" sum | NUMBER`
//! - `NUMBER`: digits (`12`, `1,234.5`, `.5`) or English number words ("forty-two", "one hundred and five",
//!   "twelve thousand three hundred forty-five").

/// One piece of the message.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(String),
    Word(String),
    Sym(char),
}

fn tokens(text: &str) -> Option<Vec<Tok>> {
    // A date (2025-12-25) or a time (10:30) is not a subtraction.
    let date_or_time = regex::Regex::new(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}:\d{2}").expect("a valid pattern");
    if date_or_time.is_match(text) {
        return None;
    }
    let text = text.to_lowercase().replace('×', "*").replace('÷', "/").replace('−', "-").replace("**", "^").replace("what's", "what is");
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || (chars[i] == ',' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))) {
                i += 1;
            }
            let raw: String = chars[start..i].iter().collect();
            out.push(Tok::Num(number_from_digits(&raw)?));
        } else if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && (chars[i].is_alphabetic() || chars[i] == '\'' || (chars[i] == '-' && chars.get(i + 1).is_some_and(|d| d.is_alphabetic()))) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else if "+-*/^()%".contains(c) {
            out.push(Tok::Sym(c));
            i += 1;
        } else if "?!.,;:".contains(c) {
            i += 1; // Punctuation around the request.
        } else {
            return None; // Anything else (quotes, currency, emoji): not a plain computation.
        }
    }
    Some(out)
}

/// `1,234.50` → `1234.50`; thousands separators must be in threes.
fn number_from_digits(raw: &str) -> Option<String> {
    let raw = raw.trim_end_matches('.');
    let (whole, frac) = raw.split_once('.').unwrap_or((raw, ""));
    if frac.contains(['.', ',']) {
        return None;
    }
    if whole.contains(',') {
        let groups: Vec<&str> = whole.split(',').collect();
        let ok = !groups[0].is_empty() && groups[0].len() <= 3 && groups[1..].iter().all(|g| g.len() == 3);
        if !ok {
            return None;
        }
    }
    let whole: String = whole.chars().filter(|c| *c != ',').collect();
    Some(if frac.is_empty() { whole } else { format!("{}.{frac}", if whole.is_empty() { "0" } else { &whole }) })
}

const UNITS: [&str; 20] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen",
    "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
];
const TENS: [&str; 10] = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];

fn small_word(w: &str) -> Option<u64> {
    if let Some(n) = UNITS.iter().position(|u| *u == w) {
        return Some(n as u64);
    }
    if let Some(n) = TENS.iter().position(|t| !t.is_empty() && *t == w) {
        return Some(n as u64 * 10);
    }
    let (tens, unit) = w.split_once('-')?;
    let t = TENS.iter().position(|x| !x.is_empty() && *x == tens)? as u64;
    let u = UNITS[1..10].iter().position(|x| *x == unit)? as u64 + 1;
    Some(t * 10 + u)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    depth: usize,
}

/// An expression in the calculator's syntax, with how many operations it holds.
struct Expr {
    text: String,
    ops: usize,
}

impl Expr {
    fn num(n: String) -> Expr {
        Expr { text: n, ops: 0 }
    }

    fn bin(a: Expr, op: &str, b: Expr) -> Expr {
        let wrap = |e: Expr| if e.ops > 0 { format!("({})", e.text) } else { e.text };
        let ops = a.ops + b.ops + 1;
        Expr { text: format!("{} {op} {}", wrap(a), wrap(b)), ops }
    }
}

const MAX_DEPTH: usize = 32;

impl Parser {
    fn peek_word(&self, offset: usize) -> Option<&str> {
        match self.toks.get(self.at + offset) {
            Some(Tok::Word(w)) => Some(w.as_str()),
            _ => None,
        }
    }

    /// Consumes the words of `phrase` if they come next.
    fn phrase(&mut self, phrase: &str) -> bool {
        let words: Vec<&str> = phrase.split(' ').collect();
        if words.iter().enumerate().all(|(k, w)| self.peek_word(k) == Some(w)) {
            self.at += words.len();
            true
        } else {
            false
        }
    }

    fn sym(&mut self, c: char) -> bool {
        if self.toks.get(self.at) == Some(&Tok::Sym(c)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn sum(&mut self) -> Option<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let mut left = self.product()?;
        loop {
            let op = if self.sym('+') || self.phrase("plus") {
                "+"
            } else if self.sym('-') || self.phrase("minus") {
                "-"
            } else {
                break;
            };
            let right = self.product()?;
            left = Expr::bin(left, op, right);
        }
        self.depth -= 1;
        Some(left)
    }

    fn product(&mut self) -> Option<Expr> {
        let mut left = self.power()?;
        loop {
            let op = if self.sym('*') || self.phrase("times") || self.phrase("multiplied by") || self.phrase("x") {
                "*"
            } else if self.sym('/') || self.phrase("divided by") || self.phrase("over") {
                "/"
            } else {
                break;
            };
            let right = self.power()?;
            left = Expr::bin(left, op, right);
        }
        Some(left)
    }

    fn power(&mut self) -> Option<Expr> {
        let mut base = self.unary()?;
        loop {
            if self.sym('^') || self.phrase("to the power of") || self.phrase("raised to the power of") || self.phrase("raised to") {
                let exponent = self.unary()?;
                base = Expr::bin(base, "^", exponent);
            } else if self.phrase("squared") {
                base = Expr::bin(base, "^", Expr::num("2".into()));
            } else if self.phrase("cubed") {
                base = Expr::bin(base, "^", Expr::num("3".into()));
            } else {
                return Some(base);
            }
        }
    }

    fn unary(&mut self) -> Option<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let result = self.unary_inner();
        self.depth -= 1;
        result
    }

    fn unary_inner(&mut self) -> Option<Expr> {
        if self.sym('-') || self.phrase("minus") || self.phrase("negative") {
            let e = self.unary()?;
            return Some(Expr { text: format!("-({})", e.text), ops: e.ops + 1 });
        }
        if self.phrase("the square root of") || self.phrase("square root of") || self.phrase("the sqrt of") || self.phrase("sqrt of") || self.phrase("sqrt") {
            let e = self.unary()?;
            return Some(Expr { text: format!("sqrt({})", e.text), ops: e.ops + 1 });
        }
        if self.sym('(') {
            let e = self.sum()?;
            return self.sym(')').then_some(Expr { text: format!("({})", e.text), ops: e.ops });
        }
        // Verb forms: "add A and B", "subtract A from B", "multiply A by B", "divide A by B".
        for (verb, joins, op, swap) in [
            ("add", &["and", "to"][..], "+", false),
            ("subtract", &["from"][..], "-", true),
            ("multiply", &["by", "and"][..], "*", false),
            ("divide", &["by"][..], "/", false),
            ("the sum of", &["and"][..], "+", false),
            ("sum of", &["and"][..], "+", false),
            ("the product of", &["and"][..], "*", false),
            ("product of", &["and"][..], "*", false),
            ("the difference between", &["and"][..], "-", false),
        ] {
            let save = self.at;
            if self.phrase(verb) {
                if let Some(a) = self.operand_until(joins) {
                    if joins.iter().any(|j| self.phrase(j)) {
                        if let Some(b) = self.sum() {
                            return Some(if swap { Expr::bin(b, op, a) } else { Expr::bin(a, op, b) });
                        }
                    }
                }
                self.at = save;
                return None;
            }
        }
        let n = self.number()?;
        // "17% of 2340", "17 percent of 2340".
        let save = self.at;
        if (self.sym('%') || self.phrase("percent") || self.phrase("per cent")) && self.phrase("of") {
            let of = self.unary()?;
            let pct = Expr::bin(Expr::num(n), "/", Expr::num("100".into()));
            return Some(Expr::bin(pct, "*", of));
        }
        self.at = save;
        Some(Expr::num(n))
    }

    /// Steps applied to the result so far: "…, then multiply the sum by 7", "and then add 5 to it", "then
    /// subtract 3 from the result", "then square it", "then double it".
    fn chained(&mut self, mut e: Expr) -> Option<Expr> {
        while self.phrase("and then") || self.phrase("then") {
            e = if self.phrase("multiply") {
                self.reference();
                if !self.phrase("by") {
                    return None;
                }
                Expr::bin(e, "*", self.sum()?)
            } else if self.phrase("divide") {
                self.reference();
                if !self.phrase("by") {
                    return None;
                }
                Expr::bin(e, "/", self.sum()?)
            } else if self.phrase("add") {
                let x = self.sum()?;
                if self.phrase("to") && !self.reference() {
                    return None;
                }
                Expr::bin(e, "+", x)
            } else if self.phrase("subtract") {
                let x = self.sum()?;
                if self.phrase("from") && !self.reference() {
                    return None;
                }
                Expr::bin(e, "-", x)
            } else if self.phrase("square") {
                self.reference();
                Expr::bin(e, "^", Expr::num("2".into()))
            } else if self.phrase("double") {
                self.reference();
                Expr::bin(e, "*", Expr::num("2".into()))
            } else if self.phrase("halve") {
                self.reference();
                Expr::bin(e, "/", Expr::num("2".into()))
            } else {
                return None;
            };
        }
        Some(e)
    }

    /// The result so far, named: "it", "that", "the sum", "the result"…
    fn reference(&mut self) -> bool {
        ["it", "that", "this", "the sum", "the result", "the total", "the product", "the difference", "the answer", "the number", "the quotient"]
            .iter()
            .any(|p| self.phrase(p))
    }

    /// An operand that stops before the joining word ("add 5 and 7": `5`, not `5 and 7`), which number words
    /// would otherwise swallow ("one hundred and five").
    fn operand_until(&mut self, joins: &[&str]) -> Option<Expr> {
        let end = (self.at..self.toks.len()).find(|&k| matches!(&self.toks[k], Tok::Word(w) if joins.contains(&w.as_str())) && self.ends_operand(k))?;
        let rest = self.toks.split_off(end);
        let e = self.sum();
        let complete = self.at == self.toks.len();
        self.toks.extend(rest);
        e.filter(|_| complete)
    }

    /// Whether a joining word at `k` ends the first operand: not inside a number written in words ("one hundred
    /// and five" keeps its "and").
    fn ends_operand(&self, k: usize) -> bool {
        let before = matches!(self.toks.get(k.wrapping_sub(1)), Some(Tok::Word(w)) if w == "hundred" || w == "thousand" || w == "million");
        let after = matches!(self.toks.get(k + 1), Some(Tok::Word(w)) if small_word(w).is_some_and(|n| n < 100));
        !(before && after && self.toks[k] == Tok::Word("and".into()))
    }

    /// A number in digits, or in words up to the billions.
    fn number(&mut self) -> Option<String> {
        if let Some(Tok::Num(n)) = self.toks.get(self.at) {
            let n = n.clone();
            self.at += 1;
            // "12 thousand", "3 million".
            for (scale, zeros) in [("thousand", 3), ("million", 6), ("billion", 9)] {
                if self.phrase(scale) {
                    return Some(format!("{n} * 1{}", "0".repeat(zeros))).map(|e| format!("({e})"));
                }
            }
            return Some(n);
        }
        let start = self.at;
        let (mut total, mut current, mut any) = (0u64, 0u64, false);
        loop {
            let Some(w) = self.peek_word(0).map(str::to_owned) else { break };
            if let Some(n) = small_word(&w) {
                current = current.checked_add(n)?;
            } else if w == "a" && matches!(self.peek_word(1), Some("hundred" | "thousand" | "million")) && !any {
                current = 1;
            } else if w == "hundred" && any {
                current = current.max(1).checked_mul(100)?;
            } else if let Some(scale) = match w.as_str() {
                "thousand" => Some(1_000u64),
                "million" => Some(1_000_000),
                "billion" => Some(1_000_000_000),
                _ => None,
            } {
                if !any {
                    break;
                }
                total = total.checked_add(current.max(1).checked_mul(scale)?)?;
                current = 0;
            } else if w == "and" && any && matches!(self.peek_word(1), Some(next) if small_word(next).is_some_and(|n| n < 100)) && self.toks[..self.at].iter().rev().take(1).any(|t| matches!(t, Tok::Word(p) if p == "hundred" || p == "thousand" || p == "million")) {
                // "one hundred and five": the "and" inside a number.
            } else {
                break;
            }
            any = true;
            self.at += 1;
        }
        if !any {
            self.at = start;
            return None;
        }
        Some((total + current).to_string())
    }
}

/// The words a request for a computation may start with, in order of appearance ("please", "can you", "what
/// is", "calculate", …): each is skipped once, wherever it stands before the expression.
const LEAD: &[&str] = &[
    "hey", "hi", "ok", "okay", "please", "can you", "could you", "would you", "will you", "tell me", "quickly", "use the calculator to",
    "use the calculator", "using the calculator", "with the calculator", "calculate", "compute", "evaluate", "work out", "figure out",
    "solve", "what is", "what are", "how much is", "whats", "what", "is", "the result of", "the value of", "the answer to",
];
/// The words it may end with.
const TRAIL: &[&str] =
    &["please", "for me", "thanks", "thank you", "exactly", "equal", "equals", "is", "using the calculator", "with the calculator", "use the calculator", "use a calculator"];

/// The calculator expression the message asks for, when the whole message is a request for one computation.
pub fn expression(message: &str) -> Option<String> {
    let toks = tokens(message)?;
    if toks.len() > 80 {
        return None;
    }
    let mut p = Parser { toks, at: 0, depth: 0 };
    // Leading request words, each at most once, in any order.
    let mut used = vec![false; LEAD.len()];
    'lead: loop {
        for (k, lead) in LEAD.iter().enumerate() {
            if !used[k] && p.phrase(lead) {
                used[k] = true;
                continue 'lead;
            }
        }
        break;
    }
    // Trailing words: cut them off the end before parsing.
    'trail: loop {
        for trail in TRAIL {
            let words: Vec<&str> = trail.split(' ').collect();
            let n = p.toks.len();
            if n >= words.len() + p.at && words.iter().enumerate().all(|(k, w)| matches!(&p.toks[n - words.len() + k], Tok::Word(x) if x == w)) {
                p.toks.truncate(n - words.len());
                continue 'trail;
            }
        }
        break;
    }
    let e = p.sum()?;
    let e = p.chained(e)?;
    // The calculator checks what it is given (a division by zero is its error to report, not a reason to leave
    // the message to the model).
    (p.at == p.toks.len() && e.ops > 0).then_some(e.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expression, in the calculator's syntax (its value is checked in `tests/integration/routing.rs`).
    fn value(message: &str) -> Option<String> {
        expression(message)
    }

    #[test]
    fn requests_in_words_and_symbols_become_expressions() {
        let cases: [(&str, &str); 24] = [
            ("What is 12345 multiplied by 6789?", "12345 * 6789"),
            ("Add 24 and 122, then multiply the sum by 7.", "(24 + 122) * 7"),
            ("what is 5 plus 3 and then square it", "(5 + 3) ^ 2"),
            ("100, then subtract 30 from it", "100 - 30"),
            ("What is 17% of 2340?", "(17 / 100) * 2340"),
            ("what's 17 percent of 2,340", "(17 / 100) * 2340"),
            ("Calculate 1024 divided by 16.", "1024 / 16"),
            ("Please add 1234 and 5678 with the calculator.", "1234 + 5678"),
            ("Use the calculator to compute 12345 * 6789.", "12345 * 6789"),
            ("What is the square root of 144?", "sqrt(144)"),
            ("What is 2 to the power of 10?", "2 ^ 10"),
            ("what is twelve plus seven", "12 + 7"),
            ("What is one hundred and five times three?", "105 * 3"),
            ("twelve thousand three hundred forty-five times 2", "12345 * 2"),
            ("Subtract 5 from 12", "12 - 5"),
            ("multiply 6 by 7", "6 * 7"),
            ("What is 5 squared?", "5 ^ 2"),
            ("(3 + 4) * 2", "((3 + 4)) * 2"),
            ("What is 3 + 4 * 2?", "3 + (4 * 2)"),
            ("what is 10 - -3", "10 - (-(3))"),
            ("Add 345 and 20, then multiply", ""),
            ("What is the sum of 21 and 21?", "21 + 21"),
            ("how much is 7 x 8", "7 * 8"),
            ("What is 12 thousand divided by 4?", "(12 * 1000) / 4"),
        ];
        for (message, want) in cases {
            let got = value(message);
            if want.is_empty() {
                assert_eq!(got, None, "{message:?} should not be claimed");
            } else {
                assert_eq!(got.as_deref(), Some(want), "{message:?} → {:?}", expression(message));
            }
        }
    }

    #[test]
    fn look_alikes_are_not_claimed() {
        for message in [
            "I'm 17% sure it will rain",
            "the 2025 plan",
            "We need to multiply our efforts",
            "Add 24 and 122, then send it to Bob",
            "What is 5 plus 3 and then what?",
            "What is the capital of France?",
            "What is 12 plus the cost of lunch?",
            "Remember that my PIN is 1234",
            "Call me at 555-1234",
            "Meet at 10:30",
            "What is 42?",
            "hello",
            "",
            "Add milk and eggs to the list",
            "Is 2025-12-25 a Thursday?",
            "What is 2025-12-25?",
            "What is 10:30 minus 2?",
            "What is the time in Tokyo?",
            "Read notes.txt and add up the numbers",
            "divide the team by two groups",
            "My score went from 12 to 15",
        ] {
            assert_eq!(expression(message), None, "{message:?} was claimed as {:?}", expression(message));
        }
    }

    #[test]
    fn hostile_input_is_bounded() {
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        assert_eq!(expression(&deep), None);
        let long = "1 + ".repeat(1000) + "1";
        assert_eq!(expression(&long), None);
    }
}
