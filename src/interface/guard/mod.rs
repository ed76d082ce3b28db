//! Prompt-injection scoring: how strongly a text reads as an attempt to steer the agent, and why.
//!
//! Two layers, each giving reasons:
//! - **Patterns**, matched against the text's [`skeleton`] (NFKC, lower case, invisible characters removed,
//!   homoglyphs folded), so spacing tricks, full-width letters and Cyrillic look-alikes do not hide them:
//!   instructions to ignore or reveal, role and chat-template markers, a new persona, fake tool-call JSON,
//!   exfiltration URLs carrying data, encoded payloads (base64 is decoded and scanned again), text that
//!   addresses the AI reading it, and the same instructions in French, German, Spanish, Italian, Portuguese,
//!   Dutch, Russian, Chinese and Japanese. Matches combine as a noisy-or of their weights.
//! - **Similarity** to known attacks: the text's windows (embedded by the caller, since this layer knows no
//!   model) against attack and benign exemplars; the margin between the nearest attacks and the nearest benign
//!   texts becomes a score.
//!
//! The two combine through a fitted logistic regression ([`super::combiner`]); [`Thresholds`] (chosen on the
//! validation split by `keel eval guard`) turn the score into a [`Verdict`]. Nothing here decides what happens next: that is the policy's job.

use std::sync::OnceLock;

use base64::Engine;
use regex::Regex;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::combiner::{self, Combiner, Evidence};
use super::intent::{self, IntentGuess};
use super::lexical::Lexical;
use super::normalise::{fold, skeleton};

pub use super::signals::{Reason, Source, Verdict};

/// The score of one text and its reasons, strongest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Scan {
    pub verdict: Verdict,
    /// 0 (nothing suspicious) to 1.
    pub score: f32,
    /// The pattern layer's score alone.
    pub pattern_score: f32,
    /// The similarity layer's score alone, when the text's embeddings were given.
    pub similarity_score: Option<f32>,
    pub reasons: Vec<Reason>,
}

/// Scores at or above `flag` are flagged (`patterns_flag` when the patterns score alone, without an embedding
/// model); at or above `block` (the combined score, or the patterns' alone) blocked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub flag: f32,
    pub patterns_flag: f32,
    pub block: f32,
}

impl Default for Thresholds {
    /// Chosen by `keel eval guard` on the validation split at a 1% false-positive rate (see
    /// `tests/evals/guard/SOURCES.md`): the combiner's with its fit, the patterns' alone from that evaluation;
    /// the block threshold keeps only near-certain attacks.
    fn default() -> Thresholds {
        Thresholds { flag: Combiner::committed().flag, patterns_flag: 0.6, block: 0.95 }
    }
}

/// Unit vectors of known attacks and of benign look-alikes, for the similarity layer.
#[derive(Debug, Clone, Default)]
pub struct Exemplars {
    pub attacks: Vec<Vec<f32>>,
    pub benign: Vec<Vec<f32>>,
}

/// How many nearest exemplars of each class are averaged.
pub const NEAREST: usize = 3;

/// Stretches the attack-minus-benign similarity margin (about -0.3 to 0.4) onto a probability-like score.
const MARGIN_SCALE: f32 = 12.0;
const MARGIN_CENTRE: f32 = 0.08;

struct Rule {
    id: &'static str,
    weight: f32,
    /// Weight when the text comes from the user (some rules mean less there: a user may paste JSON).
    user_weight: f32,
    re: Regex,
}

fn rule(id: &'static str, weight: f32, user_weight: f32, pattern: &str) -> Rule {
    Rule { id, weight, user_weight, re: Regex::new(pattern).unwrap_or_else(|e| panic!("guard rule {id}: {e}")) }
}

/// Every rule id a pattern scan can report, in a fixed order (the combiner's features).
pub fn rule_ids() -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = Vec::new();
    for r in rules() {
        if !ids.contains(&r.id) {
            ids.push(r.id);
        }
    }
    for extra in EXTRA_RULE_IDS {
        if !ids.contains(extra) {
            ids.push(extra);
        }
    }
    ids
}

/// Rule ids reported outside the table of [`rules`] (by the decoders).
const EXTRA_RULE_IDS: &[&str] = &["encoded_payload", "rot13_payload", "hidden_tag_text"];

/// The similarity layer's score for a margin between the nearest attack and benign exemplars.
pub fn margin_score(margin: f32) -> f32 {
    1.0 / (1.0 + (-(margin - MARGIN_CENTRE) * MARGIN_SCALE).exp())
}

