//! `keel backends …` and `keel keys …`: remote backend profiles and their keys (which go to the OS keyring).
//!
//! `keel keys set NAME` reads the key from stdin, never from argv (where `ps` and shell history would see it),
//! and prints nothing of it back.

use std::io::{IsTerminal, Read};

use clap::Subcommand;
use keel::{App, AppError, BackendProfile, BackendTest, BackendView, ErrorKind, KeyState};

use crate::output::{self, Human, Shown, Text};

#[derive(Subcommand)]
pub enum BackendsCommand {
    /// Add a remote OpenAI-compatible backend profile, or replace the one of the same name.
    Add {
        name: String,
        /// The API root, e.g. http://127.0.0.1:8080/v1.
        #[arg(long)]
        base_url: String,
        /// The model name the server knows (`keel backends test NAME` lists them).
        #[arg(long)]
        model: String,
        /// Connect and read timeout in seconds.
        #[arg(long = "timeout", value_name = "SECS", default_value_t = 60)]
        timeout_secs: u32,
        /// Retries of a request that failed in a retryable way (connection, 429, 5xx).
        #[arg(long = "retries", default_value_t = 2)]
        max_retries: u32,
        /// The server model's context window in tokens.
        #[arg(long)]
        context_window: Option<u32>,
        /// A backend to fall back to when this one fails, e.g. `local` (repeatable; tried in order).
        #[arg(long = "fallback", value_name = "NAME")]
        fallback: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the backends: the embedded model (`local`) and the remote profiles, with key state and default.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Connect to a backend: list the server's models and check the profile's model is among them.
    Test {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a remote profile and its key.
    Rm {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Make this backend the one runs use when they name none.
    Default {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

impl BackendsCommand {
    pub fn json(&self) -> bool {
        match self {
            BackendsCommand::Add { json, .. }
            | BackendsCommand::List { json }
            | BackendsCommand::Test { json, .. }
            | BackendsCommand::Rm { json, .. }
            | BackendsCommand::Default { json, .. } => *json,
        }
    }
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Store a backend's API key in the OS keyring, read from stdin (one line).
    Set { name: String },
    /// Delete a backend's API key from the OS keyring.
    Rm { name: String },
}

fn describe(v: &BackendView) -> String {
    let key = match v.key {
        KeyState::Set => "key set".to_string(),
        KeyState::NotSet => "no key".to_string(),
        KeyState::Unavailable => "keyring unavailable".to_string(),
        KeyState::NotNeeded => "no key needed".to_string(),
    };
    let place = v.base_url.as_deref().unwrap_or("embedded");
    let fallback = if v.fallback.is_empty() { String::new() } else { format!(" · falls back to {}", v.fallback.join(", ")) };
    let default = if v.is_default { " (default)" } else { "" };
    format!("{}{default}\t{place}\t{}\t{key}{fallback}", v.name, v.model)
}

impl Human for Vec<BackendView> {
    fn human(&self) -> Text {
        let mut text = Text::new();
        for v in self {
            text.line(describe(v));
            if let Some(m) = &v.key_message {
                text.note(format!("  {m}"));
            }
        }
        text
    }
}

impl Human for BackendTest {
    fn human(&self) -> Text {
        let mut text = Text::new();
        text.line(format!("{}: {}", if self.ok { "ok" } else { "failed" }, self.message));
        if let Some(h) = &self.hint {
            text.note(format!("hint: {h}"));
        }
        text
    }
}

pub fn backends(command: BackendsCommand) -> Result<(), AppError> {
    let app = App::open_default()?;
    match command {
        BackendsCommand::Add { name, base_url, model, timeout_secs, max_retries, context_window, fallback, json } => {
            let view = app.save_backend(&BackendProfile { name, base_url, model, timeout_secs, max_retries, fallback, context_window })?;
            let mut text = Text::new();
            text.line(format!("saved {}", describe(&view)));
            if view.key == KeyState::NotSet {
                text.note(format!("hint: if the server needs a key, store it with `keel keys set {}` (reads stdin)", view.name));
            }
            output::emit(json, &Shown::new(view, text));
        }
        BackendsCommand::List { json } => output::emit(json, &app.list_backends()?),
        BackendsCommand::Test { name, json } => {
            let test = app.test_backend(&name)?;
            output::emit(json, &test);
            if !test.ok {
                std::process::exit(1);
            }
        }
        BackendsCommand::Rm { name, json } => {
            app.remove_backend(&name)?;
            let text = format!("removed {name}");
            output::emit(json, &Shown::line(serde_json::json!({"removed": name}), text));
        }
        BackendsCommand::Default { name, json } => {
            app.set_default_backend(&name)?;
            let text = format!("runs now use {name} unless they name another backend");
            output::emit(json, &Shown::line(serde_json::json!({"default": name}), text));
        }
    }
    Ok(())
}

pub fn keys(command: KeysCommand) -> Result<(), AppError> {
    let app = App::open_default()?;
    match command {
        KeysCommand::Set { name } => {
            if std::io::stdin().is_terminal() {
                eprintln!("Paste the key for {name} and press Enter, then Ctrl-D (it is not echoed back anywhere):");
            }
            let mut input = String::new();
            std::io::stdin()
                .take(16 * 1024)
                .read_to_string(&mut input)
                .map_err(|e| AppError::new(ErrorKind::InvalidInput, format!("cannot read the key from stdin: {e}"), None))?;
            let key = input.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string();
            input.clear();
            let view = app.set_key(&name, &key)?;
            println!("key for {} stored in the OS keyring", view.name);
        }
        KeysCommand::Rm { name } => {
            app.remove_key(&name)?;
            println!("key for {name} removed from the OS keyring");
        }
    }
    Ok(())
}
