// Access tokens: where they come from, and when they expire.

/** A token, or a function that returns a fresh one (called before each connect and refresh). */
export type TokenSource = string | (() => string | Promise<string>);

/**
 * The `exp` claim of a JWT, in Unix seconds, read without checking the
 * signature (the server checks it; the client only needs to know when to ask
 * for a new one). Undefined when the token is not a JWT or has no `exp`.
 */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const claims: unknown = JSON.parse(atob(padded));
    if (typeof claims === "object" && claims !== null && "exp" in claims) {
      const exp = (claims as { exp: unknown }).exp;
      return typeof exp === "number" ? exp : undefined;
    }
  } catch {
    return undefined;
  }
  return undefined;
}
