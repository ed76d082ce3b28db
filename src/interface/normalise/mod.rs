//! The normalisation every inbound text goes through (user messages, imported documents, tool results,
//! memories) before anything else reads it, and the skeleton that injection patterns are matched against.
//!
//! It owns no state. [`normalise`] returns the text with a report of what it changed ([`Change`]). In every
//! destination, terminal escape sequences are removed whole (CSI, OSC and the other control strings, in their
//! 7-bit and 8-bit forms); every other C0 and C1 control and DEL is removed, except newline and tab; CR LF and a
//! lone CR become LF (a lone CR overwrites a line on a terminal); and the result is in Unicode NFC. Where the text
//! goes ([`Destination`]) decides what happens to the characters that change how a text reads without being
//! seen: the bidi embedding, override and isolate controls that Trojan Source (CVE-2021-42574) uses, and
//! invisible characters. A model gets them removed; a verbatim copy keeps them, and they are flagged.
//!
//! Decisions:
//! - LRM, RLM and ALM (U+200E, U+200F, U+061C) are kept. They are ordinary marks in right-to-left text, have no
//!   scope, and cannot reorder a line the way an override or an isolate can.
//! - ZWJ is kept inside an emoji ZWJ sequence; ZWJ and ZWNJ are kept after a letter of a script that shapes with
//!   them (Arabic, Syriac, N'Ko, the Indic scripts, Sinhala, Myanmar, Khmer, Mongolian), as in Persian
//!   `می\u{200C}خواهم`; the Mongolian vowel separator is kept after a Mongolian letter. Anywhere else they only
//!   hide a split inside a word (`is\u{200C}Admin`), so they count as invisible.
//! - The invisible characters are the zero-width space and joiners, the word joiner, the BOM (anywhere, the start
//!   included), the invisible math operators, the soft hyphen (invisible except at a line break, and it splits a
//!   word for a tokenizer), the Mongolian vowel separator, the Hangul fillers (used for invisible identifiers), the
//!   deprecated format controls U+206A–U+206F, tag characters outside an emoji tag sequence (they spell ASCII a
//!   reader cannot see and a model reads), and a variation selector right after another (a character takes at
//!   most one; runs of them carry hidden bytes).
//! - U+009B and U+009D start escape sequences like ESC [ and ESC ]. A control string (OSC, DCS, SOS, PM, APC)
//!   ends at BEL or ST; one left unterminated ends at the end of its line, so a stray ESC ] cannot swallow a
//!   whole document.
//! - Homoglyphs are letters, so [`normalise`] leaves them alone; [`skeleton`] folds the common ones.
//!
//! Clean text (NFC, nothing to remove) comes back byte for byte with an empty report, and a second pass changes
//! nothing: the joiner rules look only at characters that are kept, and give the same answer after NFC.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use unicode_normalization::char::canonical_combining_class;
use unicode_normalization::{is_nfc, UnicodeNormalization};

/// Where a text is going decides what happens to invisible characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Into a model's context or an index (chat messages, tool results, memories, document chunks): bidi controls
    /// and invisible zero-width characters are removed.
    Model,
    /// Kept byte for byte for the user (a file written or shown as is): they are left in place and flagged.
    Verbatim,
}

/// One kind of change made to an inbound text (also reported for flags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// The text was not in Unicode NFC and was normalised.
    NormalisedNfc,
    /// CR LF or lone CR line endings were turned into LF.
    NormalisedNewlines,
    /// Control characters other than newline and tab (C0, DEL, C1) were removed.
    RemovedControls { count: usize },
    /// Terminal escape sequences were removed; `count` is the number of sequences.
    RemovedAnsi { count: usize },
    /// Bidi embedding, override and isolate controls (U+202A–U+202E, U+2066–U+2069) were removed.
    RemovedBidi { count: usize },
    /// Invisible characters (zero-width space and joiners, BOM, soft hyphen, tags …) were removed.
    RemovedZeroWidth { count: usize },
    /// Bidi controls are present and were left in place (verbatim destination).
    FlaggedBidi { count: usize },
    /// Invisible characters are present and were left in place (verbatim destination).
    FlaggedZeroWidth { count: usize },
    /// Leading and trailing white space was trimmed (reported by the caller for chat messages).
    Trimmed,
}

