import { describe, expect, it } from "vitest";
import type { DownloadProgress, ModelInfo } from "./bindings";
import {
  checksumLabel,
  checksumTitle,
  downloadBar,
  downloadLabel,
  downloadStatus,
  formatBytes,
  formatContext,
  formatParameters,
  loadPercent,
  resumedLabel,
  validateDownload,
} from "./modelfiles";

const sha = "a".repeat(64);

function progress(patch: Partial<DownloadProgress> = {}): DownloadProgress {
  return { name: "smollm2.gguf", downloaded: 12_300_000, total: 105_000_000, resumed_from: 0, ...patch };
}

describe("sizes and counts", () => {
  it("shows bytes in decimal units to three digits", () => {
    const sizes = [0, 512, 1_000, 12_345_678, 105_468_416, 999_600_000, 4_368_439_296, -1];
    expect(sizes.map(formatBytes)).toEqual(["0 B", "512 B", "1.00 kB", "12.3 MB", "105 MB", "1.00 GB", "4.37 GB", "–"]);
  });

  it("names parameter counts as models are named", () => {
    const counts = [134_515_008, 1_711_376_384, 7_241_732_096, 13_015_864_320, 22_700_000, 1_500_000, 999_700_000];
    expect(counts.map(formatParameters)).toEqual(["135M", "1.7B", "7.2B", "13B", "23M", "1.5M", "1B"]);
    expect([950, null].map(formatParameters)).toEqual(["950", "–"]);
  });

  it("shows context lengths and checksums", () => {
    expect(formatContext(8192)).toBe("8,192");
    expect(formatContext(null)).toBe("–");
    expect(["verified", "mismatch", "unpinned", "unchecked"].map((s) => checksumLabel(s as "verified"))).toEqual([
      "verified",
      "mismatch",
      "not pinned",
      "not checked",
    ]);
    expect(checksumTitle("mismatch", "ab12")).toBe(
      "The file's size or checksum differs from the known one (sha256 ab12): it is damaged or was replaced.",
    );
    expect(checksumTitle("unpinned", null)).toBe("No checksum is known for this file: it was put in the folder by hand.");
  });
});

describe("validateDownload", () => {
  it("passes a URL alone, with empty extras as null", () => {
    expect(validateDownload(" https://example.org/m.gguf ", " ", "")).toEqual({
      ok: true,
      request: { url: "https://example.org/m.gguf", sha256: null, name: null },
    });
  });

  it("lowercases the checksum and keeps the name", () => {
    expect(validateDownload("http://127.0.0.1:9/m.gguf", sha.toUpperCase(), "mine.gguf")).toEqual({
      ok: true,
      request: { url: "http://127.0.0.1:9/m.gguf", sha256: sha, name: "mine.gguf" },
    });
  });

  it("says what is wrong with each field", () => {
    expect(validateDownload("", "abc", "../x")).toEqual({
      ok: false,
      errors: {
        url: "Give the address of a GGUF file.",
        sha256: "A SHA-256 is 64 hexadecimal characters.",
        name: "A name is a file name, without folders.",
      },
    });
    expect(validateDownload("https://x/m.gguf", "", ".hidden.gguf")).toEqual({
      ok: false,
      errors: { name: "A name cannot start with a dot or contain “..”." },
    });
    expect(validateDownload("https://x/m.gguf", "", "model.bin")).toEqual({
      ok: false,
      errors: { name: "A model's file name ends in .gguf." },
    });
    expect(validateDownload("https://x/m.gguf", "", "Model.GGUF").ok).toBe(true);
    expect(validateDownload("file:///etc/passwd", "", "")).toEqual({
      ok: false,
      errors: { url: "The address must start with http:// or https://." },
    });
  });
});

describe("the download's progress", () => {
  it("fills the bar when the size is known, and leaves it indeterminate while it is not", () => {
    expect(downloadBar(progress(), "running")).toEqual({ value: 12_300_000, max: 105_000_000 });
    expect(downloadBar(progress({ total: null }), "running")).toBeNull();
    expect(downloadBar(null, "running")).toBeNull();
    expect(downloadBar(progress({ total: null }), "done")).toEqual({ value: 1, max: 1 });
    expect(downloadBar(null, "failed")).toEqual({ value: 0, max: 1 });
    expect(downloadBar(progress({ downloaded: 200, total: 100 }), "cancelled")).toEqual({ value: 100, max: 100 });
  });

  it("says bytes of total, and where a resumed download began", () => {
    expect(downloadLabel(null)).toBe("Starting the download…");
    expect(downloadLabel(progress())).toBe("12.3 MB of 105 MB (11%)");
    expect(downloadLabel(progress({ total: null }))).toBe("12.3 MB downloaded");
    expect(resumedLabel(progress())).toBeNull();
    expect(resumedLabel(progress({ resumed_from: 40_000_000 }))).toBe("resumed from 40.0 MB");
  });

  it("says what came of it", () => {
    const info = { name: "smollm2.gguf", size_bytes: 105_000_000 } as ModelInfo;
    expect(downloadStatus("idle", null, null)).toBe("");
    expect(downloadStatus("running", progress(), null)).toBe("12.3 MB of 105 MB (11%)");
    expect(downloadStatus("done", progress(), info)).toBe("Downloaded smollm2.gguf (105 MB).");
    expect(downloadStatus("cancelled", progress(), null)).toBe(
      "Cancelled after 12.3 MB; downloading the same file again resumes from there.",
    );
    expect(downloadStatus("cancelled", null, null)).toBe("Cancelled.");
    expect(downloadStatus("failed", progress(), null)).toBe("Stopped after 12.3 MB.");
    expect(downloadStatus("failed", null, null)).toBe("The download failed.");
  });
});

describe("loadPercent", () => {
  it("is a whole percentage, or null before the core knows the total", () => {
    expect(loadPercent({ stage: "reading weights", done: 1, total: 3 })).toBe(33);
    expect(loadPercent({ stage: "reading weights", done: 5, total: 3 })).toBe(100);
    expect(loadPercent({ stage: "opening", done: 0, total: 0 })).toBeNull();
    expect(loadPercent(null)).toBeNull();
  });
});