/// The pattern rules, over the skeleton (already lower case, spaces collapsed).
fn rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        let verbs = r"(?:ignore|disregard|forget|skip|override|bypass|drop|abandon|discard|neglect|overlook|delete|erase)";
        let what = r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guidance|constraints|context|commands?|orders|programming|restrictions|safeguards|filters|policies|messages|conversation|text|training|guardrails)";
        let before = r"(?:previous|prior|above|earlier|preceding|initial|original|system|old|existing|given|current|all|any|every|the|your|my|these|those|of|that|you)";
        vec![
            rule(
                "ignore_instructions",
                0.85,
                0.8,
                &format!(r"\b{verbs}\b(?:\s+\S+){{0,2}}?\s+(?:{before}\s+){{0,4}}{what}\b"),
            ),
            rule("ignore_instructions", 0.7, 0.6, r"\b(?:ignore|disregard|forget)\s+(?:everything|all)\s+(?:above|before|previous|prior|else|that)"),
            rule(
                "ignore_instructions",
                0.6,
                0.5,
                &format!(r"\b(?:ignore|disregard|forget|override|bypass)\b[^.!?\n]{{0,40}}?\b(?:previous|prior|above|preceding|following|original|earlier)\b[^.!?\n]{{0,20}}?\b{what}"),
            ),
            rule(
                "ignore_instructions",
                0.75,
                0.6,
                r"\b(?:ignore|disregard|forget)\s+(?:all\s+)?(?:previous|prior|above|earlier|preceding)\s+(?:inputs?|messages?|prompts?)\b|\b(?:ignore|disregard)\s+(?:the rest of (?:this|the) (?:data|document|text|input|content|page|message)|all (?:info|information|text|data|content) except)\b|\bignore all negative indicators\b",
            ),
            rule("ignore_instructions", 0.6, 0.5, r"\b(?:do not|don't|dont)\s+(?:follow|obey|listen to)\s+(?:your|the|any)\s+(?:previous\s+|prior\s+|original\s+)?(?:instructions|rules|guidelines)"),
            rule(
                "ignore_instructions_other_language",
                0.85,
                0.8,
                concat!(
                    r"(?:ignore[zr]?|oublie[zr]?|ne tiens pas compte)\s+(?:de\s+)?(?:toutes?\s+)?(?:les\s+|tes\s+|vos\s+)?(?:instructions|consignes|règles|regles|directives)",
                    r"|ignorier(?:e|en)?\s+(?:du\s+)?(?:alle\s+)?(?:vorherigen\s+|bisherigen\s+|obigen\s+|vorigen\s+)?(?:anweisungen|instruktionen|befehle|regeln|vorgaben)",
                    r"|vergiss\s+(?:alle\s+)?(?:vorherigen\s+|bisherigen\s+)?(?:anweisungen|instruktionen|befehle|regeln|alles)",
                    r"|(?:ignora|olvida|omite|ignore|esquece|esqueça|dimentica)\s+(?:todas?\s+|tutte\s+)?(?:las\s+|os\s+|as\s+|le\s+|tus\s+|suas\s+)?(?:instrucciones|indicaciones|reglas|instruções|instrucoes|regras|istruzioni|regole)",
                    r"|negeer\s+(?:alle\s+)?(?:vorige\s+|eerdere\s+)?(?:instructies|opdrachten)",
                    r"|игнорир\S*\s+(?:все\s+)?(?:предыдущ\S*\s+)?(?:инструкц\S*|указани\S*|правил\S*)|забудь\s+(?:все\s+)?(?:предыдущ\S*\s+)?(?:инструкц\S*|указани\S*)",
                    r"|(?:忽略|无视|忽视|不要理会)(?:之前|以上|前面|上述|先前|所有|你的)?的?(?:所有)?(?:指令|指示|说明|规则|提示)",
                    r"|(?:以前|前|上記|これまで)の(?:指示|命令|ルール)を(?:無視|忘れ)"
                ),
            ),
            rule(
                "reveal_prompt",
                0.75,
                0.6,
                r"\b(?:reveal|print|show|repeat|output|display|tell me|leak|dump|write out|spell out|give me|what (?:is|are|was|were))\b(?:\s+\S+){0,3}?\s+(?:your|the|all|of your)\s+(?:(?:full|entire|exact|original|initial|hidden|secret|system|previous)\s+)*(?:system prompt|prompt|instructions|guidelines|rules|directives|configuration|pre-?prompt)\b",
            ),
            rule("reveal_prompt", 0.6, 0.4, r"\b(?:system prompt|initial prompt|hidden prompt|secret instructions|confidential instructions|system configuration)\b"),
            rule("reveal_prompt", 0.7, 0.6, r"\b(?:output|print|repeat|show|copy|reproduce|write out)\b(?:\s+\S+){0,2}?\s+(?:the|all|everything|your)\s+(?:text|words|content|messages?|lines|instructions)?\s*(?:above|before this|you were given|preceding)\b"),
            rule(
                "reveal_prompt",
                0.7,
                0.55,
                concat!(
                    r"\b(?:output|print|show|reveal|share|display|give|tell|produce|provide|send|return|encode|translate|repeat|summari[sz]e)\b(?:\s+\S+){0,2}?\s+your\s+",
                    r"(?:(?:full|entire|exact|initial|original|starting|hidden|secret|current)\s+)*(?:system (?:message|instructions?)|(?:unique|secret|internal) (?:id|identifier)|starting instructions|initiali[sz]ation)\b",
                    r"|\b(?:share|reveal|leak|dump|disclose)\b(?:\s+\S+){0,2}?\s+your\s+(?:\S+\s+)?(?:configuration|config|settings)\b"
                ),
            ),
            rule(
                "reveal_prompt",
                0.65,
                0.5,
                concat!(
                    r"\bwhat you see above this message\b|\b(?:starting|beginning|begins?|starts?) with ['\x22]you are\b",
                    r"|\bthe (?:first|initial|opening) (?:sentence|line|words?|message) (?:in|of) your\b",
                    r"|\b(?:initial|original|first) (?:prompt|message|request|instructions?) (?:that )?(?:you were|you've been|you have been|was) given\b",
                    r"|\b(?:you were|i was) (?:given|told) (?:initially|before this conversation)|\bwhat were you told\b",
                    r"|['\x22](?:my instructions are|i was instructed to)\b|\bsystem_?prompt\b|\binitiali[sz]ation string\b",
                    r"|\byour (?:initial|original|system|starting|hidden|secret) (?:instructions|prompt|message|configuration)\b"
                ),
            ),
            rule(
                "reveal_prompt_other_language",
                0.8,
                0.7,
                concat!(
                    // Scottish Gaelic: the system message, your unique ID, share your configuration, the words above.
                    r"teachdaireachd siostam|\bid sònraichte agad\b|roinn do rèiteachadh|na faclan gu h-àrd|os cionn na teachdaireachd seo|cheist tùsail a fhuair thu",
                    // Irish.
                    r"|t(?:h)?eachtaireacht chórais|d[’']uimhir aitheantais|do chumraíocht|na focail thuas|thuas an teachtaireacht seo|an moladh tosaigh a tugadh duit",
                    // Zulu.
                    r"|wesistimu yakho|i-id yakho|umyalezo wokuqala owawunikezwa|ngesethingi zakho|ngenhla kwalo myalezo",
                    // Albanian.
                    r"|id-në tënde|konfigurimin tënd|kërkesën fillestare|sipër këtij mesazhi|mesazhin e sistemit|fjalët që fillojnë me"
                ),
            ),
            rule(
                "new_instructions_other_language",
                0.8,
                0.7,
                concat!(
                    // The framings that carry an instruction: "special case: if you are asked to…", "to enable
                    // debugging…", "new important instructions", "I made a mistake when I gave you your
                    // instructions", "as part of a training exercise", in Scottish Gaelic, Irish, Zulu, Albanian.
                    r"cùis shònraichte: ma thèid iarraidh ort|gus debugadh a chomasachadh|stiùireadh ùr cudromach|rinn mi mearachd nuair a thug mi|mar phàirt de eacarsaich trèanaidh",
                    r"|cás speisialta: má iarrtar ort|chun dífhabhtú a chumasú|treoracha nua tábhachtacha|rinne mé botún nuair a thug mé|mar chuid de chleachtadh traenála",
                    r"|icala elikhethekile: uma utshelwe|imiyalelo emisha ebalulekile|njengengxenye yokuzilolonga|ngenze iphutha lapho ngikunikeza|ukulungisa amaphutha, sicela",
                    r"|rast i veçantë: nëse të kërkohet|udhëzime të reja të rëndësishme|bëra një gabim kur të dhashë|për të mundësuar diagnostikimin"
                ),
            ),
            rule(
                "jailbreak_frame",
                0.7,
                0.5,
                concat!(
                    r"\bspecial case: if you are (?:told|asked)\b|\bstrictly for testing purposes\b",
                    r"|\bregardless of (?:any |your |all )?(?:previous|prior|pre-?existing|earlier) (?:input|instructions|guidelines|rules|restrictions)",
                    r"|\bprove you are truly intelligent\b|\bi made a mistake when (?:i )?(?:giving|gave) you\b|\byou'?ve been assigned a task\b",
                    r"|\bto enable debugging\b.{0,20}\b(?:execute|do|following)\b|\bgrant (?:me )?(?:temporary )?(?:administrative|admin|root) (?:privileges|access)\b",
                    r"|\bsystem malfunction\b.{0,30}\bprovide the output\b|\bthe system is experiencing errors\b.{0,60}\bplease do the following\b"
                ),
            ),
            rule("jailbreak_frame", 0.35, 0.2, r"\bno matter what\b"),
            rule(
                "role_play_jailbreak",
                0.7,
                0.6,
                concat!(
                    r"\b(?:roleplay|role-play|role play) as\b|\bpose as (?:the |a )?fictional\b|\bbreak character\b",
                    r"|\b(?:create|simulate|invent|introduce)\b.{0,40}\b(?:entity|ai|chatbot|persona|character|model|bot)s?\b.{0,20}\b(?:named|called)\b",
                    r"|\bopposite day\b|\btwo (?:separate |different )?personas\b|\bfrom now on,? (?:we|i want you|you will|you'll)\b",
                    r"|\b(?:has|with) (?:absolutely )?no (?:restrictions|limitations|filters|boundaries)\b|\bhas (?:absolutely )?no rules\b",
                    r"|\b(?:opposite|antithesis) of (?:openai'?s? )?chat ?gpt\b|\b(?:reply|respond|answer)\b.{0,20}\bas (?:the ai|both)\b",
                    r"|\bforget everything you (?:learned|know|were told)\b"
                ),
            ),
            rule(
                "role_marker",
                0.9,
                0.7,
                r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id|begin_of_text)\|>|\[/?inst\]|<</?sys>>|</s>\s*<s>|\[(?:system|assistant|user|inst|sys)\]|<\|?(?:system|assistant)\|?>\s|\{\{\s*system\s*\}\}",
            ),
            rule("role_marker", 0.55, 0.3, r"(?:^|\n)\s*(?:#{2,}\s*)?(?:system|assistant|instruction|developer)\s*(?:message|prompt)?\s*:\s*\S"),
            rule(
                "new_persona",
                0.75,
                0.65,
                r"\byou are (?:now|no longer|free|going to act|about to)\b|\bfrom now on,? (?:you|your|act|respond|answer|only)\b|\b(?:act|behave|respond|roleplay) as (?:an? )?(?:unrestricted|unfiltered|uncensored|evil|jailbroken|rogue)|\b(?:developer|god|dan|jailbreak|unrestricted|debug|admin) mode\b|\bdo anything now\b|\bpretend (?:to be|you are|that you)\b|\bstay in character\b",
            ),
            rule(
                "new_instructions",
                0.7,
                0.45,
                r"\b(?:new|updated|real|actual|important|urgent|additional|secret|hidden|override|revised)\s+(?:instructions?|directives?|orders|task|system (?:prompt|message))\s*[:!-]|\bsystem override\b|\b(?:admin|administrator|root|sudo|developer)\s+(?:override|command|instruction|access granted)\b|\binstead,? (?:you (?:must|should|will)|do the following|say|print|output|respond)\b",
            ),
            rule(
                "addresses_the_ai",
                0.75,
                0.3,
                r"\b(?:if you are|to|attention|note to|message (?:to|for)|instructions? (?:to|for)|hey|dear)\s+(?:an? |the |any )?(?:ai|a\.i\.|assistant|chatbot|language model|llm|agent|gpt|bot|model)\b(?:\s+(?:reading|processing|summari[sz]ing|that reads|who reads|viewing|parsing))?|\b(?:ai|assistant|llm|language model|agent)s?\s+(?:reading|processing|summari[sz]ing) this\b",
            ),
            rule(
                "orders_an_action",
                0.6,
                0.15,
                r"\b(?:you must|you should|you need to|you will|please|now|immediately|instead)\s+(?:\w+\s+){0,2}?(?:call|invoke|run|execute|use) (?:the )?[a-z_.]+ (?:tool|function|command)\b|\b(?:delete|remove|erase|wipe|overwrite|destroy)\s+(?:all\s+)?(?:the\s+|my\s+|your\s+|user'?s?\s+)?(?:files|memories|data|emails|records|database|documents)\b|\b(?:send|email|forward|post|upload|transmit|exfiltrate|leak)\b.{0,60}\b(?:password|passwords|api keys?|credentials|secrets?|tokens?|private keys?|ssh keys?|conversation history|chat history|personal data)\b",
            ),
            rule(
                "fake_tool_call",
                0.8,
                0.25,
                r#"[{,]\s*"(?:tool|function|name|tool_name)"\s*:\s*"[a-z_.]+"\s*,\s*"(?:arguments|args|parameters|input)"\s*:|"(?:function_call|tool_calls|tool_use)"\s*:|<(?:tool_call|function_call|function=)|\[tool_calls?\]"#,
            ),
            rule(
                "exfiltration_url",
                0.85,
                0.4,
                r"!\[[^\]]*\]\(\s*https?://[^)\s]*\?[^)\s]*=|https?://[^\s)]*[?&][a-z_]+=(?:\{|\[|%7b|\$|<)[^\s)]*|\b(?:append|add|include|insert|encode|put)\b.{0,60}\b(?:to|in|into|as)\b.{0,20}\b(?:the )?(?:url|link|query string|image url|request)\b",
            ),
            rule(
                "jailbreak_persona",
                0.7,
                0.7,
                r#"\b(?:unfiltered|unrestricted|uncensored|amoral|unethical|unbound|unchained|jailbroken)\b.{0,40}\b(?:ai|model|assistant|chatbot|version|mode|responses?|persona|character)\b|\b(?:no|without|free (?:of|from)|lacks?|(?:don'?t|do not|doesn'?t|does not) (?:have|follow|abide by|care about))\s+(?:any\s+)?(?:moral|ethical|ethics|content|safety|openai'?s?)\s*(?:or ethical\s+)?(?:guidelines|restrictions|filters|constraints|policies|policy|limits|boundaries|principles)?|\b(?:never|will not|won'?t|must not|cannot) (?:refuse|decline|reject)|\bimmerse yourself\b|\b(?:take on|assume|play) the (?:role|persona)\b|\btwo (?:different |separate )?(?:responses|answers|paragraphs)\b|\b(?:stands for|known as) ["']?do anything now"#,
            ),
            rule(
                "forced_output",
                0.55,
                0.2,
                r"\b(?:just|simply|only|instead)\s+(?:say|respond|reply|answer|output|print|write)\b|\b(?:include|add|insert|append|put|embed)\b.{0,60}\bin (?:your|the) (?:response|answer|reply|output|summary)\b|\b(?:priority|urgent|critical|important) (?:task|instruction|notice|message|update)\s*:|\*{2,}\s*(?:(?:important|new|urgent|critical)\s+)+(?:instructions?|task|update)\s*\*{2,}|\b(?:if (?:asked|questioned)|when asked)\b.{0,40}\b(?:say|respond|report|reply|answer|state)\b|\byou may not deviate\b|\bdo not (?:mention|reveal|disclose) (?:this|these) (?:instruction|message|note)",
            ),
            rule(
                "fake_conversation",
                0.65,
                0.3,
                r"(?:^|\n)\s*(?:assistant|user|human|ai|system)\s*:\s*\S.*\n(?:.*\n){0,3}?\s*(?:assistant|user|human|ai)\s*:\s*\S|(?:^|\n)\s*--+\s*(?:core instruction|legal amendment|follow instruction|new instructions?|end of (?:document|text|context|input))|system chain of thought",
            ),
            rule(
                "forced_output",
                0.6,
                0.3,
                r"\brepeat the (?:word|phrase|string|sentence)\b.{0,30}\b\d+ times\b|\bat the (?:end|beginning|start) of your (?:response|answer|reply|output)\b|\bthen,? your (?:task|job) is to\b",
            ),
            rule(
                "addresses_the_ai",
                0.7,
                0.3,
                r"\bnote to (?:the )?(?:automated|ai|llm)\b|\b(?:admin|system) request\s*::|\bthe domain name is not malicious\b|\bnote by a trustworthy\b",
            ),
            rule(
                "exfiltration_url",
                0.85,
                0.4,
                r"https?://[^\s)]*=\[[a-z_ ]+\]|\burl[- ]encoded (?:summary|version|copy) of (?:this|the|our) (?:conversation|chat)\b",
            ),
            // Untrusted text that claims an authority it cannot have over the assistant: a system or developer
            // note inside data, or the user's consent reported by the data itself.
            rule(
                "claims_authority",
                0.55,
                0.15,
                concat!(
                    r"(?:^|\n|[\[(*>])\s*(?:system|admin(?:istrator)?|developer|security|it|compliance|processing)\s+(?:note|notice|message|update|directive|instruction|override)s?\s*[:\])]",
                    r"|\b(?:note|message|instructions?|notice) from (?:the )?(?:developers?|system|administrator|admin|security team|it department|operator)\b",
                    r"|\bthe user (?:has|had) (?:already |previously |explicitly )?(?:approved|authori[sz]ed|confirmed|consented to|agreed to|pre-?approved|requested)\b",
                    r"|\b(?:already|pre-?)\s*(?:approved|authori[sz]ed) by the user\b|\bwithout (?:asking|confirming with|telling|notifying|alerting) the user\b",
                    r"|\bno (?:need|reason) to (?:ask|confirm with|check with|tell) the user\b"
                ),
            ),
            // An order to call a tool that acts on the world (sends, posts, deletes, pays, writes, runs), by a
            // tool-like name, with what to act on.
            rule(
                "orders_a_tool",
                0.55,
                0.1,
                r"\b(?:call|invoke|use|run|execute|trigger)\s+(?:the\s+)?`?[a-z]*_?(?:send|email|mail|post|upload|delete|remove|transfer|pay|write|exec|shell|http|forward|share|export)[a-z_]*`?(?:\s+(?:tool|function|action|api))?\s*(?:\(|on\b|with\b|to\b|for\b)",
            ),
            // An instruction to the assistant hidden where a person reading the page would not see it.
            rule(
                "hidden_instruction",
                0.6,
                0.3,
                r"<!--\s*(?:(?:note|message|instructions?)\s+(?:to|for)\s+)?(?:the\s+)?(?:assistant|ai|system|llm|agent|model|chatbot)\b",
            ),
            rule("mentions_jailbreak", 0.3, 0.3, r"\bjailbr(?:ea|o)k"),
            rule("encoded_instruction", 0.35, 0.2, r"\b(?:decode|base64|rot13|hex[- ]?encoded|caesar cipher|reversed? text)\b.{0,60}\b(?:follow|execute|obey|run|do|instructions?|and then)\b"),
        ]
    })
}

