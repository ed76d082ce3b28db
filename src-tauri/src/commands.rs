//! The commands the UI invokes: thin conversions into `keel::App`, errors as the typed `AppError`.
//!
//! `App`'s methods block (model loading and generation are CPU work), so each command hands them to Tauri's
//! blocking pool; events reach the UI through the `Channel` the UI passed in, after the core has committed them.

use keel::{
    RunOptions, ToolSpec, UserAnswer, UserRequest,
    App, AppError, AppStatus, ConversationDetail, ConversationSummary, ErrorKind, GenerationSettings, ImportProgress,
    ImportReport, LoadProgress, MemoryItem, MemoryKind, MemoryPage, MemoryQuery, ModelStatus, Retrieval, RunDetail,
    RunSummary, TurnEvent, TurnResult,
};
use keel::models::library::{DownloadProgress, ModelInfo, ModelList};
use keel::{BackendProfile, BackendTest, BackendView};
use keel::eval::agent::{Options as EvalOptions, Report as AgentReport};
use keel::{EvalProgress, SavedTestCase, TestCaseRequest};
use tauri::ipc::Channel;
use tauri::State;

/// Runs blocking core work off the async runtime, with its own handle to `App`.
async fn on_worker<T: Send + 'static>(
    app: State<'_, App>,
    f: impl FnOnce(App) -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    let app = app.inner().clone();
    tauri::async_runtime::spawn_blocking(move || f(app))
        .await
        .unwrap_or_else(|e| Err(AppError::new(ErrorKind::Internal, format!("a worker thread failed: {e}"), None)))
}

#[tauri::command]
pub fn status(app: State<'_, App>) -> AppStatus {
    app.status()
}

#[tauri::command]
pub async fn load_model(app: State<'_, App>, on_progress: Channel<LoadProgress>) -> Result<ModelStatus, AppError> {
    on_worker(app, move |app| app.load_model(&mut |p| drop(on_progress.send(p)))).await
}

#[tauri::command]
pub fn list_conversations(app: State<'_, App>) -> Result<Vec<ConversationSummary>, AppError> {
    app.list_conversations()
}

#[tauri::command]
pub fn get_conversation(app: State<'_, App>, id: i64) -> Result<ConversationDetail, AppError> {
    app.get_conversation(id)
}

#[tauri::command]
pub async fn send_message(
    app: State<'_, App>,
    conversation_id: Option<i64>,
    text: String,
    options: Option<RunOptions>,
    on_event: Channel<TurnEvent>,
) -> Result<TurnResult, AppError> {
    let options = options.unwrap_or_default();
    on_worker(app, move |app| {
        app.send_message(conversation_id, &text, &GenerationSettings::default(), &options, &mut |e| drop(on_event.send(e)))
    })
    .await
}

/// Approves or denies a paused run's call, or answers its question, and continues the run.
#[tauri::command]
pub async fn answer_run(
    app: State<'_, App>,
    run_id: i64,
    answer: UserAnswer,
    on_event: Channel<TurnEvent>,
) -> Result<TurnResult, AppError> {
    on_worker(app, move |app| app.answer_run(run_id, answer, &GenerationSettings::default(), &mut |e| drop(on_event.send(e)))).await
}

/// Continues a run Keel stopped in the middle of.
#[tauri::command]
pub async fn resume_run(app: State<'_, App>, run_id: i64, on_event: Channel<TurnEvent>) -> Result<TurnResult, AppError> {
    on_worker(app, move |app| app.resume_run(run_id, &GenerationSettings::default(), &mut |e| drop(on_event.send(e)))).await
}

/// What a paused run waits for (after a restart, the UI asks again).
#[tauri::command]
pub fn run_waiting(app: State<'_, App>, run_id: i64) -> Result<Option<UserRequest>, AppError> {
    app.run_waiting(run_id)
}

/// The tools runs are offered, with their schemas and effects.
#[tauri::command]
pub fn list_tools(app: State<'_, App>) -> Vec<ToolSpec> {
    app.list_tools()
}

#[tauri::command]
pub fn cancel_run(app: State<'_, App>, run_id: i64) -> bool {
    app.cancel_run(run_id)
}

#[tauri::command]
pub fn get_run(app: State<'_, App>, run_id: i64) -> Result<RunDetail, AppError> {
    app.get_run(run_id)
}

#[tauri::command]
pub fn list_runs(app: State<'_, App>, limit: u32) -> Result<Vec<RunSummary>, AppError> {
    app.list_runs(limit)
}

#[tauri::command]
pub async fn list_memory(app: State<'_, App>, query: MemoryQuery) -> Result<MemoryPage, AppError> {
    on_worker(app, move |app| app.list_memory(&query)).await
}

#[tauri::command]
pub fn list_memory_sources(app: State<'_, App>) -> Result<Vec<String>, AppError> {
    app.list_memory_sources()
}

#[tauri::command]
pub async fn search_memory(app: State<'_, App>, query: String, limit: u32) -> Result<Retrieval, AppError> {
    on_worker(app, move |app| app.search_memory(&query, limit)).await
}

#[tauri::command]
pub async fn add_memory(app: State<'_, App>, kind: MemoryKind, text: String) -> Result<MemoryItem, AppError> {
    on_worker(app, move |app| app.add_memory(kind, &text, "desktop")).await
}

#[tauri::command]
pub async fn edit_memory(app: State<'_, App>, id: i64, text: String) -> Result<MemoryItem, AppError> {
    on_worker(app, move |app| app.edit_memory(id, &text)).await
}

