// Headless notebook execution with tslab's own executor, in Node alone (no Python, no Jupyter).
//
// runNotebook executes a notebook's code cells in order in ONE in-process tslab executor, built the way
// tslab's kernel builds it (tslab/dist/main.js startKernel), and records the outputs the way
// `jupyter nbconvert --to notebook --execute` records what the tslab kernel sends:
//   - stdout/stderr writes (process.stdout/stderr.write, hooked as tslab's jupyter.js does) become `stream`
//     outputs, consecutive writes to one stream merged and `\r` overwrites applied (nbconvert's
//     coalesce_streams). tslab never sends execute_result: it console.logs the cell's last expression,
//     so that value is a stdout stream, exactly as under Jupyter.
//   - tslab's public display API (and anything else) calls jupyter.lastWriteDisplayData(bundle, update):
//     ours appends `display_data` (data + metadata, transient dropped) and applies display_id updates to
//     every earlier output with that id, as nbclient does, so a progress line updated in place is saved as
//     one output in its final state. onProgress sees the text of each such in-place display.
//   - a failing cell becomes one `error` output (ename, evalue, traceback) and stops the run. Under real
//     Jupyter tslab only prints the error to stderr (it sends no `error` message); we record it as the
//     standard nbformat error output instead, from the Error object the executor hands its console.
//
// runNotebookIsolated runs the same thing in a child process (dist/src/notebooks/run-one.js): a fresh
// Node per notebook, as a fresh kernel per notebook under Jupyter. That is what `grok figures` uses.

import { AsyncLocalStorage } from "node:async_hooks";
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { format } from "node:util";
import { Interrupted } from "../util/errors";

// ---------------------------------------------------------------- nbformat

export type MimeBundle = Record<string, unknown>;

export type NotebookOutput =
  | { output_type: "stream"; name: "stdout" | "stderr"; text: string }
  | { output_type: "display_data"; data: MimeBundle; metadata: Record<string, unknown> }
  | { output_type: "execute_result"; data: MimeBundle; metadata: Record<string, unknown>; execution_count: number | null }
  | { output_type: "error"; ename: string; evalue: string; traceback: string[] };

export interface NotebookCell {
  cell_type: "code" | "markdown" | "raw";
  id?: string;
  metadata: Record<string, unknown>;
  source: string;
  outputs?: NotebookOutput[];
  execution_count?: number | null;
  [key: string]: unknown;
}

export interface Notebook {
  cells: NotebookCell[];
  metadata: Record<string, unknown>;
  nbformat: number;
  nbformat_minor: number;
}

/** Python's str.splitlines(keepends=True), which nbformat uses to write multi-line strings. */
function splitLines(s: string): string[] {
  const out: string[] = [];
  const re = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/g;
  let start = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    out.push(s.slice(start, m.index + m[0].length));
    start = m.index + m[0].length;
  }
  if (start < s.length) out.push(s.slice(start));
  return out;
}

const joinLines = (v: unknown): unknown => (Array.isArray(v) && v.every((x) => typeof x === "string") ? v.join("") : v);
const isJsonMime = (mime: string) => mime === "application/json" || (mime.startsWith("application/") && mime.endsWith("+json"));
const splitMime = (mime: string) => mime.startsWith("text/") || mime === "image/svg+xml" || mime === "application/javascript";

/** Parses an nbformat-4 notebook, joining the line lists of multi-line fields into strings. */
export function parseNotebook(text: string): Notebook {
  const nb = JSON.parse(text) as Notebook;
  if (nb.nbformat !== 4 || !Array.isArray(nb.cells)) throw new Error(`not an nbformat 4 notebook (nbformat ${nb.nbformat})`);
  nb.metadata ??= {};
  for (const cell of nb.cells) {
    cell.source = joinLines(cell.source ?? "") as string;
    cell.metadata ??= {};
    for (const out of cell.outputs ?? []) {
      if (out.output_type === "stream") out.text = joinLines(out.text) as string;
      if (out.output_type === "display_data" || out.output_type === "execute_result") {
        for (const [mime, v] of Object.entries(out.data)) if (!isJsonMime(mime)) out.data[mime] = joinLines(v);
      }
    }
  }
  return nb;
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") {
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) o[k] = sortKeys((v as Record<string, unknown>)[k]);
    return o;
  }
  return v;
}

