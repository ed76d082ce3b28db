import { render } from "svelte/server";
import { describe, expect, it } from "vitest";
import InspectorMemory from "../components/InspectorMemory.svelte";
import InspectorTool from "../components/InspectorTool.svelte";
import RequestCard from "../components/RequestCard.svelte";
import type { RecordedCandidate, UserRequest } from "./bindings";
import { ChatStore } from "./chat.svelte";
import type { MemoryRetrievedEvent } from "./steps";
import { toolCalls } from "./toolcalls";
import { toolRuns } from "./toolcalls.fixtures";

function candidate(item_id: number, decision: RecordedCandidate["decision"], bm25: number | null): RecordedCandidate {
  return {
    item_id,
    kind: "fact",
    source: "chat",
    text: `memory ${item_id}`,
    bm25,
    bm25_rank: bm25 === null ? null : 1,
    cosine: 0.6123,
    vector_rank: 3,
    fused: 0.0327,
    tokens: 12,
    decision,
    reason: `because ${decision}`,
  };
}

const event: MemoryRetrievedEvent = {
  kind: "MemoryRetrieved",
  query: "what bread do I bake?",
  threshold: 0.35,
  token_budget: 1_024,
  tokens_used: 24,
  duration_ms: 18,
  // A dropped one first, to check that the view puts the kept ones ahead of it.
  candidates: [candidate(2, "below_threshold", null), candidate(4, "kept", 7.25), candidate(9, "kept", 3.5)],
};

// The server renderer gives the markup without a DOM; a DOMParser-free read of the attributes is enough here.
function candidates(html: string): { id: string; decision: string }[] {
  return [...html.matchAll(/data-testid="inspector-candidate" data-decision="([a-z_]+)" data-item-id="(\d+)"/g)].map(
    (m) => ({ id: m[2]!, decision: m[1]! }),
  );
}

describe("InspectorMemory", () => {
  const { body } = render(InspectorMemory, { props: { event } });

  it("lists the kept candidates first, then the dropped ones folded away", () => {
    expect(body).toContain('data-testid="inspector-memory"');
    expect(candidates(body)).toEqual([
      { id: "4", decision: "kept" },
      { id: "9", decision: "kept" },
      { id: "2", decision: "below_threshold" },
    ]);
    const folded = body.slice(body.indexOf('data-testid="inspector-dropped"'));
    expect(body.indexOf('data-testid="inspector-dropped"')).toBeGreaterThan(0);
    expect(candidates(folded).map((c) => c.id)).toEqual(["2"]);
  });

  it("shows the query, the limits and each score with its raw value", () => {
    expect(body).toContain("what bread do I bake?");
    expect(body).toMatch(/data-testid="inspector-memory-threshold" data-value="0.35"[^>]*>0.35</);
    expect(body).toMatch(/data-testid="hit-bm25" data-value="7.25"[^>]*>7.25</);
    expect(body).toMatch(/data-testid="hit-cosine" data-value="0.6123"[^>]*>0.612</);
    expect(body).toMatch(/data-testid="hit-fused" data-value="0.0327"[^>]*>0.0327</);
    expect(body).toContain("because below_threshold");
  });

  it("gives a candidate without a BM25 score no value", () => {
    const dropped = body.slice(body.indexOf('data-item-id="2"'));
    expect(dropped).toMatch(/data-testid="hit-bm25"[^>]*>–</);
    expect(dropped.slice(0, dropped.indexOf("hit-cosine"))).not.toContain("data-value");
  });
});

describe("InspectorTool", () => {
  const [call] = toolCalls(toolRuns.approvedWrite.map((event, seq) => ({ run_id: 3, seq, at_ms: seq, event })));
  const { body } = render(InspectorTool, { props: { call: call! } });

  it("shows the call's tool, exact arguments, attempts, latency and result", () => {
    expect(body).toMatch(/data-testid="inspector-tool" data-call-id="c1" data-tool="files_write" data-status="ok"/);
    expect(body).toMatch(/data-testid="tool-attempts" data-count="1"[^>]*>1 attempt</);
    expect(body).toMatch(/data-testid="tool-latency" data-ms="12"[^>]*>\s*12 ms\s*</);
    const args = body.match(/data-testid="tool-arguments"[^>]*>([^<]*)</)![1]!;
    expect(JSON.parse(args.replaceAll("&quot;", '"'))).toEqual({ path: "notes/todo.txt", content: "buy milk" });
    expect(body).toMatch(/data-testid="tool-result"[^>]*>[^<]*"created": true/);
  });

  it("shows the policy's decision and the user's approval", () => {
    expect(body).toContain('data-testid="tool-policy" data-decision="needs_approval"');
    expect(body).toContain('data-testid="tool-approval" data-answer="approved"');
    expect(body).toContain("Approved by you");
  });

  it("lists retries and the alternative chosen", () => {
    const [fetch] = toolCalls(toolRuns.retriedThenAlternative.map((event, seq) => ({ run_id: 3, seq, at_ms: seq, event })));
    const html = render(InspectorTool, { props: { call: fetch! } }).body;
    expect(html).toMatch(/data-testid="tool-attempts" data-count="3"[^>]*>3 attempts</);
    expect(html.match(/data-testid="tool-attempt"/g)).toHaveLength(3);
    expect(html).toMatch(/data-testid="tool-retry"[^>]*>\s*Retry: attempt 2 after 250 ms/);
    expect(html).toMatch(/data-testid="tool-alternative"[^>]*>Switched from http_fetch to mirror_fetch/);
  });
});

describe("RequestCard", () => {
  it("shows an approval's tool, effect, reason and exact arguments with Approve and Deny", () => {
    const chat = new ChatStore();
    const request: UserRequest = {
      type: "approval",
      run_id: 9,
      call_id: "c1",
      tool: "files_write",
      arguments: { path: "notes/todo.txt", content: "buy milk" },
      effect: "write",
      reason: "files_write can change things (Write); the user decides",
    };
    const { body } = render(RequestCard, { props: { chat, request } });
    expect(body).toContain('data-testid="approval" data-run-id="9" data-call-id="c1" data-tool="files_write"');
    expect(body).toMatch(/data-testid="approval-tool"[^>]*>files_write</);
    expect(body).toMatch(/data-testid="approval-effect" data-effect="write"/);
    expect(body).toContain("the user decides");
    const args = body.match(/data-testid="approval-arguments"[^>]*>([^<]*)</)![1]!;
    expect(args.replaceAll("&quot;", '"')).toBe('{\n  "path": "notes/todo.txt",\n  "content": "buy milk"\n}');
    expect(body).toMatch(/data-testid="approve"[^>]*>\s*Approve\s*</);
    expect(body).toMatch(/data-testid="deny"[^>]*>Deny</);
  });

  it("shows a question with a reply box", () => {
    const chat = new ChatStore();
    const { body } = render(RequestCard, { props: { chat, request: { type: "question", run_id: 4, question: "Which file?" } } });
    expect(body).toContain('data-testid="question" data-run-id="4"');
    expect(body).toMatch(/data-testid="question-text"[^>]*>Which file\?</);
    expect(body).toContain('data-testid="reply-input"');
    expect(body).toMatch(/data-testid="reply"[^>]*>\s*Reply\s*</);
  });
});
