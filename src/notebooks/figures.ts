// `grok figures`: re-executes every notebook in notebooks/ headless (Node alone, tslab's executor), saves
// the outputs into the .ipynb files and prints one line per notebook and a summary. Each notebook runs in
// its own process (runNotebookIsolated), as each gets a fresh kernel under Jupyter. While one runs, a
// status line on stderr names it, its running cell and that cell's own progress line (a training run's,
// a sweep's), redrawn on a terminal and printed every 10 s elsewhere.
//
//   grok figures [--preset smoke|quick|paper] [--only NAME] [--no-write] [--timeout SECONDS] [--no-progress]
//
// The notebooks read GROK_PRESET (how much training to do) and write exported figures to GROK_FIGURES_DIR
// (<repo>/figures, created here). Exit code 0 when every notebook ran, 1 when one failed, 2 on bad flags.

import * as fs from "node:fs";
import * as path from "node:path";
import { displayPath, REPO_ROOT } from "../store/run-store";
import { formatDuration, ProgressDisplay, progressDisplayFor } from "../training/progress";
import { NotebookRunOptions, NotebookRunResult, runNotebook, runNotebookIsolated } from "./runner";
import { NOTEBOOK_PRESETS, Preset } from "./notebook";

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

export class FiguresUsageError extends Error {}

/** Parses `grok figures` flags (everything after "figures"). Throws FiguresUsageError on a bad flag. */
export function parseFiguresArgs(argv: string[]): FiguresOptions {
  const opts: FiguresOptions = {};
  const value = (i: number, flag: string) => {
    const v = argv[i];
    if (v === undefined || v.startsWith("--")) throw new FiguresUsageError(`${flag} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].startsWith("--") && argv[i].includes("=") ? argv[i].split(/=(.*)/s, 2) : [argv[i], undefined];
    const take = () => inline ?? value(++i, flag);
    switch (flag) {
      case "--preset": {
        const p = take();
        if (!(NOTEBOOK_PRESETS as readonly string[]).includes(p)) throw new FiguresUsageError(`--preset must be one of ${NOTEBOOK_PRESETS.join(", ")} (got ${p})`);
        opts.preset = p as Preset;
        break;
      }
      case "--only":
        opts.only = take();
        break;
      case "--no-write":
        opts.write = false;
        break;
      case "--no-progress":
        opts.progress = false;
        break;
      case "--timeout": {
        const s = Number(take());
        if (!(s > 0)) throw new FiguresUsageError("--timeout takes a positive number of seconds");
        opts.timeoutMs = s * 1000;
        break;
      }
      default:
        throw new FiguresUsageError(`unknown argument ${argv[i]}`);
    }
  }
  return opts;
}

export const FIGURES_USAGE =
  "usage: grok figures [--preset smoke|quick|paper] [--only NAME] [--no-write] [--timeout SECONDS] [--no-progress]\n" +
  "  Re-executes notebooks/*.ipynb headless with tslab, saves their outputs, exports figures to figures/;\n" +
  "  shows the running notebook, cell and the cell's progress on stderr (--no-progress: not).";

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

/** Runs the notebooks and prints the report; resolves to the exit code. */
export async function runFigures(opts: FiguresOptions = {}): Promise<number> {
  const out = opts.out ?? ((line: string) => void process.stdout.write(line + "\n"));
  const root = path.resolve(opts.root ?? REPO_ROOT);
  const envPreset = process.env.GROK_PRESET;
  const preset = opts.preset ?? ((NOTEBOOK_PRESETS as readonly string[]).includes(envPreset ?? "") ? (envPreset as Preset) : "quick");
  const nbDir = path.join(root, "notebooks");
  const figuresDir = path.join(root, "figures");
  const write = opts.write ?? true;

  let names = fs.existsSync(nbDir) ? fs.readdirSync(nbDir).filter((f) => f.endsWith(".ipynb")).sort() : [];
  if (opts.only !== undefined) {
    // a file name, with or without .ipynb, or a unique prefix of one ("02")
    const want = path.basename(opts.only);
    const matches = names.includes(want) || names.includes(want + ".ipynb") ? [names.includes(want) ? want : want + ".ipynb"] : names.filter((n) => n.startsWith(want));
    if (matches.length !== 1) {
      process.stderr.write(`grok figures: ${matches.length ? `"${want}" names several notebooks` : `no notebook ${want}`} in ${displayPath(nbDir)} (there are: ${names.join(", ") || "none"})\n`);
      return 2;
    }
    names = matches;
  }
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
  const results: { name: string; result: NotebookRunResult; exported: number }[] = [];
  const started = Date.now();
  for (const name of names) {
    const before = snapshot(figuresDir);
    const label = name.replace(/\.ipynb$/, "");
    let cell: { index: number; total: number; startedAt: number } | null = null;
    let cellProgress = "";
    const showStatus = () => {
      if (!progress || !cell) return;
      const seconds = (Date.now() - cell.startedAt) / 1000;
      progress.draw(`${label}: cell ${cell.index + 1}/${cell.total} (${formatDuration(seconds)})${cellProgress ? ` · ${cellProgress}` : ""}`);
    };
    const runOpts: NotebookRunOptions = {
      env,
      write,
      timeoutMs: opts.timeoutMs,
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
      result = opts.inProcess ? await runNotebook(path.join(nbDir, name), runOpts) : await runNotebookIsolated(path.join(nbDir, name), runOpts);
    } finally {
      clearInterval(ticker);
    }
    let exported = 0;
    for (const [f, mtime] of snapshot(figuresDir)) if (before.get(f) !== mtime) exported++;
    results.push({ name, result, exported });
    const status = result.ok ? "ok" : `FAILED (cell ${result.failedCell ? result.failedCell.index + 1 : "?"})`;
    say(
      `${pad(name, width)}${pad(status, 18)}${pad(result.seconds.toFixed(1) + " s", 10)}` +
        `${result.displays} figure${result.displays === 1 ? "" : "s"} displayed, ${exported} file${exported === 1 ? "" : "s"} exported`,
    );
  }

  const failed = results.filter((r) => !r.result.ok);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const displays = results.reduce((n, r) => n + r.result.displays, 0);
  const exported = results.reduce((n, r) => n + r.exported, 0);
  if (owned) progress?.done();
  out(
    `${results.length - failed.length} of ${results.length} notebooks ok in ${seconds} s; ${displays} figures displayed, ` +
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
  return failed.length > 0 ? 1 : 0;
}

/** The CLI body: `grok figures ARGS`. Resolves to the exit code. */
export async function figuresMain(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(FIGURES_USAGE + "\n");
    return 0;
  }
  let opts: FiguresOptions;
  try {
    opts = parseFiguresArgs(argv);
  } catch (e) {
    if (!(e instanceof FiguresUsageError)) throw e;
    process.stderr.write(`grok figures: ${e.message}\n${FIGURES_USAGE}\n`);
    return 2;
  }
  return runFigures(opts);
}

// `node dist/src/notebooks/figures.js [flags]` works without the grok CLI too.
if (require.main === module) {
  figuresMain(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`grok figures: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
