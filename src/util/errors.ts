// The two ways work ends that are no bug, the user's mistake and the user's interrupt (the library throws
// them; the CLI, src/cli/main.ts, prints them and turns them into exit codes), and errors as one-line
// reports (a skipped benchmark, a backend or addon that did not load).

/** A user's mistake: a bad flag, argument, config or sweep spec. The CLI prints it and exits with 2. */
export class UserError extends Error {}

/**
 * The user interrupted and wants out at once: no checkpoint, nothing more printed. The CLI exits with 143
 * for a SIGTERM, else 130.
 */
export class Interrupted extends Error {
  constructor(
    message: string,
    readonly signal?: NodeJS.Signals,
  ) {
    super(message);
  }
}

/** The first line of a thrown value's message; it need not be an Error. */
export function errorLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}
