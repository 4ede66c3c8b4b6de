// Runs a sweep: every run of the grid that the store has not finished, on a pool of worker processes (one
// run at a time each, or on the webgpu engine one pack of runs at a time), with one progress display for the
// whole sweep. Stopped at any moment (Ctrl-C, an
// AbortSignal), each running run ends after its current step with a checkpoint; running the sweep again
// skips the finished runs and resumes the others, so no finished work is lost.

import { ChildProcess, fork } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";
import { EngineOptions, resolveEngineName, runsOnGpu } from "../engines/index";
import { displayPath, RunStore } from "../store/run-store";
import { formatDuration, formatEta, ProgressDisplay, progressDisplayFor } from "../training/progress";
import { packGroups, packMemoryBudget } from "../training/pack";
import { resumeMessage } from "../training/trainer";
import { UserError } from "../util/errors";
import { describeRun, expandSweep, SweepRun, SweepSpec } from "./spec";
import type { FromWorker, ToWorker, WorkerTrainOptions } from "./worker";
import { runQueuedSweep } from "./queue";

export interface SweepOptions extends EngineOptions {
  /** The run store or its directory (default: the project's data/runs, or $GROK_STORE). */
  store?: RunStore | string;
  /** Worker processes (default: sized to the machine, see defaultWorkers). */
  workers?: number;
  /**
   * On the webgpu engine, runs are trained in packs of runs that can share one (see canSharePack): at most
   * this many per pack (default: as many as fit the adapter). Only for the webgpu engine.
   */
  pack?: number;
  checkpointEvery?: number;
  checkpointSeconds?: number;
  keepCheckpoints?: number;
  /** Weight-only snapshots after these steps, in every run (see TrainOptions.snapshotSteps). */
  snapshotSteps?: number[];
  /**
   * One progress display for the sweep (default on): redrawn on a terminal, a line every 10 s elsewhere; in
   * a notebook cell one output updated in place that ends as the sweep's summary, with no line per finished
   * run (failures and stops are still printed). Or a display to draw on, which the caller ends.
   */
  progress?: boolean | ProgressDisplay;
  /** Where messages go (default: stderr). */
  log?: (message: string) => void;
  /** Aborting stops the sweep: running runs end after their step with a checkpoint. */
  signal?: AbortSignal;
  /** Stop on SIGINT/SIGTERM; a second one kills the workers at once (the CLI sets this). */
  handleSignals?: boolean;
  /** Called when a run of this session finishes, stops or fails. */
  onRunEnd?: (run: SweepRunResult) => void;
  /**
   * A Redis URL (redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss:// for TLS): enqueue the runs there for
   * `grok worker` processes on any machine that shares the store, and follow them (see sweeps/queue.ts).
   */
  queue?: string;
  /** With a queue: seconds to wait for Redis to answer before giving up (default 10). */
  connectSeconds?: number;
}

export type SweepRunStatus = "missing" | "created" | "running" | "stopped" | "finished" | "failed";

/** A sweep run and where it stands in the store. */
export interface SweepRunResult extends SweepRun {
  status: SweepRunStatus;
  /** Why it failed (status "failed"). */
  error?: string;
  stepsDone: number;
  steps: number;
  firstTrain99: number | null;
  firstVal99: number | null;
  /** Highest validation accuracy at any evaluation (NaN before the first). */
  bestValAcc: number;
  finalTrainAcc: number;
  finalValAcc: number;
  trainSeconds: number;
  /** With a queue (status only): the run's job state and the worker (host:pid) holding it. */
  queue?: { state: string; worker: string | null };
}

export interface SweepResult {
  name: string;
  runs: SweepRunResult[];
  /** Runs finished before this call (skipped), trained in it, failed in it, still unfinished. */
  skipped: number;
  trained: number;
  failed: number;
  unfinished: number;
  /** True when the sweep was stopped before every run finished. */
  interrupted: boolean;
  /** The device failed (webgpu): its runs stopped at their checkpoints, and no further runs started. */
  deviceError?: string;
  seconds: number;
}

const WORKER_SCRIPT = path.join(__dirname, "worker.js");

/**
 * Workers for a machine: one per core with one kernel thread each (the models of a sweep are small, and
 * separate runs scale better than threads inside one), or one when the engine runs on a GPU.
 */
