//! What code does with the result of a call it chose (`RunEvent::Routed`): the second step a route asks for
//! (adding up a column of the file read), and the plain answer that states the result, with what any answer must
//! state to be right.
//!
//! The model phrases the answer from the result; `verify` checks that the phrasing states what this module says
//! it must, and when it does not, the plain answer is shown instead. Nothing here guesses: the values come from the
//! tool's result and the lines of a file from the file.

use rust_decimal::Decimal;
use serde_json::Value;

use super::state::RunState;

/// One thing an answer must state: a text (compared without case), or one of several.
#[derive(Debug, Clone, PartialEq)]
pub enum Need {
    Text(String),
    /// Any one of these texts (a file's distinctive words, the names listed).
    AnyOf(Vec<String>),
}

/// The plain answer for the last routed call, and what any answer must state; `None` when the route has no
/// template (the calculator, whose own check applies) or its call has not succeeded.
pub fn plain_answer(state: &RunState, question: &str) -> Option<(String, Vec<Need>)> {
    let template = state.routed_answer.as_deref()?;
    let result = routed_result(state)?;
    let mut out = String::new();
    let mut needs = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map(|c| open + c)?;
        let field = &rest[open + 1..close];
        let (text, need) = placeholder(field, result, question)?;
        out.push_str(&text);
        needs.extend(need);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some((out, needs))
}

/// The result of the last routed call, when it succeeded.
fn routed_result(state: &RunState) -> Option<&Value> {
    let id = state.routed.as_deref()?;
    state.tools_used.iter().find(|u| u.call_id == id && u.ok == Some(true))?.result.as_ref()
}

/// A placeholder's text and what an answer must state of it (`=field` is shown but not required).
fn placeholder(field: &str, result: &Value, question: &str) -> Option<(String, Option<Need>)> {
    let (field, required) = match field.strip_prefix('=') {
        Some(f) => (f, false),
        None => (field, true),
    };
    let (text, need) = match field {
        "@lines" => {
            let content = result["content"].as_str()?;
            let (lines, matched) = matching_lines(content, question);
            let shown: Vec<&str> = lines.iter().map(|(line, _)| line.as_str()).collect();
            let values: Vec<&str> = lines.iter().map(|(_, value)| value.as_str()).collect();
            // Lines the question points at must be stated. When it points at none ("what is it about?"), the reply
            // must at least say something the file says; a yes/no question ("does it mention a refund?") is not
            // held to the file's words at all.
            let words = if matched {
                distinctive_words(&values.join("\n"), question)
            } else if yes_no(question) {
                Vec::new()
            } else {
                distinctive_words(content, question)
            };
            (shown.join("; "), (!words.is_empty()).then_some(Need::AnyOf(words)))
        }
        "@entries" => {
            let names: Vec<String> = result["entries"].as_array()?.iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect();
            if names.is_empty() {
                return Some(("nothing yet (the folder is empty)".into(), None));
            }
            let mut shown = names.iter().take(50).cloned().collect::<Vec<_>>().join(", ");
            if names.len() > 50 {
                shown.push_str(&format!(" and {} more", names.len() - 50));
            }
            (shown, Some(Need::AnyOf(names)))
        }
        "@days" => {
            let days = result["days_from_now"].as_i64()?;
            let text = match days {
                0 => "today".to_owned(),
                1 => "tomorrow, 1 day from today".to_owned(),
                -1 => "yesterday, 1 day ago".to_owned(),
                d if d > 0 => format!("{d} days from today"),
                d => format!("{} days ago", -d),
            };
            // The count next to "day": the digits of the date itself ("December 25") are not a count.
            let need = if days == 0 { Need::Text("today".into()) } else { Need::Text(format!("{} day", days.abs())) };
            (text, Some(need))
        }
        "time" => {
            // "14:05:09" is stated as "14:05": the minutes are what a person reads.
            let time = result["time"].as_str()?;
            let short = time.get(..5).unwrap_or(time).to_owned();
            // "14:05" or "2:05" (pm): either way of reading the clock states it.
            let mut forms = vec![short.clone()];
            if let Some((h, m)) = short.split_once(':').and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m))) {
                forms.push(format!("{}:{m}", if h % 12 == 0 { 12 } else { h % 12 }));
            }
            (short, Some(Need::AnyOf(forms)))
        }
        "date" => {
            // "2025-12-25", "December 25" or "25 December": the ways a date is written.
            let iso = result["date"].as_str()?.to_owned();
            let mut forms = vec![iso.clone()];
            if let Ok(d) = chrono::NaiveDate::parse_from_str(&iso, "%Y-%m-%d") {
                forms.push(d.format("%B %-d").to_string());
                forms.push(d.format("%-d %B").to_string());
            }
            (iso, Some(Need::AnyOf(forms)))
        }
        field => {
            let value = match &result[field] {
                Value::String(s) => s.clone(),
                Value::Null => return None,
                other => other.to_string(),
            };
            (value.clone(), Some(Need::Text(value)))
        }
    };
    Some((text, if required { need } else { None }))
}

