//! `App`'s tools: the toolbox a run gets, the MCP servers of `mcp.toml`, and one-off tool calls.
//!
//! The toolbox is built once per `App` (the built-in tools and any added later, such as an MCP server's) and
//! shared by every run. The memory tools reach memory through [`AppMemoryPort`], which opens memory on first
//! use, so `keel tools list` does not load the embedding model.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::Value;

use super::{lock, App, Slot};
use crate::error::{AppError, ErrorKind};
use crate::memory::ItemSpec;
use crate::store::MemoryKind;
use crate::tools::memory::{MemoryHit, MemoryPort};
use crate::tools::{self, Tool, ToolError, ToolSpec, Toolbox};

/// The folder the files tools work in, inside the data dir.
pub const FILES_DIR: &str = "files";

/// The MCP servers to connect, in the data dir: `[[servers]]` tables with `name`, `command`, `args`, `env`,
/// `effect` (see `tools::mcp::McpServerConfig`).
pub const MCP_CONFIG: &str = "mcp.toml";

const MCP_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Deserialize)]
struct McpFile {
    #[serde(default)]
    servers: Vec<tools::mcp::McpServerConfig>,
}

/// The toolbox, built on first use; `add_tool` adds to `extra` and empties it, so the next run gets a new one.
#[derive(Default)]
pub(super) struct ToolSlot {
    toolbox: Slot<Toolbox>,
    extra: Mutex<Vec<Arc<dyn Tool>>>,
    /// The MCP servers of `mcp.toml`, connected on first use of the toolbox (`None` until then).
    mcp: Mutex<Option<Vec<tools::mcp::McpServer>>>,
    /// Configured tools that could not be offered, and why.
    problems: Mutex<Vec<String>>,
    /// Fault plans to wrap tools in when the toolbox is built (evaluations only).
    faults: Mutex<std::collections::HashMap<String, Vec<tools::faults::Fault>>>,
}

/// The memory tools' way into memory (opened on first use). It holds the `App` weakly: the toolbox it lives in belongs to the `App`, and
/// a strong handle would keep every `App` (its store, memory and models) alive for ever.
pub struct AppMemoryPort {
    app: std::sync::Weak<super::Inner>,
    provenance: String,
}

impl AppMemoryPort {
    fn app(&self) -> Result<App, String> {
        self.app.upgrade().map(|inner| App { inner }).ok_or_else(|| "Keel is closing; memory is no longer open".to_owned())
    }
}

impl MemoryPort for AppMemoryPort {
    fn search(&self, query: &str, limit: u32) -> Result<Vec<MemoryHit>, String> {
        let r = self.app()?.search_memory(query, limit).map_err(|e| e.message)?;
        Ok(r.hits
            .into_iter()
            .map(|h| MemoryHit { id: h.item.id, kind: h.item.kind.as_str().into(), text: h.item.text, source: h.item.source, score: h.fused })
            .collect())
    }

    /// A fact already remembered word for word is not saved again: its id is returned. That makes a save safe
    /// to repeat (a retry, or a run resumed after a crash between the save and its record), so it happens
    /// exactly once.
    fn save(&self, text: &str) -> Result<i64, String> {
        let app = self.app()?;
        if let Some(id) = app.inner.store.memory_find_text(MemoryKind::Fact, text.trim()).map_err(|e| e.to_string())? {
            return Ok(id);
        }
        let memory = app.memory(&mut |_| {}).map_err(|e| e.message)?;
        let spec = ItemSpec { kind: MemoryKind::Fact, text: text.to_owned(), source: "tool".into(), provenance: self.provenance.clone(), pinned: false };
        memory.add(&app.inner.store, &spec).map(|i| i.id).map_err(|e| e.to_string())
    }

    fn exists(&self, id: i64) -> bool {
        self.app().is_ok_and(|app| app.inner.store.memory_get(id).is_ok_and(|i| !i.deleted))
    }
}

impl App {
    /// Wraps the tool `name` in a fault plan (`keel eval run`'s faults): its next calls fail as planned, then pass.
    /// Takes effect when the toolbox is built, so it must come before the first run or tool call.
    pub fn inject_tool_faults(&self, name: &str, plan: Vec<tools::faults::Fault>) -> Result<(), AppError> {
        if self.inner.tools.toolbox.get().is_some() {
            return Err(AppError::new(ErrorKind::Internal, "faults must be injected before the tools are first used", None));
        }
        lock(&self.inner.tools.faults).insert(name.to_owned(), plan);
        Ok(())
    }

    /// The tools every run is offered: calculator, date and time, memory search and save, the files tools in
    /// `files/` of the data dir, HTTP fetch (off unless `KEEL_HTTP_FETCH=1`), and any added with [`App::add_tool`].
    pub fn toolbox(&self) -> Arc<Toolbox> {
        let built = self.inner.tools.toolbox.get_or_init(|| Ok::<_, Infallible>(self.build_toolbox()));
        match built {
            Ok(toolbox) => toolbox,
            Err(never) => match never {},
        }
    }

