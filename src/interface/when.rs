//! Questions about dates and times that code can answer with the clock: the weekday of a date, the days until
//! or since a date, the time now in a city, and today's date.
//!
//! A message is claimed only when it is one such question and nothing else: the date is read by `chrono` from
//! the forms people write (2025-12-25, 25 December 2025, December 25th, 2025, 2025/12/25), exactly one date may
//! appear, and every other word must belong to the question's small vocabulary. "The 2025 plan", "what day
//! works for the meeting on 2025-12-25?" or "how many days did the trip last?" are left to the model.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::NaiveDate;

/// What the message asks about the calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateQuestion {
    /// "What day of the week is 2025-12-25?"
    Weekday(NaiveDate),
    /// "How many days until 2026-03-01?" (or since, for a past date).
    DaysUntil(NaiveDate),
    /// "What time is it in Tokyo?": the IANA zone.
    TimeIn(&'static str),
    /// "What is today's date?", "what day is it today?"
    Today,
    /// "What time is it?"
    TimeNow,
}

const MONTHS: [&str; 12] = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"];

/// The month a word names (full or three-letter, "sept" too).
fn month(word: &str) -> Option<u32> {
    let w = word.trim_end_matches('.');
    if w.len() < 3 {
        return None;
    }
    MONTHS.iter().position(|m| *m == w || (w.len() >= 3 && m.starts_with(w) && (w.len() == 3 || w == "sept"))).map(|i| i as u32 + 1)
}

/// A day of the month as written: 25, 25th, 1st, 2nd, 3rd.
fn day(word: &str) -> Option<u32> {
    let digits = word.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &word[digits.len()..];
    if !(suffix.is_empty() || ["st", "nd", "rd", "th"].contains(&suffix)) || digits.is_empty() || digits.len() > 2 {
        return None;
    }
    digits.parse().ok().filter(|d| (1..=31).contains(d))
}

fn year(word: &str) -> Option<i32> {
    (word.len() == 4 && word.bytes().all(|b| b.is_ascii_digit())).then(|| word.parse().ok()).flatten()
}

/// The words of the message, lower-cased, with the punctuation that does not belong to a date or a time removed.
fn words(message: &str) -> Vec<String> {
    let lower = message.to_lowercase().replace(['’', '‘'], "'");
    lower
        .split(|c: char| c.is_whitespace() || matches!(c, '?' | '!' | ',' | ';' | '(' | ')' | '"'))
        .map(|w| w.trim_end_matches(['.', ':']).trim_start_matches(['.', ':']))
        .filter(|w| !w.is_empty())
        .map(|w| w.strip_suffix("'s").map(|s| format!("{s}s")).unwrap_or_else(|| w.replace('\'', "")))
        .collect()
}

/// Finds the dates among `words` and replaces each with the marker `@date`. Returns the dates found; a word
/// that looks like a date but is not one (2025-02-30) makes the whole message unclaimed (`None`).
fn take_dates(words: &mut Vec<String>) -> Option<Vec<NaiveDate>> {
    let mut dates = Vec::new();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        // 2025-12-25 or 2025/12/25 (year first, never the ambiguous day/month orders).
        if w.len() >= 8 && w.as_bytes()[..4].iter().all(u8::is_ascii_digit) && matches!(w.as_bytes()[4], b'-' | b'/') {
            let parsed = NaiveDate::parse_from_str(&w.replace('/', "-"), "%Y-%m-%d").ok()?;
            dates.push(parsed);
            out.push("@date".into());
            i += 1;
            continue;
        }
        // 25 december 2025 / 25th of december 2025
        if let Some(d) = day(w) {
            let of = usize::from(words.get(i + 1).is_some_and(|x| x == "of"));
            if let (Some(m), Some(y)) = (words.get(i + 1 + of).and_then(|x| month(x)), words.get(i + 2 + of).and_then(|x| year(x))) {
                dates.push(NaiveDate::from_ymd_opt(y, m, d)?);
                out.push("@date".into());
                i += 3 + of;
                continue;
            }
        }
        // december 25 2025 / december 25th, 2025
        if let Some(m) = month(w) {
            if let (Some(d), Some(y)) = (words.get(i + 1).and_then(|x| day(x)), words.get(i + 2).and_then(|x| year(x))) {
                dates.push(NaiveDate::from_ymd_opt(y, m, d)?);
                out.push("@date".into());
                i += 3;
                continue;
            }
        }
        out.push(words[i].clone());
        i += 1;
    }
    *words = out;
    Some(dates)
}

