//! Keel's agent core. [`App`] (in `app/`) is the one handle both front ends (the `keel` CLI and the desktop
//! shell) use; it only wires the layers below it. ARCHITECTURE.md maps the modules and what may use what.

pub mod app;
pub mod error;
pub mod eval;
// Entry points of the fuzz targets (fuzz/) and of the corpus replay test; not part of the API (doc-hidden).
pub mod fuzzing;
pub mod interface;
pub mod llm;
pub mod memory;
pub mod models;
pub mod orchestration;
pub mod secrets;
pub mod shared;
pub mod store;
pub mod tools;
pub mod trace;

// The boundary types the front ends exchange with `App`, re-exported so that they need nothing deeper.
pub use app::backends::{BackendKind, BackendProfile, BackendTest, BackendView, KeyState, LOCAL};
pub use app::guard::{GuardModel, GuardReport};
pub use app::memory::{ExportedItem, RestoreReport, INDEX_DIR};
pub use app::eval_tasks::{EvalProgress, SavedTestCase, TestCaseRequest, USER_SUITE};
pub use app::runs::{RunOptions, FILES_DIR, MCP_CONFIG};
pub use app::status::{AppStatus, LoadProgress, ModelState, ModelStatus};
pub use app::{App, OpenOptions};
pub use error::{AppError, ErrorKind};
pub use llm::GenerationSettings;
pub use memory::retrieve::{CandidateDecision, Retrieval, RetrievalCandidate};
pub use memory::{ImportError, ImportProgress, ImportReport, IndexReport};
pub use orchestration::events::{Action, FailureKind, RecordedCandidate, RunOutcome, UserAnswer};
pub use orchestration::journal::{ConversationDetail, Message, RunDetail, RunSummary};
pub use orchestration::lifecycle::Replay;
pub use orchestration::{Limits, RunMode, TurnEvent, TurnResult, UserRequest};
pub use store::{ConversationSummary, MemoryItem, MemoryKind, MemoryPage, MemoryQuery};
pub use tools::{Effect, Origin, ToolError, ToolSpec};