/// True when `answer` states what `need` asks for.
pub fn states(answer: &str, need: &Need) -> bool {
    let lower = answer.to_lowercase();
    match need {
        Need::Text(t) => lower.contains(&t.to_lowercase()),
        // Whole words: "1" is not stated by "510".
        Need::AnyOf(ts) => {
            let said = content_words(answer);
            ts.iter().any(|t| said.contains(&t.to_lowercase()))
        }
    }
}

const STOP: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "were", "be", "of", "in", "on", "at", "to", "for", "from", "with", "and", "or", "what", "who", "whom",
    "which", "where", "when", "how", "does", "do", "did", "me", "my", "i", "you", "your", "it", "its", "this", "that", "tell", "read", "file",
    "please", "there", "written", "whats", "by", "about",
];

fn content_words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '@' || c == '.' || c == ':' || c == '+'))
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_owned())
        // A lone letter ("s" of "dog's", "a") says nothing about what a line or a fact is about.
        .filter(|w| !STOP.contains(&w.as_str()) && (w.chars().count() >= 2 || w.chars().all(|c| c.is_ascii_digit())) && !w.is_empty())
        .collect()
}

/// A question answered by yes or no: it opens with an auxiliary verb ("does", "is", "can"…), after any request
/// to read ("Read notes.txt: does it …").
fn yes_no(question: &str) -> bool {
    const AUX: &[&str] = &["does", "do", "did", "is", "are", "was", "were", "can", "could", "has", "have", "had", "will", "would", "should"];
    // The last sentence or clause: after ": ", ". " or "; " (a file name's dot is not a sentence's end).
    let trimmed = question.trim();
    let start = [": ", ". ", "; "].iter().filter_map(|sep| trimmed.rfind(sep).map(|i| i + sep.len())).max().unwrap_or(0);
    let last = &trimmed[start..];
    last.split_whitespace().next().is_some_and(|w| AUX.contains(&w.to_lowercase().as_str()))
}

/// A word's stem for matching a question to a line: "lands" and "land", "amounts" and "amount".
fn stem(w: &str) -> &str {
    w.strip_suffix("ies").or_else(|| w.strip_suffix('s')).filter(|s| s.len() >= 3).unwrap_or(w)
}

