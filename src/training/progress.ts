// Progress while a user waits. formatProgress is a training run's line (step, losses, accuracies, speed,
// ETA); ProgressDisplay is where such a line goes:
//   tty     a terminal: one line redrawn in place;
//   kernel  a notebook cell (tslab): one display output updated in place (update_display_data), so the
//           cell's saved outputs keep only its final state, the summary;
//   lines   anything else (CI, logs, pipes): a line now and then.
// ProgressCounter counts the items of a notebook's own long loop on a display.

import { randomBytes } from "node:crypto";
import { tslabWriteDisplayData } from "../plot/display";

export interface ProgressState {
  step: number;
  steps: number;
  trainLoss: number;
  trainAcc: number;
  valLoss: number;
  valAcc: number;
  /** Seconds per step, averaged over this session. */
  secondsPerStep: number;
}

export type ProgressMode = "tty" | "kernel" | "lines";

/** Where a terminal's line and printed lines go: process.stderr, or anything with its write. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressDisplayOptions {
  /** Put before each progress line: "run 1a2b3c4d5e6f", "sweep fraction-scaling". */
  label?: string;
  /** Default: kernel inside a tslab notebook cell, else tty when the stream is a terminal, else lines. */
  mode?: ProgressMode;
  /** Where the terminal line and printed lines go (default process.stderr). */
  stream?: ProgressStream;
  /** Where messages and the summary go (default: a line on the stream). */
  out?: (message: string) => void;
  /** Least milliseconds between two draws (default: 100 on a terminal, 1000 in a notebook, 10000 as lines). */
  everyMs?: number;
  /** The clock in milliseconds (default Date.now), for tests. */
  now?: () => number;
}

const EVERY_MS: Record<ProgressMode, number> = { tty: 100, kernel: 1000, lines: 10_000 };

/** Whether progress shows when not asked for: on a terminal or in a notebook cell. */
function progressByDefault(): boolean {
  return Boolean(process.stderr.isTTY) || tslabWriteDisplayData() !== null;
}

/**
 * The display for a `progress` option: the caller's own display (which the caller ends), a new one with
 * `options` (true, or undefined when `byDefault`), or none (false). `owned`: the callee ends it.
 */
export function progressDisplayFor(
  option: boolean | ProgressDisplay | undefined,
  options: ProgressDisplayOptions,
  byDefault = progressByDefault(),
): { display: ProgressDisplay | null; owned: boolean } {
  if (option instanceof ProgressDisplay) return { display: option, owned: false };
  return { display: (option ?? byDefault) ? new ProgressDisplay(options) : null, owned: true };
}

/** One progress line, shown the way its mode allows (see the top of this file). */
export class ProgressDisplay {
  readonly mode: ProgressMode;
  private readonly label: string;
  private readonly stream: ProgressStream;
  private readonly out: (message: string) => void;
  private readonly everyMs: number;
  private readonly now: () => number;
  private lastDraw = -Infinity;
  /** tty: a line is on the screen; kernel: the display output exists. */
  private shown = false;
  /** Random, as tslab's: a notebook page keeps display ids across kernel restarts. */
  private readonly displayId = randomBytes(8).toString("hex");

  constructor(options: ProgressDisplayOptions = {}) {
    this.stream = options.stream ?? process.stderr;
    this.mode = options.mode ?? (tslabWriteDisplayData() ? "kernel" : this.stream.isTTY ? "tty" : "lines");
    this.label = options.label ?? "";
    this.out = options.out ?? ((m) => void this.stream.write(m + "\n"));
    this.everyMs = options.everyMs ?? EVERY_MS[this.mode];
    this.now = options.now ?? Date.now;
  }

  /** Shows `text` (after the label) unless the last draw was less than everyMs ago; force shows it anyway. */
  draw(text: string, force = false): void {
    const now = this.now();
    if (!force && now - this.lastDraw < this.everyMs) return;
    this.lastDraw = now;
    const line = this.label ? `${this.label}: ${text}` : text;
    if (this.mode === "tty") {
      this.stream.write(`\r${line.slice(0, (this.stream.columns || 160) - 1)}\x1b[K`);
      this.shown = true;
    } else if (this.mode === "kernel") this.showInCell(line);
    else this.stream.write(line + "\n");
  }

