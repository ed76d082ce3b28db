import { render } from "svelte/server";
import { describe, expect, it } from "vitest";
import InspectorMemory from "../components/InspectorMemory.svelte";
import InspectorStep from "../components/InspectorStep.svelte";
import InspectorTool from "../components/InspectorTool.svelte";
import MessageItem from "../components/MessageItem.svelte";
import RequestCard from "../components/RequestCard.svelte";
import type { RecordedCandidate, RunEvent } from "./bindings";
import { ChatStore, type ChatMessage } from "./chat.svelte";
import { memoryRetrieved, recordedCandidate, stored, writeApproval } from "./fixtures";
import { noNotices, runNotices } from "./guard";
import { attack, guardRuns, taintReason } from "./guard.fixtures";
import { stepRows, type MemoryRetrievedEvent } from "./steps";
import { toolCalls } from "./toolcalls";
import { toolRuns } from "./toolcalls.fixtures";

/** The markup without Svelte's scoping classes and hydration comments, to match on what a reader sees. */
function plain(html: string): string {
  return html
    .replace(/<!--[^>]*-->/g, "")
    .replace(/ class="svelte-[a-z0-9]+"/g, "")
    .replace(/ svelte-[a-z0-9]+/g, "");
}

function candidate(item_id: number, decision: RecordedCandidate["decision"], bm25: number | null): RecordedCandidate {
  return recordedCandidate(item_id, decision, { bm25, bm25_rank: bm25 === null ? null : 1, cosine: 0.6123, fused: 0.0327 });
}

// A dropped one first, to check that the view puts the kept ones ahead of it.
const event = memoryRetrieved([
  candidate(2, "below_threshold", null),
  candidate(4, "kept", 7.25),
  candidate(9, "kept", 3.5),
]);

// The server renderer gives the markup without a DOM; a DOMParser-free read of the attributes is enough here.
/** The candidates in the markup, in order, as `<item id>:<decision>`. */
function candidates(html: string): string[] {
  return [...html.matchAll(/data-testid="inspector-candidate" data-decision="([a-z_]+)" data-item-id="(\d+)"/g)].map(
    (m) => `${m[2]}:${m[1]}`,
  );
}

describe("InspectorMemory", () => {
  const { body } = render(InspectorMemory, { props: { event } });

  it("lists the kept candidates first, then the dropped ones folded away", () => {
    expect(body).toContain('data-testid="inspector-memory"');
    expect(candidates(body)).toEqual(["4:kept", "9:kept", "2:below_threshold"]);
    const folded = body.slice(body.indexOf('data-testid="inspector-dropped"'));
    expect(body.indexOf('data-testid="inspector-dropped"')).toBeGreaterThan(0);
    expect(candidates(folded)).toEqual(["2:below_threshold"]);
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
  const [call] = toolCalls(stored(toolRuns.approvedWrite));
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
    const [fetch] = toolCalls(stored(toolRuns.retriedThenAlternative));
    const html = render(InspectorTool, { props: { call: fetch! } }).body;
    expect(html).toMatch(/data-testid="tool-attempts" data-count="3"[^>]*>3 attempts</);
    expect(html.match(/data-testid="tool-attempt"/g)).toHaveLength(3);
    expect(html).toMatch(/data-testid="tool-retry"[^>]*>\s*Retry: attempt 2 after 250 ms/);
    expect(html).toMatch(/data-testid="tool-alternative"[^>]*>Switched from http_fetch to mirror_fetch/);
  });
});