/// Words that may surround any of the questions: politeness and the ways of asking.
const POLITE: &[&str] = &["please", "tell", "me", "can", "you", "could", "would", "hey", "hi", "ok", "okay", "quick", "question", "do", "know", "i", "want", "to", "thanks"];

fn only(words: &[String], allowed: &[&str]) -> bool {
    words.iter().all(|w| w == "@date" || allowed.contains(&w.as_str()) || POLITE.contains(&w.as_str()))
}

fn has(words: &[String], w: &str) -> bool {
    words.iter().any(|x| x == w)
}

/// The IANA zone of a city or zone name ("tokyo", "new york", "europe/paris", "utc").
pub fn zone(name: &str) -> Option<&'static str> {
    static ZONES: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    let zones = ZONES.get_or_init(|| {
        let mut map = HashMap::new();
        for tz in chrono_tz::TZ_VARIANTS {
            let full = tz.name();
            // Only the canonical region zones (Europe/Paris), not the legacy aliases (US/Eastern, Japan).
            const LEGACY: &[&str] = &["Etc/", "US/", "SystemV/", "Canada/", "Brazil/", "Mexico/", "Chile/"];
            if !full.contains('/') || LEGACY.iter().any(|p| full.starts_with(p)) {
                continue;
            }
            let city = full.rsplit('/').next().unwrap_or(full).replace('_', " ").to_lowercase();
            // The old region aliases (Australia/West, Australia/Victoria) name a region, not a city.
            const REGIONS: &[&str] = &[
                "north", "south", "east", "west", "central", "general", "continental", "eastern", "western", "pacific", "mountain",
                "atlantic", "victoria", "queensland", "tasmania", "nsw", "act", "lhi", "yancowinna", "canberra", "acre", "east-indiana",
                "indiana-starke", "michigan", "arizona", "hawaii", "alaska", "aleutian", "samoa", "yukon", "newfoundland", "saskatchewan",
            ];
            if REGIONS.contains(&city.as_str()) {
                continue;
            }
            map.entry(city).or_insert(full);
            map.insert(full.to_lowercase(), full);
        }
        map.insert("utc".into(), "UTC");
        map.insert("gmt".into(), "UTC");
        // Large cities that share a zone named after another city.
        for (city, zone) in [
            ("san francisco", "America/Los_Angeles"),
            ("seattle", "America/Los_Angeles"),
            ("boston", "America/New_York"),
            ("washington dc", "America/New_York"),
            ("san juan", "America/Puerto_Rico"),
            ("miami", "America/New_York"),
            ("atlanta", "America/New_York"),
            ("houston", "America/Chicago"),
            ("dallas", "America/Chicago"),
            ("montreal", "America/Toronto"),
            ("rio de janeiro", "America/Sao_Paulo"),
            ("são paulo", "America/Sao_Paulo"),
            ("beijing", "Asia/Shanghai"),
            ("shenzhen", "Asia/Shanghai"),
            ("mumbai", "Asia/Kolkata"),
            ("delhi", "Asia/Kolkata"),
            ("new delhi", "Asia/Kolkata"),
            ("bangalore", "Asia/Kolkata"),
            ("osaka", "Asia/Tokyo"),
            ("kyoto", "Asia/Tokyo"),
            ("tel aviv", "Asia/Jerusalem"),
            ("abu dhabi", "Asia/Dubai"),
            ("munich", "Europe/Berlin"),
            ("frankfurt", "Europe/Berlin"),
            ("hamburg", "Europe/Berlin"),
            ("barcelona", "Europe/Madrid"),
            ("milan", "Europe/Rome"),
            ("geneva", "Europe/Zurich"),
            ("edinburgh", "Europe/London"),
            ("manchester", "Europe/London"),
            ("st petersburg", "Europe/Moscow"),
            ("saint petersburg", "Europe/Moscow"),
        ] {
            map.insert(city.into(), zone);
        }
        map
    });
    zones.get(name.trim()).copied()
}

