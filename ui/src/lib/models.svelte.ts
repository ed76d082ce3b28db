// The model files' state: the list the core reports (readable files and broken ones), the path to add, the
// download under way with its progress, and the delete that waits for confirmation. The core reads, fetches,
// verifies and deletes the files; this mirrors what it said last.
//
// As with a document import, Tauri does not order channel messages against the command's reply, so progress
// that arrives after `download_model` settled is ignored. The bar stays after the download, with what came of
// it, until dismissed or another download starts.

import * as api from "./api";
import type { AppError, DownloadProgress, ModelInfo, ModelList } from "./bindings";
import { toAppError } from "./errors";
import { validateDownload, type DownloadErrors, type DownloadState } from "./modelfiles";

export class ModelLibrary {
  /** Null until the first `list_models` answer. */
  list = $state<ModelList | null>(null);
  error = $state<AppError | null>(null);

  addPath = $state("");
  adding = $state(false);
  addError = $state<AppError | null>(null);

  url = $state("");
  sha256 = $state("");
  name = $state("");
  downloadErrors = $state<DownloadErrors>({});
  downloading = $state(false);
  cancelling = $state(false);
  /** The latest progress while downloading; the last one afterwards. */
  progress = $state<DownloadProgress | null>(null);
  /** The file a finished download added. */
  downloaded = $state<ModelInfo | null>(null);
  downloadError = $state<AppError | null>(null);
  /** Whether the failed download was one the user cancelled. */
  #cancelled = $state(false);

  /** The model whose Delete waits for the user's confirmation, and the one being deleted. */
  confirmingDelete = $state<string | null>(null);
  deleting = $state<string | null>(null);
  /** The model being made the local backend's, while that call runs. */
  using = $state<string | null>(null);

  #onChanged: () => void;

  /** `onChanged` runs after a file is added, downloaded or deleted (the local model's status may have changed). */
  constructor(onChanged: () => void = () => {}) {
    this.#onChanged = onChanged;
  }

  get downloadState(): DownloadState {
    if (this.downloading) return "running";
    if (this.#cancelled) return "cancelled";
    if (this.downloadError) return "failed";
    if (this.downloaded) return "done";
    return "idle";
  }

  async refresh(): Promise<void> {
    try {
      this.list = await api.listModels();
      this.error = null;
    } catch (e) {
      this.error = toAppError(e);
    }
  }

  async add(): Promise<void> {
    const path = this.addPath.trim();
    if (this.adding) return;
    if (path === "") {
      this.addError = { kind: "invalid_input", message: "Type the path of a GGUF file to add.", hint: null };
      return;
    }
    this.adding = true;
    this.addError = null;
    try {
      await api.addModel(path);
      this.addPath = "";
      await this.refresh();
      this.#onChanged();
    } catch (e) {
      this.addError = toAppError(e);
    } finally {
      this.adding = false;
    }
  }

  async download(): Promise<void> {
    if (this.downloading) return;
    const check = validateDownload(this.url, this.sha256, this.name);
    if (!check.ok) {
      this.downloadErrors = check.errors;
      return;
    }
    const { url, sha256, name } = check.request;
    this.downloadErrors = {};
    this.downloadError = null;
    this.downloaded = null;
    this.#cancelled = false;
    this.progress = null;
    this.downloading = true;
    this.cancelling = false;
    let final = false;
    try {
      const info = await api.downloadModel(url, sha256, name, (progress) => {
        if (!final) this.progress = progress;
      });
      final = true;
      this.downloadError = null; // A failed cancel request does not matter once the download is over.
      this.downloaded = info;
      this.url = "";
      this.sha256 = "";
      this.name = "";
    } catch (e) {
      final = true;
      this.#cancelled = this.cancelling;
      this.downloadError = toAppError(e);
    } finally {
      this.downloading = false;
      this.cancelling = false;
    }
    await this.refresh();
    if (this.downloaded) this.#onChanged();
  }

  async cancel(): Promise<void> {
    if (!this.downloading || this.cancelling) return;
    this.cancelling = true;
    try {
      await api.cancelDownload();
    } catch (e) {
      this.downloadError = toAppError(e);
      this.cancelling = false;
    }
  }

  /** Clears a finished download's bar and outcome. */
  dismissDownload(): void {
    if (this.downloading) return;
    this.progress = null;
    this.downloaded = null;
    this.downloadError = null;
    this.#cancelled = false;
  }

  /** Makes the local backend run this model. */
  async use(name: string): Promise<void> {
    if (this.using !== null) return;
    this.using = name;
    this.error = null;
    try {
      await api.useModel(name);
      await this.refresh();
      this.#onChanged();
    } catch (e) {
      this.error = toAppError(e);
    } finally {
      this.using = null;
    }
  }

  askDelete(name: string): void {
    this.confirmingDelete = name;
  }

  cancelDelete(): void {
    this.confirmingDelete = null;
  }

  /** Deletes the model file the user confirmed deleting. */
  async remove(name: string): Promise<void> {
    if (this.confirmingDelete !== name || this.deleting !== null) return;
    this.deleting = name;
    this.error = null;
    try {
      await api.deleteModel(name);
      this.confirmingDelete = null;
      await this.refresh();
      this.#onChanged();
    } catch (e) {
      this.error = toAppError(e);
    } finally {
      this.deleting = null;
    }
  }
}
