// The progress line of a training run: step, losses, accuracies, speed and ETA. On a terminal it redraws
// one line; elsewhere (CI, logs, notebooks) it prints a line now and then.

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

export class ProgressBar {
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly tty = Boolean(stream.isTTY),
    /** Minimum milliseconds between lines when not on a terminal. */
    private readonly logEveryMs = 5000,
  ) {}

  update(s: ProgressState, force = false): void {
    const now = Date.now();
    const every = this.tty ? 100 : this.logEveryMs;
    if (!force && now - this.lastDraw < every) return;
    this.lastDraw = now;
    const line = formatProgress(s, this.tty ? 24 : 0);
    if (this.tty) {
      this.stream.write(`\r${line}\x1b[K`);
      this.drawn = true;
    } else this.stream.write(line + "\n");
  }

  /** Ends the redrawn line so the next output starts on a fresh one. */
  done(): void {
    if (this.tty && this.drawn) this.stream.write("\n");
    this.drawn = false;
  }

  /** Prints a message without garbling the redrawn line. */
  log(message: string): void {
    if (this.tty && this.drawn) this.stream.write("\r\x1b[K");
    this.stream.write(message + "\n");
    this.lastDraw = 0;
  }
}

export function formatProgress(s: ProgressState, barWidth: number): string {
  const frac = s.steps > 0 ? s.step / s.steps : 1;
  const bar = barWidth > 0 ? `[${"#".repeat(Math.round(frac * barWidth)).padEnd(barWidth, ".")}] ` : "";
  const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : "–");
  const num = (x: number) => (Number.isFinite(x) ? x.toPrecision(3) : "–");
  const eta = formatDuration((s.steps - s.step) * s.secondsPerStep);
  const speed = Number.isFinite(s.secondsPerStep) && s.secondsPerStep > 0 ? `${(1000 * s.secondsPerStep).toFixed(1)} ms/step` : "";
  return (
    `${bar}step ${s.step}/${s.steps}  train loss ${num(s.trainLoss)} acc ${pct(s.trainAcc)}  ` +
    `val loss ${num(s.valLoss)} acc ${pct(s.valAcc)}  ${speed}  ETA ${eta}`
  );
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 60) return `${seconds.toFixed(0)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.round((seconds % 3600) / 60)).padStart(2, "0")}m`;
}