export function defaultWorkers(opts: EngineOptions = {}): number {
  if (runsOnGpu(opts)) return 1;
  const cores = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, Math.floor(cores / (opts.threads ?? 1)));
}

/** Where one run stands in the store. */
export function runResult(store: RunStore, run: SweepRun): SweepRunResult {
  const base = { ...run, steps: run.config.training.steps };
  if (!store.has(run.id)) {
    return {
      ...base,
      status: "missing",
      stepsDone: 0,
      firstTrain99: null,
      firstVal99: null,
      bestValAcc: NaN,
      finalTrainAcc: NaN,
      finalValAcc: NaN,
      trainSeconds: 0,
    };
  }
  const info = store.info(run.id);
  const rows = store.readMetrics(run.id).rows;
  const last = rows[rows.length - 1];
  return {
    ...base,
    status: info.status,
    stepsDone: info.stepsDone,
    firstTrain99: info.firstTrain99,
    firstVal99: info.firstVal99,
    bestValAcc: rows.length ? Math.max(...rows.map((r) => r.val_acc)) : NaN,
    finalTrainAcc: last?.train_acc ?? NaN,
    finalValAcc: last?.val_acc ?? NaN,
    trainSeconds: info.trainSeconds,
  };
}

export function summarize(
  name: string,
  runs: SweepRunResult[],
  counts: { skipped: number; trained: number; failed: number },
  interrupted: boolean,
  seconds: number,
  deviceError?: string,
): SweepResult {
  const unfinished = runs.filter((r) => r.status !== "finished").length;
  const result = { name, runs, ...counts, unfinished, interrupted: interrupted && unfinished > 0, seconds };
  return deviceError === undefined ? result : { ...result, deviceError };
}

/** A sweep's closing line: "sweep NAME: 5/6 runs finished (3 trained now, 2 already done), 1 unfinished… in 1m02s". */
export function summaryLine(result: SweepResult, unfinishedHint = ""): string {
  const { name, runs, trained, skipped, failed, unfinished, seconds } = result;
  return (
    `sweep ${name}: ${runs.length - unfinished}/${runs.length} runs finished (${trained} trained now, ` +
    `${skipped} already done)${failed ? `, ${failed} failed` : ""}` +
    `${unfinished ? `, ${unfinished} unfinished${unfinishedHint}` : ""} in ${formatDuration(seconds)}`
  );
}

/** The sweep's runs as the store has them, without training anything. */
export function sweepStatus(spec: SweepSpec | SweepRun[], store?: RunStore | string): SweepResult {
  const runs = Array.isArray(spec) ? spec : expandSweep(spec);
  const s = RunStore.of(store);
  const results = runs.map((r) => runResult(s, r));
  return statusSummary(spec, results);
}

/** A sweep's standing from its runs' results, as a status query reports it (nothing trained now). */
export function statusSummary(spec: SweepSpec | SweepRun[], results: SweepRunResult[]): SweepResult {
  const finished = results.filter((r) => r.status === "finished").length;
  return summarize(
    Array.isArray(spec) ? "sweep" : (spec.name ?? "sweep"),
    results,
    { skipped: finished, trained: 0, failed: 0 },
    false,
    0,
  );
}

/** Running runs named in the progress line. */
const LIVE_SHOWN = 4;

export interface Live {
  step: number;
  steps: number;
  valAcc: number;
}

/** The sweep's progress line: done/total runs, each running run's step and val acc, an ETA. */
export function progressLine(
  done: number,
  total: number,
  live: Map<number, Live>,
  stepsDone: number,
  stepsTotal: number,
  seconds: number,
  stepsAtStart: number,
): string {
  const eta = formatEta(stepsTotal - stepsDone, stepsDone - stepsAtStart, seconds);
  // a pack runs many at once: the first few are shown, and how many more
  const running = [...live.entries()]
    .slice(0, LIVE_SHOWN)
    .map(
      ([i, l]) =>
        `#${i + 1} ${l.step}/${l.steps} val ${Number.isFinite(l.valAcc) ? (100 * l.valAcc).toFixed(0) + "%" : "–"}`,
    );
  if (live.size > LIVE_SHOWN) running.push(`+${live.size - LIVE_SHOWN} more running`);
  return `${done}/${total} runs done · ${running.length ? running.join(" · ") : "starting"} · ${formatDuration(seconds)} elapsed, ETA ${eta} (at most)`;
}

