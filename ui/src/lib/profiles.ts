// The backend profiles' pure side: the add/edit form's draft and its validation, and how a backend, its key and
// a connection test read on screen. The core validates a profile again when it is saved; this catches the
// mistakes a user makes while typing, next to the field that has them, before anything is sent.

import type { BackendKind, BackendProfile, BackendTest, BackendView, KeyState } from "./bindings";
import { formatCount } from "./format";

/** What the form holds: text as typed, so that a half-typed number is not lost or coerced. */
export type ProfileDraft = {
  name: string;
  base_url: string;
  model: string;
  timeout_secs: string;
  max_retries: string;
  /** Other backends' names, separated by commas. */
  fallback: string;
  /** The server model's window in tokens; empty: the core's default. */
  context_window: string;
};

export type ProfileField = keyof ProfileDraft;
export type ProfileErrors = Partial<Record<ProfileField, string>>;

// The bounds the core checks too (src/app_backends.rs, `validate`).
export const DEFAULT_TIMEOUT_SECS = 30;
export const DEFAULT_MAX_RETRIES = 2;
export const MAX_TIMEOUT_SECS = 600;
export const MAX_RETRIES = 10;
export const MAX_NAME_LENGTH = 40;
export const MIN_CONTEXT_WINDOW = 256;
export const MAX_CONTEXT_WINDOW = 1_048_576;
/** The embedded model's backend, which is always there and cannot be replaced by a profile. */
export const LOCAL_BACKEND = "local";

const NAME = /^[A-Za-z0-9_-]+$/;

export function emptyDraft(): ProfileDraft {
  return {
    name: "",
    base_url: "",
    model: "",
    timeout_secs: String(DEFAULT_TIMEOUT_SECS),
    max_retries: String(DEFAULT_MAX_RETRIES),
    fallback: "",
    context_window: "",
  };
}

/** The form filled in from a saved profile, to edit it. */
export function draftFrom(view: BackendView): ProfileDraft {
  return {
    name: view.name,
    base_url: view.base_url ?? "",
    model: view.model,
    timeout_secs: String(view.timeout_secs),
    max_retries: String(view.max_retries),
    fallback: view.fallback.join(", "),
    context_window: String(view.context_window),
  };
}

/** The names in the fallback box, in order: separated by commas or spaces, trimmed, blanks left out. */
export function parseFallback(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((name) => name.trim())
    .filter((name) => name !== "");
}

/** Why a backend name is not acceptable, or null when it is. */
export function nameError(name: string): string | null {
  if (name === "") return "Give the backend a name.";
  if (name.length > MAX_NAME_LENGTH) return `A name has at most ${MAX_NAME_LENGTH} characters.`;
  if (!NAME.test(name)) return "Use only letters, digits, - and _ in a name.";
  return null;
}

/** Why a base URL is not acceptable, or null when it is: an http:// or https:// address with a host. */
export function baseUrlError(url: string): string | null {
  if (url === "") return "Give the server's base URL, e.g. http://127.0.0.1:8080/v1.";
  if (!/^https?:\/\//i.test(url)) return "The base URL must start with http:// or https://.";
  if (/\s/.test(url)) return "The base URL cannot contain spaces.";
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "This is not a valid URL.";
  }
  if (parsed.hostname === "") return "The base URL needs a host, e.g. http://127.0.0.1:8080/v1.";
  // A key written into the URL would be stored with the profile and show up in logs; it goes to the keyring.
  if (parsed.username !== "" || parsed.password !== "") return "Leave the key out of the URL; store it as the backend's key.";
  if (parsed.search !== "") return "Give the bare API root, without a query string.";
  if (parsed.hash !== "") return "Give the bare API root, without a #fragment.";
  return null;
}

function wholeNumber(text: string, min: number, max: number, what: string): number | string {
  const trimmed = text.trim();
  if (!/^\d+$/.test(trimmed)) return `${what} must be a whole number.`;
  const n = Number(trimmed);
  if (n < min || n > max) return `${what} must be between ${min} and ${max}.`;
  return n;
}

export type ProfileCheck = { ok: true; profile: BackendProfile } | { ok: false; errors: ProfileErrors };

/**
 * Checks the form and turns it into the profile to save. `known` are the backends that exist (fallbacks must
 * name one of them); `editing` is the name of the profile being edited, or null when adding one.
 */
