// One retrieval candidate as the UI shows it, whichever way it came: a search's `RetrievalCandidate` carries the
// whole memory item, a run's `RecordedCandidate` (the Inspector's) the few fields of it the run recorded. Both
// render through components/MemoryCandidate.svelte, so a candidate reads the same in the Memory view and in the
// Inspector.

import type { CandidateDecision, MemoryKind, RecordedCandidate, RetrievalCandidate } from "./bindings";

export type CandidateView = {
  id: number;
  kind: MemoryKind;
  source: string;
  text: string;
  /** Only a search's candidate can know; a recorded one is never shown as deleted. */
  deleted: boolean;
  bm25: number | null;
  bm25_rank: number | null;
  cosine: number;
  vector_rank: number | null;
  fused: number;
  tokens: number;
  decision: CandidateDecision;
  reason: string;
};

export function candidateView(candidate: RetrievalCandidate | RecordedCandidate): CandidateView {
  const { bm25, bm25_rank, cosine, vector_rank, fused, tokens, decision, reason } = candidate;
  const scores = { bm25, bm25_rank, cosine, vector_rank, fused, tokens, decision, reason };
  if ("item" in candidate) {
    const { id, kind, source, text, deleted } = candidate.item;
    return { id, kind, source, text, deleted, ...scores };
  }
  const { item_id, kind, source, text } = candidate;
  return { id: item_id, kind, source, text, deleted: false, ...scores };
}