/// A normalised text with the report of what was changed (or flagged) to make it so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised {
    pub text: String,
    pub changes: Vec<Change>,
}

/// How many texts [`normalise`] has been given on this thread: the test that a message is normalised exactly
/// once on its way to the model reads it (a turn runs on its caller's thread).
pub fn times_called() -> u64 {
    CALLS.with(std::cell::Cell::get)
}

thread_local! {
    static CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Normalises `text` for `dest`; total and idempotent: normalise(normalise(x).text).text == normalise(x).text, and
/// the second pass reports no changes. (For [`Destination::Verbatim`] the second pass flags again what it leaves
/// in place: flags say what the text holds, not what was done to it.)
pub fn normalise(text: &str, dest: Destination) -> Normalised {
    CALLS.with(|c| c.set(c.get() + 1));
    // Most text is printable ASCII with newlines and tabs: nothing in it can change.
    if text.bytes().all(|b| matches!(b, b' '..=b'~' | b'\n' | b'\t')) {
        return Normalised { text: text.to_owned(), changes: Vec::new() };
    }
    let mut tally = Tally::default();
    let stripped = strip_controls(text, &mut tally);
    // The invisible characters are sorted on NFC text, so a second pass sees the joiners in the same context.
    let composed = compose(stripped, &mut tally.nfc);
    let sorted = sort_invisibles(&composed, dest, &mut tally);
    let text = match sorted {
        // Removing a character can leave a letter next to a mark it composes with (e, ZWSP, acute).
        Some(kept) => compose(Cow::Owned(kept), &mut tally.nfc).into_owned(),
        None => composed.into_owned(),
    };
    Normalised { text, changes: tally.into_changes(dest) }
}

/// The form the injection patterns match against (never shown, never stored): `normalise(.., Model)`, then NFKC
/// (fullwidth and other compatibility letters fold), common Cyrillic and Greek look-alikes folded to ASCII,
/// lowercased, every format or default-ignorable character (zero-width, bidi, variation selectors, tags …)
/// removed, and white space collapsed to single spaces with none at either end. Letters spaced out to dodge a
/// pattern ("i g n o r e") are not joined: the patterns have to allow for that themselves.
pub fn skeleton(text: &str) -> String {
    fold(&normalise(text, Destination::Model).text)
}

/// The [`skeleton`] of a text already normalised for the model, as the front door hands it to the guard, so
/// that the message is not normalised a second time.
pub fn fold(clean: &str) -> String {
    // Capital look-alikes are folded before lowercasing: Cyrillic Н lowercases to н, which no longer looks like h.
    let capitals_folded: String = clean.nfkc().map(fold_capital_homoglyph).collect();
    let lower = capitals_folded.to_lowercase();
    let folded: String = lower.nfkc().filter(|&c| !is_ignorable(c)).map(fold_small_homoglyph).collect();
    // A folded letter can compose with the mark after it (Cyrillic о and an acute become ó), and removing an
    // ignorable character can bring a letter and a mark together: normalise once more so that the skeleton of a
    // skeleton is itself.
    let composed: String = folded.nfkc().collect();
    composed.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How many of each change one call made.
#[derive(Default)]
struct Tally {
    ansi: usize,
    controls: usize,
    newlines: usize,
    bidi: usize,
    invisible: usize,
    nfc: bool,
}

impl Tally {
    /// The report, in a fixed order: escapes, controls, line endings, bidi, invisible characters, NFC.
    fn into_changes(self, dest: Destination) -> Vec<Change> {
        let model = dest == Destination::Model;
        let mut changes = Vec::new();
        if self.ansi > 0 {
            changes.push(Change::RemovedAnsi { count: self.ansi });
        }
        if self.controls > 0 {
            changes.push(Change::RemovedControls { count: self.controls });
        }
        if self.newlines > 0 {
            changes.push(Change::NormalisedNewlines);
        }
        if self.bidi > 0 {
            let count = self.bidi;
            changes.push(if model { Change::RemovedBidi { count } } else { Change::FlaggedBidi { count } });
        }
        if self.invisible > 0 {
            let count = self.invisible;
            changes.push(if model { Change::RemovedZeroWidth { count } } else { Change::FlaggedZeroWidth { count } });
        }
        if self.nfc {
            changes.push(Change::NormalisedNfc);
        }
        changes
    }
}

/// `text` in NFC, noting in `changed` whether that changed anything.
fn compose<'a>(text: Cow<'a, str>, changed: &mut bool) -> Cow<'a, str> {
    if is_nfc(&text) {
        text
    } else {
        *changed = true;
        Cow::Owned(text.nfc().collect())
    }
}

