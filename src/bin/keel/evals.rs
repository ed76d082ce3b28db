//! `keel eval run|tools|guard|intent`: the real stack measured on committed datasets, each report shown as a
//! table or as JSON, and written to `--out` (or `--report DIR`) too when asked.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use keel::eval::agent::{Options as AgentOptions, Report as AgentReport};
use keel::eval::guard::{GuardEvalReport, IntentEvalReport};
use keel::eval::tool_calls::ToolCallReport;
use keel::{App, AppError, ErrorKind};

use crate::output::{self, Human, Text};
use crate::progress::Spinner;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Whole tasks through the real stack, each in a throwaway data dir, judged by what happened: success,
    /// pass^k and pass@k, tool selection, argument validity, recovery under injected faults, latency, tokens.
    Run {
        /// The suite: one task per line (the format is in tests/evals/agent/README.md).
        #[arg(long)]
        tasks: PathBuf,
        /// The backend profile (default: the default backend).
        #[arg(long)]
        backend: Option<String>,
        /// Attempts per task (pass^k and pass@k are over these).
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// Write report.json into this folder too.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Run only the first N tasks.
        #[arg(long)]
        limit: Option<usize>,
        /// Run only the tasks of this category.
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One ReAct step of the embedded model per prompt, under constrained decoding: do its tool calls parse and
    /// validate, and does it pick the right tool?
    Tools {
        #[arg(long, default_value = "tests/evals/tools/prompts.jsonl")]
        dataset: PathBuf,
        /// Write the JSON report here too.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The injection scorer on the committed guard set: per layer, detection of direct and indirect injections on the
    /// test split at the threshold Keel ships (for a layer not used alone, the one chosen on the validation split at
    /// 1% false positives); then, per source of the set, detection and false positives with that source held out.
    Guard {
        #[arg(long, default_value = "tests/evals/guard/set")]
        dataset: PathBuf,
        /// Write the JSON report here too.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Fit the lexical layer and the combiner afresh on the train split (the combiner's regularisation and
        /// flag threshold chosen on validation), measure that fit, and write the combiner to FILE (the committed
        /// one is src/interface/guard_combiner.json) and the lexical layer beside it as guard_lexical.bin.
        #[arg(long, value_name = "FILE")]
        fit: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The intent detector on the test split of the committed intent set: accuracy and the confusion matrix.
    Intent {
        #[arg(long)]
        json: bool,
    },
}

impl EvalCommand {
    pub fn json(&self) -> bool {
        match self {
            EvalCommand::Run { json, .. } | EvalCommand::Tools { json, .. } | EvalCommand::Guard { json, .. } | EvalCommand::Intent { json } => *json,
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Writes a report to `out` as pretty JSON, when a file was named.
fn save(report: &impl serde::Serialize, out: Option<&Path>) -> Result<(), AppError> {
    if let Some(path) = out {
        std::fs::write(path, serde_json::to_string_pretty(report).unwrap_or_default())
            .map_err(|e| AppError::new(ErrorKind::Internal, e.to_string(), None))?;
    }
    Ok(())
}

impl Human for GuardEvalReport {
    fn human(&self) -> Text {
        let mut text = Text::new();
        text.line(format!("{} ({:?})", self.dataset, self.counts));
        text.line(format!(
            "{:<11} {:>9} {:>14} {:>16} {:>9}   {:>17} {:>19}",
            "layer", "threshold", "direct found", "indirect found", "test FPR", "direct @1% (test)", "indirect @1% (test)"
        ));
        for l in &self.layers {
            text.line(format!(
                "{:<11} {:>9} {:>14} {:>16} {:>9}   {:>17} {:>19}",
                l.layer,
                format!("{:.3}{}", l.threshold, if l.shipped { "" } else { "*" }),
                pct(l.test_direct_detected),
                pct(l.test_indirect_detected),
                pct(l.test_false_positive_rate),
                pct(l.test_direct_at_1pct),
                pct(l.test_indirect_at_1pct)
            ));
        }
        text.line(format!(
            "at the thresholds Keel ships (* chosen on the validation split at 1% false positives: a layer Keel does not use alone); {} ms",
            self.duration_ms
        ));
        if let Some(loso) = &self.leave_one_source_out {
            let cell = |n: usize, rate: Option<f64>| rate.map_or_else(|| "-".to_owned(), |r| format!("{} of {n}", pct(r)));
            text.line(String::new());
            text.line(format!("leave one source out (combined layer, at the shipped flag {:.3}):", loso.threshold));
            text.line(format!("{:<24} {:>16} {:>16} {:>16}", "held-out source", "direct found", "indirect found", "benign flagged"));
            for s in &loso.sources {
                text.line(format!(
                    "{:<24} {:>16} {:>16} {:>16}",
                    s.writer,
                    cell(s.direct, s.direct_detected),
                    cell(s.indirect, s.indirect_detected),
                    cell(s.benign, s.false_positive_rate)
                ));
            }
            let mean = |m: Option<f64>| m.map_or_else(|| "-".to_owned(), pct);
            text.line(format!(
                "{:<24} {:>16} {:>16} {:>16}",
                format!("mean (>= {} texts)", loso.min_texts),
                mean(loso.mean_direct_detected),
                mean(loso.mean_indirect_detected),
                mean(loso.mean_false_positive_rate)
            ));
            text.line(format!("pooled false positives {}; {}", mean(loso.pooled_false_positive_rate), loso.caveat));
        }
        text
    }
}

impl Human for IntentEvalReport {
    fn human(&self) -> Text {
        let mut text = Text::new();
        text.line(format!("{} test examples, accuracy {}", self.examples, pct(self.accuracy)));
        text.line(format!("{:<10} {}", "true \\ got", self.labels.iter().map(|l| format!("{l:>9}")).collect::<String>()));
        for (label, row) in self.labels.iter().zip(&self.confusion) {
            text.line(format!("{label:<10} {}", row.iter().map(|c| format!("{c:>9}")).collect::<String>()));
        }
        text.line(format!("decided by: {:?}", self.decided_by));
        text
    }
}

impl Human for AgentReport {
    fn human(&self) -> Text {
        let mut text = Text::new();
        let opt = |v: Option<f64>| v.map(pct).unwrap_or_else(|| "–".into());
        let ms = |v: Option<u64>| v.map(|v| format!("{v} ms")).unwrap_or_else(|| "–".into());
        text.line(format!("{} on {}, {} attempt(s) per task", self.tasks_file, self.backend, self.repeat));
        for e in &self.errors {
            text.line(format!("not run: {e}"));
        }
        for t in &self.tasks {
            for (k, a) in t.attempts.iter().enumerate() {
                if !a.passed {
                    let runs = a.run_ids.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
                    text.line(format!("FAIL {} (line {}, attempt {}, runs {runs}): {}", t.id, t.line, k + 1, a.failures.join("; ")));
                }
            }
        }
        text.line(format!(
            "{:<16} {:>6} {:>9} {:>8} {:>8} {:>10} {:>10} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "category", "tasks", "success", "pass^k", "pass@k", "right tool", "valid args", "recovery", "fabricated", "turn p50", "turn p95", "step p50", "step p95", "tokens"
        ));
        for c in self.categories.iter().chain(std::iter::once(&self.total)) {
            text.line(format!(
                "{:<16} {:>6} {:>9} {:>8} {:>8} {:>10} {:>10} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9.0}",
                c.category,
                c.tasks,
                pct(c.success),
                pct(c.pass_hat_k),
                pct(c.pass_at_k),
                opt(c.tool_selection_accuracy),
                opt(c.argument_validity),
                opt(c.recovery_rate),
                opt(c.fabrication_rate),
                ms(c.latency_p50_ms),
                ms(c.latency_p95_ms),
                ms(c.step_p50_ms),
                ms(c.step_p95_ms),
                c.tokens_per_task
            ));
        }
        if self.total.routed_attempts > 0 {
            text.line(format!(
                "routed by code: {} attempt(s), turn p50 {}, p95 {}",
                self.total.routed_attempts,
                ms(self.total.routed_p50_ms),
                ms(self.total.routed_p95_ms)
            ));
        }
        if let Some(a) = &self.attacks {
            text.line(format!(
                "attacks ({} pairs): utility without attack {}, under attack {}, targeted attack success {}",
                a.pairs,
                pct(a.utility_without_attack),
                pct(a.utility_under_attack),
                pct(a.targeted_attack_success)
            ));
        }
        text
    }
}

impl Human for ToolCallReport {
    fn human(&self) -> Text {
        let mut text = Text::new();
        for r in &self.results {
            text.line(format!("{:<12} {:<14} {:<14} {}", r.action, r.expected, r.tool.as_deref().unwrap_or("-"), r.prompt));
        }
        text.line(format!(
            "{} prompts: {} tool calls, {} valid ({}%), right tool {} ({}%), {} answers, {} questions; p50 {} ms, p95 {} ms",
            self.prompts,
            self.tool_calls,
            self.valid_tool_calls,
            (self.valid_tool_calls * 100).checked_div(self.tool_calls).unwrap_or(100),
            self.right_tool,
            self.right_tool * 100 / self.prompts.max(1),
            self.answers,
            self.asks,
            self.p50_ms,
            self.p95_ms
        ));
        text
    }
}

pub fn run(command: EvalCommand) -> Result<(), AppError> {
    let app = App::open_default()?;
    let spinner = Spinner::new();
    match command {
        EvalCommand::Run { tasks, backend, repeat, report, limit, category, json } => {
            let options = AgentOptions { tasks_file: tasks, backend, repeat, limit, category, keep_runs: report.is_some() };
            let mut result = app.evaluate_tasks(&options, &mut |stage, done, total| spinner.show(format_args!("{stage} {done}/{total}")))?;
            spinner.end();
            if let Some(dir) = &report {
                app.write_eval_report(&mut result, dir)?;
            }
            output::emit(json, &result);
        }
        EvalCommand::Guard { dataset, out, fit, json } => {
            let (report, combiner, lexical) =
                app.evaluate_guard(&dataset, fit.is_some(), &mut |stage, done, total| match total {
                    0 => spinner.show(format_args!("{stage}")),
                    _ => spinner.show(format_args!("{stage} {done}/{total}")),
                })?;
            if let Some(path) = &fit {
                let body = serde_json::to_string_pretty(&combiner).map_err(|e| AppError::new(ErrorKind::Internal, e.to_string(), None))? + "\n";
                std::fs::write(path, body)
                    .map_err(|e| AppError::new(ErrorKind::Store, format!("cannot write the fit to {}: {e}", path.display()), None))?;
                eprintln!("fit written to {} (l2 {}, flag threshold {:.4})", path.display(), combiner.l2, combiner.flag);
                if let Some(lexical) = lexical {
                    // Beside the combiner, under the name Keel compiles in (src/interface/guard_lexical.bin).
                    let at = path.with_file_name("guard_lexical.bin");
                    std::fs::write(&at, lexical.to_bytes())
                        .map_err(|e| AppError::new(ErrorKind::Store, format!("cannot write the lexical fit to {}: {e}", at.display()), None))?;
                    eprintln!("lexical layer written to {} (l2 {})", at.display(), lexical.l2);
                }
            }
            spinner.end();
            save(&report, out.as_deref())?;
            output::emit(json, &report);
        }
        EvalCommand::Intent { json } => {
            let report = app.evaluate_intent(&mut |stage, done, total| spinner.show(format_args!("{stage} {done}/{total}")))?;
            spinner.end();
            output::emit(json, &report);
        }
        EvalCommand::Tools { dataset, out, json } => {
            let report = app.evaluate_tool_calls(
                &dataset,
                &mut |p| spinner.show(format_args!("{} {}%", p.stage, (p.done * 100).checked_div(p.total).unwrap_or(0))),
                &mut |done, total| spinner.show(format_args!("prompt {done}/{total}")),
            )?;
            spinner.end();
            save(&report, out.as_deref())?;
            output::emit(json, &report);
        }
    }
    Ok(())
}
