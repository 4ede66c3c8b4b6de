// Runs a sweep: every run of the grid that the store has not finished, on a pool of worker processes (one
// run at a time each), with one progress display for the whole sweep. Stopped at any moment (Ctrl-C, an
// AbortSignal), each running run ends after its current step with a checkpoint; running the sweep again
// skips the finished runs and resumes the others, so no finished work is lost.

import { ChildProcess, fork } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";
import { EngineOptions, resolveEngineName, runsOnGpu } from "../engines/index";
import { displayPath, RunStore } from "../store/run-store";
import { formatDuration, formatEta, ProgressDisplay, progressDisplayFor } from "../training/progress";
import { describeRun, expandSweep, SweepRun, SweepSpec } from "./spec";
import type { FromWorker, ToWorker, WorkerTrainOptions } from "./worker";

export interface SweepOptions extends EngineOptions {
  /** The run store or its directory (default: the project's data/runs, or $GROK_STORE). */
  store?: RunStore | string;
  /** Worker processes (default: sized to the machine, see defaultWorkers). */
  workers?: number;
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
function runResult(store: RunStore, run: SweepRun): SweepRunResult {
  const base = { ...run, steps: run.config.training.steps };
  if (!store.has(run.id)) {
    return { ...base, status: "missing", stepsDone: 0, firstTrain99: null, firstVal99: null, bestValAcc: NaN, finalTrainAcc: NaN, finalValAcc: NaN, trainSeconds: 0 };
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

function summarize(name: string, runs: SweepRunResult[], counts: { skipped: number; trained: number; failed: number }, interrupted: boolean, seconds: number): SweepResult {
  const unfinished = runs.filter((r) => r.status !== "finished").length;
  return { name, runs, ...counts, unfinished, interrupted: interrupted && unfinished > 0, seconds };
}

/** The sweep's runs as the store has them, without training anything. */
export function sweepStatus(spec: SweepSpec | SweepRun[], store?: RunStore | string): SweepResult {
  const runs = Array.isArray(spec) ? spec : expandSweep(spec);
  const s = RunStore.of(store);
  const results = runs.map((r) => runResult(s, r));
  const finished = results.filter((r) => r.status === "finished").length;
  return summarize(Array.isArray(spec) ? "sweep" : spec.name ?? "sweep", results, { skipped: finished, trained: 0, failed: 0 }, false, 0);
}

interface Live {
  step: number;
  steps: number;
  valAcc: number;
}

/** The sweep's progress line: done/total runs, each running run's step and val acc, an ETA. */
function progressLine(done: number, total: number, live: Map<number, Live>, stepsDone: number, stepsTotal: number, seconds: number, stepsAtStart: number): string {
  const eta = formatEta(stepsTotal - stepsDone, stepsDone - stepsAtStart, seconds);
  const running = [...live.entries()].map(([i, l]) => `#${i + 1} ${l.step}/${l.steps} val ${Number.isFinite(l.valAcc) ? (100 * l.valAcc).toFixed(0) + "%" : "–"}`);
  return `${done}/${total} runs done · ${running.length ? running.join(" · ") : "starting"} · ${formatDuration(seconds)} elapsed, ETA ${eta} (at most)`;
}

/**
 * Trains every unfinished run of a sweep and returns where every run stands. A run that fails is reported
 * and the others go on; a worker that dies is replaced.
 */
export async function runSweep(spec: SweepSpec | SweepRun[], options: SweepOptions = {}): Promise<SweepResult> {
  const runs = Array.isArray(spec) ? spec : expandSweep(spec);
  const name = Array.isArray(spec) ? "sweep" : spec.name ?? "sweep";
  const store = RunStore.of(options.store);
  const log = options.log ?? ((m: string) => process.stderr.write(m + "\n"));
  // fails here, before any worker starts, on a bad engine choice
  resolveEngineName(options);
  const startedAt = Date.now();
  const results = runs.map((r) => runResult(store, r));
  // a run shared by two variants is trained once: the queue holds its first index
  const firstIndex = new Map<string, number>();
  for (const r of runs) if (!firstIndex.has(r.id)) firstIndex.set(r.id, r.index);
  const todo = results.filter((r) => r.status !== "finished" && firstIndex.get(r.id) === r.index).map((r) => r.index);
  const skipped = results.filter((r) => r.status === "finished").length;
  if (todo.length === 0) {
    log(`sweep ${name}: all ${runs.length} runs are finished in ${displayPath(store.root)}`);
    return summarize(name, results, { skipped, trained: 0, failed: 0 }, false, 0);
  }
  const workers = Math.max(1, Math.min(options.workers ?? defaultWorkers(options), todo.length));
  log(
    `sweep ${name}: ${runs.length} runs, ${skipped} finished, ${todo.length} to train on ${workers} worker${workers > 1 ? "s" : ""}` +
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
  };
  const { display: progress, owned: ownsProgress } = progressDisplayFor(options.progress, { label: `sweep ${name}`, out: log }, true);
  const say = (m: string) => (progress ? progress.log(m, log) : log(m));
  // in a notebook cell the one updated line stands for the runs that end well; the rest is printed
  const sayUnlessInCell = (m: string) => {
    if (progress?.mode !== "kernel") say(m);
  };
  const live = new Map<number, Live>();
  const queue = [...todo];
  const counts = { skipped, trained: 0, failed: 0 };
  const stepsOf = (i: number) => results[i].steps;
  const stepsTotal = todo.reduce((s, i) => s + stepsOf(i), 0);
  const stepsAtStart = todo.reduce((s, i) => s + results[i].stepsDone, 0);
  let stepsEnded = 0; // budget steps of runs that ended this session (early stops count as their budget)
  let stopping = false;
  let killed = false;
  const children = new Set<ChildProcess>();
  const doneCount = () => results.filter((r) => r.status === "finished").length;
  const redraw = (force = false) => {
    if (!progress) return;
    const liveSteps = [...live.entries()].reduce((s, [i, l]) => s + (l.step || results[i].stepsDone), 0);
    const queuedSteps = queue.reduce((s, i) => s + results[i].stepsDone, 0);
    const seconds = (Date.now() - startedAt) / 1000;
    progress.draw(progressLine(doneCount(), runs.length, live, stepsEnded + liveSteps + queuedSteps, stepsTotal, seconds, stepsAtStart), force);
  };

  const stop = () => {
    if (stopping) {
      say(`sweep ${name}: second interrupt: killing the workers (runs lose the steps since their last checkpoint)`);
      killed = true;
      for (const c of children) c.kill("SIGKILL");
      return;
    }
    stopping = true;
    queue.length = 0;
    say(`sweep ${name}: stopping: running runs end after their step with a checkpoint; run the sweep again to go on (interrupt again to kill)`);
    for (const c of children) if (c.connected) c.send({ type: "stop" } satisfies ToWorker);
  };
  if (options.handleSignals) {
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  }
  options.signal?.addEventListener("abort", stop);
  if (options.signal?.aborted) stop();

  const endRun = (index: number, failure?: string) => {
    live.delete(index);
    stepsEnded += stepsOf(index);
    const r = runResult(store, runs[index]);
    if (failure !== undefined) {
      r.status = "failed";
      r.error = failure;
      counts.failed++;
    } else if (r.status === "finished") counts.trained++;
    results[index] = r;
    for (const other of runs) if (other.id === r.id && other.index !== index) results[other.index] = { ...r, ...other };
    const label = describeRun(r.variant, r.params) || r.id;
    const what =
      r.status === "finished"
        ? `finished: train ≥99% at ${r.firstTrain99 ?? "-"}, val ≥99% at ${r.firstVal99 ?? "-"}, best val ${(100 * r.bestValAcc).toFixed(1)}%`
        : r.status === "failed"
          ? `FAILED: ${failure}`
          : `stopped at step ${r.stepsDone}/${r.steps}`;
    (r.status === "finished" ? sayUnlessInCell : say)(`[${doneCount()}/${runs.length}] #${index + 1} ${label} (${r.id}): ${what}`);
    options.onRunEnd?.(r);
  };

  const startWorker = (): Promise<void> =>
    new Promise((resolve) => {
      const child = fork(WORKER_SCRIPT, [], { execArgv: [], stdio: ["ignore", "inherit", "inherit", "ipc"] });
      children.add(child);
      let current: number | null = null;
      const next = () => {
        const index = stopping ? undefined : queue.shift();
        if (index === undefined) {
          current = null;
          if (child.connected) child.disconnect();
          return;
        }
        current = index;
        live.set(index, { step: results[index].stepsDone, steps: stepsOf(index), valAcc: NaN });
        results[index].status = "running";
        child.send({ type: "run", index, config: runs[index].config, options: workerOptions } satisfies ToWorker);
        redraw();
      };
      child.on("message", (m: FromWorker) => {
        if (m.type === "ready") next();
        else if (m.type === "eval") {
          live.set(m.index, { step: m.step, steps: m.steps, valAcc: m.valAcc });
          redraw();
        } else if (m.type === "step") {
          const l = live.get(m.index);
          if (l) l.step = m.step;
          redraw();
        } else if (m.type === "log") {
          // the per-run start and end lines; the sweep prints its own line when a run ends
          if (/resuming from/.test(m.message)) sayUnlessInCell(`#${m.index + 1}: ${m.message}`);
        } else if (m.type === "done" || m.type === "failed") {
          endRun(m.index, m.type === "failed" ? m.message : undefined);
          next();
        }
      });
      child.on("exit", (code, signal) => {
        children.delete(child);
        if (current !== null) {
          const index = current;
          current = null;
          endRun(index, killed ? "killed by a second interrupt" : `its worker exited (${signal ?? `code ${code}`})`);
          // a crashed worker is replaced while there is work left
          if (!stopping && queue.length > 0) {
            void startWorker().then(resolve);
            return;
          }
        }
        else if (code !== 0 && !stopping) say(`sweep ${name}: a worker exited (${signal ?? `code ${code}`}) before taking a run`);
        resolve();
      });
      child.on("error", (err) => say(`sweep ${name}: worker error: ${err.message}`));
    });

  let summary: string | undefined;
  let result: SweepResult;
  try {
    redraw(true);
    await Promise.all(Array.from({ length: workers }, () => startWorker()));
    const seconds = (Date.now() - startedAt) / 1000;
    result = summarize(name, results, counts, stopping, seconds);
    summary =
      `sweep ${name}: ${runs.length - result.unfinished}/${runs.length} runs finished (${counts.trained} trained now, ${skipped} already done)` +
      `${counts.failed ? `, ${counts.failed} failed` : ""}${result.unfinished ? `, ${result.unfinished} unfinished: run the sweep again to go on` : ""} in ${formatDuration(seconds)}`;
  } finally {
    // in a notebook cell the progress line becomes the summary; elsewhere the summary follows it
    if (ownsProgress) progress?.done(summary);
    if (options.handleSignals) {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    }
    options.signal?.removeEventListener("abort", stop);
  }
  if (!(ownsProgress && progress)) log(summary);
  return result;
}
