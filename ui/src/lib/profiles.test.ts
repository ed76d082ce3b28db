import { describe, expect, it } from "vitest";
import type { BackendTest } from "./bindings";
import { backendView as view, localBackend as local } from "./fixtures";
import {
  backendKindLabel,
  baseUrlError,
  canSendWith,
  chainLabel,
  draftFrom,
  effectiveBackend,
  emptyDraft,
  fallbackChoices,
  keyStateLabel,
  nameError,
  parseFallback,
  testSummary,
  validateProfile,
  type ProfileDraft,
} from "./profiles";

const known = ["local", "cloud"];

function draft(patch: Partial<ProfileDraft> = {}): ProfileDraft {
  return { ...emptyDraft(), name: "lab-server", base_url: "http://127.0.0.1:8080/v1", model: "smollm2", ...patch };
}

describe("validateProfile", () => {
  it("turns a good form into the profile to save, trimmed, with numbers and the chain", () => {
    const check = validateProfile(
      draft({ name: " lab_2 ", base_url: " https://api.example.org/v1 ", model: " gpt-x ", fallback: "cloud, local" }),
      known,
      null,
    );
    expect(check).toEqual({
      ok: true,
      profile: {
        name: "lab_2",
        base_url: "https://api.example.org/v1",
        model: "gpt-x",
        timeout_secs: 30,
        max_retries: 2,
        fallback: ["cloud", "local"],
      },
    });
  });

  it("sends a context window only when one is given", () => {
    const given = validateProfile(draft({ context_window: " 32768 " }), known, null);
    expect(given.ok && given.profile.context_window).toBe(32_768);
    const empty = validateProfile(draft(), known, null);
    expect(empty.ok && "context_window" in empty.profile).toBe(false);
    const small = validateProfile(draft({ context_window: "100" }), known, null);
    expect(small.ok ? null : small.errors.context_window).toBe("The context window must be between 256 and 1048576.");
  });

  it("says what is wrong with each field", () => {
    const check = validateProfile(
      {
        name: "lab server",
        base_url: "ftp://x",
        model: "  ",
        timeout_secs: "0",
        max_retries: "1.5",
        fallback: "nowhere",
        context_window: "",
      },
      known,
      null,
    );
    expect(check.ok).toBe(false);
    if (check.ok) return;
    expect(check.errors).toEqual({
      name: "Use only letters, digits, - and _ in a name.",
      base_url: "The base URL must start with http:// or https://.",
      model: "Name the model the server should run, as its /v1/models lists it.",
      timeout_secs: "The timeout must be between 1 and 600.",
      max_retries: "Retries must be a whole number.",
      fallback: "There is no backend named nowhere.",
    });
  });

  it("refuses a name that is taken when adding, and accepts it when editing that profile", () => {
    const adding = validateProfile(draft({ name: "cloud" }), known, null);
    expect(adding.ok ? null : adding.errors.name).toBe("A backend named cloud already exists; edit it instead.");
    expect(validateProfile(draft({ name: "cloud", fallback: "local" }), known, "cloud").ok).toBe(true);
    const local = validateProfile(draft({ name: "local" }), known, null);
    expect(local.ok ? null : local.errors.name).toBe("“local” is the embedded model's name; choose another.");
  });

  it("refuses a chain that loops to itself or names a backend twice", () => {
    const self = validateProfile(draft({ name: "cloud", fallback: "cloud" }), known, "cloud");
    expect(self.ok ? null : self.errors.fallback).toBe("A backend cannot fall back to itself.");
    const twice = validateProfile(draft({ fallback: "local, local" }), known, null);
    expect(twice.ok ? null : twice.errors.fallback).toBe("local is in the chain twice.");
    const odd = validateProfile(draft({ fallback: "lo/cal" }), known, null);
    expect(odd.ok ? null : odd.errors.fallback).toBe("“lo/cal” is not a backend name.");
  });

  it("bounds the timeout and the retries", () => {
    const errorsOf = (timeout_secs: string, max_retries: string) => {
      const check = validateProfile(draft({ timeout_secs, max_retries }), known, null);
      return check.ok ? {} : check.errors;
    };
    expect(errorsOf("600", "0")).toEqual({});
    expect(errorsOf("601", "11")).toEqual({
      timeout_secs: "The timeout must be between 1 and 600.",
      max_retries: "Retries must be between 0 and 10.",
    });
    expect(errorsOf("", "-1")).toEqual({
      timeout_secs: "The timeout must be a whole number.",
      max_retries: "Retries must be a whole number.",
    });
  });
});