export function validateProfile(draft: ProfileDraft, known: readonly string[], editing: string | null): ProfileCheck {
  const errors: ProfileErrors = {};
  const name = draft.name.trim();
  const baseUrl = draft.base_url.trim();
  const model = draft.model.trim();

  const badName = nameError(name);
  if (badName) errors.name = badName;
  else if (name === LOCAL_BACKEND && editing === null) errors.name = "“local” is the embedded model's name; choose another.";
  else if (editing === null && known.includes(name)) errors.name = `A backend named ${name} already exists; edit it instead.`;

  const badUrl = baseUrlError(baseUrl);
  if (badUrl) errors.base_url = badUrl;

  if (model === "") errors.model = "Name the model the server should run, as its /v1/models lists it.";

  const timeout = wholeNumber(draft.timeout_secs, 1, MAX_TIMEOUT_SECS, "The timeout");
  if (typeof timeout === "string") errors.timeout_secs = timeout;
  const retries = wholeNumber(draft.max_retries, 0, MAX_RETRIES, "Retries");
  if (typeof retries === "string") errors.max_retries = retries;

  const fallback = parseFallback(draft.fallback);
  const fallbackError = fallbackProblem(fallback, name, known);
  if (fallbackError) errors.fallback = fallbackError;

  const window =
    draft.context_window.trim() === ""
      ? null
      : wholeNumber(draft.context_window, MIN_CONTEXT_WINDOW, MAX_CONTEXT_WINDOW, "The context window");
  if (typeof window === "string") errors.context_window = window;

  if (Object.keys(errors).length > 0 || typeof timeout === "string" || typeof retries === "string" || typeof window === "string") {
    return { ok: false, errors };
  }
  const profile: BackendProfile = { name, base_url: baseUrl, model, timeout_secs: timeout, max_retries: retries, fallback };
  if (window !== null) profile.context_window = window;
  return { ok: true, profile };
}

function fallbackProblem(fallback: readonly string[], self: string, known: readonly string[]): string | null {
  const seen = new Set<string>();
  for (const name of fallback) {
    if (nameError(name)) return `“${name}” is not a backend name.`;
    if (name === self) return "A backend cannot fall back to itself.";
    if (seen.has(name)) return `${name} is in the chain twice.`;
    if (!known.includes(name)) return `There is no backend named ${name}.`;
    seen.add(name);
  }
  return null;
}

/** The backends a profile may fall back to: every other one. */
export function fallbackChoices(backends: readonly BackendView[], self: string): string[] {
  return backends.map((b) => b.name).filter((name) => name !== self.trim());
}

const kindLabels: Record<BackendKind, string> = {
  local: "local (embedded)",
  remote: "remote (OpenAI-compatible)",
  scripted: "scripted",
};

export function backendKindLabel(kind: BackendKind): string {
  return kindLabels[kind];
}

/** Whether a key is stored for the backend, in the words the list shows; never the key itself. */
export function keyStateLabel(key: KeyState, message: string | null): string {
  switch (key) {
    case "set":
      return "key set";
    case "not_set":
      return "no key";
    case "unavailable":
      return message ? `keyring unavailable: ${message}` : "keyring unavailable";
    case "not_needed":
      return "no key needed";
  }
}

/** A fallback chain as it is tried: `remote-a → local`; empty when the backend has none. */
export function chainLabel(fallback: readonly string[]): string {
  return fallback.join(" → ");
}

/** The one line a connection test comes to; the core's message and hint go under it. */
export function testSummary(test: BackendTest): string {
  const time = `${formatCount(test.latency_ms)} ms`;
  if (!test.ok) return `Failed after ${time}.`;
  const models = `${formatCount(test.models.length)} ${test.models.length === 1 ? "model" : "models"} listed`;
  const found =
    test.model_found === null ? "" : test.model_found ? ", the profile's model among them" : ", but not the profile's model";
  return `Connected in ${time}, ${models}${found}.`;
}

/** The backend a conversation's next turn uses: the one it chose, else the default. */
export function effectiveBackend(backends: readonly BackendView[] | null, chosen: string | null): BackendView | null {
  if (!backends) return null;
  if (chosen !== null) return backends.find((b) => b.name === chosen) ?? null;
  return backends.find((b) => b.is_default) ?? null;
}

/**
 * Whether the chat may send: always once the local model is ready, and without it when the turn goes to a
 * remote backend whose fallback chain does not reach the local model either (the core's `needs_local_model`).
 */
export function canSendWith(modelReady: boolean, backend: BackendView | null): boolean {
  if (modelReady) return true;
  return backend !== null && backend.kind === "remote" && !backend.fallback.includes(LOCAL_BACKEND);
}
