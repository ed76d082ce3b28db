import { beforeEach, describe, expect, it, vi } from "vitest";
import type { DownloadProgress, ModelInfo, ModelList } from "./bindings";
import { deferred } from "./fixtures";

// The store talks to the core only through ./api; these tests play the core's side.
const core = vi.hoisted(() => ({
  listModels: vi.fn(),
  addModel: vi.fn(),
  downloadModel: vi.fn(),
  cancelDownload: vi.fn(async () => {}),
  deleteModel: vi.fn(async () => {}),
  useModel: vi.fn(),
}));
vi.mock("./api", () => core);

const { ModelLibrary } = await import("./models.svelte");

function info(name: string, patch: Partial<ModelInfo> = {}): ModelInfo {
  return {
    name,
    path: `/data/models/${name}`,
    size_bytes: 105_000_000,
    architecture: "llama",
    quantisation: "Q4_1",
    context_length: 8192,
    parameters: 134_515_008,
    gguf_version: 3,
    checksum: "verified",
    builtin: false,
    sha256: null,
    in_use: false,
    ...patch,
  };
}

const builtin = info("SmolLM2-135M-Instruct.Q4_1.gguf", { builtin: true });
const list = (...models: ModelInfo[]): ModelList => ({ models: [builtin, ...models], broken: [] });

beforeEach(() => {
  vi.clearAllMocks();
  core.listModels.mockResolvedValue(list());
});

describe("the model list", () => {
  it("reads the files, broken ones included", async () => {
    core.listModels.mockResolvedValue({ models: [builtin], broken: [{ name: "bad.gguf", path: "/x/bad.gguf", error: "not a GGUF file" }] });
    const models = new ModelLibrary();
    await models.refresh();
    expect(models.list?.models.map((m) => m.name)).toEqual([builtin.name]);
    expect(models.list?.broken[0]?.error).toBe("not a GGUF file");
  });

  it("adds a file from disk, then reads the list again and says so", async () => {
    const changed = vi.fn();
    const models = new ModelLibrary(changed);
    core.addModel.mockResolvedValue(info("mine.gguf"));
    core.listModels.mockResolvedValue(list(info("mine.gguf")));
    models.addPath = "  /home/me/mine.gguf ";
    await models.add();
    expect(core.addModel).toHaveBeenCalledWith("/home/me/mine.gguf");
    expect(models.addPath).toBe("");
    expect(models.list?.models).toHaveLength(2);
    expect(changed).toHaveBeenCalledTimes(1);
  });

  it("keeps the path and the core's error when the file cannot be added", async () => {
    const models = new ModelLibrary();
    core.addModel.mockRejectedValue({ kind: "model_corrupt", message: "not a GGUF file", hint: null });
    models.addPath = "/home/me/notes.txt";
    await models.add();
    expect(models.addError?.message).toBe("not a GGUF file");
    expect(models.addPath).toBe("/home/me/notes.txt");
  });

  it("deletes a file only once the user confirmed it", async () => {
    const models = new ModelLibrary();
    await models.remove("mine.gguf");
    expect(core.deleteModel).not.toHaveBeenCalled();
    models.askDelete("mine.gguf");
    await models.remove("mine.gguf");
    expect(core.deleteModel).toHaveBeenCalledWith("mine.gguf");
    expect(models.confirmingDelete).toBeNull();
    expect(models.deleting).toBeNull();
  });

  it("makes a model the local backend's, then reads the list again; a refusal is shown", async () => {
    const models = new ModelLibrary();
    const mine = info("mine.gguf");
    core.useModel.mockResolvedValueOnce({ state: "not_loaded", model_id: "user", file: "mine.gguf", message: "not loaded yet", hint: null });
    core.listModels.mockResolvedValueOnce(list(mine)).mockResolvedValueOnce(list({ ...mine, in_use: true }));
    await models.refresh();
    await models.use("mine.gguf");
    expect(core.useModel).toHaveBeenCalledWith("mine.gguf");
    expect(models.list?.models.find((m) => m.name === "mine.gguf")?.in_use).toBe(true);
    expect(models.using).toBeNull();
    core.useModel.mockRejectedValueOnce({ kind: "model_corrupt", message: "model file mine.gguf no longer matches", hint: "delete it" });
    await models.use("mine.gguf");
    expect(models.error?.kind).toBe("model_corrupt");
  });
});