/**
 * The notebook as Jupyter (nbformat) writes it: multi-line strings as line lists, keys sorted, one-space
 * indent, non-ASCII kept, a trailing newline. Byte-identical to nbformat.writes for ordinary notebooks, so
 * saving it from Jupyter afterwards gives no whitespace diff.
 */
export function serializeNotebook(nb: Notebook): string {
  const copy = JSON.parse(JSON.stringify(nb)) as Notebook;
  for (const cell of copy.cells) {
    const c = cell as unknown as Record<string, unknown>;
    if (typeof c.source === "string") c.source = splitLines(c.source);
    delete (cell.metadata as Record<string, unknown>).trusted;
    for (const out of cell.outputs ?? []) {
      const o = out as unknown as Record<string, unknown>;
      if (out.output_type === "stream" && typeof out.text === "string") o.text = splitLines(out.text);
      if (out.output_type === "display_data" || out.output_type === "execute_result") {
        for (const [mime, v] of Object.entries(out.data)) if (typeof v === "string" && splitMime(mime)) out.data[mime] = splitLines(v);
      }
    }
  }
  for (const k of ["orig_nbformat", "orig_nbformat_minor", "signature"]) delete copy.metadata[k];
  const s = JSON.stringify(sortKeys(copy), null, 1);
  return s.endsWith("\n") ? s : s + "\n";
}

/** nbconvert's coalesce_streams: merges consecutive writes to one stream and applies `\r` overwrites. */
function coalesceStreams(outputs: NotebookOutput[]): NotebookOutput[] {
  const merged: NotebookOutput[] = [];
  for (const out of outputs) {
    const last = merged[merged.length - 1];
    if (out.output_type === "stream" && last?.output_type === "stream" && last.name === out.name) last.text += out.text;
    else merged.push(out.output_type === "stream" ? { ...out } : out);
  }
  for (const out of merged) if (out.output_type === "stream" && out.text.includes("\r")) out.text = out.text.replace(/[^\n]*\r(?=[^\n])/g, "");
  return merged;
}

// ---------------------------------------------------------------- tslab internals

interface TslabConverter {
  close(): void;
}
interface TslabConverterSet {
  readonly node: TslabConverter;
  readonly browser: TslabConverter;
  close(): void;
}
interface TslabExecutor {
  execute(src: string): Promise<boolean>;
  interrupt(): void;
  close(): void;
}
interface TslabConsole {
  log(message?: unknown, ...rest: unknown[]): void;
  error(message?: unknown, ...rest: unknown[]): void;
}
type WriteDisplayData = (data: { data?: MimeBundle; metadata?: Record<string, unknown>; transient?: { display_id?: string } }, update: boolean) => void;
interface TslabJupyterModule {
  lastWriteDisplayData: WriteDisplayData | null;
  JupyterHandlerImpl: new (executor: TslabExecutor, isJs: boolean) => { handleKernel(): { language_info: Record<string, unknown> } };
}

const TSLAB_DIST = path.join(path.dirname(require.resolve("tslab/package.json")), "dist");
const tslabExecutor = require(path.join(TSLAB_DIST, "executor")) as {
  createExecutor(rootDir: string, convs: TslabConverterSet, console: TslabConsole): TslabExecutor;
};
const tslabConverter = require(path.join(TSLAB_DIST, "converter")) as {
  createConverter(options: { isJS: boolean; isBrowser: boolean }): TslabConverter;
};
/** The same module instance tslab's public `display` API writes through (Node caches it by real path). */
const tslabJupyter = require(path.join(TSLAB_DIST, "jupyter")) as TslabJupyterModule;

/** tslab's ConverterSetImpl (main.js, not exported): converters created lazily, in the current directory. */
function createConverterSet(): TslabConverterSet {
  let node: TslabConverter | undefined;
  let browser: TslabConverter | undefined;
  return {
    get node() {
      return (node ??= tslabConverter.createConverter({ isJS: false, isBrowser: false }));
    },
    get browser() {
      return (browser ??= tslabConverter.createConverter({ isJS: false, isBrowser: true }));
    },
    close() {
      node?.close();
      browser?.close();
    },
  };
}

// ---------------------------------------------------------------- running

