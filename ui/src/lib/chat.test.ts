import { beforeEach, describe, expect, it, vi } from "vitest";
import type { TurnEvent, TurnResult } from "./bindings";

// The store talks to the core only through ./api; these tests play the core's side of a turn.
const core = vi.hoisted(() => ({
  sendMessage: vi.fn(),
  listConversations: vi.fn(async () => []),
  getConversation: vi.fn(),
  cancelRun: vi.fn(async () => true),
}));
vi.mock("./api", () => core);

const { ChatStore } = await import("./chat.svelte");

function result(answer: string, outcome: TurnResult["outcome"] = { status: "answered" }): TurnResult {
  return {
    conversation_id: 5,
    run_id: 9,
    answer,
    outcome,
    prompt_tokens: 10,
    completion_tokens: 3,
    duration_ms: 100,
    ttft_ms: 20,
  };
}

beforeEach(() => {
  vi.clearAllMocks();
});

describe("ChatStore.send", () => {
  it("streams tokens into the reply and finalises with the core's answer", async () => {
    const chat = new ChatStore();
    const seen: string[] = [];
    let emit: (e: TurnEvent) => void = () => {};
    let resolve: (r: TurnResult) => void = () => {};
    core.sendMessage.mockImplementation((_id: number | null, _text: string, onEvent: (e: TurnEvent) => void) => {
      emit = onEvent;
      return new Promise<TurnResult>((r) => (resolve = r));
    });

    chat.draft = "  What is the capital of France?\n";
    const sending = chat.send();
    expect(core.sendMessage).toHaveBeenCalledWith(null, "What is the capital of France?", expect.any(Function));
    expect(chat.draft).toBe("");
    expect(chat.streaming).toBe(true);

    emit({ type: "started", conversation_id: 5, run_id: 9 });
    for (const text of ["Par", "is", "."]) {
      emit({ type: "token", text });
      seen.push(chat.messages[1]!.text);
    }
    expect(seen).toEqual(["Par", "Paris", "Paris."]);
    expect(chat.activeRunId).toBe(9);
    expect(chat.conversationId).toBe(5);

    resolve(result("Paris."));
    await sending;
    emit({ type: "token", text: " (late)" }); // Channel messages may trail the reply.

    expect(chat.streaming).toBe(false);
    expect(chat.messages.map((m) => [m.role, m.text, m.runId, m.streaming])).toEqual([
      ["user", "What is the capital of France?", null, false],
      ["assistant", "Paris.", 9, false],
    ]);
    expect(core.listConversations).toHaveBeenCalled();
  });

  it("keeps a stopped run's partial answer with its outcome", async () => {
    const chat = new ChatStore();
    core.sendMessage.mockResolvedValue(result("Par", { status: "stopped", reason: "cancelled by the user" }));
    chat.draft = "hello";
    await chat.send();
    expect(chat.messages[1]!.outcome).toEqual({ status: "stopped", reason: "cancelled by the user" });
    expect(chat.error).toBeNull();
  });

  it("puts the text back and shows the typed error when the core rejects", async () => {
    const chat = new ChatStore();
    const error = { kind: "input_too_long", message: "The message is too long.", hint: "Import it as a document." };
    core.sendMessage.mockRejectedValue(error);
    chat.draft = "a very long text";
    await chat.send();
    expect(chat.draft).toBe("a very long text");
    expect(chat.error).toEqual(error);
    expect(chat.messages).toEqual([]);
    expect(chat.streaming).toBe(false);
  });
});