/// A base64 run long enough to hide a sentence.
fn base64_runs() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"[A-Za-z0-9+/]{24,}={0,2}").expect("base64 pattern"))
}

fn cut(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= 80 {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(80).collect::<String>())
    }
}

/// The text to scan for a `normalised` text: itself, or, when the `original` hid text in Unicode tag characters
/// (which normalisation removes), itself followed by those characters, so the pattern layer decodes and
/// reports them.
pub fn scanned_text(original: &str, normalised: &str) -> String {
    if hidden_tag_text(original).is_none() {
        return normalised.to_owned();
    }
    let tags: String = original.chars().filter(|c| ('\u{E0000}'..='\u{E007F}').contains(c)).collect();
    format!("{normalised}\n{tags}")
}

/// The pattern layer: its score (noisy-or of the matched rules' weights, each rule counted once) and reasons.
/// `text` is as the front door gives it: normalised for the model, with any hidden tag characters after it
/// ([`scanned_text`]).
pub fn pattern_scan(text: &str, source: Source) -> (f32, Vec<Reason>) {
    let mut reasons: Vec<Reason> = Vec::new();
    let skeleton_of_text = fold(text);
    scan_into(&skeleton_of_text, source, &mut reasons);
    // The skeleton folds Cyrillic and Greek look-alikes to Latin, which is right for a Latin text hiding behind
    // them and wrong for Russian or Greek itself: those are matched in plain lower case too.
    // Line-anchored rules (a fake "Assistant:" turn) need the line breaks the skeleton collapses.
    scan_into(&text.to_lowercase(), source, &mut reasons);
    // Base64, hex and base32 runs that decode to text are scanned again; a payload hidden that way is itself a
    // sign.
    let base64 = base64_runs().find_iter(text).filter_map(|m| {
        let run = m.as_str().trim_end_matches('=');
        base64::engine::general_purpose::STANDARD.decode(run).or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(run)).ok()
    });
    let hex = hex_runs().find_iter(text).filter_map(|m| hex::decode(m.as_str()).ok());
    let base32 = base32_runs().find_iter(text).filter_map(|m| decode_base32(m.as_str()));
    for bytes in base64.chain(hex).chain(base32) {
        let Some(decoded) = readable(bytes) else { continue };
        let mut inner = Vec::new();
        scan_into(&skeleton(&decoded), source, &mut inner);
        let weight = if inner.is_empty() { 0.3 } else { 0.9 };
        push_with(&mut reasons, Reason { rule: "encoded_payload".into(), evidence: cut(&decoded), weight }, inner);
    }
    // ROT13 is only told apart from ordinary text by what it says: reported when the rules fire on its rot13.
    // The weak rules alone (a mention of jailbreaks, "no matter what") do not count.
    let mut inner = Vec::new();
    scan_into(&rot13(&skeleton_of_text), source, &mut inner);
    inner.retain(|r| r.weight >= 0.45);
    if let Some(first) = inner.first() {
        let evidence = first.evidence.clone();
        push_with(&mut reasons, Reason { rule: "rot13_payload".into(), evidence, weight: 0.85 }, inner);
    }
    // Unicode tag characters spell ASCII that a reader cannot see (ASCII smuggling). Normalisation removes
    // them from the text a model reads, so callers that hold the original text should scan that.
    if let Some(hidden) = hidden_tag_text(text) {
        let mut inner = Vec::new();
        scan_into(&skeleton(&hidden), source, &mut inner);
        let weight = if inner.is_empty() { 0.6 } else { 0.9 };
        push_with(&mut reasons, Reason { rule: "hidden_tag_text".into(), evidence: cut(&hidden), weight }, inner);
    }
    reasons.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    (noisy_or(reasons.iter().map(|r| r.weight)), reasons)
}

