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
    // Open memory in the background (the embedding model loads, the indexes are checked against the database), so
    // the first search or turn does not wait for it. A failure is reported again by the command that needs it.
    let warm = app.clone();
    std::thread::spawn(move || {
        if let Err(e) = warm.memory(&mut |_| {}) {
            eprintln!("memory is not available yet: {}", e.message);
        }
    });
    tauri::Builder::default()
        .manage(app)
        .invoke_handler(tauri::generate_handler![
            commands::status,
            commands::load_model,
            commands::list_conversations,
            commands::get_conversation,
            commands::send_message,
            commands::cancel_run,
            commands::answer_run,
            commands::resume_run,
            commands::run_waiting,
            commands::list_tools,
            commands::get_run,
            commands::list_runs,
            commands::list_memory,
            commands::list_memory_sources,
            commands::search_memory,
            commands::add_memory,
            commands::edit_memory,
            commands::pin_memory,
            commands::delete_memory,
            commands::undelete_memory,
            commands::import_documents,
            commands::cancel_import,
            commands::memory_item_runs,
            commands::save_test_case,
            commands::evaluate_tasks,
            commands::memory_episodes,
            commands::set_memory_episodes,
            commands::list_backends,
            commands::save_backend,
            commands::remove_backend,
            commands::set_default_backend,
            commands::test_backend,
            commands::set_key,
            commands::remove_key,
            commands::list_models,
            commands::add_model,
            commands::download_model,
            commands::cancel_download,
            commands::delete_model,
            commands::use_model,
        ])
        .run(tauri::generate_context!("../tauri.conf.json"))
        .expect("the Tauri runtime failed to start");
}