describe("a download", () => {
  it("does not start while the form has mistakes", async () => {
    const models = new ModelLibrary();
    models.download.url = "example.org/model.gguf";
    await models.download.start();
    expect(core.downloadModel).not.toHaveBeenCalled();
    expect(models.download.errors.url).toBe("The address must start with http:// or https://.");
  });

  it("shows progress while it runs, ignores progress after it ended, and leaves the outcome", async () => {
    const changed = vi.fn();
    const models = new ModelLibrary(changed);
    const call = deferred<ModelInfo>();
    let report: (p: DownloadProgress) => void = () => {};
    core.downloadModel.mockImplementation(
      (_url: string, _sha: string | null, _name: string | null, onProgress: (p: DownloadProgress) => void) => {
        report = onProgress;
        return call.promise;
      },
    );
    models.download.url = "https://example.org/m.gguf";
    models.download.name = "m.gguf";
    const running = models.download.start();
    expect(core.downloadModel).toHaveBeenCalledWith("https://example.org/m.gguf", null, "m.gguf", expect.any(Function));
    expect(models.download.state).toBe("running");

    report({ name: "m.gguf", downloaded: 40, total: 100, resumed_from: 30 });
    expect(models.download.progress).toEqual({ name: "m.gguf", downloaded: 40, total: 100, resumed_from: 30 });

    core.listModels.mockResolvedValue(list(info("m.gguf")));
    call.resolve(info("m.gguf", { size_bytes: 100 }));
    await running;
    report({ name: "m.gguf", downloaded: 50, total: 100, resumed_from: 30 }); // Channel messages may trail the reply.
    expect(models.download.progress?.downloaded).toBe(40);
    expect(models.download.state).toBe("done");
    expect(models.download.downloaded?.name).toBe("m.gguf");
    expect(models.download.url).toBe("");
    expect(models.list?.models).toHaveLength(2);
    expect(changed).toHaveBeenCalledTimes(1);

    models.download.dismiss();
    expect(models.download.state).toBe("idle");
    expect(models.download.progress).toBeNull();
  });

  it("is cancelled on request, keeping what it got to and the form", async () => {
    const models = new ModelLibrary();
    const call = deferred<ModelInfo>();
    core.downloadModel.mockReturnValue(call.promise);
    models.download.url = "https://example.org/m.gguf";
    models.download.sha256 = "A".repeat(64);
    const running = models.download.start();
    expect(core.downloadModel).toHaveBeenCalledWith("https://example.org/m.gguf", "a".repeat(64), null, expect.any(Function));
    await models.download.cancel();
    expect(core.cancelDownload).toHaveBeenCalledTimes(1);
    expect(models.download.cancelling).toBe(true);
    call.reject({ kind: "model_fetch", message: "the download was cancelled", hint: null });
    await running;
    expect(models.download.state).toBe("cancelled");
    expect(models.download.url).toBe("https://example.org/m.gguf"); // Downloading it again resumes.
  });

  it("fails with the core's error, for example a checksum that does not match", async () => {
    const models = new ModelLibrary();
    core.downloadModel.mockRejectedValue({
      kind: "model_corrupt",
      message: "m.gguf does not match the SHA-256 given",
      hint: "Check the checksum.",
    });
    models.download.url = "https://example.org/m.gguf";
    await models.download.start();
    expect(models.download.state).toBe("failed");
    expect(models.download.error?.message).toBe("m.gguf does not match the SHA-256 given");
  });
});