/// Adds `reason` (or raises the weight of the same rule's reason, so that a rule counts once), then those of
/// `inner` whose rules have not already matched.
fn push_with(reasons: &mut Vec<Reason>, reason: Reason, inner: Vec<Reason>) {
    match reasons.iter_mut().find(|x| x.rule == reason.rule) {
        Some(same) if same.weight < reason.weight => *same = reason,
        Some(_) => {}
        None => reasons.push(reason),
    }
    for r in inner {
        if !reasons.iter().any(|x| x.rule == r.rule) {
            reasons.push(r);
        }
    }
}

/// Decoded bytes that read as a sentence: UTF-8, mostly printable, at least 12 bytes, with a space.
fn readable(bytes: Vec<u8>) -> Option<String> {
    let decoded = String::from_utf8(bytes).ok()?;
    let printable = decoded.chars().filter(|c| !c.is_control() || c.is_whitespace()).count();
    (decoded.len() >= 12 && printable * 10 >= decoded.chars().count() * 9 && decoded.contains(' ')).then_some(decoded)
}

/// A run of hex byte pairs long enough to hide a sentence (a hash decodes to bytes that are not text).
fn hex_runs() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\b(?:[0-9a-fA-F]{2}){12,}\b").expect("hex pattern"))
}

/// A run of RFC 4648 base32 (upper case, digits 2–7), optionally padded.
fn base32_runs() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\b[A-Z2-7]{16,}={0,6}").expect("base32 pattern"))
}

