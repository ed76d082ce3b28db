// The model files' pure side: sizes, parameter counts and checksums in words, the download form's checks, and
// the download's and the local model load's progress as a bar and a line.

import type { ChecksumState, DownloadProgress, LoadProgress, ModelInfo } from "./bindings";
import { formatCount } from "./format";
import type { JobState } from "./job.svelte";

/** `512 B`, `12.0 MB`, `105 MB`, `1.23 GB`: decimal units (as disks and downloads count), three significant digits. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "–";
  if (bytes < 1000) return `${Math.round(bytes)} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = "B";
  for (const next of units) {
    if (value < 1000) break;
    value /= 1000;
    unit = next;
  }
  // 999.6 MB rounds to "1000 MB"; say 1.00 GB instead.
  if (Number(value.toPrecision(3)) >= 1000 && unit !== "TB") {
    value /= 1000;
    unit = units[units.indexOf(unit) + 1]!;
  }
  return `${value.toPrecision(3)} ${unit}`;
}

/** A parameter count as models are named: `135M`, `1.7B`, `7.2B`, `13B`; `–` when unknown. */
export function formatParameters(n: number | null): string {
  if (n === null || !Number.isFinite(n) || n < 0) return "–";
  const scales: [number, string][] = [
    [1e12, "T"],
    [1e9, "B"],
    [1e6, "M"],
    [1e3, "K"],
  ];
  for (const [scale, suffix] of scales) {
    // 999.6M reads 1.0B, as the model would be called.
    if (n >= scale * 0.9995) {
      const value = n / scale;
      const shown = value < 10 ? String(Number(value.toFixed(1))) : String(Math.round(value));
      return `${shown}${suffix}`;
    }
  }
  return String(Math.round(n));
}

/** A context length in tokens, `–` when the file does not say. */
export function formatContext(tokens: number | null): string {
  return tokens === null ? "–" : formatCount(tokens);
}

const checksumLabels: Record<ChecksumState, string> = {
  verified: "verified",
  mismatch: "mismatch",
  unpinned: "not pinned",
  unchecked: "not checked",
};

/** The checksum column's badge; its title says more (`checksumTitle`). */
export function checksumLabel(state: ChecksumState): string {
  return checksumLabels[state];
}

/** What a checksum state means, for the badge's tooltip. */
export function checksumTitle(state: ChecksumState, sha256: string | null): string {
  const sum = sha256 ? ` (sha256 ${sha256})` : "";
  switch (state) {
    case "verified":
      return `The file matches its known checksum${sum}.`;
    case "mismatch":
      return `The file's size or checksum differs from the known one${sum}: it is damaged or was replaced.`;
    case "unpinned":
      return "No checksum is known for this file: it was put in the folder by hand.";
    case "unchecked":
      return `The file changed since it was last checked${sum}.`;
  }
}

/** What is wrong with the download form's fields, by field. */
export type DownloadErrors = { url?: string; sha256?: string; name?: string };

export type DownloadRequest = { url: string; sha256: string | null; name: string | null };

export type DownloadCheck = { ok: true; request: DownloadRequest } | { ok: false; errors: DownloadErrors };

/** Why a model file name is not acceptable (the core's `check_name`), or null: a plain `.gguf` file name. */
export function modelNameError(name: string): string | null {
  if (/[\\/]/.test(name)) return "A name is a file name, without folders.";
  if (name.startsWith(".") || name.includes("..")) return "A name cannot start with a dot or contain “..”.";
  if (/[\u0000-\u001f\u007f]/.test(name)) return "A name cannot contain control characters.";
  if (!/\.gguf$/i.test(name)) return "A model's file name ends in .gguf.";
  return null;
}

/** Checks the download form: an http(s) URL, an optional SHA-256 in hex, an optional plain `.gguf` file name. */
export function validateDownload(url: string, sha256: string, name: string): DownloadCheck {
  const errors: DownloadErrors = {};
  const u = url.trim();
  const sum = sha256.trim().toLowerCase();
  const n = name.trim();
  if (u === "") errors.url = "Give the address of a GGUF file.";
  else if (!/^https?:\/\/\S+$/i.test(u)) errors.url = "The address must start with http:// or https://.";
  if (sum !== "" && !/^[0-9a-f]{64}$/.test(sum)) errors.sha256 = "A SHA-256 is 64 hexadecimal characters.";
  if (n !== "") {
    const bad = modelNameError(n);
    if (bad) errors.name = bad;
  }
  if (Object.keys(errors).length > 0) return { ok: false, errors };
  return { ok: true, request: { url: u, sha256: sum === "" ? null : sum, name: n === "" ? null : n } };
}

/**
 * The download bar's value and maximum; null for an indeterminate bar (running, and the server gave no size).
 * A finished download's bar is full; a stopped one's stays where it got to.
 */
export function downloadBar(progress: DownloadProgress | null, state: JobState): { value: number; max: number } | null {
  if (state === "done") return { value: 1, max: 1 };
  if (progress && progress.total !== null && progress.total > 0) {
    return { value: Math.min(progress.downloaded, progress.total), max: progress.total };
  }
  return state === "running" ? null : { value: 0, max: 1 };
}

/** `12.3 MB of 105 MB (12%)`, or `12.3 MB` when the size is unknown. */
export function downloadLabel(progress: DownloadProgress | null): string {
  if (!progress) return "Starting the download…";
  const done = formatBytes(progress.downloaded);
  if (progress.total === null || progress.total <= 0) return `${done} downloaded`;
  const percent = Math.min(100, Math.floor((progress.downloaded / progress.total) * 100));
  return `${done} of ${formatBytes(progress.total)} (${percent}%)`;
}

/**
 * The line under the bar: what the download is doing, or what came of it. A failed download's error is shown
 * apart; `cancelled` says that the part downloaded is kept for the next attempt.
 */
export function downloadStatus(state: JobState, progress: DownloadProgress | null, info: ModelInfo | null): string {
  switch (state) {
    case "idle":
      return "";
    case "running":
      return downloadLabel(progress);
    case "done":
      return info ? `Downloaded ${info.name} (${formatBytes(info.size_bytes)}).` : "Downloaded.";
    case "cancelled":
      return progress && progress.downloaded > 0
        ? `Cancelled after ${formatBytes(progress.downloaded)}; downloading the same file again resumes from there.`
        : "Cancelled.";
    case "failed":
      return progress && progress.downloaded > 0 ? `Stopped after ${formatBytes(progress.downloaded)}.` : "The download failed.";
  }
}

/** `resumed from 40.0 MB` when an earlier attempt left part of the file; null otherwise. */
export function resumedLabel(progress: DownloadProgress | null): string | null {
  if (!progress || progress.resumed_from <= 0) return null;
  return `resumed from ${formatBytes(progress.resumed_from)}`;
}

/** The load's bar: `done` of `total`; null (an indeterminate bar) while the core has not said how much there is. */
export function loadBar(progress: LoadProgress | null): { value: number; max: number } | null {
  return progress && progress.total > 0 ? { value: progress.done, max: progress.total } : null;
}

/** How far the local model's load is, in percent; null while the core has not said how much there is. */
export function loadPercent(progress: LoadProgress | null): number | null {
  return progress && progress.total > 0 ? Math.min(100, Math.round((progress.done / progress.total) * 100)) : null;
}