export interface NotebookRunOptions {
  /** Environment variables set in process.env for the run, restored after. */
  env?: Record<string, string>;
  /** Per-cell limit (like nbconvert's --ExecutePreprocessor.timeout). In process it interrupts awaiting
   *  cells only (tslab's interrupt); a synchronous loop is stopped only by runNotebookIsolated's kill. */
  timeoutMs?: number;
  /** Called before each code cell runs: its index among the notebook's cells and the number of cells. */
  onCell?: (index: number, total: number) => void;
  /**
   * Called with the last line of text of a display that has a display id (one updated in place, such as
   * a progress line) each time it is shown or updated.
   */
  onProgress?: (text: string) => void;
  /** Write the executed notebook back to `path` (also when a cell failed). */
  write?: boolean;
  /**
   * Record every stdout/stderr write of this process while the notebook runs, as tslab's kernel does
   * (run-one.js sets it). By default only writes made from the cells' own async context (the cell code,
   * its timers and promises) are recorded, and other writes (a test reporter, the caller's logging) go
   * to the real streams.
   */
  captureAllOutput?: boolean;
}

export interface FailedCell {
  index: number;
  source: string;
  ename: string;
  evalue: string;
}

export interface NotebookRunResult {
  path: string;
  /** Code cells executed (the failing one included). */
  cellsRun: number;
  ok: boolean;
  failedCell?: FailedCell;
  seconds: number;
  /** display_data outputs in the executed notebook, each display id counted once, but for those with plain
   *  text alone (progress lines): figures, HTML, images. */
  displays: number;
  /** Whether the notebook file was rewritten. */
  written: boolean;
}

/** Drops the frames of tslab, node:vm and this runner from a cell error's stack. */
function cellTraceback(stack: string): string[] {
  const internal = /node:vm|node:internal|[\\/]tslab[\\/]dist[\\/]|[\\/]notebooks[\\/]runner\.js|sigintHandlersWrap/;
  return stack.split("\n").filter((line) => !(/^\s+at /.test(line) && internal.test(line)));
}

/** The nbformat error output for what tslab's executor printed through console.error on failure. */
function errorOutput(printed: unknown[][]): { output_type: "error"; ename: string; evalue: string; traceback: string[] } {
  const err = printed.find((args) => args.length === 1 && args[0] instanceof Error)?.[0] as Error | undefined;
  if (err) {
    const ename = err.name || err.constructor?.name || "Error";
    return { output_type: "error", ename, evalue: err.message, traceback: cellTraceback(err.stack ?? `${ename}: ${err.message}`) };
  }
  // Compile errors: printDiagnostics calls console.error("%s%d:%d - %s", file, line, column, message).
  const lines = printed.map((args) => format(...args));
  if (printed.length > 0 && printed.every((args) => typeof args[0] === "string" && args[0].startsWith("%s%d:%d"))) {
    return { output_type: "error", ename: "CompileError", evalue: lines.join("\n"), traceback: lines };
  }
  if (printed.length === 1 && printed[0].length === 1) {
    const v = printed[0][0];
    return { output_type: "error", ename: "Uncaught", evalue: format("%o", v).slice(0, 1000), traceback: [`Uncaught ${format(v)}`] };
  }
  return { output_type: "error", ename: "Error", evalue: lines.join("\n") || "cell failed", traceback: lines };
}

let queue: Promise<unknown> = Promise.resolve();

/**
 * Executes a notebook's code cells in order in one tslab executor (cwd and module root = the notebook's
 * directory), stops at the first failing cell, and optionally writes the outputs back. Runs in this
 * process, so calls are serialized; use runNotebookIsolated for a fresh process per notebook.
 */
export function runNotebook(nbPath: string, opts: NotebookRunOptions = {}): Promise<NotebookRunResult> {
  const run = queue.then(() => runNotebookNow(path.resolve(nbPath), opts));
  queue = run.catch(() => undefined);
  return run;
}

/**
 * This process as the kernel of one notebook: while entered, it sits in the notebook's directory with its
 * env, records the running cell's stdout/stderr writes and tslab display calls as the cell's outputs, and
 * prints uncaught errors as tslab's kernel does. leave() restores everything enter() changed.
 */