/**
 * The runs a sweep session trains, on its workers: the queue of jobs to start (a run, or runs to train in
 * packs), what each running run has reported, the progress line, stopping on a signal or a device error,
 * and the results as runs end.
 */
class WorkerPool {
  readonly counts: { skipped: number; trained: number; failed: number };
  stopping = false;
  /** The message of a device error: the sweep starts no further jobs. */
  deviceError: string | undefined;
  private killed = false;
  private readonly startedAt = Date.now();
  private readonly queue: number[][];
  private readonly live = new Map<number, Live>();
  private readonly children = new Set<ChildProcess>();
  private readonly stepsTotal: number;
  private readonly stepsAtStart: number;
  /** Budget steps of runs that ended this session (early stops count as their budget). */
  private stepsEnded = 0;
  /** In a notebook cell the one updated line stands for the runs that end well; the rest is printed. */
  private readonly sayUnlessInCell = (m: string) => {
    if (this.progress?.mode !== "kernel") this.say(m);
  };

  constructor(
    private readonly name: string,
    private readonly runs: SweepRun[],
    /** Where every run stands, updated as runs end. */
    readonly results: SweepRunResult[],
    jobs: number[][],
    private readonly store: RunStore,
    private readonly workerOptions: WorkerTrainOptions,
    private readonly progress: ProgressDisplay | null,
    private readonly say: (message: string) => void,
    private readonly onRunEnd?: (run: SweepRunResult) => void,
  ) {
    this.queue = [...jobs];
    const todo = jobs.flat();
    this.counts = { skipped: results.filter((r) => r.status === "finished").length, trained: 0, failed: 0 };
    this.stepsTotal = todo.reduce((s, i) => s + results[i].steps, 0);
    this.stepsAtStart = todo.reduce((s, i) => s + results[i].stepsDone, 0);
  }

  redraw(force = false): void {
    if (!this.progress) return;
    const { results } = this;
    const liveSteps = [...this.live.entries()].reduce((s, [i, l]) => s + (l.step || results[i].stepsDone), 0);
    const queuedSteps = this.queue.flat().reduce((s, i) => s + results[i].stepsDone, 0);
    const seconds = (Date.now() - this.startedAt) / 1000;
    const line = progressLine(
      this.doneCount(),
      this.runs.length,
      this.live,
      this.stepsEnded + liveSteps + queuedSteps,
      this.stepsTotal,
      seconds,
      this.stepsAtStart,
    );
    this.progress.draw(line, force);
  }

  /** The first stop lets running runs end after their step with a checkpoint; a second kills the workers. */
  readonly stop = () => {
    if (this.stopping) {
      this.say(
        `sweep ${this.name}: second interrupt: killing the workers (runs lose the steps since their last checkpoint)`,
      );
      this.killed = true;
      for (const c of this.children) c.kill("SIGKILL");
      return;
    }
    this.stopping = true;
    this.queue.length = 0;
    this.say(
      `sweep ${this.name}: stopping: running runs end after their step with a checkpoint; run the sweep again to go on (interrupt again to kill)`,
    );
    for (const c of this.children) if (c.connected) c.send({ type: "stop" } satisfies ToWorker);
  };

  /** A worker process that takes jobs from the queue until it is empty; resolves when it has exited. */
  startWorker(): Promise<void> {
    return new Promise((resolve) => {
      const child = fork(WORKER_SCRIPT, [], { execArgv: [], stdio: ["ignore", "inherit", "inherit", "ipc"] });
      this.children.add(child);
      /** The runs of the worker's job that have not ended yet. */
      const current = new Set<number>();
      const next = () => {
        const job = this.stopping ? undefined : this.queue.shift();
        if (job === undefined) {
          if (child.connected) child.disconnect();
          return;
        }
        for (const index of job) {
          current.add(index);
          this.live.set(index, { step: this.results[index].stepsDone, steps: this.results[index].steps, valAcc: NaN });
          this.results[index].status = "running";
        }
        const runs = job.map((index) => ({ index, config: this.runs[index].config }));
        child.send({ type: "job", runs, options: this.workerOptions } satisfies ToWorker);
        this.redraw();
      };
      child.on("message", (m: FromWorker) => {
        if (m.type === "ready") next();
        else if (m.type === "done" || m.type === "failed") {
          current.delete(m.index);
          this.endRun(m.index, m.type === "failed" ? m.message : undefined);
        } else if (m.type === "unstarted") {
          current.delete(m.index);
          this.live.delete(m.index);
          this.results[m.index] = runResult(this.store, this.runs[m.index]);
        } else if (m.type === "device-error") this.halt(m.message);
        else this.report(m);
      });
      child.on("exit", (code, signal) => {
        this.children.delete(child);
        if (current.size === 0) {
          if (code !== 0 && !this.stopping)
            this.say(`sweep ${this.name}: a worker exited (${signal ?? `code ${code}`}) between jobs`);
          return resolve();
        }
        for (const index of current)
          this.endRun(
            index,
            this.killed ? "killed by a second interrupt" : `its worker exited (${signal ?? `code ${code}`})`,
          );
        current.clear();
        // a crashed worker is replaced while there is work left
        if (!this.stopping && this.queue.length > 0) void this.startWorker().then(resolve);
        else resolve();
      });
      child.on("error", (err) => this.say(`sweep ${this.name}: worker error: ${err.message}`));
    });
  }

