// A model file's download: the form (address, optional SHA-256, optional file name) with its checks, the progress
// the core reports while it fetches (a `Job`, job.svelte.ts), and the file it added. The core fetches, resumes a
// part left by an earlier attempt, and verifies; the bar stays after the download, with what came of it, until
// dismissed.

import * as api from "./api";
import type { DownloadProgress, ModelInfo } from "./bindings";
import { Job, type JobState } from "./job.svelte";
import { validateDownload, type DownloadErrors } from "./modelfiles";

export class ModelDownload extends Job<DownloadProgress> {
  url = $state("");
  sha256 = $state("");
  name = $state("");
  /** What is wrong with the form, by field. */
  errors = $state<DownloadErrors>({});
  /** The file a finished download added. */
  downloaded = $state<ModelInfo | null>(null);

  #onFinished: (added: ModelInfo | null) => Promise<void> | void;

  /** `onFinished` runs after every download, with the file it added (null when it failed or was cancelled). */
  constructor(onFinished: (added: ModelInfo | null) => Promise<void> | void) {
    super(api.cancelDownload);
    this.#onFinished = onFinished;
  }

  get state(): JobState {
    if (this.running) return "running";
    if (this.cancelled) return "cancelled";
    if (this.error) return "failed";
    if (this.downloaded) return "done";
    return "idle";
  }

  /** Checks the form and downloads; a cancelled download keeps the form, so that starting it again resumes. */
  async start(): Promise<void> {
    if (this.running) return;
    const check = validateDownload(this.url, this.sha256, this.name);
    if (!check.ok) {
      this.errors = check.errors;
      return;
    }
    const { url, sha256, name } = check.request;
    this.errors = {};
    await this.run(
      (onProgress) => api.downloadModel(url, sha256, name, onProgress),
      (info) => {
        this.downloaded = info;
        this.url = "";
        this.sha256 = "";
        this.name = "";
      },
    );
    await this.#onFinished(this.downloaded);
  }

  protected override clear(): void {
    super.clear();
    this.downloaded = null;
  }
}
