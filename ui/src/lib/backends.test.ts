import { beforeEach, describe, expect, it, vi } from "vitest";
import type { BackendProfile, BackendTest, BackendView } from "./bindings";
import { backendView as view, localBackend as local } from "./fixtures";

// The stores talk to the core only through ./api; these tests play the core's side.
const core = vi.hoisted(() => ({
  listBackends: vi.fn(),
  saveBackend: vi.fn(),
  removeBackend: vi.fn(async () => {}),
  setDefaultBackend: vi.fn(async () => {}),
  testBackend: vi.fn(),
  setKey: vi.fn(),
  removeKey: vi.fn(),
}));
vi.mock("./api", () => core);

const { BackendStore } = await import("./backends.svelte");

const SECRET = "sk-test-0123456789abcdef";

function fromProfile(p: BackendProfile): BackendView {
  const { context_window, ...rest } = p;
  return view(p.name, { ...rest, context_window: context_window ?? 4096 });
}

async function opened(...extra: BackendView[]) {
  core.listBackends.mockResolvedValue([local, ...extra]);
  const backends = new BackendStore();
  await backends.refresh();
  return backends;
}

beforeEach(() => {
  vi.clearAllMocks();
});

describe("the backend list", () => {
  it("reads the backends and knows the default", async () => {
    const backends = await opened(view("cloud"));
    expect(backends.names).toEqual(["local", "cloud"]);
    expect(backends.defaultName).toBe("local");
  });

  it("keeps the error of a list it could not read", async () => {
    core.listBackends.mockRejectedValue({ kind: "store", message: "could not read backends.toml", hint: null });
    const backends = new BackendStore();
    await backends.refresh();
    expect(backends.list).toBeNull();
    expect(backends.error?.message).toBe("could not read backends.toml");
  });
});

describe("saving a profile", () => {
  it("does not call the core while the form has mistakes", async () => {
    const backends = await opened();
    backends.draft = { ...backends.draft, name: "lab server", base_url: "127.0.0.1:8080", model: "" };
    expect(await backends.save()).toBe(false);
    expect(core.saveBackend).not.toHaveBeenCalled();
    expect(Object.keys(backends.formErrors).sort()).toEqual(["base_url", "model", "name"]);
  });

  it("saves a new profile, lists it, and goes on editing it so that its key can be set", async () => {
    const backends = await opened();
    core.saveBackend.mockImplementation(async (p: BackendProfile) => fromProfile(p));
    backends.draft = { ...backends.draft, name: "lab", base_url: "http://10.0.0.2:8000/v1", model: "qwen", fallback: "local" };
    expect(await backends.save()).toBe(true);
    expect(core.saveBackend).toHaveBeenCalledWith({
      name: "lab",
      base_url: "http://10.0.0.2:8000/v1",
      model: "qwen",
      timeout_secs: 30,
      max_retries: 2,
      fallback: ["local"],
    });
    expect(backends.names).toEqual(["local", "lab"]);
    expect(backends.editing).toBe("lab");
    expect(backends.edited?.fallback).toEqual(["local"]);
  });

  it("keeps a profile's context window when it is edited", async () => {
    const backends = await opened(view("cloud", { context_window: 32_768 }));
    core.saveBackend.mockImplementation(async (p: BackendProfile) => fromProfile(p));
    backends.edit("cloud");
    backends.draft.model = "bigger";
    expect(await backends.save()).toBe(true);
    expect(core.saveBackend).toHaveBeenCalledWith(expect.objectContaining({ name: "cloud", model: "bigger", context_window: 32_768 }));
  });

  it("shows the core's refusal with its hint and keeps the form", async () => {
    const backends = await opened();
    const refusal = { kind: "invalid_input", message: "the fallback chain loops", hint: "Remove lab from cloud's chain." };
    core.saveBackend.mockRejectedValue(refusal);
    backends.draft = { ...backends.draft, name: "lab", base_url: "http://x/v1", model: "m" };
    expect(await backends.save()).toBe(false);
    expect(backends.saveError).toEqual(refusal);
    expect(backends.draft.name).toBe("lab");
    expect(backends.editing).toBeNull();
  });

  it("edits remote profiles only", async () => {
    const backends = await opened(view("cloud", { fallback: ["local"] }));
    backends.edit("local");
    expect(backends.editing).toBeNull();
    backends.edit("cloud");
    expect(backends.editing).toBe("cloud");
    expect(backends.draft.fallback).toBe("local");
    backends.startNew();
    expect(backends.editing).toBeNull();
    expect(backends.draft.name).toBe("");
  });
});

