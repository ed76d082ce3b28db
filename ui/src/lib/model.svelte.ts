// The model banner's state: what `status` says about the model, and the progress of `load_model`.
// The core owns the model; this only mirrors the last status it reported.

import * as api from "./api";
import type { AppError, LoadProgress, ModelState, ModelStatus } from "./bindings";
import { toAppError } from "./errors";

/** `checking` is the UI's own state before the first `status` answer. */
export type BannerState = ModelState | "checking";

export class ModelStatusStore {
  status = $state<ModelStatus | null>(null);
  progress = $state<LoadProgress | null>(null);
  /** A failure of the command itself (as opposed to a model state the core reported). */
  failure = $state<AppError | null>(null);
  dataDir = $state<string | null>(null);

  #busy = false;

  get state(): BannerState {
    if (this.failure) return "error";
    return this.status?.state ?? "checking";
  }

  get ready(): boolean {
    return this.state === "ready";
  }

  /** Whether a load is under way, or about to start (`not_loaded` loads as soon as it is seen). */
  get loading(): boolean {
    return this.state === "not_loaded" || this.state === "loading";
  }

  /** What to tell the user about a model that is not ready: the command's own failure, else the core's words. */
  get message(): string {
    return this.failure?.message ?? this.status?.message ?? "";
  }

  get hint(): string | null {
    return this.failure ? this.failure.hint : (this.status?.hint ?? null);
  }

  /** Ask the core for the model's status and load it when it is present but not loaded. */
  async start(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    this.failure = null;
    try {
      const app = await api.status();
      this.dataDir = app.data_dir;
      this.status = app.model;
    } catch (e) {
      this.failure = toAppError(e);
    } finally {
      this.#busy = false;
    }
    // `loading` means a load is already under way in the core; `load_model` joins it and reports progress.
    if (this.status && (this.status.state === "not_loaded" || this.status.state === "loading")) {
      await this.load();
    }
  }

  async load(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    this.failure = null;
    this.progress = null;
    if (this.status) this.status = { ...this.status, state: "loading" };
    try {
      this.status = await api.loadModel((progress) => {
        this.progress = progress;
      });
    } catch (e) {
      this.failure = toAppError(e);
    } finally {
      this.progress = null;
      this.#busy = false;
    }
  }

  /** The banner's "Check again" / "Retry": re-read the status after a fix, or retry a failed load. */
  async retry(): Promise<void> {
    const state = this.status?.state;
    if (this.failure === null && state === "error") await this.load();
    else await this.start();
  }
}
