import { beforeEach, describe, expect, it, vi } from "vitest";
import type { ConversationDetail, Message, StoredEvent, TurnEvent, TurnResult, UserRequest } from "./bindings";
import { runStarted, writeApproval } from "./fixtures";

// The store talks to the core only through ./api; these tests play the core's side of a turn.
const core = vi.hoisted(() => ({
  sendMessage: vi.fn(),
  answerRun: vi.fn(),
  resumeRun: vi.fn(),
  runWaiting: vi.fn(),
  listConversations: vi.fn(async () => []),
  getConversation: vi.fn(),
  cancelRun: vi.fn(async () => true),
  getRun: vi.fn(),
}));
vi.mock("./api", () => core);

const { ChatStore } = await import("./chat.svelte");
const { attack, blockedCheck, guardRuns, quarantinedOutput, taintReason } = await import("./guard.fixtures");

function result(answer: string, outcome: TurnResult["outcome"] = { status: "answered" }): TurnResult {
  return {
    conversation_id: 5,
    run_id: 9,
    answer,
    outcome,
    waiting: null,
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

  it("shows a failed run's error with the kind of failure it recorded, not always the backend's", async () => {
    for (const [kind, shown] of [["backend", "backend"], ["crash", "internal"], ["tools", "tool"], ["log", "store"]] as const) {
      const chat = new ChatStore();
      core.sendMessage.mockResolvedValue(result("", { status: "failed", error: `it failed (${kind})`, kind }));
      chat.draft = "hello";
      await chat.send();
      expect(chat.error?.kind).toBe(shown);
      expect(chat.error?.message).toBe(`it failed (${kind})`);
    }
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

const approval = writeApproval;

function paused(request: UserRequest): TurnResult {
  return { ...result(""), outcome: null, waiting: request };
}

/** A chat whose message `draft` started a run that now waits on `request`. */
async function waitingOn(request: UserRequest, draft = "Save a note to a file: buy milk") {
  const chat = new ChatStore();
  core.sendMessage.mockResolvedValue(paused(request));
  chat.draft = draft;
  await chat.send();
  return chat;
}

function step(seq: number, event: StoredEvent["event"]): TurnEvent {
  return { type: "step", event: { run_id: 9, seq, at_ms: 1_000 + seq, event } };
}

const reactStarted = runStarted("Save a note to a file: buy milk", { mode: "react", tools: ["files_write"] });

describe("a run that pauses for the user", () => {
  it("shows the request instead of a reply, and hides the tool run's JSON tokens", async () => {
    const chat = new ChatStore();
    core.sendMessage.mockImplementation(async (_id: number | null, _text: string, onEvent: (e: TurnEvent) => void) => {
      onEvent({ type: "started", conversation_id: 5, run_id: 9 });
      onEvent(step(0, reactStarted));
      onEvent({ type: "token", text: '{"tool": "files_write"' });
      expect(chat.messages[1]!.text).toBe("");
      expect(chat.messages[1]!.activity).toBe("Working on it…");
      onEvent({ type: "paused", request: approval });
      return paused(approval);
    });
    chat.draft = "Save a note to a file: buy milk";
    await chat.send();

    expect(chat.waiting).toEqual(approval);
    expect(chat.streaming).toBe(false);
    expect(chat.messages.map((m) => m.role)).toEqual(["user"]);
    expect(chat.error).toBeNull();
  });

  it("pauses from the command's result when the paused event trails it", async () => {
    const chat = new ChatStore();
    let emit: (e: TurnEvent) => void = () => {};
    core.sendMessage.mockImplementation(async (_id: number | null, _text: string, onEvent: (e: TurnEvent) => void) => {
      emit = onEvent;
      return paused(approval);
    });
    chat.draft = "Save a note to a file: buy milk";
    await chat.send();
    emit({ type: "paused", request: { ...approval, call_id: "late" } });
    expect(chat.waiting).toEqual(approval);
    expect(chat.conversationId).toBe(5);
  });

  it("approves, streams the rest of the run into a new reply and shows the answer", async () => {
    const chat = await waitingOn(approval);

    let during: { streaming: boolean; waiting: UserRequest | null; activity: string | null } | null = null;
    core.answerRun.mockImplementation(async (_run: number, _answer: unknown, onEvent: (e: TurnEvent) => void) => {
      onEvent({ type: "started", conversation_id: 5, run_id: 9 });
      onEvent(step(7, { kind: "UserAnswered", answer: { type: "approve", call_id: "c1" } }));
      onEvent(
        step(8, {
          kind: "ToolCalled",
          call_id: "c1",
          tool: "files_write",
          arguments: approval.arguments,
          attempt: 1,
          effect: "write",
          idempotent: true,
          untrusted_output: false,
        }),
      );
      onEvent({ type: "token", text: '{"answer":' });
      const reply = chat.messages.at(-1)!;
      during = { streaming: chat.streaming, waiting: chat.waiting, activity: reply.activity };
      return result("Saved your note.");
    });
    await chat.approve();

    expect(core.answerRun).toHaveBeenCalledWith(9, { type: "approve", call_id: "c1" }, expect.any(Function));
    expect(during).toEqual({ streaming: true, waiting: null, activity: "Running files_write…" });
    expect(chat.waiting).toBeNull();
    expect(chat.messages.map((m) => [m.role, m.text, m.runId, m.streaming])).toEqual([
      ["user", "Save a note to a file: buy milk", null, false],
      ["assistant", "Saved your note.", 9, false],
    ]);
  });

  it("denies with a note", async () => {
    const chat = await waitingOn(approval, "Save a note to a file: sell milk");
    core.answerRun.mockResolvedValue(result("I did not save it."));
    await chat.deny("  not now ");
    expect(core.answerRun).toHaveBeenCalledWith(9, { type: "deny", call_id: "c1", note: "not now" }, expect.any(Function));
    expect(chat.messages.at(-1)!.text).toBe("I did not save it.");
  });

  it("replies to a question with the reply box's text", async () => {
    const question: UserRequest = { type: "question", run_id: 9, question: "Which file?" };
    const chat = await waitingOn(question, "Read the file");
    core.answerRun.mockResolvedValue(result("Done."));
    expect(chat.waiting).toEqual(question);
    await chat.reply(); // Nothing typed: nothing sent.
    expect(core.answerRun).not.toHaveBeenCalled();
    chat.replyDraft = "notes/todo.txt";
    await chat.reply();
    expect(core.answerRun).toHaveBeenCalledWith(9, { type: "reply", text: "notes/todo.txt" }, expect.any(Function));
    expect(chat.replyDraft).toBe("");
  });

  it("does not send a new message while a request waits", async () => {
    const chat = await waitingOn(approval);
    chat.draft = "something else";
    await chat.send();
    expect(core.sendMessage).toHaveBeenCalledTimes(1);
    expect(chat.draft).toBe("something else");
  });

  it("shows the core's request again when the answer is refused", async () => {
    const chat = await waitingOn(approval);
    const refused = { kind: "invalid_input", message: "the run is not waiting for that answer", hint: null };
    core.answerRun.mockRejectedValue(refused);
    core.getConversation.mockResolvedValue(detail([userMessage("awaiting_user")]));
    core.runWaiting.mockResolvedValue(approval);
    await chat.approve();
    expect(chat.error).toEqual(refused);
    expect(chat.waiting).toEqual(approval);
    expect(chat.streaming).toBe(false);
  });
});

function userMessage(run_status: Message["run_status"]): Message {
  return {
    id: 1,
    conversation_id: 5,
    role: "user",
    content: "Save a note to a file: buy milk",
    run_id: 9,
    run_status,
    created_ms: 1_000,
  };
}

function detail(messages: Message[], backend: string | null = null): ConversationDetail {
  return {
    conversation: { id: 5, title: "Save a note", created_ms: 1_000, updated_ms: 1_000, message_count: messages.length, backend },
    messages,
  };
}

describe("ChatStore.openConversation", () => {
  it("asks the core what a waiting last run waits for, and shows it again", async () => {
    const chat = new ChatStore();
    core.getConversation.mockResolvedValue(detail([userMessage("awaiting_user")]));
    core.runWaiting.mockResolvedValue(approval);
    await chat.openConversation(5);
    expect(core.runWaiting).toHaveBeenCalledWith(9);
    expect(chat.waiting).toEqual(approval);
  });

  it("offers to resume an interrupted run that waits for nothing", async () => {
    const chat = new ChatStore();
    core.getConversation.mockResolvedValue(detail([userMessage("interrupted")]));
    core.runWaiting.mockResolvedValue(null);
    await chat.openConversation(5);
    expect(chat.waiting).toBeNull();
    expect(chat.interruptedRunId).toBe(9);

    core.resumeRun.mockResolvedValue(result("Resumed answer."));
    await chat.resume();
    expect(core.resumeRun).toHaveBeenCalledWith(9, expect.any(Function));
    expect(chat.interruptedRunId).toBeNull();
    expect(chat.messages.at(-1)!.text).toBe("Resumed answer.");
  });

  it("does not ask about a finished run", async () => {
    const chat = new ChatStore();
    core.getConversation.mockResolvedValue(detail([userMessage("answered")]));
    await chat.openConversation(5);
    expect(core.runWaiting).not.toHaveBeenCalled();
    expect(chat.waiting).toBeNull();
  });
});

describe("the guard's notices", () => {
  function streamRun(events: StoredEvent["event"][], final: TurnResult, request?: UserRequest) {
    core.sendMessage.mockImplementation(async (_id: number | null, _text: string, onEvent: (e: TurnEvent) => void) => {
      onEvent({ type: "started", conversation_id: 5, run_id: 9 });
      events.forEach((e, seq) => onEvent(step(seq, e)));
      if (request) onEvent({ type: "paused", request });
      return final;
    });
  }

  it("puts a blocked message's check under the message, and keeps the empty stopped reply to inspect", async () => {
    const chat = new ChatStore();
    const stopped = { status: "stopped", reason: blockedCheck.explanation } as const;
    streamRun(guardRuns.blocked, result("", stopped));
    chat.draft = attack;
    await chat.send();

    const [user, reply] = chat.messages;
    expect(chat.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(user!.notices.message).toEqual(blockedCheck);
    expect(reply).toMatchObject({ text: "", runId: 9, streaming: false, outcome: stopped });
    expect(reply!.notices.message?.action).toBe("block");
    expect(chat.error).toBeNull();
    expect(chat.draft).toBe(""); // Not a failure: the text is not put back.
  });

  it("keeps a paused reply that says what was withheld, next to the tainted call's card", async () => {
    const chat = new ChatStore();
    const tainted: UserRequest = { ...approval, call_id: "c2", arguments: { path: "notes.txt", content: "pwned" }, reason: taintReason };
    streamRun(guardRuns.taintedWrite, paused(tainted), tainted);
    chat.draft = "Read my todo file please";
    await chat.send();

    expect(chat.waiting).toEqual(tainted);
    expect(chat.messages.map((m) => [m.role, m.text, m.runId])).toEqual([
      ["user", "Read my todo file please", null],
      ["assistant", "", 9],
    ]);
    expect(chat.messages[0]!.notices.message).toBeNull();
    expect(chat.messages[1]!.notices.withheld).toEqual([
      { origin: "tool:c1", what: "the output of files_read (call c1)", check: quarantinedOutput },
    ]);
  });

  it("reads a reopened conversation's notices from its runs' logs", async () => {
    const chat = new ChatStore();
    const reply: Message = { ...userMessage("stopped"), id: 2, role: "assistant", content: "" };
    core.getConversation.mockResolvedValue(detail([{ ...userMessage("stopped"), content: attack }, reply]));
    core.getRun.mockResolvedValue({
      run: { id: 9, conversation_id: 5, status: "stopped", input: attack, started_ms: 1, finished_ms: 2, prompt_tokens: 0, completion_tokens: 0 },
      events: guardRuns.blocked.map((event, seq) => ({ run_id: 9, seq, at_ms: seq, event })),
    });
    await chat.openConversation(5);

    expect(chat.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    await vi.waitFor(() => expect(chat.messages[0]!.notices.message).toEqual(blockedCheck));
    expect(chat.messages[1]!.notices.message?.action).toBe("block");
    expect(core.getRun).toHaveBeenCalledTimes(1);
    expect(core.getRun).toHaveBeenCalledWith(9);
  });

  it("shows the conversation without notices when a run's log cannot be read", async () => {
    const chat = new ChatStore();
    core.getConversation.mockResolvedValue(detail([userMessage("answered")]));
    core.getRun.mockRejectedValue({ kind: "not_found", message: "no run 9", hint: null });
    await chat.openConversation(5);
    await vi.waitFor(() => expect(core.getRun).toHaveBeenCalled());
    expect(chat.error).toBeNull();
    expect(chat.messages[0]!.notices.message).toBeNull();
  });
});

describe("the conversation's backend", () => {
  const other = (id: number, backend: string | null = null): ConversationDetail => ({
    conversation: { id, title: "Other", created_ms: 1_000, updated_ms: 1_000, message_count: 0, backend },
    messages: [],
  });

  it("takes a reopened conversation's backend from the core, unless chosen again this session", async () => {
    const chat = new ChatStore();
    core.getConversation.mockResolvedValueOnce(other(5, "lab-server"));
    await chat.openConversation(5);
    expect(chat.backend).toBe("lab-server");
    core.sendMessage.mockResolvedValue(result("Hi."));
    chat.draft = "hello";
    await chat.send();
    expect(core.sendMessage).toHaveBeenLastCalledWith(5, "hello", expect.any(Function), { backend: "lab-server" });

    chat.chooseBackend(null); // Back to the default: the session's choice wins over what the core kept.
    core.getConversation.mockResolvedValueOnce(other(8));
    await chat.openConversation(8);
    core.getConversation.mockResolvedValueOnce(other(5, "lab-server"));
    await chat.openConversation(5);
    expect(chat.backend).toBeNull();
  });

  it("sends no options while the default is chosen, and the chosen backend otherwise", async () => {
    const chat = new ChatStore();
    core.sendMessage.mockResolvedValue(result("Paris."));
    chat.draft = "capital of France?";
    await chat.send();
    expect(core.sendMessage).toHaveBeenLastCalledWith(null, "capital of France?", expect.any(Function));

    chat.chooseBackend("lab-server");
    chat.draft = "and of Italy?";
    await chat.send();
    expect(core.sendMessage).toHaveBeenLastCalledWith(5, "and of Italy?", expect.any(Function), { backend: "lab-server" });
  });

  it("remembers the choice per conversation for the session", async () => {
    const chat = new ChatStore();
    core.sendMessage.mockResolvedValue(result("Paris."));
    chat.chooseBackend("lab-server");
    chat.draft = "capital of France?";
    await chat.send(); // A new chat: the core keeps the choice as conversation 5's.
    expect(core.sendMessage).toHaveBeenLastCalledWith(null, "capital of France?", expect.any(Function), {
      backend: "lab-server",
    });

    chat.newChat();
    expect(chat.backend).toBeNull();

    core.getConversation.mockResolvedValueOnce(other(6));
    await chat.openConversation(6);
    expect(chat.backend).toBeNull();
    chat.chooseBackend("cloud");

    core.getConversation.mockResolvedValueOnce(detail([userMessage("answered")], "lab-server"));
    await chat.openConversation(5);
    expect(chat.backend).toBe("lab-server");

    core.getConversation.mockResolvedValueOnce(other(6));
    await chat.openConversation(6);
    expect(chat.backend).toBe("cloud");
  });

  it("keeps a new chat's choice when its first turn fails after the conversation was made", async () => {
    const chat = new ChatStore();
    core.sendMessage.mockImplementation(async (_id: number | null, _text: string, onEvent: (e: TurnEvent) => void) => {
      onEvent({ type: "started", conversation_id: 5, run_id: 9 });
      throw { kind: "backend", message: "lab-server: connection refused", hint: null };
    });
    // The core kept the backend with the turn's first transaction, before the backend failed.
    core.getConversation.mockResolvedValue(detail([userMessage("failed")], "lab-server"));
    chat.chooseBackend("lab-server");
    chat.draft = "hello";
    await chat.send();
    expect(chat.error?.message).toBe("lab-server: connection refused");
    expect(chat.conversationId).toBe(5);
    expect(chat.backend).toBe("lab-server"); // The reload after the failure did not forget it.
  });

  it("is not changed while a reply streams", async () => {
    const chat = new ChatStore();
    let resolve: (r: TurnResult) => void = () => {};
    core.sendMessage.mockImplementation(() => new Promise<TurnResult>((r) => (resolve = r)));
    chat.draft = "hello";
    const sending = chat.send();
    chat.chooseBackend("cloud");
    expect(chat.backend).toBeNull();
    resolve(result("Hi."));
    await sending;
  });
});