class NotebookKernel {
  /** The running cell's outputs. */
  outputs: NotebookOutput[] = [];
  /** What the executor printed through its console.error while the cell ran (how it reports failure). */
  printedErrors: unknown[][] = [];
  private readonly displayIds = new Map<string, { data: MimeBundle; metadata: Record<string, unknown> }[]>();
  private readonly context = new AsyncLocalStorage<object>();
  private readonly token = {};
  // the process state as it was before enter()
  private readonly savedCwd = process.cwd();
  private readonly savedEnv: Map<string, string | undefined>;
  private readonly savedWrite = { stdout: process.stdout.write, stderr: process.stderr.write };
  private readonly savedTty = (["stdout", "stderr"] as const).map((n) => [n, Object.getOwnPropertyDescriptor(process[n], "isTTY")] as const);
  private readonly savedDisplay = tslabJupyter.lastWriteDisplayData;
  private readonly onUncaught = (err: unknown) => console.error("UncaughtException:", err); // as tslab's kernel
  private readonly onUnhandled = (reason: unknown) => console.error("UnhandledPromiseRejection:", reason);

  constructor(
    private readonly dir: string,
    private readonly opts: NotebookRunOptions,
  ) {
    this.savedEnv = new Map(Object.keys(opts.env ?? {}).map((k) => [k, process.env[k]]));
  }

  enter(): void {
    for (const [k, v] of Object.entries(this.opts.env ?? {})) process.env[k] = v;
    process.chdir(this.dir);
    // As under a kernel whose output is a pipe: libraries must not draw terminal progress bars.
    for (const n of ["stdout", "stderr"] as const) Object.defineProperty(process[n], "isTTY", { value: false, configurable: true, writable: true });
    process.stdout.write = this.writeTo("stdout") as typeof process.stdout.write;
    process.stderr.write = this.writeTo("stderr") as typeof process.stderr.write;
    tslabJupyter.lastWriteDisplayData = this.writeDisplayData;
    process.on("uncaughtException", this.onUncaught);
    process.on("unhandledRejection", this.onUnhandled);
  }

  leave(): void {
    process.off("uncaughtException", this.onUncaught);
    process.off("unhandledRejection", this.onUnhandled);
    tslabJupyter.lastWriteDisplayData = this.savedDisplay;
    process.stdout.write = this.savedWrite.stdout;
    process.stderr.write = this.savedWrite.stderr;
    for (const [n, desc] of this.savedTty) {
      if (desc) Object.defineProperty(process[n], "isTTY", desc);
      else delete (process[n] as { isTTY?: boolean }).isTTY;
    }
    process.chdir(this.savedCwd);
    for (const [k, v] of this.savedEnv) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }

  /** Runs a cell's code so that what it writes, then and later (timers, promises), counts as the cell's. */
  inCell<T>(fn: () => Promise<T>): Promise<T> {
    return this.context.run(this.token, fn);
  }

  /** Runs the caller's callback with the real streams, so what it prints does not land in the notebook. */
  outsideCell(fn: () => void): void {
    const hooked = { stdout: process.stdout.write, stderr: process.stderr.write };
    process.stdout.write = this.savedWrite.stdout;
    process.stderr.write = this.savedWrite.stderr;
    try {
      fn();
    } finally {
      process.stdout.write = hooked.stdout;
      process.stderr.write = hooked.stderr;
    }
  }

  private writeTo(name: "stdout" | "stderr") {
    const kernel = this;
    return function (this: unknown, chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
      if (!kernel.opts.captureAllOutput && kernel.context.getStore() !== kernel.token) {
        return (kernel.savedWrite[name] as (...a: unknown[]) => boolean).call(process[name], chunk, encoding, cb);
      }
      const text = typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString("utf8");
      if (text) kernel.outputs.push({ output_type: "stream", name, text });
      const done = typeof encoding === "function" ? encoding : cb;
      if (typeof done === "function") process.nextTick(done as () => void);
      return true;
    };
  }

  private readonly writeDisplayData: WriteDisplayData = (msg, update) => {
    const data = JSON.parse(JSON.stringify(msg.data ?? {})) as MimeBundle;
    const metadata = JSON.parse(JSON.stringify(msg.metadata ?? {})) as Record<string, unknown>;
    const id = msg.transient?.display_id;
    if (id) for (const out of this.displayIds.get(id) ?? []) Object.assign(out, { data, metadata });
    const text = data["text/plain"];
    const onProgress = this.opts.onProgress;
    if (id && onProgress && typeof text === "string" && text.trim()) {
      const line = text.trimEnd().split("\n").pop()!;
      this.outsideCell(() => onProgress(line));
    }
    if (update) return; // update_display_data only updates
    const out = { output_type: "display_data" as const, data, metadata };
    this.outputs.push(out);
    if (id) this.displayIds.set(id, [...(this.displayIds.get(id) ?? []), out]);
  };
}

