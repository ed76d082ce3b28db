// The chat view's state: the conversation list, the open conversation's messages, the draft, and the turn
// being streamed. The core owns conversations and runs; this holds what is on screen and the draft.
//
// A turn's events arrive over a Channel, and Tauri does not order channel messages against the command's
// reply: tokens can still arrive after `send_message` resolved. So a turn is finalised once, by whichever of
// `finished` and the reply comes first, and later events for it are ignored; the reply's answer is the truth.

import * as api from "./api";
import type { AppError, ConversationSummary, Message, RunOutcome, RunStatus, TurnEvent, TurnResult } from "./bindings";
import { toAppError } from "./errors";

export type ChatMessage = {
  key: string;
  role: "user" | "assistant";
  text: string;
  runId: number | null;
  streaming: boolean;
  /** Known for replies streamed in this session; the stored messages do not carry it. */
  outcome: RunOutcome | null;
};

export function byRecency(list: readonly ConversationSummary[]): ConversationSummary[] {
  return [...list].sort((a, b) => b.updated_ms - a.updated_ms || b.id - a.id);
}

export class ChatStore {
  conversations = $state<ConversationSummary[]>([]);
  conversationId = $state<number | null>(null);
  messages = $state<ChatMessage[]>([]);
  draft = $state("");
  error = $state<AppError | null>(null);
  listError = $state<AppError | null>(null);
  loadingConversation = $state(false);
  /** True from Send until the turn is finalised. */
  streaming = $state(false);
  /** The run being streamed, once the core has said which it is. */
  activeRunId = $state<number | null>(null);
  stopping = $state(false);

  #nextKey = 0;
  #openRequest = 0;
  /** Outcomes of the runs streamed in this session, to keep the "stopped" marker when a chat is reopened. */
  #outcomes = new Map<number, RunOutcome>();

  get title(): string {
    if (this.conversationId === null) return "New chat";
    return this.conversations.find((c) => c.id === this.conversationId)?.title || "Untitled";
  }

  #key(prefix: string): string {
    this.#nextKey += 1;
    return `${prefix}-${this.#nextKey}`;
  }

  async refreshConversations(): Promise<void> {
    try {
      this.conversations = byRecency(await api.listConversations());
      this.listError = null;
    } catch (e) {
      this.listError = toAppError(e);
    }
  }

  newChat(): void {
    if (this.streaming) return;
    this.#openRequest += 1;
    this.conversationId = null;
    this.messages = [];
    this.error = null;
    this.loadingConversation = false;
  }

  async openConversation(id: number): Promise<void> {
    if (this.streaming) return;
    const request = ++this.#openRequest;
    this.error = null;
    this.loadingConversation = true;
    try {
      const detail = await api.getConversation(id);
      if (request !== this.#openRequest) return;
      this.conversationId = detail.conversation.id;
      this.messages = detail.messages.flatMap((m) => this.#fromStored(m));
    } catch (e) {
      if (request === this.#openRequest) this.error = toAppError(e);
    } finally {
      if (request === this.#openRequest) this.loadingConversation = false;
    }
  }

  #fromStored(m: Message): ChatMessage[] {
    if (m.role === "system") return [];
    return [
      {
        key: `m-${m.id}`,
        role: m.role,
        text: m.content,
        runId: m.run_id,
        streaming: false,
        outcome:
          m.run_id === null || m.role !== "assistant"
            ? null
            : (this.#outcomes.get(m.run_id) ?? storedOutcome(m.run_status)),
      },
    ];
  }

  async send(): Promise<void> {
    const typed = this.draft;
    const text = typed.trim();
    if (text === "" || this.streaming) return;

    this.#openRequest += 1; // A slow get_conversation must not overwrite the turn.
    this.loadingConversation = false;
    this.draft = "";
    this.error = null;
    this.streaming = true;
    this.stopping = false;
    this.activeRunId = null;

    const startedIn = this.conversationId;
    this.messages.push({ key: this.#key("u"), role: "user", text, runId: null, streaming: false, outcome: null });
    this.messages.push({ key: this.#key("a"), role: "assistant", text: "", runId: null, streaming: true, outcome: null });
    const user = this.messages[this.messages.length - 2]!;
    const reply = this.messages[this.messages.length - 1]!; // The reactive proxy, so edits re-render.

    let final = false;
    const finalise = (result: TurnResult) => {
      if (final) return;
      final = true;
      reply.text = result.answer;
      reply.runId = result.run_id;
      reply.outcome = result.outcome;
      reply.streaming = false;
      this.#outcomes.set(result.run_id, result.outcome);
      this.conversationId = result.conversation_id;
      this.streaming = false;
      this.activeRunId = null;
      if (result.outcome.status === "failed") {
        this.error = { kind: "backend", message: result.outcome.error, hint: null };
        if (reply.text === "") this.#remove(reply.key);
        if (this.draft === "") this.draft = typed;
      }
    };

    const onEvent = (event: TurnEvent) => {
      if (final) return;
      switch (event.type) {
        case "started":
          this.activeRunId = event.run_id;
          reply.runId = event.run_id;
          if (this.conversationId === null) {
            this.conversationId = event.conversation_id;
            void this.refreshConversations();
          }
          break;
        case "token":
          reply.text += event.text;
          break;
        case "step":
          break;
        case "finished":
          finalise(event.result);
          break;
      }
    };

    try {
      finalise(await api.sendMessage(startedIn, text, onEvent));
    } catch (e) {
      final = true;
      this.error = toAppError(e);
      this.#remove(reply.key);
      this.#remove(user.key);
      // Never lose what the user typed: put it back unless they have started typing something else.
      if (this.draft === "") this.draft = typed;
      this.streaming = false;
      this.activeRunId = null;
      // The core may have stored part of the turn; show what it kept.
      if (this.conversationId !== null) await this.#reloadKeepingError(this.conversationId);
    } finally {
      this.stopping = false;
      await this.refreshConversations();
    }
  }

  async #reloadKeepingError(id: number): Promise<void> {
    const error = this.error;
    await this.openConversation(id);
    this.error = error; // The send's error is the one to show, not the reload's.
  }

  #remove(key: string): void {
    const i = this.messages.findIndex((m) => m.key === key);
    if (i >= 0) this.messages.splice(i, 1);
  }

  async stop(): Promise<void> {
    const runId = this.activeRunId;
    if (runId === null || this.stopping) return;
    this.stopping = true;
    try {
      await api.cancelRun(runId);
    } catch (e) {
      this.error = toAppError(e);
      this.stopping = false;
    }
  }
}

/** How a reopened answer's run ended, from the status the core stores with it (the reason stays in the run). */
function storedOutcome(status: RunStatus | null): RunOutcome | null {
  switch (status) {
    case "answered":
      return { status: "answered" };
    case "stopped":
      return { status: "stopped", reason: "stopped before the answer was complete" };
    case "partial":
      return { status: "partial", reason: "the answer is partial" };
    default:
      return null;
  }
}
