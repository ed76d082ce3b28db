// A long job the core runs for the user and reports on over a Channel: a document import (documents.svelte.ts),
// a model download (download.svelte.ts). This holds what every such job has: whether it runs, whether the user
// asked it to stop, its latest progress and its failure. Each job adds what it is about and what came of it.
//
// Tauri does not order channel messages against the command's reply, so progress that arrives after the command
// settled is ignored. The progress stays on screen after the job, with what came of it, until the user dismisses
// it or starts another: a small job can finish before anyone sees it move, and its outcome should not vanish.

import type { AppError } from "./bindings";
import { attempt, toAppError } from "./errors";

export type JobState = "idle" | "running" | "done" | "cancelled" | "failed";

export class Job<Progress> {
  running = $state(false);
  cancelling = $state(false);
  /** The latest progress while running; the last one afterwards. */
  progress = $state<Progress | null>(null);
  error = $state<AppError | null>(null);
  /** Whether the job failed because the user had asked it to stop. */
  cancelled = $state(false);

  #cancel: () => Promise<unknown>;

  /** `cancel` asks the core to stop the job under way. */
  constructor(cancel: () => Promise<unknown>) {
    this.#cancel = cancel;
  }

  /**
   * Runs `command`, which reports progress to the function it is handed, and gives its result to `onResult` while
   * the job still counts as running (so that no one sees it over without its outcome). Clears the last outcome
   * first; a failure lands in `error`.
   */
  protected async run<Result>(
    command: (onProgress: (progress: Progress) => void) => Promise<Result>,
    onResult: (result: Result) => void,
  ): Promise<void> {
    this.clear();
    this.running = true;
    this.cancelling = false;
    let final = false;
    try {
      const result = await command((progress) => {
        if (!final) this.progress = progress;
      });
      final = true;
      this.error = null; // A failed cancel request does not matter once the job is over.
      onResult(result);
    } catch (e) {
      final = true;
      this.cancelled = this.cancelling;
      this.error = toAppError(e);
    } finally {
      this.running = false;
      this.cancelling = false;
    }
  }

  async cancel(): Promise<void> {
    if (!this.running || this.cancelling) return;
    this.cancelling = true;
    await attempt(this.#cancel, (e) => {
      this.error = e;
      this.cancelling = false;
    });
  }

  /** Clears a finished job's progress and outcome. */
  dismiss(): void {
    if (!this.running) this.clear();
  }

  /** Forgets the last job's progress and outcome; a job's own outcome is cleared by its override. */
  protected clear(): void {
    this.progress = null;
    this.error = null;
    this.cancelled = false;
  }
}
