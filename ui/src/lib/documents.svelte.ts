// The document import's state: the paths the user typed, the progress the core reports over a Channel while it
// imports, and its final report. The core does the work (walking folders, chunking, embedding, indexing).
//
// As with a chat turn, Tauri does not order channel messages against the command's reply, so progress that
// arrives after `import_documents` resolved is ignored. The bar stays on screen after the import, full and
// with the report under it, until the user dismisses it or starts another import: a small import can finish
// before anyone sees it move, and its outcome should not vanish with it.

import * as api from "./api";
import type { AppError, ImportProgress, ImportReport } from "./bindings";
import { toAppError } from "./errors";

export type ImportState = "idle" | "running" | "done" | "cancelled" | "failed";

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

export class DocumentImport {
  /** What the user typed into the paths box. */
  paths = $state("");
  running = $state(false);
  cancelling = $state(false);
  /** The latest progress while running; the final counts afterwards. */
  progress = $state<ImportProgress | null>(null);
  report = $state<ImportReport | null>(null);
  error = $state<AppError | null>(null);

  #onFinished: () => void;

  /** `onFinished` runs after every import, failed ones included: a failure may come after some documents. */
  constructor(onFinished: () => void) {
    this.#onFinished = onFinished;
  }

  get state(): ImportState {
    if (this.running) return "running";
    if (this.error) return "failed";
    if (this.report) return this.report.cancelled ? "cancelled" : "done";
    return "idle";
  }

  async start(): Promise<void> {
    if (this.running) return;
    const paths = parsePaths(this.paths);
    this.report = null;
    this.progress = null;
    if (paths.length === 0) {
      this.error = {
        kind: "invalid_input",
        message: "Type the path of a file or folder to import.",
        hint: "Separate several paths with commas, or put one on each line.",
      };
      return;
    }
    this.error = null;
    this.running = true;
    this.cancelling = false;
    let final = false;
    try {
      const report = await api.importDocuments(paths, (progress) => {
        if (!final) this.progress = progress;
      });
      final = true;
      this.error = null; // A failed cancel request does not matter once the import is over.
      this.progress = finalProgress(this.progress, report);
      this.report = report;
    } catch (e) {
      final = true;
      this.error = toAppError(e);
    } finally {
      this.running = false;
      this.cancelling = false;
      this.#onFinished();
    }
  }

  async cancel(): Promise<void> {
    if (!this.running || this.cancelling) return;
    this.cancelling = true;
    try {
      await api.cancelImport();
    } catch (e) {
      this.error = toAppError(e);
      this.cancelling = false;
    }
  }

  /** Clears the finished import's bar and report. */
  dismiss(): void {
    if (this.running) return;
    this.progress = null;
    this.report = null;
    this.error = null;
  }
}

/** The bar's value and maximum; null for an indeterminate bar (running, before the core has counted files). */
export function progressBar(progress: ImportProgress | null, state: ImportState): { value: number; max: number } | null {
  if (state === "running") {
    return progress && progress.files_total > 0 ? { value: progress.files_done, max: progress.files_total } : null;
  }
  if (!progress || progress.files_total === 0) return { value: state === "done" ? 1 : 0, max: 1 };
  return { value: progress.files_done, max: progress.files_total };
}

function fileName(path: string): string {
  return path.split(/[\\/]/).filter(Boolean).pop() ?? path;
}

/** The line under the bar: what the import is doing, or what it did. */
export function progressLabel(progress: ImportProgress | null, state: ImportState): string {
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
