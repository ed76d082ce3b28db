// The backends' state: the list the core reports, the add/edit form, the connection tests' results, and which
// backend an action is under way for. The core owns the profiles and the keyring; this mirrors the last list it
// returned and replaces an entry with the view each command answers.
//
// A key passes through `setKey` only: it is an argument, handed to the core and dropped. It is never put in
// this store's state, in an error, or in a log; the views show only `key set` or `no key` afterwards.

import * as api from "./api";
import type { AppError, BackendTest, BackendView } from "./bindings";
import { attempt } from "./errors";
import { draftFrom, emptyDraft, validateProfile, type ProfileDraft, type ProfileErrors } from "./profiles";

export type BackendAction = "test" | "default" | "remove" | "key";

export class BackendStore {
  /** Null until the first `list_backends` answer. */
  list = $state<BackendView[] | null>(null);
  /** A failure of reading the list or of an action on a listed backend. */
  error = $state<AppError | null>(null);

  draft = $state<ProfileDraft>(emptyDraft());
  /** The name of the profile the form edits; null while it adds a new one. */
  editing = $state<string | null>(null);
  formErrors = $state<ProfileErrors>({});
  /** The core's refusal of the last save. */
  saveError = $state<AppError | null>(null);
  saving = $state(false);

  /** The last connection test of each backend, by name. */
  tests = $state<Record<string, BackendTest>>({});
  /** The backend being tested, made default, removed, or whose key is being changed; `doing` says which. */
  busy = $state<string | null>(null);
  doing = $state<BackendAction | null>(null);
  /** The backend whose Remove waits for the user's confirmation. */
  confirmingRemove = $state<string | null>(null);
  keyError = $state<AppError | null>(null);

  get names(): string[] {
    return this.list?.map((b) => b.name) ?? [];
  }

  get defaultName(): string | null {
    return this.list?.find((b) => b.is_default)?.name ?? null;
  }

  find(name: string | null): BackendView | null {
    return name === null ? null : (this.list?.find((b) => b.name === name) ?? null);
  }

  /** The profile the form edits, as the core last reported it. */
  get edited(): BackendView | null {
    return this.find(this.editing);
  }

  async refresh(): Promise<void> {
    const read = await attempt(async () => (this.list = await api.listBackends()), (e) => (this.error = e));
    if (read) this.error = null;
  }

  #replace(view: BackendView): void {
    const list = this.list ?? [];
    const i = list.findIndex((b) => b.name === view.name);
    this.list = i >= 0 ? list.map((b, j) => (j === i ? view : b)) : [...list, view];
  }

  /** Fills the form with a remote profile to edit it. */
  edit(name: string): void {
    const view = this.find(name);
    if (!view || view.kind !== "remote") return;
    this.editing = name;
    this.draft = draftFrom(view);
    this.formErrors = {};
    this.saveError = null;
    this.keyError = null;
  }

  /** Clears the form for a new profile. */
  startNew(): void {
    this.editing = null;
    this.draft = emptyDraft();
    this.formErrors = {};
    this.saveError = null;
    this.keyError = null;
  }

  /**
   * Validates the form and saves the profile. A saved new profile stays in the form, now being edited, so that
   * its key can be set next.
   */
  async save(): Promise<boolean> {
    if (this.saving) return false;
    const check = validateProfile(this.draft, this.names, this.editing);
    this.saveError = null;
    if (!check.ok) {
      this.formErrors = check.errors;
      return false;
    }
    this.formErrors = {};
    this.saving = true;
    const saved = await attempt(
      async () => {
        const view = await api.saveBackend(check.profile);
        this.#replace(view);
        this.editing = view.name;
        this.draft = draftFrom(view);
      },
      (e) => (this.saveError = e),
    );
    this.saving = false;
    return saved;
  }

  #forgetTest(name: string): void {
    this.tests = Object.fromEntries(Object.entries(this.tests).filter(([n]) => n !== name));
  }

  /**
   * Runs an action on one backend, one action at a time (`busy` and `doing` say which while it runs). Its failure
   * goes to `error`, or to `keyError` for the key's actions, which the key form shows; true when it worked.
   */
  async #act(
    name: string,
    doing: BackendAction,
    action: () => Promise<void>,
    shownIn: "error" | "keyError" = "error",
  ): Promise<boolean> {
    if (this.busy !== null) return false;
    this.busy = name;
    this.doing = doing;
    this[shownIn] = null;
    const done = await attempt(action, (e) => (this[shownIn] = e));
    this.busy = null;
    this.doing = null;
    return done;
  }

  async test(name: string): Promise<void> {
    await this.#act(name, "test", async () => {
      this.#forgetTest(name); // A stale result must not stand for the test under way.
      this.tests = { ...this.tests, [name]: await api.testBackend(name) };
    });
  }

  async makeDefault(name: string): Promise<void> {
    await this.#act(name, "default", async () => {
      await api.setDefaultBackend(name);
      await this.refresh();
    });
  }

  askRemove(name: string): void {
    this.confirmingRemove = name;
  }

  cancelRemove(): void {
    this.confirmingRemove = null;
  }

  /** Removes the backend the user confirmed removing. */
  async remove(name: string): Promise<void> {
    if (this.confirmingRemove !== name) return;
    await this.#act(name, "remove", async () => {
      await api.removeBackend(name);
      this.confirmingRemove = null;
      this.#forgetTest(name);
      if (this.editing === name) this.startNew();
      await this.refresh();
    });
  }

  /**
   * Hands the key to the core's keyring. The caller clears its input before calling; the key is not kept here,
   * and on failure it is gone too (the user types it again).
   */
  setKey(name: string, key: string): Promise<boolean> {
    if (key.trim() === "") return Promise.resolve(false);
    return this.#act(name, "key", async () => this.#replace(await api.setKey(name, key.trim())), "keyError");
  }

  async removeKey(name: string): Promise<void> {
    await this.#act(name, "key", async () => this.#replace(await api.removeKey(name)), "keyError");
  }
}
