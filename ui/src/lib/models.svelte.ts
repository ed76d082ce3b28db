// The model files' state: the list the core reports (readable files and broken ones), the path to add, the
// download (download.svelte.ts), and the delete that waits for confirmation. The core reads, fetches, verifies
// and deletes the files; this mirrors what it said last.

import * as api from "./api";
import type { AppError, ModelList } from "./bindings";
import { ModelDownload } from "./download.svelte";
import { attempt } from "./errors";

export class ModelLibrary {
  /** Null until the first `list_models` answer. */
  list = $state<ModelList | null>(null);
  error = $state<AppError | null>(null);

  addPath = $state("");
  adding = $state(false);
  addError = $state<AppError | null>(null);

  /** After a download, successful or not, the list is read again (the core may have kept a part of the file). */
  readonly download = new ModelDownload(async (added) => {
    await this.refresh();
    if (added) this.#onChanged();
  });

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

  async refresh(): Promise<void> {
    const read = await attempt(async () => (this.list = await api.listModels()), (e) => (this.error = e));
    if (read) this.error = null;
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
    await attempt(
      async () => {
        await api.addModel(path);
        this.addPath = "";
        await this.#changed();
      },
      (e) => (this.addError = e),
    );
    this.adding = false;
  }

  /** Makes the local backend run this model. */
  async use(name: string): Promise<void> {
    if (this.using !== null) return;
    this.using = name;
    this.error = null;
    await attempt(
      async () => {
        await api.useModel(name);
        await this.#changed();
      },
      (e) => (this.error = e),
    );
    this.using = null;
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
    await attempt(
      async () => {
        await api.deleteModel(name);
        this.confirmingDelete = null;
        await this.#changed();
      },
      (e) => (this.error = e),
    );
    this.deleting = null;
  }

  /** A file was added, downloaded, deleted or put to use: read the list again and say so. */
  async #changed(): Promise<void> {
    await this.refresh();
    this.#onChanged();
  }
}