/** Runs one code cell; its outputs, with an error output when it failed. */
async function runCell(cell: NotebookCell, executor: TslabExecutor, kernel: NotebookKernel, timeoutMs: number | undefined): Promise<{ outputs: NotebookOutput[]; error?: { ename: string; evalue: string } }> {
  kernel.outputs = [];
  kernel.printedErrors = [];
  let timedOut = false;
  const timer = timeoutMs ? setTimeout(() => ((timedOut = true), executor.interrupt()), timeoutMs) : undefined;
  let ok: boolean;
  try {
    ok = await kernel.inCell(() => executor.execute(cell.source));
  } catch (e) {
    ok = false;
    kernel.printedErrors.push([e]);
  } finally {
    clearTimeout(timer);
  }
  const outputs = kernel.outputs;
  if (!ok) {
    const err = timedOut
      ? { output_type: "error" as const, ename: "TimeoutError", evalue: `cell timed out after ${timeoutMs} ms`, traceback: [`TimeoutError: cell timed out after ${timeoutMs} ms`] }
      : errorOutput(kernel.printedErrors);
    outputs.push(err);
    return { outputs, error: err };
  }
  // The executor reports problems it does not fail on (e.g. %%module diagnostics) on stderr.
  for (const args of kernel.printedErrors) outputs.push({ output_type: "stream", name: "stderr", text: format(...args) + "\n" });
  return { outputs };
}

/** Runs the code cells in order up to the first that fails; the cells after it are cleared. */
async function runCells(nb: Notebook, executor: TslabExecutor, kernel: NotebookKernel, opts: NotebookRunOptions): Promise<{ cellsRun: number; failedCell?: FailedCell }> {
  let count = 0;
  let cellsRun = 0;
  let failedCell: FailedCell | undefined;
  for (let i = 0; i < nb.cells.length; i++) {
    const cell = nb.cells[i];
    cell.id ??= randomBytes(4).toString("hex");
    if (cell.cell_type !== "code") continue;
    // Not run (after a failure: so stale outputs of an earlier run are not taken for this run's), or
    // empty (nbclient skips those).
    if (failedCell || cell.source.trim() === "") {
      cell.outputs = [];
      cell.execution_count = null;
      continue;
    }
    if (opts.onCell) kernel.outsideCell(() => opts.onCell!(i, nb.cells.length));
    cell.execution_count = ++count;
    cellsRun++;
    const { outputs, error } = await runCell(cell, executor, kernel, opts.timeoutMs);
    if (error) failedCell = { index: i, source: cell.source, ename: error.ename, evalue: error.evalue };
    // Writes after the cell ended (timers) still land in this cell's list until the next cell starts,
    // as the kernel keeps forwarding them to the last request; coalesce again at the end.
    cell.outputs = outputs;
  }
  return { cellsRun, failedCell };
}

async function runNotebookNow(file: string, opts: NotebookRunOptions): Promise<NotebookRunResult> {
  const started = Date.now();
  const nb = parseNotebook(fs.readFileSync(file, "utf8"));
  const dir = path.dirname(file);
  const kernel = new NotebookKernel(dir, opts);
  let executor: TslabExecutor | undefined;
  let convs: TslabConverterSet | undefined;
  let run: { cellsRun: number; failedCell?: FailedCell };
  try {
    kernel.enter();
    convs = createConverterSet();
    void convs.node; // created now, in the notebook's directory (the converter keeps the cwd it starts in)
    executor = tslabExecutor.createExecutor(dir, convs, {
      log: (...args: unknown[]) => console.log(...args), // the cell's last expression: stdout, as in the kernel
      error: (...args: unknown[]) => void kernel.printedErrors.push(args),
    });
    nb.metadata.language_info = new tslabJupyter.JupyterHandlerImpl(executor, false).handleKernel().language_info;
    run = await runCells(nb, executor, kernel, opts);
  } finally {
    // Let output scheduled right after the last cell (process.nextTick, resolved promises) land first.
    await new Promise((resolve) => setImmediate(resolve));
    executor?.close();
    if (!executor) convs?.close();
    kernel.leave();
  }

  for (const cell of nb.cells) if (cell.cell_type === "code" && cell.outputs) cell.outputs = coalesceStreams(cell.outputs);
  if (nb.nbformat_minor < 5) nb.nbformat_minor = 5; // cell ids
  if (opts.write) fs.writeFileSync(file, serializeNotebook(nb));
  const isRichDisplay = (o: NotebookOutput) => o.output_type === "display_data" && Object.keys(o.data).some((mime) => mime !== "text/plain");
  return {
    path: file,
    cellsRun: run.cellsRun,
    ok: !run.failedCell,
    ...(run.failedCell ? { failedCell: run.failedCell } : {}),
    seconds: (Date.now() - started) / 1000,
    displays: nb.cells.reduce((n, c) => n + (c.outputs ?? []).filter(isRichDisplay).length, 0),
    written: Boolean(opts.write),
  };
}