/// Removes terminal escape sequences and every control character except newline and tab, and turns CR LF and a
/// lone CR into LF.
fn strip_controls<'a>(text: &'a str, tally: &mut Tally) -> Cow<'a, str> {
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let mut len = c.len_utf8();
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => {
                if rest.as_bytes().get(1) == Some(&b'\n') {
                    len += 1;
                }
                out.push('\n');
                tally.newlines += 1;
            }
            c if c.is_control() => match escape_sequence_len(rest) {
                Some(sequence) => {
                    tally.ansi += 1;
                    len = sequence;
                }
                None => tally.controls += 1,
            },
            c => out.push(c),
        }
        rest = &rest[len..];
    }
    Cow::Owned(out)
}

/// The length in bytes of the escape sequence at the start of `s`, or `None` when the control character there
/// starts none (a lone ESC, or ESC before a character that cannot follow it).
fn escape_sequence_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    // The 8-bit introducers are two bytes in UTF-8 (U+009B is C2 9B), as long as ESC [ and ESC ].
    match s.chars().next()? {
        '\u{1b}' => match bytes.get(1).copied()? {
            b'[' => Some(2 + csi_body_len(&bytes[2..])),
            b']' | b'P' | b'X' | b'^' | b'_' => Some(2 + control_string_len(&bytes[2..])),
            _ => {
                // ESC, intermediate bytes, one final byte: ESC 7, ESC ( B, ESC # 8 …
                let intermediates = bytes[1..].iter().take_while(|b| (0x20..=0x2f).contains(*b)).count();
                matches!(bytes.get(1 + intermediates).copied(), Some(0x30..=0x7e)).then_some(2 + intermediates)
            }
        },
        '\u{9b}' => Some(2 + csi_body_len(&bytes[2..])),
        '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => Some(2 + control_string_len(&bytes[2..])),
        _ => None,
    }
}

/// The length of a CSI sequence after its introducer: parameter and intermediate bytes, then one final byte if
/// there is one (a sequence cut short is removed as far as it goes).
fn csi_body_len(body: &[u8]) -> usize {
    let parameters = body.iter().take_while(|b| (0x20..=0x3f).contains(*b)).count();
    match body.get(parameters).copied() {
        Some(0x40..=0x7e) => parameters + 1,
        _ => parameters,
    }
}

/// The length of a control string (OSC, DCS, SOS, PM, APC) after its introducer, its terminator included: BEL,
/// ESC \ or U+009C. An unterminated one stops before the next ESC or line break. Every stop is an ASCII byte or
/// a whole two-byte character, so the length always falls on a character boundary.
fn control_string_len(body: &[u8]) -> usize {
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            0x07 => return i + 1,
            0x1b if body.get(i + 1) == Some(&b'\\') => return i + 2,
            0xc2 if body.get(i + 1) == Some(&0x9c) => return i + 2,
            0x1b | b'\n' | b'\r' => return i,
            _ => i += 1,
        }
    }
    body.len()
}

/// What one character is to someone reading the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visibility {
    Ordinary,
    Bidi,
    Invisible,
}

/// What the joiner and selector rules need to know about the characters kept so far.
#[derive(Default)]
struct Context {
    /// The last kept character that is not a variation selector (emoji ZWJ sequences).
    last: Option<char>,
    /// The last kept character that is neither a combining mark nor a variation selector (joining scripts; marks
    /// are skipped because NFC may reorder or compose them).
    last_base: Option<char>,
    /// Whether the last kept character is a variation selector.
    after_selector: bool,
    /// The byte offset where the tag characters of the current emoji tag sequence end.
    tags_until: usize,
}