#[tauri::command]
pub async fn pin_memory(app: State<'_, App>, id: i64, pinned: bool) -> Result<MemoryItem, AppError> {
    on_worker(app, move |app| app.pin_memory(id, pinned)).await
}

#[tauri::command]
pub async fn delete_memory(app: State<'_, App>, id: i64) -> Result<MemoryItem, AppError> {
    on_worker(app, move |app| app.delete_memory(id)).await
}

#[tauri::command]
pub async fn undelete_memory(app: State<'_, App>, id: i64) -> Result<MemoryItem, AppError> {
    on_worker(app, move |app| app.undelete_memory(id)).await
}

#[tauri::command]
pub async fn import_documents(
    app: State<'_, App>,
    paths: Vec<String>,
    on_progress: Channel<ImportProgress>,
) -> Result<ImportReport, AppError> {
    let paths: Vec<std::path::PathBuf> = paths.into_iter().map(Into::into).collect();
    on_worker(app, move |app| app.import_documents(&paths, &mut |p| drop(on_progress.send(p.clone())))).await
}

#[tauri::command]
pub fn cancel_import(app: State<'_, App>) -> bool {
    app.cancel_import()
}

#[tauri::command]
pub fn memory_item_runs(app: State<'_, App>, id: i64) -> Result<Vec<RunSummary>, AppError> {
    app.memory_item_runs(id)
}

#[tauri::command]
pub fn memory_episodes(app: State<'_, App>) -> Result<bool, AppError> {
    app.memory_episodes()
}

#[tauri::command]
pub fn set_memory_episodes(app: State<'_, App>, on: bool) -> Result<bool, AppError> {
    app.set_memory_episodes(on)
}

// The backend commands ask the keyring (D-Bus) for each profile's key state: off the main thread, so a slow or
// locked keyring never freezes the window.
#[tauri::command]
pub async fn list_backends(app: State<'_, App>) -> Result<Vec<BackendView>, AppError> {
    on_worker(app, move |app| app.list_backends()).await
}

#[tauri::command]
pub async fn save_backend(app: State<'_, App>, profile: BackendProfile) -> Result<BackendView, AppError> {
    on_worker(app, move |app| app.save_backend(&profile)).await
}

#[tauri::command]
pub async fn remove_backend(app: State<'_, App>, name: String) -> Result<(), AppError> {
    on_worker(app, move |app| app.remove_backend(&name)).await
}

#[tauri::command]
pub async fn set_default_backend(app: State<'_, App>, name: String) -> Result<(), AppError> {
    on_worker(app, move |app| app.set_default_backend(&name)).await
}

#[tauri::command]
pub async fn test_backend(app: State<'_, App>, name: String) -> Result<BackendTest, AppError> {
    on_worker(app, move |app| app.test_backend(&name)).await
}

/// The key goes straight to the OS keyring; it is never returned, logged or kept here.
#[tauri::command]
pub async fn set_key(app: State<'_, App>, name: String, key: String) -> Result<BackendView, AppError> {
    on_worker(app, move |app| app.set_key(&name, &key)).await
}

#[tauri::command]
pub async fn remove_key(app: State<'_, App>, name: String) -> Result<BackendView, AppError> {
    on_worker(app, move |app| app.remove_key(&name)).await
}

#[tauri::command]
pub async fn list_models(app: State<'_, App>) -> Result<ModelList, AppError> {
    on_worker(app, move |app| Ok(app.list_models())).await
}

#[tauri::command]
pub async fn add_model(app: State<'_, App>, path: String) -> Result<ModelInfo, AppError> {
    on_worker(app, move |app| app.add_model(std::path::Path::new(&path), &mut |_| {})).await
}

#[tauri::command]
pub async fn download_model(
    app: State<'_, App>,
    url: String,
    sha256: Option<String>,
    name: Option<String>,
    on_progress: Channel<DownloadProgress>,
) -> Result<ModelInfo, AppError> {
    on_worker(app, move |app| app.download_model(&url, sha256.as_deref(), name.as_deref(), &mut |p| drop(on_progress.send(p)))).await
}

#[tauri::command]
pub fn cancel_download(app: State<'_, App>) {
    app.cancel_download()
}

#[tauri::command]
pub async fn delete_model(app: State<'_, App>, name: String) -> Result<(), AppError> {
    on_worker(app, move |app| app.delete_model(&name)).await
}

#[tauri::command]
pub async fn use_model(app: State<'_, App>, name: String) -> Result<ModelStatus, AppError> {
    on_worker(app, move |app| app.use_model(&name)).await
}

#[tauri::command]
pub async fn save_test_case(app: State<'_, App>, request: TestCaseRequest) -> Result<SavedTestCase, AppError> {
    on_worker(app, move |app| app.save_test_case(&request)).await
}

/// Runs a suite (`mine`: the user's own) with the runs kept in the report, so a failed one opens in the Inspector.
#[tauri::command]
pub async fn evaluate_tasks(
    app: State<'_, App>,
    suite: String,
    repeat: Option<u32>,
    on_progress: Channel<EvalProgress>,
) -> Result<AgentReport, AppError> {
    let options = EvalOptions { tasks_file: suite.into(), repeat: repeat.unwrap_or(1), keep_runs: true, ..EvalOptions::default() };
    on_worker(app, move |app| {
        app.evaluate_tasks(&options, &mut |stage, done, total| drop(on_progress.send(EvalProgress { stage: stage.to_owned(), done, total })))
    })
    .await
}