describe("actions on a backend", () => {
  it("tests a backend and keeps the result by name", async () => {
    const backends = await opened(view("cloud"));
    const result: BackendTest = {
      name: "cloud",
      ok: false,
      latency_ms: 12,
      models: [],
      model_found: null,
      message: "connection refused",
      hint: "Start the server, or check the base URL.",
    };
    core.testBackend.mockResolvedValue(result);
    await backends.test("cloud");
    expect(core.testBackend).toHaveBeenCalledWith("cloud");
    expect(backends.tests.cloud).toEqual(result);
    expect(backends.busy).toBeNull();
  });

  it("makes a backend the default and reads the list again", async () => {
    const backends = await opened(view("cloud"));
    core.listBackends.mockResolvedValue([{ ...local, is_default: false }, view("cloud", { is_default: true })]);
    await backends.makeDefault("cloud");
    expect(core.setDefaultBackend).toHaveBeenCalledWith("cloud");
    expect(backends.defaultName).toBe("cloud");
  });

  it("removes a backend only once the user confirmed it", async () => {
    const backends = await opened(view("cloud"));
    await backends.remove("cloud");
    expect(core.removeBackend).not.toHaveBeenCalled();

    backends.edit("cloud");
    backends.askRemove("cloud");
    core.listBackends.mockResolvedValue([local]);
    await backends.remove("cloud");
    expect(core.removeBackend).toHaveBeenCalledWith("cloud");
    expect(backends.names).toEqual(["local"]);
    expect(backends.confirmingRemove).toBeNull();
    expect(backends.editing).toBeNull(); // The form no longer edits a profile that is gone.
  });

  it("keeps the confirmation and shows the error when the core refuses", async () => {
    const backends = await opened(view("cloud"));
    core.removeBackend.mockRejectedValueOnce({ kind: "invalid_input", message: "lab falls back to cloud", hint: null });
    backends.askRemove("cloud");
    await backends.remove("cloud");
    expect(backends.error?.message).toBe("lab falls back to cloud");
    expect(backends.confirmingRemove).toBe("cloud");
  });
});

describe("keys", () => {
  it("hands the key to the core and keeps only whether one is set", async () => {
    const backends = await opened(view("cloud"));
    core.setKey.mockResolvedValue(view("cloud", { key: "set" }));
    expect(await backends.setKey("cloud", `  ${SECRET}\n`)).toBe(true);
    expect(core.setKey).toHaveBeenCalledWith("cloud", SECRET);
    expect(backends.find("cloud")?.key).toBe("set");
    expect(JSON.stringify([backends.list, backends.draft, backends.tests])).not.toContain(SECRET);
  });

  it("does not keep the key when the keyring refuses it", async () => {
    const backends = await opened(view("cloud"));
    core.setKey.mockRejectedValue({
      kind: "internal",
      message: "the keyring is not available: no Secret Service is running",
      hint: "Start gnome-keyring, or install one.",
    });
    expect(await backends.setKey("cloud", SECRET)).toBe(false);
    expect(backends.keyError?.hint).toBe("Start gnome-keyring, or install one.");
    expect(JSON.stringify([backends.list, backends.keyError, backends.error, backends.draft])).not.toContain(SECRET);
    expect(backends.busy).toBeNull();
  });

  it("sends no empty key", async () => {
    const backends = await opened(view("cloud"));
    expect(await backends.setKey("cloud", "   ")).toBe(false);
    expect(core.setKey).not.toHaveBeenCalled();
  });

  it("removes a key", async () => {
    const backends = await opened(view("cloud", { key: "set" }));
    core.removeKey.mockResolvedValue(view("cloud", { key: "not_set" }));
    await backends.removeKey("cloud");
    expect(core.removeKey).toHaveBeenCalledWith("cloud");
    expect(backends.find("cloud")?.key).toBe("not_set");
  });
});
