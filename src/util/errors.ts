// Errors as one-line reports (a skipped benchmark, a backend or addon that did not load).

/** The first line of a thrown value's message; it need not be an Error. */
export function errorLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}
