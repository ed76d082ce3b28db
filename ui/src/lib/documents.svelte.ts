// The document import's state: the paths the user typed, the progress the core reports while it imports (a `Job`,
// job.svelte.ts), and its final report. The core does the work (walking folders, chunking, embedding, indexing).
// The bar stays on screen after the import, full and with the report under it, until dismissed.

import * as api from "./api";
import type { ImportProgress, ImportReport } from "./bindings";
import { Job, type JobState } from "./job.svelte";

/**
 * The paths in what the user typed: one a line, or, when it is a single line, separated by commas (so a path
 * with a comma in it can still be imported on a line of its own). Trimmed, without blanks or repeats.
 */
export function parsePaths(text: string): string[] {
  const pieces = /[\r\n]/.test(text) ? text.split(/\r?\n|\r/) : text.split(",");
  const paths: string[] = [];
  for (const piece of pieces) {
    const path = piece.trim();
    if (path !== "" && !paths.includes(path)) paths.push(path);
  }
  return paths;
}

/**
 * The progress to leave on screen once the report is in: a finished import shows every file done; a cancelled
 * one keeps the counts it reached.
 */
export function finalProgress(last: ImportProgress | null, report: ImportReport): ImportProgress {
  const filesTotal = Math.max(last?.files_total ?? 0, report.files_seen);
  const chunksTotal = Math.max(last?.chunks_total ?? 0, last?.chunks_done ?? 0, report.chunks_added);
  if (report.cancelled) {
    return {
      stage: "cancelled",
      file: null,
      files_done: last?.files_done ?? 0,
      files_total: filesTotal,
      chunks_done: last?.chunks_done ?? report.chunks_added,
      chunks_total: chunksTotal,
    };
  }
  return {
    stage: "done",
    file: null,
    files_done: filesTotal,
    files_total: filesTotal,
    chunks_done: chunksTotal,
    chunks_total: chunksTotal,
  };
}

/** The import the Memory view runs: the paths typed, and the report of the last import. */
export class DocumentImport extends Job<ImportProgress> {
  /** What the user typed into the paths box. */
  paths = $state("");
  report = $state<ImportReport | null>(null);

  #onFinished: () => void;

  /** `onFinished` runs after every import, failed ones included: a failure may come after some documents. */
  constructor(onFinished: () => void) {
    super(api.cancelImport);
    this.#onFinished = onFinished;
  }

  get state(): JobState {
    if (this.running) return "running";
    if (this.error) return "failed";
    if (this.report) return this.report.cancelled ? "cancelled" : "done";
    return "idle";
  }

  async start(): Promise<void> {
    if (this.running) return;
    const paths = parsePaths(this.paths);
    if (paths.length === 0) {
      this.clear();
      this.error = {
        kind: "invalid_input",
        message: "Type the path of a file or folder to import.",
        hint: "Separate several paths with commas, or put one on each line.",
      };
      return;
    }
    await this.run(
      (onProgress) => api.importDocuments(paths, onProgress),
      (report) => {
        this.progress = finalProgress(this.progress, report);
        this.report = report;
      },
    );
    this.#onFinished();
  }

  protected override clear(): void {
    super.clear();
    this.report = null;
  }
}

/** The bar's value and maximum; null for an indeterminate bar (running, before the core has counted files). */
export function progressBar(progress: ImportProgress | null, state: JobState): { value: number; max: number } | null {
  if (state === "running") {
    // One file (a big document embeds for minutes, an hour at 100 MB): its chunks are the measure.
    if (progress && progress.files_total === 1 && progress.stage === "embedding" && progress.chunks_total > 0) {
      return { value: progress.chunks_done, max: progress.chunks_total };
    }
    return progress && progress.files_total > 0 ? { value: progress.files_done, max: progress.files_total } : null;
  }
  if (!progress || progress.files_total === 0) return { value: state === "done" ? 1 : 0, max: 1 };
  return { value: progress.files_done, max: progress.files_total };
}

function fileName(path: string): string {
  return path.split(/[\\/]/).filter(Boolean).pop() ?? path;
}

/** The line under the bar: what the import is doing, or what it did. */
export function progressLabel(progress: ImportProgress | null, state: JobState): string {
  const files = (p: ImportProgress) => `${p.files_done} of ${p.files_total} ${p.files_total === 1 ? "file" : "files"}`;
  const chunks = (p: ImportProgress) => (p.chunks_total > 0 ? ` · ${p.chunks_done} / ${p.chunks_total} chunks` : "");
  switch (state) {
    case "idle":
      return "";
    case "running":
      if (!progress) return "Starting the import…";
      return `${progress.stage}${progress.file ? ` ${fileName(progress.file)}` : ""} — ${files(progress)}${chunks(progress)}`;
    case "done":
      return progress ? `Imported ${files(progress)}${chunks(progress)}` : "Imported";
    case "cancelled":
      return progress ? `Cancelled after ${files(progress)}${chunks(progress)}` : "Cancelled";
    case "failed":
      return progress ? `Stopped after ${files(progress)}` : "The import failed";
  }
}
