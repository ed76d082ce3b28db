// The chat view's state: the conversation list, the open conversation's messages, the draft, the turn being
// streamed, and what the open conversation's last run waits for. The core owns conversations and runs; this
// holds what is on screen and the drafts.
//
// A turn's events arrive over a Channel, and Tauri does not order channel messages against the command's
// reply: tokens can still arrive after `send_message` resolved. So a turn is finalised once, by whichever of
// `finished`/`paused` and the reply comes first, and later events for it are ignored; the reply's answer is
// the truth. Answering a paused run (`answer_run`) and resuming an interrupted one (`resume_run`) stream the
// rest of the run the same way, into a new reply.
//
// A paused run (an approval or a question) is the core's state, not the UI's: the request is what the core
// sent, and a reopened conversation whose last run waits asks the core again (`run_waiting`), so the pause
// survives a restart.
//
// What the guard decided about the run's inputs travels with the run's messages (`notices`): the user's bubble
// shows its own message flagged or not sent, the reply shows what was withheld from the model. A streamed run
// gathers them from its step events; a reopened conversation reads them from its last runs' logs, after the
// messages are on screen.
//
// Which backend a conversation's turns use is the user's choice in the chat (null: the default backend); it
// goes to the core with each new turn, which keeps it as the conversation's, so a reopened conversation (after a
// restart too) starts with the backend its last turn used. A choice made this session wins over the kept one.

import { answerActivity, runActivity } from "./activity";
import * as api from "./api";
import type {
  AppError,
  ConversationSummary,
  Message,
  RunOutcome,
  RunStatus,
  TurnEvent,
  TurnResult,
  UserAnswer,
  UserRequest,
} from "./bindings";
import { runFailure, toAppError } from "./errors";
import { addNotice, noNotices, runNotices, type RunNotices } from "./guard";

/** How many of a reopened conversation's latest runs are read for their guard notices (older ones: the Inspector). */
const NOTICE_RUNS = 20;

export type ChatMessage = {
  key: string;
  role: "user" | "assistant";
  text: string;
  runId: number | null;
  streaming: boolean;
  /** Known for replies streamed in this session; the stored messages do not carry it. */
  outcome: RunOutcome | null;
  /** While a run that uses tools works: what it is doing now ("Running files_write…"). */
  activity: string | null;
  /** The run uses tools, so its streamed tokens are JSON actions, not answer text, and are not shown. */
  toolRun: boolean;
  /**
   * What the guard decided about the run's inputs: the user's message shows the check of itself, a reply the
   * untrusted texts withheld from the model while it was produced.
   */
  notices: RunNotices;
};

