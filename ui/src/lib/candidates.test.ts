import { describe, expect, it } from "vitest";
import type { MemoryItem, RecordedCandidate, RetrievalCandidate } from "./bindings";
import { candidateView } from "./candidates";

const scores = {
  bm25: null,
  bm25_rank: null,
  cosine: 0.61,
  vector_rank: 2,
  fused: 0.0327,
  tokens: 12,
  decision: "over_budget",
  reason: "no room left",
} satisfies Partial<RecordedCandidate>;

const item: MemoryItem = {
  id: 7,
  kind: "document_chunk",
  text: "A sourdough starter is flour and water.",
  source: "/docs/bread.md",
  provenance: "document",
  pinned: false,
  created_ms: 1,
  updated_ms: 2,
  deleted: true,
  document_id: 3,
  embedding_model: "minilm",
};

describe("candidateView", () => {
  it("reads a search's candidate through its item", () => {
    const searched: RetrievalCandidate = { item, ...scores };
    expect(candidateView(searched)).toEqual({
      id: 7,
      kind: "document_chunk",
      source: "/docs/bread.md",
      text: "A sourdough starter is flour and water.",
      deleted: true,
      ...scores,
    });
  });

  it("reads a recorded candidate's flat fields, never deleted", () => {
    const recorded: RecordedCandidate = { item_id: 7, kind: item.kind, source: item.source, provenance: "document", text: item.text, ...scores };
    expect(candidateView(recorded)).toEqual({ ...candidateView({ item, ...scores }), deleted: false });
  });
});