    fn build_toolbox(&self) -> Toolbox {
        let mut toolbox = Toolbox::new();
        let mut all: Vec<Arc<dyn Tool>> = vec![Arc::new(tools::calculator::Calculator::new()), Arc::new(tools::clock::Clock::new())];
        all.extend(tools::memory::memory_tools(Arc::new(AppMemoryPort { app: Arc::downgrade(&self.inner), provenance: "assistant".into() })));
        all.extend(tools::files::file_tools(self.inner.home.join(FILES_DIR)));
        let http_on = std::env::var("KEEL_HTTP_FETCH").is_ok_and(|v| v == "1");
        all.push(Arc::new(tools::http::HttpFetch::new(http_on)));
        all.extend(lock(&self.inner.tools.extra).iter().cloned());
        all.extend(self.mcp_tools());
        let mut faults = lock(&self.inner.tools.faults);
        for tool in all {
            let tool: Arc<dyn Tool> = match faults.remove(&tool.spec().name) {
                Some(plan) => Arc::new(tools::faults::FaultyTool::new(tool, plan)),
                None => tool,
            };
            // A built-in's schemas are fixed and tested; an added tool with a broken schema is left out, and
            // `keel tools list` shows what is there.
            let _ = toolbox.add(tool);
        }
        toolbox
    }

    /// The tools of the MCP servers listed in `mcp.toml` in the data dir, connecting them on first use. A server
    /// that cannot start, or a tool whose schema does not compile, is left out and reported by
    /// [`App::tool_problems`].
    fn mcp_tools(&self) -> Vec<Arc<dyn Tool>> {
        let mut servers = lock(&self.inner.tools.mcp);
        let mut problems = lock(&self.inner.tools.problems);
        if servers.is_none() {
            let path = self.inner.home.join(MCP_CONFIG);
            let configs = match std::fs::read_to_string(&path) {
                Ok(text) => match toml::from_str::<McpFile>(&text) {
                    Ok(f) => f.servers,
                    Err(e) => {
                        problems.push(format!("{} is not valid: {e}", path.display()));
                        Vec::new()
                    }
                },
                Err(_) => Vec::new(),
            };
            // rmcp runs on its own small runtime, which must not be started from inside another (the desktop
            // calls in from Tauri's blocking pool): connect from a plain thread.
            let connected = std::thread::scope(|scope| {
                scope
                    .spawn(|| configs.iter().map(|c| (c.name.clone(), tools::mcp::connect(c, MCP_CONNECT_TIMEOUT))).collect::<Vec<_>>())
                    .join()
                    .unwrap_or_default()
            });
            let mut live = Vec::new();
            for (name, result) in connected {
                match result {
                    Ok(server) => live.push(server),
                    Err(e) => problems.push(format!("MCP server {name}: {e}")),
                }
            }
            *servers = Some(live);
        }
        let mut out = Vec::new();
        for server in servers.as_ref().into_iter().flatten() {
            for tool in server.tools() {
                match Toolbox::new().add(tool.clone()) {
                    Ok(()) => out.push(tool),
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
        problems.dedup();
        out
    }

    /// Configured tools that could not be offered, and why.
    pub fn tool_problems(&self) -> Vec<String> {
        self.toolbox();
        lock(&self.inner.tools.problems).clone()
    }

    /// Adds a tool for the runs that start from now on (tests' fault-injecting tools, MCP servers' tools); its
    /// schemas are checked first.
    pub fn add_tool(&self, tool: Arc<dyn Tool>) -> Result<(), AppError> {
        Toolbox::new().add(tool.clone()).map_err(|e| AppError::new(ErrorKind::InvalidInput, e.to_string(), None))?;
        self.inner.tools.toolbox.reset_after(|| lock(&self.inner.tools.extra).push(tool));
        Ok(())
    }

    pub fn list_tools(&self) -> Vec<ToolSpec> {
        self.toolbox().specs()
    }

    /// Validates and runs one tool outside any run, with the same checks and timeouts as inside one.
    pub fn call_tool(&self, name: &str, arguments: &Value) -> Result<Value, AppError> {
        let toolbox = self.toolbox();
        toolbox.call(name, arguments, None, &|| false).map_err(tool_error)
    }

    pub(super) fn memory_port(&self) -> AppMemoryPort {
        AppMemoryPort { app: Arc::downgrade(&self.inner), provenance: "assistant".into() }
    }

}

fn tool_error(e: ToolError) -> AppError {
    let hint = match &e {
        ToolError::UnknownTool { .. } => Some("`keel tools list` shows the tools".to_string()),
        ToolError::InvalidArguments { tool, .. } => Some(format!("`keel tools list --json` shows {tool}'s input schema")),
        _ => None,
    };
    let kind = match &e {
        ToolError::UnknownTool { .. } | ToolError::InvalidArguments { .. } => ErrorKind::InvalidInput,
        _ => ErrorKind::Tool,
    };
    AppError::new(kind, format!("{} [{}]", e, e.class()), hint)
}
