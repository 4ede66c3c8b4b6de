// What `grok figures` does (src/cli/figures.ts): re-executes every notebook in notebooks/ headless (Node
// alone, tslab's executor), saves the outputs into the .ipynb files and prints one line per notebook and a
// summary. Each notebook runs in its own process (runNotebookIsolated), as each gets a fresh kernel under
// Jupyter. While one runs, a status line on stderr names it, its running cell and that cell's own progress
// line (a training run's, a sweep's), redrawn on a terminal and printed every 10 s elsewhere.
//
// The notebooks read GROK_PRESET (how much training to do) and write exported figures to GROK_FIGURES_DIR
// (<repo>/figures, created here).

import * as fs from "node:fs";
import * as path from "node:path";
import { displayPath, REPO_ROOT } from "../store/run-store";
import { formatDuration, ProgressDisplay, progressDisplayFor } from "../training/progress";
import { NotebookRunOptions, NotebookRunResult, runNotebook, runNotebookIsolated } from "./runner";
import { NOTEBOOK_PRESETS, Preset } from "./notebook";
import { UserError } from "../util/errors";

export interface FiguresOptions {
  /** GROK_PRESET for the notebooks; default: $GROK_PRESET if it names a preset, else "quick". */
  preset?: Preset;
  /** Run only this notebook (file name, with or without .ipynb, or a unique prefix such as "02"). */
  only?: string;
  /** Save the outputs into the notebooks (default true). */
  write?: boolean;
  /** Per-cell limit; a cell still running 5 s past it is killed with its process. Default: none. */
  timeoutMs?: number;
  /** The repository root (default: the one this file was built in). */
  root?: string;
  /** Run the notebooks in this process, one after another, instead of a process each (default false). */
  inProcess?: boolean;
  /** Where the report goes (default: stdout). */
  out?: (line: string) => void;
  /**
   * The status line on stderr: notebook, running cell, its time and the cell's progress line (default
   * on), or a display to draw it on, which the caller ends.
   */
  progress?: boolean | ProgressDisplay;
}

const pad = (s: string, n: number) => (s.length >= n ? s : s + " ".repeat(n - s.length));

/** Files under dir (recursively) with their modification times. */
function snapshot(dir: string): Map<string, number> {
  const files = new Map<string, number>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) files.set(p, fs.statSync(p).mtimeMs);
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return files;
}

/**
 * The notebooks to run: every one in nbDir, or the one `only` names (a file name, with or without .ipynb,
 * or a unique prefix of one, such as "02").
 */
function chooseNotebooks(nbDir: string, only: string | undefined): string[] {
  const names = fs.existsSync(nbDir) ? fs.readdirSync(nbDir).filter((f) => f.endsWith(".ipynb")).sort() : [];
  if (only === undefined) return names;
  const want = path.basename(only);
  const matches = names.includes(want) || names.includes(want + ".ipynb") ? [names.includes(want) ? want : want + ".ipynb"] : names.filter((n) => n.startsWith(want));
  if (matches.length !== 1) {
    throw new UserError(`${matches.length ? `"${want}" names several notebooks` : `no notebook ${want}`} in ${displayPath(nbDir)} (there are: ${names.join(", ") || "none"})`);
  }
  return matches;
}

interface NotebookOutcome {
  name: string;
  result: NotebookRunResult;
  /** Files written or rewritten in the figures folder while it ran. */
  exported: number;
}

/** Runs one notebook, showing its running cell and that cell's progress line on the status line. */
async function runOneNotebook(
  file: string,
  figuresDir: string,
  how: Pick<NotebookRunOptions, "env" | "write" | "timeoutMs"> & { inProcess?: boolean },
  progress: ProgressDisplay | null,
): Promise<Omit<NotebookOutcome, "name">> {
  const before = snapshot(figuresDir);
  const label = path.basename(file).replace(/\.ipynb$/, "");
  let cell: { index: number; total: number; startedAt: number } | null = null;
  let cellProgress = "";
  const showStatus = () => {
    if (!progress || !cell) return;
    const seconds = (Date.now() - cell.startedAt) / 1000;
    progress.draw(`${label}: cell ${cell.index + 1}/${cell.total} (${formatDuration(seconds)})${cellProgress ? ` · ${cellProgress}` : ""}`);
  };
  const runOpts: NotebookRunOptions = {
    env: how.env,
    write: how.write,
    timeoutMs: how.timeoutMs,
    onCell: (index, total) => {
      cell = { index, total, startedAt: Date.now() };
      cellProgress = "";
      showStatus();
    },
    onProgress: (text) => {
      cellProgress = text;
      showStatus();
    },
  };
  // the cell's time goes on while it prints nothing
  const ticker = setInterval(showStatus, 1000);
  let result: NotebookRunResult;
  try {
    result = how.inProcess ? await runNotebook(file, runOpts) : await runNotebookIsolated(file, runOpts);
  } finally {
    clearInterval(ticker);
  }
  let exported = 0;
  for (const [f, mtime] of snapshot(figuresDir)) if (before.get(f) !== mtime) exported++;
  return { result, exported };
}

