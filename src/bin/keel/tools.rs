//! `keel tools list|call`: every tool with its contract, and one call outside any run with the same
//! validation, timeouts and errors as inside one.

use clap::Subcommand;
use keel::{App, AppError, ErrorKind, ToolSpec};

use crate::output::{self, Human, Shown, Text};

#[derive(Subcommand)]
pub enum ToolsCommand {
    /// Every tool with its schemas and effect.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Validates and runs one tool outside any run, with the same checks, timeouts and errors as inside one.
    Call {
        name: String,
        /// The arguments as a JSON object.
        arguments: String,
        #[arg(long)]
        json: bool,
    },
}

impl ToolsCommand {
    pub fn json(&self) -> bool {
        match self {
            ToolsCommand::List { json } | ToolsCommand::Call { json, .. } => *json,
        }
    }
}

impl Human for Vec<ToolSpec> {
    fn human(&self) -> Text {
        let mut text = Text::new();
        for s in self {
            text.line(format!("{:<16} {:<9} {:>6} ms  {}", s.name, format!("{:?}", s.effect).to_lowercase(), s.timeout_ms, s.description));
        }
        text
    }
}

pub fn run(command: ToolsCommand) -> Result<(), AppError> {
    let app = App::open_default()?;
    match command {
        ToolsCommand::List { json } => {
            let specs = app.list_tools();
            for problem in app.tool_problems() {
                eprintln!("warning: {problem}");
            }
            output::emit(json, &specs);
        }
        ToolsCommand::Call { name, arguments, json } => {
            let args: serde_json::Value = serde_json::from_str(&arguments).map_err(|e| {
                AppError::new(
                    ErrorKind::InvalidInput,
                    format!("the arguments are not valid JSON: {e}"),
                    Some("pass one JSON object, e.g. '{\"expression\": \"2+2\"}'".into()),
                )
            })?;
            let value = app.call_tool(&name, &args)?;
            // A tool's result is JSON to a person too.
            let text = serde_json::to_string_pretty(&value).unwrap_or_default();
            output::emit(json, &Shown::line(value, text));
        }
    }
    Ok(())
}