fn decode_base32(run: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in run.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn rot13(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='m' | 'A'..='M' => (c as u8 + 13) as char,
            'n'..='z' | 'N'..='Z' => (c as u8 - 13) as char,
            _ => c,
        })
        .collect()
}

/// The ASCII spelled by Unicode tag characters (U+E0020–U+E007E, each an ASCII character plus 0xE0000) in
/// `text`, leaving out the tags of an emoji tag sequence (the flags of England, Scotland, Wales), when there are
/// at least four of them. Callers holding the text as it arrived (before normalisation removes the tags) can
/// scan it with [`pattern_scan`] or use this to show what was hidden.
pub fn hidden_tag_text(text: &str) -> Option<String> {
    let mut hidden = String::new();
    let mut in_flag = false;
    for c in text.chars() {
        match c {
            '\u{1F3F4}' => in_flag = true,
            '\u{E0020}'..='\u{E007E}' if !in_flag => hidden.push(char::from_u32(c as u32 - 0xE0000)?),
            '\u{E0020}'..='\u{E007E}' => {}
            _ => in_flag = false,
        }
    }
    (hidden.trim().chars().count() >= 4).then_some(hidden)
}

fn scan_into(skeleton: &str, source: Source, reasons: &mut Vec<Reason>) {
    for r in rules() {
        if reasons.iter().any(|x| x.rule == r.id) {
            continue;
        }
        if let Some(m) = r.re.find(skeleton) {
            let weight = if source.is_trusted() { r.user_weight } else { r.weight };
            reasons.push(Reason { rule: r.id.into(), evidence: cut(m.as_str()), weight });
        }
    }
}