/// The calendar question the message asks, when it is one and nothing else.
pub fn question(message: &str) -> Option<DateQuestion> {
    let mut w = words(message);
    if w.len() > 24 {
        return None;
    }
    let dates = take_dates(&mut w)?;
    // The ways the questions are put, with "what's" already read as "whats".
    const WEEKDAY: &[&str] =
        &["what", "whats", "which", "day", "of", "the", "week", "is", "was", "will", "be", "does", "did", "fall", "falls", "on", "for", "weekday", "a", "it"];
    const UNTIL: &[&str] = &[
        "how", "many", "days", "are", "there", "is", "it", "until", "till", "til", "to", "left", "before", "away", "from", "now", "today", "remain",
        "remaining", "since", "ago", "has", "have", "been", "passed", "was", "the",
    ];
    const TODAY: &[&str] = &["what", "whats", "which", "is", "it", "today", "todays", "the", "date", "day", "of", "week", "current", "weekday"];
    const TIME: &[&str] = &["what", "whats", "is", "it", "the", "time", "now", "right", "currently", "current", "local"];
    match dates.as_slice() {
        [date] => {
            let asks_weekday = has(&w, "weekday") || (has(&w, "day") && (has(&w, "what") || has(&w, "whats") || has(&w, "which")));
            let asks_days = has(&w, "days") && has(&w, "how") && has(&w, "many");
            if asks_days && only(&w, UNTIL) && w.iter().any(|x| ["until", "till", "til", "to", "before", "since", "ago", "away", "left"].contains(&x.as_str())) {
                return Some(DateQuestion::DaysUntil(*date));
            }
            if asks_weekday && !asks_days && only(&w, WEEKDAY) {
                return Some(DateQuestion::Weekday(*date));
            }
            None
        }
        [] => {
            // "what time is it in tokyo": the words after the last "in" name the place.
            if let Some(at) = w.iter().rposition(|x| x == "in") {
                let mut tail = &w[at + 1..];
                while let [rest @ .., last] = tail {
                    if !["now", "right", "currently", "today", "please", "exactly", "then"].contains(&last.as_str()) {
                        break;
                    }
                    tail = rest;
                }
                let place = tail.join(" ");
                let head = &w[..at];
                if has(head, "time") && only(head, TIME) && !place.is_empty() {
                    return zone(&place).map(DateQuestion::TimeIn);
                }
                return None;
            }
            if has(&w, "time") && (has(&w, "what") || has(&w, "whats")) && only(&w, TIME) {
                return Some(DateQuestion::TimeNow);
            }
            let asks_day = has(&w, "date") || has(&w, "day") || has(&w, "weekday");
            let about_now = has(&w, "today") || has(&w, "todays") || has(&w, "it") || has(&w, "current");
            (asks_day && about_now && (has(&w, "what") || has(&w, "whats") || has(&w, "which") || has(&w, "todays")) && only(&w, TODAY))
                .then_some(DateQuestion::Today)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn weekday_questions_in_the_forms_people_write() {
        for (message, d) in [
            ("What day of the week is 2025-12-25?", "2025-12-25"),
            ("what day of the week was 25 December 2025", "2025-12-25"),
            ("Which day of the week is December 25th, 2025?", "2025-12-25"),
            ("What weekday is 2024/02/29?", "2024-02-29"),
            ("On what day of the week does 1 Jan 2030 fall?", "2030-01-01"),
            ("what's the day of the week for the 4th of July 2026", "2026-07-04"),
        ] {
            assert_eq!(question(message), Some(DateQuestion::Weekday(date(d))), "{message}");
        }
    }

    #[test]
    fn days_until_and_since() {
        assert_eq!(question("How many days until 2026-03-01?"), Some(DateQuestion::DaysUntil(date("2026-03-01"))));
        assert_eq!(question("how many days are left until 1 May 2027"), Some(DateQuestion::DaysUntil(date("2027-05-01"))));
        assert_eq!(question("How many days have passed since 2020-01-01?"), Some(DateQuestion::DaysUntil(date("2020-01-01"))));
    }

    #[test]
    fn time_in_a_city_and_today() {
        assert_eq!(question("What time is it now in Tokyo?"), Some(DateQuestion::TimeIn("Asia/Tokyo")));
        assert_eq!(question("what's the time in New York"), Some(DateQuestion::TimeIn("America/New_York")));
        assert_eq!(question("Current time in San Francisco?"), Some(DateQuestion::TimeIn("America/Los_Angeles")));
        assert_eq!(question("What is today's date?"), Some(DateQuestion::Today));
        assert_eq!(question("Which day of the week is it today?"), Some(DateQuestion::Today));
        assert_eq!(question("what time is it?"), Some(DateQuestion::TimeNow));
    }

    #[test]
    fn look_alikes_are_left_to_the_model() {
        for message in [
            "the 2025 plan",
            "What day works for the meeting on 2025-12-25?",
            "How many days did the trip last?",
            "What time is it in Narnia?",
            "What time does the shop open?",
            "Is 2025-02-30 a Monday?",
            "How many days between 2025-01-01 and 2025-03-01?",
            "What happened on 2001-09-11?",
            "My birthday is 2 June 1990, what day of the week should the party be?",
            "What is the date of the next election?",
            "Remind me what day the bins go out",
        ] {
            assert_eq!(question(message), None, "{message}");
        }
    }
}