  /** The device failed: its runs stopped at their checkpoints; no further jobs start (the device is suspect). */
  private halt(message: string): void {
    this.deviceError = message;
    this.queue.length = 0;
    this.say(`sweep ${this.name}: ${message}`);
  }

  /** A running run's news: a resume, an evaluation, the steps done. */
  private report(m: Extract<FromWorker, { type: "resumed" | "eval" | "step" }>): void {
    if (m.type === "resumed") {
      const run = this.runs[m.index];
      this.sayUnlessInCell(`#${m.index + 1}: ${resumeMessage(run.id, m.step, run.config.training.steps)}`);
      return;
    }
    if (m.type === "eval") this.live.set(m.index, { step: m.step, steps: m.steps, valAcc: m.valAcc });
    else {
      const l = this.live.get(m.index);
      if (l) l.step = m.step;
    }
    this.redraw();
  }

  private doneCount(): number {
    return this.results.filter((r) => r.status === "finished").length;
  }

  private endRun(index: number, failure?: string): void {
    const { runs, results } = this;
    this.live.delete(index);
    this.stepsEnded += results[index].steps;
    const r = runResult(this.store, runs[index]);
    if (failure !== undefined) {
      r.status = "failed";
      r.error = failure;
      this.counts.failed++;
    } else if (r.status === "finished") this.counts.trained++;
    results[index] = r;
    for (const other of runs) if (other.id === r.id && other.index !== index) results[other.index] = { ...r, ...other };
    (r.status === "finished" ? this.sayUnlessInCell : this.say)(runEndLine(r, this.doneCount(), runs.length));
    this.onRunEnd?.(r);
  }
}

/** A pack size is a whole number ≥ 1, for the webgpu engine only (which also checks the engine choice). */
export function checkPackOption(options: SweepOptions): void {
  const engine = resolveEngineName(options);
  if (engine === "webgpu") packMemoryBudget();
  if (options.pack === undefined) return;
  if (!Number.isInteger(options.pack) || options.pack < 1)
    throw new UserError(`--pack needs an integer ≥ 1 (got ${options.pack})`);
  if (engine !== "webgpu")
    throw new UserError(
      `--pack trains runs in packs on the webgpu engine only (the engine is ${engine}): add --engine webgpu`,
    );
}

/**
 * The jobs of the workers, as lists of run indexes: one run each, or on the webgpu engine the runs that
 * can share a pack, at most `pack` a job (a worker trains a job in packs of as many as fit the adapter).
 */
export function sweepJobs(runs: SweepRun[], todo: number[], packed: boolean, pack?: number): number[][] {
  if (!packed) return todo.map((i) => [i]);
  const groups = packGroups(
    todo.map((i) => runs[i].config),
    pack,
  );
  return groups.map((g) => g.map((k) => todo[k]));
}

/** The line that says a run ended: "[3/12] #5 data.trainFraction=0.4 (1a2b3c4d5e6f): finished: …". */
export function runEndLine(r: SweepRunResult, done: number, total: number): string {
  const label = describeRun(r.variant, r.params) || r.id;
  const what =
    r.status === "finished"
      ? `finished: train ≥99% at ${r.firstTrain99 ?? "-"}, val ≥99% at ${r.firstVal99 ?? "-"}, best val ${(100 * r.bestValAcc).toFixed(1)}%`
      : r.status === "failed"
        ? `FAILED: ${r.error}`
        : `stopped at step ${r.stepsDone}/${r.steps}`;
  return `[${done}/${total}] #${r.index + 1} ${label} (${r.id}): ${what}`;
}

