// The Evaluation view's job: running a task suite (the user's own test cases, saved from answers) through the core
// with its progress, and what the report says. The core keeps each attempt's runs in the report, so a failed one
// opens in the Inspector although its throwaway data folder is gone.

import * as api from "./api";
import type { AgentReport, Attempt, EvalProgress, RunDetail } from "./bindings";
import { Job } from "./job.svelte";

export class EvaluationJob extends Job<EvalProgress> {
  report = $state<AgentReport | null>(null);

  constructor() {
    // An evaluation runs to its end: there is no cancel to ask for.
    super(async () => false);
  }

  start(suite = "mine"): Promise<void> {
    this.report = null;
    return this.run(
      (onProgress) => api.evaluateTasks(suite, onProgress),
      (report) => {
        this.report = report;
      },
    );
  }
}

/** One attempt of a report as the view lists it. */
export type AttemptRow = {
  key: string;
  taskId: string;
  category: string;
  attempt: number;
  passed: boolean;
  failures: string[];
  answer: string;
  /** The last run of the attempt (the one that gave the answer), to open in the Inspector. */
  run: RunDetail | null;
};

/** Every attempt of `report`, failed ones first (in file order within each group). */
export function attemptRows(report: AgentReport): AttemptRow[] {
  const rows = report.tasks.flatMap((task) =>
    task.attempts.map((a: Attempt, k: number) => ({
      key: `${task.id}#${k + 1}`,
      taskId: task.id,
      category: task.category,
      attempt: k + 1,
      passed: a.passed,
      failures: a.failures,
      answer: a.answer,
      run: a.runs?.at(-1) ?? null,
    })),
  );
  return [...rows.filter((r) => !r.passed), ...rows.filter((r) => r.passed)];
}

/** "3 of 4 attempts passed (75%)". */
export function successSentence(report: AgentReport): string {
  const total = report.total;
  const passed = Math.round(total.success * total.attempts);
  return `${passed} of ${total.attempts} attempt${total.attempts === 1 ? "" : "s"} passed (${Math.round(total.success * 100)}%)`;
}