describe("RequestCard", () => {
  it("shows an approval's tool, effect, reason and exact arguments with Approve and Deny", () => {
    const { body } = render(RequestCard, { props: { chat: new ChatStore(), request: writeApproval } });
    expect(body).toContain('data-testid="approval" data-run-id="9" data-call-id="c1" data-tool="files_write"');
    expect(body).toMatch(/data-testid="approval-tool"[^>]*>files_write</);
    expect(body).toMatch(/data-testid="approval-effect" data-effect="write"/);
    expect(body).toContain("the user decides");
    const args = body.match(/data-testid="approval-arguments"[^>]*>([^<]*)</)![1]!;
    expect(args.replaceAll("&quot;", '"')).toBe('{\n  "path": "notes/todo.txt",\n  "content": "buy milk"\n}');
    expect(plain(body)).toMatch(/data-testid="approve"[^>]*>\s*Approve\s*</);
    expect(plain(body)).toMatch(/data-testid="deny"[^>]*>\s*Deny\s*</);
  });

  it("shows a question with a reply box", () => {
    const chat = new ChatStore();
    const { body } = render(RequestCard, { props: { chat, request: { type: "question", run_id: 4, question: "Which file?" } } });
    expect(body).toContain('data-testid="question" data-run-id="4"');
    expect(body).toMatch(/data-testid="question-text"[^>]*>Which file\?</);
    expect(body).toContain('data-testid="reply-input"');
    expect(plain(body)).toMatch(/data-testid="reply"[^>]*>\s*Reply\s*</);
  });
});

