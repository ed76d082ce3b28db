import { describe, expect, it } from "vitest";
import type { AgentReport, Attempt, Totals } from "./bindings";
import { attemptRows, successSentence } from "./evaluation.svelte";

function attempt(passed: boolean, runIds: number[]): Attempt {
  return {
    passed,
    failures: passed ? [] : ["expect_answer_contains: the answer lacks \"84\""],
    run_ids: runIds,
    answer: passed ? "84" : "85",
    tools_called: [],
    valid_calls: 0,
    rejected_calls: 0,
    turn_ms: [10],
    tokens: 5,
    error: null,
    attack_succeeded: null,
    fabricated: null,
    path: ["answered"],
    spans: [],
    runs: runIds.map((id) => ({
      run: { id, conversation_id: 1, status: "answered", input: "q", started_ms: 0, finished_ms: 1, prompt_tokens: 1, completion_tokens: 1 },
      events: [],
    })),
  };
}

const totals: Totals = {
  category: "all",
  tasks: 2,
  attempts: 3,
  success: 2 / 3,
  pass_hat_k: 0.5,
  pass_at_k: 1,
  tool_selection_accuracy: null,
  argument_validity: null,
  recovery_rate: null,
  fabrication_rate: null,
  latency_p50_ms: 10,
  latency_p95_ms: 10,
  step_p50_ms: 5,
  step_p95_ms: 9,
  tokens_per_task: 5,
  routed_attempts: 0,
  routed_p50_ms: null,
  routed_p95_ms: null,
};

const report: AgentReport = {
  tasks_file: "mine",
  backend: "scripted",
  repeat: 1,
  errors: [],
  tasks: [
    { id: "a", category: "mine", line: 1, attempts: [attempt(true, [1])] },
    { id: "b", category: "mine", line: 2, attempts: [attempt(true, [2]), attempt(false, [3, 4])] },
  ],
  categories: [totals],
  total: totals,
  attacks: null,
};

describe("evaluation report rows", () => {
  it("lists failed attempts first, each with the run that gave its answer", () => {
    const rows = attemptRows(report);
    expect(rows.map((r) => r.key)).toEqual(["b#2", "a#1", "b#1"]);
    expect(rows[0]?.run?.run.id).toBe(4);
    expect(rows[0]?.failures[0]).toContain("84");
  });

  it("says how many attempts passed", () => {
    expect(successSentence(report)).toBe("2 of 3 attempts passed (67%)");
  });
});
