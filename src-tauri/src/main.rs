//! Keel's desktop shell: opens `keel::App` and exposes it to the WebView as a handful of commands.
//!
//! Each command is a one-line conversion into `App`; long work runs on a blocking thread and streams progress
//! and run events back over a Tauri `Channel`. No agent logic lives here.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;

fn main() {
    let app = match keel::App::open_default() {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {}", e.message);
            if let Some(hint) = e.hint {
                eprintln!("hint: {hint}");
            }
            std::process::exit(1);
        }
    };
    tauri::Builder::default()
        .manage(app)
        .invoke_handler(tauri::generate_handler![
            commands::app_status,
            commands::load_model,
            commands::list_conversations,
            commands::get_conversation,
            commands::send_message,
            commands::cancel_run,
            commands::get_run,
            commands::list_runs,
        ])
        .run(tauri::generate_context!("../tauri.conf.json"))
        .expect("the Tauri runtime failed to start");
}