describe("the fields one by one", () => {
  it("checks names", () => {
    expect(nameError("lab-server_2")).toBeNull();
    expect(nameError("")).toBe("Give the backend a name.");
    expect(nameError("ünïcode")).toBe("Use only letters, digits, - and _ in a name.");
    expect(nameError("x".repeat(40))).toBeNull();
    expect(nameError("x".repeat(41))).toBe("A name has at most 40 characters.");
  });

  it("checks base URLs", () => {
    expect(baseUrlError("http://127.0.0.1:8080/v1")).toBeNull();
    expect(baseUrlError("HTTPS://api.example.org")).toBeNull();
    expect(baseUrlError("")).toBe("Give the server's base URL, e.g. http://127.0.0.1:8080/v1.");
    expect(baseUrlError("127.0.0.1:8080")).toBe("The base URL must start with http:// or https://.");
    expect(baseUrlError("http://exa mple.org")).toBe("The base URL cannot contain spaces.");
    expect(baseUrlError("http://")).toBe("This is not a valid URL.");
    expect(baseUrlError("https://me:sk-123@api.example.org/v1")).toBe(
      "Leave the key out of the URL; store it as the backend's key.",
    );
    expect(baseUrlError("https://api.example.org/v1?key=sk-123")).toBe("Give the bare API root, without a query string.");
    expect(baseUrlError("https://api.example.org/v1#sk-123")).toBe("Give the bare API root, without a #fragment.");
  });

  it("reads the fallback box", () => {
    expect(parseFallback(" cloud, local ,,  ")).toEqual(["cloud", "local"]);
    expect(parseFallback("cloud local")).toEqual(["cloud", "local"]);
    expect(parseFallback("")).toEqual([]);
  });

  it("fills the form from a saved profile and back", () => {
    const saved = view("cloud", { fallback: ["local"], timeout_secs: 30, max_retries: 0 });
    expect(draftFrom(saved)).toEqual({
      name: "cloud",
      base_url: "http://127.0.0.1:8080/v1",
      model: "smollm2",
      timeout_secs: "30",
      max_retries: "0",
      fallback: "local",
      context_window: "4096",
    });
    const check = validateProfile(draftFrom(saved), known, "cloud");
    expect(check.ok && check.profile).toEqual({
      name: "cloud",
      base_url: "http://127.0.0.1:8080/v1",
      model: "smollm2",
      timeout_secs: 30,
      max_retries: 0,
      fallback: ["local"],
      context_window: 4096,
    });
  });

  it("offers every other backend as a fallback", () => {
    expect(fallbackChoices([local, view("cloud"), view("lab")], "lab ")).toEqual(["local", "cloud"]);
  });
});

describe("how a backend reads", () => {
  it("says whether a key is stored, never what it is", () => {
    expect(keyStateLabel("set", null)).toBe("key set");
    expect(keyStateLabel("not_set", null)).toBe("no key");
    expect(keyStateLabel("not_needed", null)).toBe("no key needed");
    expect(keyStateLabel("unavailable", "no Secret Service is running; start gnome-keyring")).toBe(
      "keyring unavailable: no Secret Service is running; start gnome-keyring",
    );
    expect(keyStateLabel("unavailable", null)).toBe("keyring unavailable");
  });

  it("names kinds and chains", () => {
    expect(backendKindLabel("local")).toBe("local (embedded)");
    expect(backendKindLabel("remote")).toBe("remote (OpenAI-compatible)");
    expect(chainLabel(["cloud", "local"])).toBe("cloud → local");
    expect(chainLabel([])).toBe("");
  });

  it("sums up a connection test", () => {
    const ok: BackendTest = {
      name: "lab",
      ok: true,
      latency_ms: 1234,
      models: ["smollm2", "qwen"],
      model_found: true,
      message: "connected",
      hint: null,
    };
    expect(testSummary(ok)).toBe("Connected in 1,234 ms, 2 models listed, the profile's model among them.");
    expect(testSummary({ ...ok, models: ["qwen"], model_found: false })).toBe(
      "Connected in 1,234 ms, 1 model listed, but not the profile's model.",
    );
    expect(testSummary({ ...ok, model_found: null })).toBe("Connected in 1,234 ms, 2 models listed.");
    expect(testSummary({ ...ok, ok: false, latency_ms: 3, models: [], model_found: null })).toBe("Failed after 3 ms.");
  });
});

describe("sending without the local model", () => {
  const backends = [local, view("cloud"), view("lab", { fallback: ["cloud", "local"] })];

  it("finds the backend a turn goes to", () => {
    expect(effectiveBackend(backends, null)?.name).toBe("local");
    expect(effectiveBackend(backends, "cloud")?.name).toBe("cloud");
    expect(effectiveBackend(backends, "gone")).toBeNull();
    expect(effectiveBackend(null, "cloud")).toBeNull();
  });

  it("lets a turn to a remote backend go while the local model is not ready", () => {
    expect(canSendWith(true, null)).toBe(true);
    expect(canSendWith(false, null)).toBe(false);
    expect(canSendWith(false, effectiveBackend(backends, null))).toBe(false);
    expect(canSendWith(false, effectiveBackend(backends, "cloud"))).toBe(true);
    // A chain that ends on the local model needs it, as the core's `needs_local_model` says.
    expect(canSendWith(false, effectiveBackend(backends, "lab"))).toBe(false);
  });
});