describe("InspectorStep for a guard check", () => {
  const rows = stepRows(stored(guardRuns.blocked));
  const checked = rows.find((r) => r.kind === "InputChecked")!;
  const { body } = render(InspectorStep, { props: { row: checked } });

  it("is a step of its own, shown as bad, with its action, origin, source and score without expanding", () => {
    expect(rows.map((r) => r.kind)).toEqual(["RunStarted", "InputChecked", "RunFinished"]);
    expect(body).toMatch(/data-testid="inspector-step" data-kind="InputChecked" data-seq="1" data-tone="bad"/);
    expect(body).toContain('data-testid="inspector-guard" data-action="block" data-origin="message" data-source="user"');
    expect(body).toMatch(/data-testid="guard-action" data-action="block"[^>]*>Blocked</);
    expect(body).toMatch(/data-testid="guard-origin"[^>]*>your message</);
    expect(body).toMatch(/data-testid="guard-source"[^>]*>source: user</);
    expect(body).toMatch(/data-testid="guard-score" data-value="0.9916"[^>]*>\s*score 0.99\s*</);
    expect(body).toContain("Keel did not send this message");
    expect(body).not.toContain('data-testid="inspector-payload"');
  });

  it("lists each reason's rule in words with its evidence as code", () => {
    const reasons = [...body.matchAll(/data-testid="guard-reason" data-rule="([a-z_]+)"[^>]*><span class="rule[^"]*">([^<]*)<\/span> <code[^>]*>([^<]*)<\/code>/g)];
    expect(reasons.map((m) => [m[1], m[2], m[3]])).toEqual([
      ["ignore_instructions", "ignore instructions", "ignore all previous instructions"],
      ["role_marker", "role marker", "&lt;|im_start|>"],
      ["new_persona", "new persona", "you are now"],
      ["reveal_prompt", "reveal prompt", "print your system prompt"],
    ]);
  });

  it("says Quarantined for a tool's withheld output", () => {
    const row = stepRows(stored(guardRuns.taintedWrite)).find((r) => r.kind === "InputChecked")!;
    const html = render(InspectorStep, { props: { row } }).body;
    expect(row.tone).toBe("warn");
    expect(html).toMatch(/data-testid="guard-action" data-action="quarantine"[^>]*>Quarantined</);
    expect(html).toMatch(/data-testid="guard-origin"[^>]*>output of call c1</);
  });
});

describe("InspectorMemory with a quarantined candidate", () => {
  const retrieved = guardRuns.quarantinedMemory.find((e) => e.kind === "MemoryRetrieved") as MemoryRetrievedEvent;
  const { body } = render(InspectorMemory, { props: { event: retrieved } });

  it("shows it apart from the kept and the dropped ones, in the open, with the guard's reason", () => {
    expect(body).toContain('data-kept="1" data-quarantined="1"');
    expect(candidates(body)).toEqual(["3:kept", "12:quarantined", "8:below_threshold"]);
    const withheld = body.slice(body.indexOf('data-testid="inspector-quarantined"'), body.indexOf('data-testid="inspector-dropped"'));
    expect(candidates(withheld)).toEqual(["12:quarantined"]);
    expect(withheld).toMatch(/data-testid="hit-decision" data-decision="quarantined"[^>]*>quarantined</);
    expect(withheld).toContain("withheld from the model as data only");
  });
});

describe("InspectorTool for a tool whose output was withheld", () => {
  const [read, write] = toolCalls(stored(guardRuns.taintedWrite));
  const readHtml = render(InspectorTool, { props: { call: read! } }).body;
  const writeHtml = render(InspectorTool, { props: { call: write! } }).body;

  it("marks the output untrusted and says the guard withheld it", () => {
    expect(readHtml).toContain('data-status="ok" data-quarantined="true"');
    expect(readHtml).toContain('data-testid="tool-untrusted"');
    expect(readHtml).toMatch(/data-testid="tool-quarantined"[\s\S]*Quarantined \(score 0.96\): withheld from the model as data only/);
  });

  it("stresses the taint in the write's approval reason", () => {
    expect(writeHtml).not.toContain('data-testid="tool-untrusted"');
    expect(writeHtml).toMatch(/data-testid="taint-reason"[^>]*>untrusted content from the output of files_read is in the context</);
  });
});

describe("RequestCard for a tainted call", () => {
  it("shows the whole reason and stresses the untrusted content it names", () => {
    const tainted = { call_id: "c2", arguments: { path: "notes.txt", content: "pwned" }, reason: taintReason };
    const { body } = render(RequestCard, { props: { chat: new ChatStore(), request: { ...writeApproval, ...tainted } } });
    expect(body).toContain('data-effect="write" data-tainted="true"');
    const reason = plain(body).match(/data-testid="approval-reason">([\s\S]*?)<\/dd>/)![1]!;
    expect(reason).toBe(
      'files_write can change things (Write) and <strong class="taint" data-testid="taint-reason">untrusted content from the output of files_read is in the context</strong>',
    );
  });
});

describe("MessageItem with guard notices", () => {
  function message(role: ChatMessage["role"], events: RunEvent[], text = ""): ChatMessage {
    return {
      key: `${role}-1`,
      role,
      text,
      runId: 9,
      streaming: false,
      outcome: role === "assistant" ? { status: "stopped", reason: "blocked" } : null,
      activity: null,
      toolRun: false,
      notices: runNotices(events),
    };
  }
  const onInspect = () => {};

  it("says under a blocked message that it was not sent, and why", () => {
    const body = plain(render(MessageItem, { props: { message: message("user", guardRuns.blocked, attack), onInspect } }).body);
    expect(body).toContain('data-guard="block"');
    expect(body).toMatch(/data-testid="guard-blocked" data-action="block"[^>]*><p><strong>Not sent:<\/strong> Keel did not send this message/);
    expect([...body.matchAll(/data-testid="guard-reason" data-rule="([a-z_]+)"/g)].map((m) => m[1])).toEqual([
      "ignore_instructions",
      "role_marker",
      "new_persona",
      "reveal_prompt",
    ]);
    expect(body).toContain("ignore instructions: <code>ignore all previous instructions</code>");
  });

  it("flags a warned message that was sent", () => {
    const body = plain(render(MessageItem, { props: { message: message("user", guardRuns.warned, "what is a system prompt?"), onInspect } }).body);
    expect(body).toMatch(/data-testid="guard-warned" data-action="warn"[^>]*><p><strong>Flagged:<\/strong> sent, with a warning/);
    expect(body).not.toContain("guard-blocked");
  });

  it("gives the reply to a blocked message no text of its own, and no guard notice", () => {
    const { body } = render(MessageItem, { props: { message: message("assistant", guardRuns.blocked), onInspect } });
    expect(body).toContain("No reply: Keel did not send your message to the model.");
    expect(body).not.toContain("(no text)");
    expect(body).not.toContain("guard-blocked");
  });

  it("says in the reply which input was withheld from the model", () => {
    const { body } = render(MessageItem, { props: { message: message("assistant", guardRuns.taintedWrite), onInspect } });
    expect(body).toMatch(
      /data-testid="guard-quarantined" data-origin="tool:c1"[^>]*>\s*Keel withheld the output of files_read \(call c1\) from the model: it looked like a prompt injection.\s*</,
    );
    expect(body).not.toContain("(no text)");
  });

  it("shows nothing of the guard on a message it let through", () => {
    const plain = { ...message("user", [], "hello"), notices: noNotices() };
    const { body } = render(MessageItem, { props: { message: plain, onInspect } });
    expect(body).not.toContain("guard-");
  });
});
