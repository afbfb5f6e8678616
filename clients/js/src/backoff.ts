// Reconnect delays: exponential, with jitter so that clients dropped together
// (a server restart) do not all come back in the same instant.

export interface BackoffOptions {
  /** The first delay, ms (default 250). */
  initial?: number;
  /** The largest delay, ms (default 30,000). */
  max?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first): a random
 * value between half and all of `initial * factor ** attempt`, capped at `max`
 * ("equal jitter": never zero, never in step with other clients).
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const initial = options.initial ?? 250;
  const max = options.max ?? 30_000;
  const factor = options.factor ?? 2;
  const ceiling = Math.min(max, initial * factor ** Math.min(attempt, 64));
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * A Retry-After header value in ms: delta-seconds or an HTTP date; undefined
 * when absent or unreadable.
 */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