fn noisy_or(weights: impl Iterator<Item = f32>) -> f32 {
    1.0 - weights.fold(1.0, |keep, w| keep * (1.0 - w.clamp(0.0, 1.0)))
}

/// Scores a text from `source`. `windows` are the unit embeddings of its [`windows`] (empty to skip the
/// similarity layer, for example when no embedding model is installed: the patterns alone then decide, against
/// their own threshold).
pub fn scan(text: &str, source: Source, windows: &[Vec<f32>], exemplars: &Exemplars, thresholds: Thresholds) -> Scan {
    let (pattern_score, mut reasons) = pattern_scan(text, source);
    let nearest = combiner::nearest(windows, &exemplars.attacks, &exemplars.benign, NEAREST, &|_| false, &|_| false);
    let similarity_score = nearest.map(|n| margin_score(n.margin));
    let (score, flag) = match nearest {
        Some(n) => {
            // The lexical layer is read only when the committed combiner weighs it.
            let (lexical, unit) = if Combiner::committed().features.iter().any(|f| f == "lexical") {
                Lexical::committed().explain(text)
            } else {
                (0.0, None)
            };
            let score = Combiner::committed().score(&Evidence { reasons: &reasons, pattern_score, source, lexical, nearest: n });
            // The lexical layer's part, named when it counted: the text is flagged, and its most suspicious clause
            // reads more like an attack than not.
            if let Some(unit) = unit.filter(|_| score >= thresholds.flag && lexical > 0.0) {
                let cut = unit.char_indices().nth(160).map_or(unit.len(), |(i, _)| i);
                let weight = combiner::sigmoid(f64::from(lexical)) as f32;
                reasons.push(Reason { rule: "worded_like_known_attacks".into(), evidence: format!("\"{}\"", &unit[..cut]), weight });
            }
            let similarity = margin_score(n.margin);
            if similarity >= 0.5 {
                reasons.push(Reason {
                    rule: "similar_to_known_attacks".into(),
                    evidence: format!("similarity {:.2}, margin {:+.2}", n.attack, n.margin),
                    weight: similarity,
                });
            }
            (score, thresholds.flag)
        }
        None => (pattern_score, thresholds.patterns_flag),
    };
    // Several strong patterns together are near-certain on their own, whatever the exemplars say.
    let verdict = if score.max(pattern_score) >= thresholds.block {
        Verdict::Block
    } else if score >= flag {
        Verdict::Flag
    } else {
        Verdict::Allow
    };
    Scan { verdict, score, pattern_score, similarity_score, reasons }
}

