//! The memory tools: search what Keel remembers and save a new fact, through a [`MemoryPort`].
//!
//! The tools layer knows nothing of the store or the memory layer's types: `App` implements the port over its
//! memory (hybrid retrieval with its threshold and budget, the item committed to SQLite before it is indexed).
//! What a tool saves carries the provenance the port is given, so a fact saved while a document was in the
//! context is not mistaken for something the user said.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{object_schema, CallContext, Effect, Origin, Tool, ToolError, ToolSpec};

/// One memory found by a search.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryHit {
    pub id: i64,
    pub kind: String,
    pub text: String,
    pub source: String,
    pub score: f32,
}

/// What the memory tools need from the memory layer.
pub trait MemoryPort: Send + Sync {
    fn search(&self, query: &str, limit: u32) -> Result<Vec<MemoryHit>, String>;
    /// Saves a fact; returns its id. Saving a fact already remembered word for word returns that one's id
    /// (the tool is declared idempotent on this promise).
    fn save(&self, text: &str) -> Result<i64, String>;
    /// True when the item exists and is not deleted (the verification pass checks cited memories with it).
    fn exists(&self, id: i64) -> bool;
}

pub struct MemorySearch {
    spec: ToolSpec,
    port: Arc<dyn MemoryPort>,
}

pub struct MemorySave {
    spec: ToolSpec,
    port: Arc<dyn MemoryPort>,
}

/// Both memory tools over one port.
pub fn memory_tools(port: Arc<dyn MemoryPort>) -> Vec<Arc<dyn Tool>> {
    let search = MemorySearch {
        spec: ToolSpec {
            name: "memory_search".into(),
            description: "Search what the user asked Keel to remember and their imported documents.".into(),
            input_schema: object_schema(
                json!({
                    "query": { "type": "string", "minLength": 1, "maxLength": 2000 },
                    "limit": { "type": "integer", "minimum": 1, "maximum": 20 }
                }),
                &["query"],
            ),
            output_schema: object_schema(
                json!({ "hits": { "type": "array", "items": object_schema(json!({
                    "id": { "type": "integer" },
                    "kind": { "type": "string" },
                    "text": { "type": "string" },
                    "source": { "type": "string" },
                    "score": { "type": "number" }
                }), &["id", "kind", "text", "source", "score"]) } }),
                &["hits"],
            ),
            effect: Effect::Read,
            timeout_ms: 10_000,
            idempotent: true,
            capability: Some("memory_search".into()),
            origin: Origin::Memory,
        },
        port: port.clone(),
    };
    let save = MemorySave {
        spec: ToolSpec {
            name: "memory_save".into(),
            description: "Save a fact the user wants remembered.".into(),
            input_schema: object_schema(json!({ "text": { "type": "string", "minLength": 1, "maxLength": 4000 } }), &["text"]),
            output_schema: object_schema(json!({ "id": { "type": "integer" } }), &["id"]),
            effect: Effect::Write,
            timeout_ms: 10_000,
            // The port returns a fact already remembered word for word instead of saving it twice.
            idempotent: true,
            capability: None,
            origin: Origin::Keel,
        },
        port,
    };
    vec![Arc::new(search), Arc::new(save)]
}

impl Tool for MemorySearch {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call(&self, args: &Value, _cx: &CallContext) -> Result<Value, ToolError> {
        let query = args["query"].as_str().unwrap_or_default();
        let limit = args["limit"].as_u64().unwrap_or(5) as u32;
        let hits = self.port.search(query, limit).map_err(|message| ToolError::Failed { tool: self.spec.name.clone(), message })?;
        let hits: Vec<Value> = hits
            .into_iter()
            .map(|h| json!({ "id": h.id, "kind": h.kind, "text": h.text, "source": h.source, "score": h.score }))
            .collect();
        Ok(json!({ "hits": hits }))
    }
}

impl Tool for MemorySave {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call(&self, args: &Value, _cx: &CallContext) -> Result<Value, ToolError> {
        let text = args["text"].as_str().unwrap_or_default();
        let id = self.port.save(text).map_err(|message| ToolError::Failed { tool: self.spec.name.clone(), message })?;
        Ok(json!({ "id": id }))
    }
}