/**
 * Trains every unfinished run of a sweep and returns where every run stands. A run that fails is reported
 * and the others go on; a worker that dies is replaced.
 */
export async function runSweep(spec: SweepSpec | SweepRun[], options: SweepOptions = {}): Promise<SweepResult> {
  if (options.queue !== undefined) return runQueuedSweep(spec, { ...options, queue: options.queue });
  const runs = Array.isArray(spec) ? spec : expandSweep(spec);
  const name = Array.isArray(spec) ? "sweep" : (spec.name ?? "sweep");
  const store = RunStore.of(options.store);
  const log = options.log ?? ((m: string) => process.stderr.write(m + "\n"));
  // fails here, before any worker starts, on a bad engine or pack choice
  checkPackOption(options);
  const startedAt = Date.now();
  const results = runs.map((r) => runResult(store, r));
  // a run shared by two variants is trained once: the queue holds its first index
  const firstIndex = new Map<string, number>();
  for (const r of runs) if (!firstIndex.has(r.id)) firstIndex.set(r.id, r.index);
  const todo = results.filter((r) => r.status !== "finished" && firstIndex.get(r.id) === r.index).map((r) => r.index);
  const packed = resolveEngineName(options) === "webgpu";
  const jobs = sweepJobs(runs, todo, packed, options.pack);
  const skipped = results.filter((r) => r.status === "finished").length;
  if (todo.length === 0) {
    log(`sweep ${name}: all ${runs.length} runs are finished in ${displayPath(store.root)}`);
    return summarize(name, results, { skipped, trained: 0, failed: 0 }, false, 0);
  }
  const workers = Math.max(1, Math.min(options.workers ?? defaultWorkers(options), jobs.length));
  const inPacks = packed
    ? ` in ${jobs.length} group${jobs.length > 1 ? "s" : ""} of packs (${options.pack ? `at most ${options.pack} runs each` : "as many runs as fit the adapter"})`
    : "";
  log(
    `sweep ${name}: ${runs.length} runs, ${skipped} finished, ${todo.length} to train${inPacks} on ${workers} worker${workers > 1 ? "s" : ""}` +
      `${options.threads ? ` × ${options.threads} threads` : ""}; store ${displayPath(store.root)}`,
  );

  const workerOptions: WorkerTrainOptions = {
    store: store.root,
    engine: options.engine,
    backend: options.backend,
    kernels: options.kernels,
    threads: options.threads ?? 1,
    checkpointEvery: options.checkpointEvery,
    checkpointSeconds: options.checkpointSeconds,
    keepCheckpoints: options.keepCheckpoints,
    snapshotSteps: options.snapshotSteps,
    pack: packed ? (options.pack ?? "fit") : undefined,
  };
  const { display: progress, owned: ownsProgress } = progressDisplayFor(
    options.progress,
    { label: `sweep ${name}`, out: log },
    true,
  );
  const say = (m: string) => (progress ? progress.log(m, log) : log(m));
  const pool = new WorkerPool(name, runs, results, jobs, store, workerOptions, progress, say, options.onRunEnd);
  if (options.handleSignals) {
    process.on("SIGINT", pool.stop);
    process.on("SIGTERM", pool.stop);
  }
  options.signal?.addEventListener("abort", pool.stop);
  if (options.signal?.aborted) pool.stop();

  let summary: string | undefined;
  let result: SweepResult;
  try {
    pool.redraw(true);
    await Promise.all(Array.from({ length: workers }, () => pool.startWorker()));
    const seconds = (Date.now() - startedAt) / 1000;
    const { counts } = pool;
    result = summarize(name, results, counts, pool.stopping, seconds, pool.deviceError);
    summary = summaryLine(result, ": run the sweep again to go on");
  } finally {
    // in a notebook cell the progress line becomes the summary; elsewhere the summary follows it
    if (ownsProgress) progress?.done(summary);
    if (options.handleSignals) {
      process.off("SIGINT", pool.stop);
      process.off("SIGTERM", pool.stop);
    }
    options.signal?.removeEventListener("abort", pool.stop);
  }
  if (!(ownsProgress && progress)) log(summary);
  return result;
}