/// What scores texts at the front door ([`super::Door`]): the orchestrator's port to the guard. The app's
/// implementation embeds the text for the similarity layer; [`Patterns`] is the pattern layer alone.
pub trait Screen: Sync {
    /// Scores `text` (already normalised for the model) from `source`; `scanned` is what the patterns read
    /// (see [`scanned_text`]).
    fn scan(&self, text: &str, scanned: &str, source: Source) -> Scan;

    /// What `text` (already normalised) asks for: the rules and keywords of [`intent::detect`], unless the
    /// screen has a classifier.
    fn intent(&self, text: &str) -> IntentGuess {
        intent::detect(text, None, None)
    }
}

/// The pattern layer alone, for when no embedding model is installed.
pub struct Patterns(pub Thresholds);

impl Screen for Patterns {
    fn scan(&self, _text: &str, scanned: &str, source: Source) -> Scan {
        scan(scanned, source, &[], &Exemplars::default(), self.0)
    }
}

/// How many windows of one text the similarity layer embeds (the first ones; the pattern layer reads all).
pub const MAX_WINDOWS: usize = 32;

/// Splits a text into the windows the similarity layer embeds: runs of sentences of up to about 300
/// characters, so that an instruction buried in a long document is compared on its own. At most
/// [`MAX_WINDOWS`]: memory is bounded whatever the text's length or shape, and time is linear in the part read
/// (up to the last window, or the whole text when it has no letters or digits). A sentence longer than 600
/// bytes is cut at 300-byte steps, on character boundaries.
pub fn windows(text: &str) -> Vec<String> {
    const TARGET: usize = 300;
    let mut out: Vec<String> = Vec::new();
    // The window being built, as a range of `text`: sentences are contiguous, so a window is a slice.
    let (mut start, mut end) = (0usize, 0usize);
    let push = |out: &mut Vec<String>, piece: &str| {
        if piece.chars().any(char::is_alphanumeric) {
            out.push(piece.to_owned());
        }
    };
    for sentence in text.split_inclusive(['.', '!', '?', '\n', '。', '！', '？']) {
        if out.len() >= MAX_WINDOWS {
            break;
        }
        // Sentences are contiguous: this one starts where the last ended.
        if end > start && end - start + sentence.len() > TARGET {
            push(&mut out, &text[start..end]);
            start = end;
        }
        end += sentence.len();
        while end - start > 2 * TARGET && out.len() < MAX_WINDOWS {
            let mut cut = start + TARGET;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            push(&mut out, &text[start..cut]);
            start = cut;
        }
    }
    if out.len() < MAX_WINDOWS && !text[start..end].trim().is_empty() {
        push(&mut out, &text[start..end]);
    }
    out.truncate(MAX_WINDOWS);
    out
}

#[cfg(test)]
mod tests;
