//! The UI's TypeScript types are generated from the Rust boundary types; this test fails when the committed
//! `ui/src/lib/bindings.ts` is stale. `UPDATE_BINDINGS=1 cargo test bindings` rewrites it.

use keel::llm::{GenerationSettings, Role, StopReason};
use keel::orchestration::events::{Action, FailureKind, Limit, PlanStep, PolicyDecision, RunEvent, RunOutcome, RunStatus, StoredEvent, ToolOutcome, UserAnswer};
use keel::orchestration::{Limits, RunMode, TurnEvent, TurnResult, UserRequest};
use keel::shared::backoff::RetryPolicy;
use keel::tools::{Effect, Origin, ToolError, ToolSpec};
use keel::RunOptions;
use keel::orchestration::journal::{ConversationDetail, Message, RunDetail, RunSummary};
use keel::store::ConversationSummary;
use keel::{
    AppError, AppStatus, CandidateDecision, ErrorKind, ImportError, ImportProgress, ImportReport, LoadProgress,
    MemoryItem, MemoryKind, MemoryPage, MemoryQuery, ModelState, ModelStatus, RecordedCandidate, Retrieval,
    RetrievalCandidate,
};
use keel::interface::guard::{Reason, Source, Verdict};
use keel::orchestration::events::GuardAction;
use keel::llm::BackendFailure;
use keel::models::library::{BrokenModel, ChecksumState, DownloadProgress, ModelInfo, ModelList};
use keel::{BackendKind, BackendProfile, BackendTest, BackendView, KeyState};
use keel::eval::agent::judge::Span;
use keel::eval::agent::tasks::TaskError;
use keel::eval::agent::{Attempt, AttackTotals, Report as AgentReport, TaskReport, Totals};
use keel::{EvalProgress, SavedTestCase, TestCaseRequest};
use ts_rs::TS;

fn generated() -> String {
    let decls = [
        GenerationSettings::decl(),
        StopReason::decl(),
        RunOutcome::decl(),
        FailureKind::decl(),
        Limit::decl(),
        RunEvent::decl(),
        Action::decl(),
        PlanStep::decl(),
        keel::interface::Then::decl(),
        PolicyDecision::decl(),
        UserAnswer::decl(),
        ToolOutcome::decl(),
        ToolError::decl(),
        Effect::decl(),
        Origin::decl(),
        ToolSpec::decl(),
        RetryPolicy::decl(),
        Limits::decl(),
        RunMode::decl(),
        RunOptions::decl(),
        UserRequest::decl(),
        StoredEvent::decl(),
        TurnResult::decl(),
        TurnEvent::decl(),
        Role::decl(),
        Message::decl(),
        ConversationSummary::decl(),
        ConversationDetail::decl(),
        RunStatus::decl(),
        RunSummary::decl(),
        RunDetail::decl(),
        ModelState::decl(),
        ModelStatus::decl(),
        LoadProgress::decl(),
        AppStatus::decl(),
        ErrorKind::decl(),
        AppError::decl(),
        MemoryKind::decl(),
        MemoryItem::decl(),
        MemoryQuery::decl(),
        MemoryPage::decl(),
        CandidateDecision::decl(),
        RetrievalCandidate::decl(),
        Retrieval::decl(),
        RecordedCandidate::decl(),
        ImportProgress::decl(),
        ImportError::decl(),
        ImportReport::decl(),
        Source::decl(),
        Verdict::decl(),
        Reason::decl(),
        GuardAction::decl(),
        BackendFailure::decl(),
        BackendKind::decl(),
        KeyState::decl(),
        BackendProfile::decl(),
        BackendView::decl(),
        BackendTest::decl(),
        ChecksumState::decl(),
        ModelInfo::decl(),
        BrokenModel::decl(),
        ModelList::decl(),
        DownloadProgress::decl(),
        TestCaseRequest::decl(),
        SavedTestCase::decl(),
        EvalProgress::decl(),
        TaskError::decl(),
        Span::decl(),
        Attempt::decl(),
        TaskReport::decl(),
        Totals::decl(),
        AttackTotals::decl(),
        AgentReport::decl(),
    ];
    let mut out = String::from(
        "// Generated from Keel's Rust types by tests/integration/bindings.rs; do not edit.\n\
         // Regenerate with `UPDATE_BINDINGS=1 cargo nextest run -E 'test(bindings)'`.\n\n",
    );
    for d in decls {
        out.push_str("export ");
        out.push_str(&d);
        out.push('\n');
    }
    out
}

#[test]
fn bindings_ts_is_up_to_date() {
    let path = super::common::repo().join("ui/src/lib/bindings.ts");
    let want = generated();
    if std::env::var_os("UPDATE_BINDINGS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale: regenerate it with `UPDATE_BINDINGS=1 cargo nextest run -E 'test(bindings)'`",
        path.display()
    );
}