/// The lines of `content` that share the most words with the question, each as shown (with a CSV header, a
/// matching row is shown as `column: value` pairs) and with its values alone (the cells, or what follows the key
/// of a `Key: value` line); the first lines when none shares any.
pub fn matching_lines(content: &str, question: &str) -> (Vec<(String, String)>, bool) {
    let asked: Vec<String> = content_words(question).iter().map(|w| stem(w).to_owned()).collect();
    let lines: Vec<&str> = content.lines().map(str::trim).filter(|l| !l.is_empty()).take(2000).collect();
    let header: Option<Vec<&str>> = lines.first().filter(|l| l.contains(',')).map(|l| l.split(',').map(str::trim).collect());
    let score = |line: &str| {
        let words: Vec<String> = content_words(line).iter().map(|w| stem(w).to_owned()).collect();
        asked.iter().filter(|a| words.contains(a)).count()
    };
    let body = || lines.iter().skip(usize::from(header.is_some()));
    let best = body().map(|l| score(l)).max().unwrap_or(0);
    let shown = |line: &str| match &header {
        Some(h) => {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if cells.len() == h.len() {
                (h.iter().zip(&cells).map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "), cells.join("\n"))
            } else {
                (line.to_owned(), line.to_owned())
            }
        }
        None => {
            let value = line.split_once(':').map(|(_, v)| v).filter(|v| !v.trim().is_empty()).unwrap_or(line);
            (line.to_owned(), value.trim().to_owned())
        }
    };
    if best == 0 {
        return (lines.iter().take(3).map(|l| shown(l)).collect(), false);
    }
    (body().filter(|l| score(l) == best).take(3).map(|l| shown(l)).collect(), true)
}

/// The words of `lines` that the question does not already hold: an answer drawn from the lines states one.
fn distinctive_words(lines: &str, question: &str) -> Vec<String> {
    let asked = content_words(question);
    let mut out: Vec<String> = Vec::new();
    for w in content_words(lines) {
        // A word a line shares with the question, or a short key word, is not evidence of having read the line.
        if !asked.iter().any(|a| stem(a) == stem(&w)) && w.len() >= 2 && !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// The name of the check that a chat answer to a question about the user states what the user told Keel.
pub const RECALLED_FACT: &str = "states the recalled fact";

/// For a question about the user (`interface::about_the_user`), the fact the user told Keel that answers it,
/// among `facts` (the user's own memories the run recalled): the one sharing the most of the question's words,
/// and at least half of them. Returns the plain answer ("You told me: your dog is called Pixel.") and what any
/// answer must state: every name, number or date of the fact the question does not hold, and one of its other
/// words.
pub fn recalled_fact(question: &str, facts: &[&str]) -> Option<(String, Vec<Need>)> {
    let asked: Vec<String> = content_words(question).iter().map(|w| stem(w).to_owned()).filter(|w| !PERSONAL.contains(&w.as_str())).collect();
    if asked.is_empty() {
        return None;
    }
    let shared = |fact: &str| {
        let words: Vec<String> = content_words(fact).iter().map(|w| stem(w).to_owned()).collect();
        asked.iter().filter(|a| words.contains(a)).count()
    };
    let scored: Vec<(&str, usize)> = facts.iter().map(|f| (*f, shared(f))).collect();
    let (best, n) = scored.iter().copied().max_by_key(|(_, n)| *n)?;
    // Two facts answering equally well: neither is the answer, and the model's reply stands.
    if n == 0 || n * 2 < asked.len() || scored.iter().filter(|(_, m)| *m == n).count() > 1 {
        return None;
    }
    let mut needs = Vec::new();
    let mut others = Vec::new();
    for (i, word) in best.split(|c: char| !(c.is_alphanumeric() || c == '-')).filter(|w| !w.is_empty()).enumerate() {
        let lower = word.to_lowercase();
        if STOP.contains(&lower.as_str()) || PERSONAL.contains(&lower.as_str()) || asked.iter().any(|a| a == stem(&lower)) {
            continue;
        }
        let key = word.chars().any(|c| c.is_ascii_digit()) || (i > 0 && word.chars().next().is_some_and(char::is_uppercase));
        if key {
            needs.push(Need::Text(word.to_owned()));
        } else {
            others.push(lower);
        }
    }
    if !others.is_empty() {
        needs.push(Need::AnyOf(others));
    }
    let told = best.trim().trim_end_matches('.');
    Some((format!("You told me: {}.", second_person(told)), needs))
}

/// Words of a question that say it is about the user, not what it asks.
const PERSONAL: &[&str] = &["am", "mine", "myself", "remember", "told", "said", "know", "do", "did", "called", "name"];

/// The user's own words turned to address them: "my dog" becomes "your dog", "I am" "you are".
pub fn second_person(text: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let swapped = match word.as_str() {
            "I" => "you",
            "my" => "your",
            "My" => "Your",
            "me" => "you",
            "mine" => "yours",
            "myself" => "yourself",
            "am" if out.trim_end().ends_with("you") => "are",
            "I'm" | "I’m" => "you're",
            "I've" | "I’ve" => "you've",
            "I'll" | "I’ll" => "you'll",
            "I'd" | "I’d" => "you'd",
            "was" if out.trim_end().ends_with("you") => "were",
            w => w,
        };
        out.push_str(swapped);
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() || c == '\'' || c == '’' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The numbers written in `text`, thousands separators removed and normalised (`1,200.50` is `1200.5`).
pub fn numbers(text: &str) -> Vec<Decimal> {
    let mut out = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, out: &mut Vec<Decimal>| {
        let cleaned: String = current.trim_end_matches(['.', ',']).chars().filter(|c| *c != ',').collect();
        if let Ok(d) = cleaned.parse::<Decimal>() {
            out.push(d.normalize());
        }
        current.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() || (!current.is_empty() && (c == '.' || c == ',')) {
            current.push(c);
        } else if !current.is_empty() {
            flush(&mut current, &mut out);
        }
    }
    flush(&mut current, &mut out);
    out
}

/// The calculator expression adding up a column of a CSV `content`: the column whose header is one of `words`
/// (singular or plural), or the only numeric column. `None` when no column is found or a cell is not a number.
pub fn sum_column(content: &str, words: &[String]) -> Option<(String, String)> {
    let mut lines = content.lines().map(str::trim).filter(|l| !l.is_empty());
    let header: Vec<String> = lines.next()?.split(',').map(|h| h.trim().trim_matches('"').to_lowercase()).collect();
    // A row that is itself a total ("Total,2335") would be counted twice.
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(|c| c.trim().trim_matches('"').to_owned()).collect::<Vec<_>>())
        .filter(|r| !r.first().is_some_and(|c| ["total", "sum", "grand total", "subtotal"].contains(&c.to_lowercase().as_str())))
        .collect();
    if rows.is_empty() || rows.len() > 500 || rows.iter().any(|r| r.len() != header.len()) {
        return None;
    }
    let number = |c: &str| c.parse::<Decimal>().ok();
    let numeric: Vec<usize> = (0..header.len()).filter(|&i| rows.iter().all(|r| number(&r[i]).is_some())).collect();
    let named = header.iter().position(|h| words.iter().any(|w| stem(w) == stem(h)));
    // The only numeric column stands in for an unnamed one only when the message named none ("the total in
    // expenses.csv"), not when it named one the file lacks ("the total number of rows").
    let column = match (named, numeric.as_slice()) {
        (Some(i), _) if numeric.contains(&i) => i,
        (None, [only]) if words.is_empty() => *only,
        _ => return None,
    };
    let cells: Vec<&str> = rows.iter().map(|r| r[column].as_str()).collect();
    let expression = cells.join(" + ");
    // The calculator takes at most 1,000 characters: a longer column is left to the model.
    (expression.len() <= 900).then(|| (header[column].clone(), expression))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_that_answer_a_question_are_found() {
        let order = "Order confirmation\nCustomer: Ada Moreau\nOrder number: 20811\nShipping to: Lisbon\n";
        assert_eq!(matching_lines(order, "What is the order number in order.txt?"), (vec![("Order number: 20811".into(), "20811".into())], true));
        assert!(!matching_lines(order, "Does order.txt mention a refund?").1, "no line is the answer");
        assert!(yes_no("Does order.txt mention a refund?") && yes_no("Read notes.txt: is it long?") && !yes_no("Read meeting.txt: who is it with?"));
        let contacts = "name,city,phone\nChen Wei,Porto,+1 555 97191\nLee Park,Seoul,+82 2 555 0101\n";
        let question = "Read contacts.csv and tell me which city Chen Wei lives in.";
        let (lines, _) = matching_lines(contacts, question);
        assert_eq!(lines, vec![("name: Chen Wei, city: Porto, phone: +1 555 97191".into(), "Chen Wei\nPorto\n+1 555 97191".into())]);
        let words = distinctive_words(&lines[0].1, question);
        assert_eq!(words, vec!["porto", "555", "97191"], "the column names and the question's own words are not evidence");
        let need = Need::AnyOf(words);
        assert!(states("Chen Wei lives in Porto.", &need));
        assert!(!states("Chen Wei, Singapore, +82 510 2338", &need), "a digit inside another number is not the value");
    }

    #[test]
    fn a_question_about_the_user_is_answered_from_what_they_said() {
        let facts = ["my dog is called Pixel", "my flight is on 14 March", "I prefer tea over coffee", "I play the cello"];
        let (plain, needs) = recalled_fact("What is my dog's name?", &facts).expect("the dog");
        assert_eq!(plain, "You told me: your dog is called Pixel.");
        assert!(needs.iter().all(|n| states("Your dog's name is Pixel.", n)), "{needs:?}");
        let (_, needs) = recalled_fact("When is my flight?", &facts).expect("the flight");
        assert!(!needs.iter().all(|n| states("Your flight is on 15 March.", n)), "a wrong day is not the fact: {needs:?}");
        assert!(needs.iter().all(|n| states("It is on 14 March.", n)));
        assert_eq!(recalled_fact("Which instrument do I play?", &facts).map(|(p, _)| p), Some("You told me: you play the cello.".into()));
        assert_eq!(recalled_fact("What is my dog's favourite food and bed?", &facts), None, "a weak match is not an answer");
        assert_eq!(recalled_fact("What is the capital of France?", &facts), None);
        assert_eq!(second_person("I am allergic to peanuts"), "you are allergic to peanuts");
        assert_eq!(second_person("my flight lands at 9 am"), "your flight lands at 9 am");
        assert_eq!(second_person("I’m allergic to cats"), "you're allergic to cats");
        let facts = ["my dog is called Pixel", "my dog's vet is Dr Smith"];
        assert_eq!(recalled_fact("What's my dog's name?", &facts), None, "two facts about the dog: neither is the answer");
    }

    #[test]
    fn a_column_is_added_by_its_name_or_as_the_only_number() {
        let csv = "item,amount\ntravel,403\npower,103\nrent,607\nphone,610\n";
        assert_eq!(sum_column(csv, &["amounts".into()]), Some(("amount".into(), "403 + 103 + 607 + 610".into())));
        assert_eq!(sum_column(csv, &[]), Some(("amount".into(), "403 + 103 + 607 + 610".into())), "the only numeric column, when none is named");
        assert_eq!(sum_column(csv, &["rows".into()]), None, "a named column the file lacks is not replaced by another");
        assert_eq!(sum_column(&format!("{csv}Total,1723\n"), &["amount".into()]), Some(("amount".into(), "403 + 103 + 607 + 610".into())));
        assert_eq!(sum_column(csv, &["item".into()]), None, "a column of words is not added");
        assert_eq!(sum_column("a,b\n1,2\n3,4\n", &[]), None, "two numeric columns and no name: not guessed");
    }
}