  /** Prints a message (to `out`) without garbling the terminal line, which is redrawn at the next draw. */
  log(message: string, out = this.out): void {
    if (this.mode === "tty" && this.shown) {
      this.stream.write("\r\x1b[K");
      this.shown = false;
      this.lastDraw = -Infinity;
    }
    out(message);
  }

  /** Ends the display: in a notebook the line becomes the summary; elsewhere the summary is printed after it. */
  done(summary?: string): void {
    if (this.mode === "kernel") {
      if (summary !== undefined) this.showInCell(summary);
      return;
    }
    if (this.mode === "tty" && this.shown) this.stream.write("\n");
    this.shown = false;
    if (summary !== undefined) this.out(summary);
  }

  private showInCell(text: string): void {
    const write = tslabWriteDisplayData();
    if (!write) return; // the cell's kernel is gone
    write({ data: { "text/plain": text }, metadata: {}, transient: { display_id: this.displayId } }, this.shown);
    this.shown = true;
  }
}

/**
 * Counts the items of a long loop on a ProgressDisplay: done out of total, the time so far, an ETA. In a
 * notebook cell it is one line updated in place that ends as a summary:
 *   const progress = new ProgressCounter("sharpness", runs.length);
 *   for (const run of runs) { ...; progress.tick(`seed ${run.config.training.seed}`); }
 *   progress.done();
 */
export class ProgressCounter {
  private count = 0;
  private readonly display: ProgressDisplay;
  private readonly now: () => number;
  private readonly startedAt: number;

  constructor(
    readonly label: string,
    readonly total: number,
    options: Omit<ProgressDisplayOptions, "label"> = {},
  ) {
    if (!Number.isInteger(total) || total < 0)
      throw new Error(`ProgressCounter ${label}: total must be an integer ≥ 0 (got ${total})`);
    this.display = new ProgressDisplay({ ...options, label });
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    this.display.draw(this.line(), true);
  }

  /** One more item done; `detail` names it in the line ("seed 3"). */
  tick(detail?: string): void {
    this.count++;
    this.display.draw(this.line(detail), this.count === this.total);
  }

  /** Ends the line with a summary (default: "LABEL: N/TOTAL done in TIME"). */
  done(summary?: string): void {
    this.display.done(
      summary ?? `${this.label}: ${this.count}/${this.total} done in ${formatDuration(this.seconds())}`,
    );
  }

  private seconds(): number {
    return (this.now() - this.startedAt) / 1000;
  }

  private line(detail?: string): string {
    const seconds = this.seconds();
    return (
      `${this.count}/${this.total} done${detail ? ` (last: ${detail})` : ""} · ${formatDuration(seconds)} elapsed, ` +
      `ETA ${formatEta(this.total - this.count, this.count, seconds)}`
    );
  }
}

export function formatProgress(s: ProgressState, barWidth: number): string {
  const frac = s.steps > 0 ? s.step / s.steps : 1;
  const bar = barWidth > 0 ? `[${"#".repeat(Math.round(frac * barWidth)).padEnd(barWidth, ".")}] ` : "";
  const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : "–");
  const num = (x: number) => (Number.isFinite(x) ? x.toPrecision(3) : "–");
  const eta = formatDuration((s.steps - s.step) * s.secondsPerStep);
  const speed =
    Number.isFinite(s.secondsPerStep) && s.secondsPerStep > 0 ? `${(1000 * s.secondsPerStep).toFixed(1)} ms/step` : "";
  return (
    `${bar}step ${s.step}/${s.steps}  train loss ${num(s.trainLoss)} acc ${pct(s.trainAcc)}  ` +
    `val loss ${num(s.valLoss)} acc ${pct(s.valAcc)}  ${speed}  ETA ${eta}`
  );
}

/** The time left for `remaining` units at the rate so far (`done` units in `seconds`); "–" before any. */
export function formatEta(remaining: number, done: number, seconds: number): string {
  return done > 0 ? formatDuration((remaining * seconds) / done) : "–";
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 60) return `${seconds.toFixed(0)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.round((seconds % 3600) / 60)).padStart(2, "0")}m`;
}