// ---------------------------------------------------------------- one process per notebook

/** The messages run-one.js sends over the IPC channel. */
export type RunOneMessage =
  | { type: "cell"; index: number; total: number }
  | { type: "progress"; text: string }
  | { type: "result"; result: NotebookRunResult };

const RUN_ONE_JS = path.join(__dirname, "run-one.js");

/**
 * runNotebook in a fresh Node process (`node dist/src/notebooks/run-one.js NB`). With timeoutMs, a cell
 * still running timeoutMs + 5 s after it started is stopped by killing the process (the notebook is then
 * left as it was). Anything the child prints outside a cell goes to this process's stderr. A SIGINT or
 * SIGTERM to this process stops the child with it and rejects with Interrupted.
 */
export function runNotebookIsolated(nbPath: string, opts: NotebookRunOptions = {}): Promise<NotebookRunResult> {
  const file = path.resolve(nbPath);
  const started = Date.now();
  const args = [file, opts.write ? "--write" : "--no-write"];
  if (opts.timeoutMs) args.push("--timeout-ms", String(opts.timeoutMs));
  return new Promise((resolve, reject) => {
    const child = fork(RUN_ONE_JS, args, {
      cwd: path.dirname(file),
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    child.stdout!.on("data", (b: Buffer) => process.stderr.write(b));
    child.stderr!.on("data", (b: Buffer) => process.stderr.write(b));
    let result: NotebookRunResult | undefined;
    let cell = -1;
    let cellsStarted = 0;
    let killedForTimeout = false;
    let timer: NodeJS.Timeout | undefined;
    child.on("message", (m: RunOneMessage) => {
      if (m.type === "cell") {
        cell = m.index;
        cellsStarted++;
        opts.onCell?.(m.index, m.total);
        if (opts.timeoutMs) {
          clearTimeout(timer);
          timer = setTimeout(() => ((killedForTimeout = true), child.kill("SIGKILL")), opts.timeoutMs + 5000);
        }
      } else if (m.type === "progress") {
        opts.onProgress?.(m.text);
      } else if (m.type === "result") {
        result = m.result;
        clearTimeout(timer);
      }
    });
    // stopping this process stops the notebook (and, through it, any sweep workers) instead of orphaning it
    let stoppedBy: NodeJS.Signals | null = null;
    const onSignal = (sig: NodeJS.Signals) => {
      stoppedBy = sig;
      child.kill(sig);
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      clearTimeout(timer);
      if (stoppedBy) return reject(new Interrupted(`${path.basename(file)}: stopped by ${stoppedBy}`, stoppedBy));
      if (result) return resolve(result);
      let source = "";
      try {
        source = cell >= 0 ? parseNotebook(fs.readFileSync(file, "utf8")).cells[cell]?.source ?? "" : "";
      } catch {
        /* the source is only for the report */
      }
      const failedCell: FailedCell = killedForTimeout
        ? { index: cell, source, ename: "TimeoutError", evalue: `cell still running after ${opts.timeoutMs} ms: process killed` }
        : { index: cell, source, ename: "KernelDied", evalue: `the notebook process exited (${signal ?? `code ${code}`}) before finishing` };
      resolve({ path: file, cellsRun: cellsStarted, ok: false, failedCell, seconds: (Date.now() - started) / 1000, displays: 0, written: false });
    });
  });
}