/** The summary line, then each failed notebook's failing cell with its source. */
function reportOutcomes(outcomes: NotebookOutcome[], seconds: string, figuresDir: string, write: boolean, out: (line: string) => void): void {
  const failed = outcomes.filter((r) => !r.result.ok);
  const displays = outcomes.reduce((n, r) => n + r.result.displays, 0);
  const exported = outcomes.reduce((n, r) => n + r.exported, 0);
  out(
    `${outcomes.length - failed.length} of ${outcomes.length} notebooks ok in ${seconds} s; ${displays} figures displayed, ` +
      `${exported} file${exported === 1 ? "" : "s"} exported to ${displayPath(figuresDir)}` +
      (write ? "; outputs saved in the notebooks" : "; notebooks not written (--no-write)"),
  );
  for (const { name, result } of failed) {
    const f = result.failedCell;
    out("");
    if (!f) {
      out(`${name} FAILED`);
      continue;
    }
    out(`${name}: cell ${f.index + 1} failed: ${f.ename}: ${f.evalue}`);
    for (const line of f.source.split("\n")) out(`  | ${line}`);
  }
}

/** Runs the notebooks and prints the report; resolves to 0 when every notebook ran, else 1. */
export async function runFigures(opts: FiguresOptions = {}): Promise<number> {
  const out = opts.out ?? ((line: string) => void process.stdout.write(line + "\n"));
  const root = path.resolve(opts.root ?? REPO_ROOT);
  const envPreset = process.env.GROK_PRESET;
  const preset = opts.preset ?? ((NOTEBOOK_PRESETS as readonly string[]).includes(envPreset ?? "") ? (envPreset as Preset) : "quick");
  const nbDir = path.join(root, "notebooks");
  const figuresDir = path.join(root, "figures");
  const write = opts.write ?? true;

  const names = chooseNotebooks(nbDir, opts.only);
  if (names.length === 0) {
    out(`No notebooks in ${displayPath(nbDir)}.`);
    return 0;
  }
  fs.mkdirSync(figuresDir, { recursive: true });
  const env = { GROK_PRESET: preset, GROK_FIGURES_DIR: figuresDir };
  // the status line is never a notebook display, even when runFigures runs inside a notebook
  const { display: progress, owned } = progressDisplayFor(opts.progress, { mode: process.stderr.isTTY ? "tty" : "lines", out }, true);
  const say = (line: string) => (progress ? progress.log(line, out) : out(line));
  say(`Running ${names.length} notebook${names.length === 1 ? "" : "s"} (preset ${preset}; figures to ${displayPath(figuresDir)})`);

  const width = Math.max(...names.map((n) => n.length)) + 2;
  const outcomes: NotebookOutcome[] = [];
  const started = Date.now();
  for (const name of names) {
    const how = { env, write, timeoutMs: opts.timeoutMs, inProcess: opts.inProcess };
    const { result, exported } = await runOneNotebook(path.join(nbDir, name), figuresDir, how, progress);
    outcomes.push({ name, result, exported });
    const status = result.ok ? "ok" : `FAILED (cell ${result.failedCell ? result.failedCell.index + 1 : "?"})`;
    say(
      `${pad(name, width)}${pad(status, 18)}${pad(result.seconds.toFixed(1) + " s", 10)}` +
        `${result.displays} figure${result.displays === 1 ? "" : "s"} displayed, ${exported} file${exported === 1 ? "" : "s"} exported`,
    );
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (owned) progress?.done();
  reportOutcomes(outcomes, seconds, figuresDir, write, out);
  return outcomes.some((r) => !r.result.ok) ? 1 : 0;
}
