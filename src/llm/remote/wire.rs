//! The wire format of OpenAI-compatible Chat Completions: the streamed chunks as they arrive (every field
//! optional, since servers differ in what they send), an error body's message, and the JSON Schema forms a
//! server's structured output accepts.

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
pub(super) struct Chunk {
    #[serde(default)]
    pub(super) choices: Vec<ChoiceDelta>,
    #[serde(default)]
    pub(super) usage: Option<Usage>,
    #[serde(default)]
    pub(super) error: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct ChoiceDelta {
    #[serde(default)]
    pub(super) index: Option<u32>,
    #[serde(default)]
    pub(super) delta: Delta,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct Delta {
    #[serde(default)]
    pub(super) content: Option<String>,
    #[serde(default)]
    pub(super) tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
pub(super) struct ToolCallDelta {
    #[serde(default)]
    pub(super) index: Option<u32>,
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
pub(super) struct FunctionDelta {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) arguments: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
pub(super) struct Usage {
    #[serde(default)]
    pub(super) prompt_tokens: u32,
    #[serde(default)]
    pub(super) completion_tokens: u32,
}

/// The message of an OpenAI-style error body (`{"error": {"message": …}}`, `{"detail": …}`, or plain text).
pub(super) fn error_message(body: &Value) -> String {
    let text = match body {
        Value::String(s) => s.clone(),
        Value::Object(o) => match (o.get("error"), o.get("message"), o.get("detail")) {
            (Some(e), _, _) => return error_message(e),
            (_, Some(Value::String(m)), _) => m.clone(),
            (_, _, Some(d)) => match d {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            _ => body.to_string(),
        },
        other => other.to_string(),
    };
    let text = text.trim();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text.to_string()
    }
}

/// The schema without length bounds too large for a grammar (`maxLength` over 128, `maxItems` over 64): llama.cpp's
/// server already dies on `maxLength: 4000`.
pub(super) fn grammar_friendly(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, v)| match k.as_str() {
                    "maxLength" | "maxProperties" => v.as_u64().is_none_or(|n| n <= 128),
                    "maxItems" => v.as_u64().is_none_or(|n| n <= 64),
                    _ => true,
                })
                .map(|(k, v)| (k.clone(), grammar_friendly(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(grammar_friendly).collect()),
        other => other.clone(),
    }
}

/// The prompt-level fallback for servers without structured output: the schema stated, the reply validated by
/// the caller (who re-prompts once when it does not parse).
pub(super) fn schema_instruction(schema: &Value) -> String {
    format!("Reply with exactly one JSON value, and nothing else, that satisfies this JSON Schema:\n{schema}")
}