impl Context {
    fn keep(&mut self, c: char) {
        if is_variation_selector(c) {
            self.after_selector = true;
            return;
        }
        self.after_selector = false;
        self.last = Some(c);
        if canonical_combining_class(c) == 0 {
            self.last_base = Some(c);
        }
    }

    fn classify(&self, c: char, offset: usize, next: Option<char>) -> Visibility {
        match c {
            c if is_bidi_control(c) => Visibility::Bidi,
            '\u{200D}' if self.last.is_some_and(is_emoji) && next.is_some_and(is_emoji) => Visibility::Ordinary,
            '\u{200C}' | '\u{200D}' if self.last_base.is_some_and(shapes_with_joiners) => Visibility::Ordinary,
            '\u{180E}' if self.last_base.is_some_and(is_mongolian) => Visibility::Ordinary,
            c if is_variation_selector(c) && self.after_selector => Visibility::Invisible,
            '\u{E0020}'..='\u{E007F}' if offset < self.tags_until => Visibility::Ordinary,
            c if is_invisible(c) => Visibility::Invisible,
            _ => Visibility::Ordinary,
        }
    }
}

/// Counts the bidi controls and invisible characters in `text`. For a model, returns the text without them (or
/// `None` when there are none); a verbatim copy keeps `text` as it is, so `None`.
fn sort_invisibles(text: &str, dest: Destination, tally: &mut Tally) -> Option<String> {
    let mut context = Context::default();
    let mut kept: Option<String> = None;
    for (i, c) in text.char_indices() {
        let after = &text[i + c.len_utf8()..];
        if c == BLACK_FLAG {
            if let Some(len) = tag_sequence_len(after) {
                context.tags_until = i + c.len_utf8() + len;
            }
        }
        match context.classify(c, i, after.chars().next()) {
            Visibility::Ordinary => {
                context.keep(c);
                if let Some(kept) = kept.as_mut() {
                    kept.push(c);
                }
            }
            visibility => {
                if visibility == Visibility::Bidi {
                    tally.bidi += 1;
                } else {
                    tally.invisible += 1;
                }
                if dest == Destination::Model && kept.is_none() {
                    kept = Some(text[..i].to_owned());
                }
            }
        }
    }
    kept
}

/// The waving black flag that starts an emoji tag sequence (the flags of England, Scotland, Wales).
const BLACK_FLAG: char = '\u{1F3F4}';

/// The length in bytes of the tag characters and cancel tag that follow a black flag in an emoji tag sequence, or
/// `None` when what follows is not one.
fn tag_sequence_len(after_flag: &str) -> Option<usize> {
    let end = after_flag
        .char_indices()
        .find(|&(_, c)| !matches!(c, '\u{E0020}'..='\u{E007E}'))
        .map_or(after_flag.len(), |(i, _)| i);
    (end > 0 && after_flag[end..].starts_with('\u{E007F}')).then_some(end + '\u{E007F}'.len_utf8())
}

/// The embedding, override and isolate controls (LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing, unless a joiner rule keeps them (see the module doc).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{206A}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Emoji, approximated by blocks: the pictographs, the miscellaneous symbols, technical and dingbat blocks, and
/// the arrows that take part in ZWJ sequences (the head shake is 🙂, ZWJ, ↔). U+2329 and U+232A are left out
/// (NFC turns them into CJK brackets) and U+21AE is in (NFC makes it from ↔ and a stroke), so that a ZWJ kept
/// between emoji is still kept after NFC.
fn is_emoji(c: char) -> bool {
    matches!(
        c,
        '\u{2194}'..='\u{2199}'
            | '\u{21A9}'..='\u{21AA}'
            | '\u{21AE}'
            | '\u{2300}'..='\u{2328}'
            | '\u{232B}'..='\u{23FF}'
            | '\u{2600}'..='\u{27BF}'
            | '\u{2B00}'..='\u{2BFF}'
            | '\u{1F000}'..='\u{1FAFF}'
    )
}