type TurnCall = (onEvent: (event: TurnEvent) => void) => Promise<TurnResult>;

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
  /** What the open conversation's last run waits for (approve or deny a call, or answer a question). */
  waiting = $state<UserRequest | null>(null);
  /** The open conversation's last run when Keel stopped in the middle of it and it can be resumed. */
  interruptedRunId = $state<number | null>(null);
  /** The text typed into a question's reply box. */
  replyDraft = $state("");
  /** Counts the turns that settled (answered, failed, paused), so an open inspector knows to re-read its run. */
  settled = $state(0);
  /** The backend the open conversation's next turn uses; null: the default one. */
  backend = $state<string | null>(null);

  #nextKey = 0;
  /** A backend chosen this session for a conversation, not yet used by a turn there (the core keeps the used one). */
  #backends = new Map<number, string | null>();
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

  /** Chooses the backend for the open conversation's turns (null: the default); a new chat starts with the default. */
  chooseBackend(name: string | null): void {
    if (this.streaming) return;
    this.backend = name;
    if (this.conversationId !== null) this.#backends.set(this.conversationId, name);
  }

  newChat(): void {
    if (this.streaming) return;
    this.#openRequest += 1;
    this.conversationId = null;
    this.backend = null;
    this.messages = [];
    this.error = null;
    this.loadingConversation = false;
    this.#clearRun();
  }

  #clearRun(): void {
    this.waiting = null;
    this.interruptedRunId = null;
    this.replyDraft = "";
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
      // This session's choice, else the one the conversation's last turn made (kept by the core).
      const opened = detail.conversation;
      this.backend = this.#backends.has(opened.id) ? (this.#backends.get(opened.id) ?? null) : opened.backend;
      this.messages = detail.messages.flatMap((m) => this.#fromStored(m));
      this.#clearRun();
      void this.#loadNotices(detail.conversation.id, detail.messages);
      // A last run that waits for the user (or that Keel stopped in) is taken up where it is: ask the core.
      const last = [...detail.messages].reverse().find((m) => m.run_id !== null);
      if (last?.run_id != null && (last.run_status === "awaiting_user" || last.run_status === "interrupted")) {
        const waiting = await api.runWaiting(last.run_id);
        if (request !== this.#openRequest) return;
        if (waiting) this.waiting = waiting;
        else if (last.run_status === "interrupted") this.interruptedRunId = last.run_id;
      }
    } catch (e) {
      if (request === this.#openRequest) this.error = toAppError(e);
    } finally {
      if (request === this.#openRequest) this.loadingConversation = false;
    }
  }

  /**
   * Reads the guard's notices of a reopened conversation's latest runs from their logs, and puts them on the
   * runs' messages. In the background: the conversation is readable before, and a run that cannot be read
   * (an older core, a deleted run) just shows no notice.
   */
  async #loadNotices(conversationId: number, stored: readonly Message[]): Promise<void> {
    const runIds = [...new Set(stored.flatMap((m) => (m.run_id === null ? [] : [m.run_id])))].slice(-NOTICE_RUNS);
    const reads = await Promise.allSettled(
      runIds.map(async (id) => runNotices((await api.getRun(id)).events.map((e) => e.event))),
    );
    if (this.conversationId !== conversationId) return;
    reads.forEach((read, i) => {
      if (read.status !== "fulfilled") return;
      const notices = read.value;
      if (notices.message === null && notices.withheld.length === 0) return;
      for (const m of this.messages) if (m.runId === runIds[i]) m.notices = notices;
    });
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
        activity: null,
        toolRun: false,
        notices: noNotices(),
      },
    ];
  }

  async send(): Promise<void> {
    const typed = this.draft;
    const text = typed.trim();
    if (text === "" || this.streaming || this.waiting !== null) return;

    this.#openRequest += 1; // A slow get_conversation must not overwrite the turn.
    this.loadingConversation = false;
    this.draft = "";
    this.error = null;
    this.interruptedRunId = null; // A new turn leaves the interrupted one as it is.

    const startedIn = this.conversationId;
    const backend = this.backend;
    this.messages.push({ ...this.#message("u", "user", null), text });
    this.messages.push(this.#message("a", "assistant", null));
    const user = this.messages[this.messages.length - 2]!;
    const reply = this.messages[this.messages.length - 1]!; // The reactive proxy, so edits re-render.

    try {
      // Every run option has a default in the core; only the backend is chosen here, when the user chose one.
      const send: TurnCall =
        backend === null
          ? (onEvent) => api.sendMessage(startedIn, text, onEvent)
          : (onEvent) => api.sendMessage(startedIn, text, onEvent, { backend });
      await this.#stream(reply, send, {
        user,
        onFinal: (result) => {
          // Never lose what the user typed: put it back unless they have started typing something else.
          if (result.outcome?.status === "failed" && this.draft === "") this.draft = typed;
        },
      });
    } catch (e) {
      this.error = toAppError(e);
      this.#remove(reply.key);
      this.#remove(user.key);
      if (this.draft === "") this.draft = typed;
      // The core may have stored part of the turn; show what it kept.
      if (this.conversationId !== null) await this.#reloadKeepingError(this.conversationId);
    } finally {
      this.stopping = false;
      await this.refreshConversations();
    }
  }

  /** Approves the call the run waits on. */
  approve(): Promise<void> {
    const w = this.waiting;
    return w?.type === "approval" ? this.answer({ type: "approve", call_id: w.call_id }) : Promise.resolve();
  }

  /** Denies the call the run waits on; the model hears that the user said no (and why, when a note is given). */
  deny(note: string | null = null): Promise<void> {
    const w = this.waiting;
    const why = note?.trim() || null;
    return w?.type === "approval" ? this.answer({ type: "deny", call_id: w.call_id, note: why }) : Promise.resolve();
  }

  /** Replies to the run's question with the reply box's text. */
  reply(): Promise<void> {
    const text = this.replyDraft.trim();
    if (this.waiting?.type !== "question" || text === "") return Promise.resolve();
    return this.answer({ type: "reply", text });
  }

  /** Hands the user's answer to the paused run and streams the rest of it into a new reply. */
  async answer(answer: UserAnswer): Promise<void> {
    const request = this.waiting;
    if (request === null || this.streaming) return;
    this.waiting = null;
    this.replyDraft = "";
    const reply = this.#pushReply(request.run_id, answerActivity(answer));
    await this.#continue(reply, (onEvent) => api.answerRun(request.run_id, answer, onEvent));
  }

  /** Continues, from its log, the run Keel stopped in the middle of. */
  async resume(): Promise<void> {
    const runId = this.interruptedRunId;
    if (runId === null || this.streaming) return;
    this.interruptedRunId = null;
    const reply = this.#pushReply(runId, "Resuming…");
    await this.#continue(reply, (onEvent) => api.resumeRun(runId, onEvent));
  }

  #message(prefix: string, role: ChatMessage["role"], runId: number | null): ChatMessage {
    return {
      key: this.#key(prefix),
      role,
      text: "",
      runId,
      streaming: role === "assistant",
      outcome: null,
      activity: null,
      toolRun: false,
      notices: noNotices(),
    };
  }

  /**
   * A new streaming reply for the rest of a paused or interrupted run. Its tokens are not shown: a paused run
   * uses tools (its tokens are JSON actions), and a resumed run's mode is not known here; the answer replaces
   * the activity line when the run has one.
   */
  #pushReply(runId: number, activity: string): ChatMessage {
    this.error = null;
    this.#openRequest += 1;
    this.loadingConversation = false;
    this.messages.push({ ...this.#message("a", "assistant", runId), activity, toolRun: true });
    return this.messages[this.messages.length - 1]!;
  }

  async #continue(reply: ChatMessage, call: TurnCall): Promise<void> {
    const conversationId = this.conversationId;
    try {
      await this.#stream(reply, call);
    } catch (e) {
      this.error = toAppError(e);
      this.#remove(reply.key);
      // The core decides what the run waits for now (the same request if the answer was refused); show that.
      if (conversationId !== null) await this.#reloadKeepingError(conversationId);
    } finally {
      this.stopping = false;
      await this.refreshConversations();
    }
  }

  /**
   * Runs one call into the core that streams a turn (send, answer, resume) into `reply`, and settles it once:
   * with the result's answer and outcome, or as paused with the request the run waits for. The run's guard
   * notices go on the reply and, for a new turn, on the `user` message that started it. Rejects with the
   * command's error when the command itself failed and the turn had not settled.
   */
  async #stream(
    reply: ChatMessage,
    call: TurnCall,
    { user, onFinal }: { user?: ChatMessage; onFinal?: (result: TurnResult) => void } = {},
  ): Promise<void> {
    this.streaming = true;
    this.stopping = false;
    this.activeRunId = null;
    let final = false;

    const settle = () => {
      final = true;
      reply.streaming = false;
      reply.activity = null;
      this.streaming = false;
      this.activeRunId = null;
      this.settled += 1;
    };

    const pause = (request: UserRequest) => {
      if (final) return;
      settle();
      reply.runId = request.run_id;
      this.waiting = request;
      this.replyDraft = "";
      // A paused run has no answer yet; its card stands in for the reply until the user answers. A reply that
      // says what was withheld from the model stays, so that the notice is there while the user decides.
      if (reply.text === "" && reply.notices.withheld.length === 0) this.#remove(reply.key);
    };

    const finalise = (result: TurnResult) => {
      if (final) return;
      this.conversationId = result.conversation_id;
      if (result.waiting) {
        pause(result.waiting);
        return;
      }
      settle();
      reply.text = result.answer;
      reply.runId = result.run_id;
      reply.outcome = result.outcome;
      if (result.outcome) this.#outcomes.set(result.run_id, result.outcome);
      if (result.outcome?.status === "failed") {
        this.error = runFailure(result.outcome);
        if (reply.text === "") this.#remove(reply.key);
      }
      onFinal?.(result);
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
          if (!reply.toolRun) reply.text += event.text;
          break;
        case "step": {
          const e = event.event.event;
          if (e.kind === "RunStarted" && (e.mode ?? "chat") !== "chat") reply.toolRun = true;
          const activity = runActivity(e);
          if (activity !== null) reply.activity = activity;
          const notices = addNotice(reply.notices, e);
          if (notices !== reply.notices) {
            reply.notices = notices;
            if (user) user.notices = notices;
          }
          break;
        }
        case "paused":
          pause(event.request);
          break;
        case "finished":
          finalise(event.result);
          break;
      }
    };

    try {
      finalise(await call(onEvent));
    } catch (e) {
      if (final) return; // The turn settled from its events; the command's late failure changes nothing shown.
      final = true;
      this.streaming = false;
      this.activeRunId = null;
      throw e;
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
