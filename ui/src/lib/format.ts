// Small, pure formatting helpers shared by the views. Times are shown in the user's local clock.

/** How a thing went, as the views colour it (app.css: `.ok`, `.warn`, `.bad`, `.accent`). */
export type Tone = "ok" | "warn" | "bad" | "accent";

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** `14:03:07.042`: a local wall-clock time with milliseconds, for the inspector's timeline. */
export function clockTime(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** `840 ms`, `2.35 s`, `1 min 05 s`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  const totalSeconds = Math.round(ms / 1000);
  return `${Math.floor(totalSeconds / 60)} min ${pad(totalSeconds % 60)} s`;
}

/** A conversation's last activity: the time of day when it was today, else the date. */
export function formatWhen(ms: number, now: number = Date.now()): string {
  const d = new Date(ms);
  const today = new Date(now);
  const sameDay =
    d.getFullYear() === today.getFullYear() && d.getMonth() === today.getMonth() && d.getDate() === today.getDate();
  if (sameDay) return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export function formatCount(n: number): string {
  return n.toLocaleString("en-US");
}

/**
 * A retrieval score to three significant digits (`12.3`, `0.812`, `0.0328`): BM25, cosine and fused scores
 * differ by orders of magnitude, so a fixed number of decimals would hide one or the other. `–` when absent.
 */
export function formatScore(score: number | null): string {
  if (score === null || !Number.isFinite(score)) return "–";
  if (score === 0) return "0";
  if (Math.abs(score) >= 1000) return score.toFixed(0);
  return String(Number(score.toPrecision(3)));
}

/** The text on one line, cut to `max` characters with an ellipsis: for naming an item in a label or a bar. */
export function excerpt(text: string, max: number): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length <= max ? line : `${line.slice(0, Math.max(0, max - 1)).trimEnd()}…`;
}

/** The end of a long text with an ellipsis in front: for paths, whose file name is the part that tells them apart. */
export function tail(text: string, max: number): string {
  return text.length <= max ? text : `…${text.slice(text.length - Math.max(0, max - 1))}`;
}