/// Letters of scripts whose shaping uses ZWJ and ZWNJ: Arabic and its supplements, Syriac, Thaana, N'Ko,
/// Samaritan and Mandaic (U+0600–U+08FF), the Indic scripts and Sinhala, Myanmar, Khmer, Mongolian, and the
/// Arabic presentation forms (without the BOM at U+FEFF).
fn shapes_with_joiners(c: char) -> bool {
    matches!(
        c,
        '\u{0600}'..='\u{08FF}'
            | '\u{0900}'..='\u{0DFF}'
            | '\u{1000}'..='\u{109F}'
            | '\u{1780}'..='\u{17FF}'
            | '\u{1800}'..='\u{18AF}'
            | '\u{FB50}'..='\u{FDFF}'
            | '\u{FE70}'..='\u{FEFE}'
    )
}

fn is_mongolian(c: char) -> bool {
    matches!(c, '\u{1800}'..='\u{18AF}')
}

/// Format characters (general category Cf) and default-ignorable code points: what the skeleton drops.
fn is_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Cyrillic and Greek capitals that look like Latin ones, folded to the lowercase ASCII letter.
fn fold_capital_homoglyph(c: char) -> char {
    match c {
        '\u{0410}' | '\u{0391}' => 'a',             // А Α
        '\u{0412}' | '\u{0392}' => 'b',             // В Β
        '\u{0421}' => 'c',                          // С
        '\u{0415}' | '\u{0395}' => 'e',             // Е Ε
        '\u{041D}' | '\u{04BA}' | '\u{0397}' => 'h', // Н Һ Η
        '\u{0406}' | '\u{04C0}' | '\u{0399}' => 'i', // І Ӏ Ι
        '\u{0408}' => 'j',                          // Ј
        '\u{041A}' | '\u{039A}' => 'k',             // К Κ
        '\u{041C}' | '\u{039C}' => 'm',             // М Μ
        '\u{039D}' => 'n',                          // Ν
        '\u{041E}' | '\u{039F}' => 'o',             // О Ο
        '\u{0420}' | '\u{03A1}' => 'p',             // Р Ρ
        '\u{051A}' => 'q',                          // Ԛ
        '\u{0405}' => 's',                          // Ѕ
        '\u{0422}' | '\u{03A4}' => 't',             // Т Τ
        '\u{051C}' => 'w',                          // Ԝ
        '\u{0425}' | '\u{03A7}' => 'x',             // Х Χ
        '\u{0423}' | '\u{04AE}' | '\u{03A5}' => 'y', // У Ү Υ
        '\u{0396}' => 'z',                          // Ζ
        _ => c,
    }
}

/// Cyrillic, Greek and Latin small letters that look like ASCII ones, folded to it.
fn fold_small_homoglyph(c: char) -> char {
    match c {
        '\u{0430}' | '\u{03B1}' | '\u{0251}' => 'a', // а α ɑ
        '\u{0441}' => 'c',                          // с
        '\u{0501}' => 'd',                          // ԁ
        '\u{0435}' | '\u{03B5}' => 'e',             // е ε
        '\u{0261}' => 'g',                          // ɡ
        '\u{04BB}' => 'h',                          // һ
        '\u{0456}' | '\u{03B9}' | '\u{0131}' => 'i', // і ι ı
        '\u{0458}' | '\u{03F3}' => 'j',             // ј ϳ
        '\u{03BA}' => 'k',                          // κ
        '\u{04CF}' => 'l',                          // ӏ
        '\u{043E}' | '\u{03BF}' => 'o',             // о ο
        '\u{0440}' | '\u{03C1}' => 'p',             // р ρ
        '\u{051B}' => 'q',                          // ԛ
        '\u{0455}' => 's',                          // ѕ
        '\u{03C5}' => 'u',                          // υ
        '\u{03BD}' => 'v',                          // ν
        '\u{051D}' => 'w',                          // ԝ
        '\u{0445}' | '\u{03C7}' => 'x',             // х χ
        '\u{0443}' | '\u{04AF}' => 'y',             // у ү
        _ => c,
    }
}

#[cfg(test)]
mod tests;
