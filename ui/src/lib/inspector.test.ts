import { render } from "svelte/server";
import { describe, expect, it } from "vitest";
import InspectorMemory from "../components/InspectorMemory.svelte";
import type { RecordedCandidate } from "./bindings";
import type { MemoryRetrievedEvent } from "./steps";

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
