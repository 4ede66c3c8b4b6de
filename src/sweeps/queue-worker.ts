// A queue worker (`grok worker`): takes jobs from the sweep queue (sweeps/queue.ts) and trains their runs
// into the shared run store, one job at a time per process, until stopped. With --workers N it forks N
// such processes. Each logs a line per run started, resumed and ended.
//
// Stopping (Ctrl-C, SIGTERM) ends the current run after its step with a checkpoint and puts its job back on
// the queue. A worker killed outright (kill -9, a lost machine) holds its job until BullMQ's lock on it
// expires (lockSeconds); the stalled-job check (every stalledSeconds) then hands the job to another worker,
// which resumes the run from its last checkpoint once the run lock allows: at once for a dead process on
// its own host, after the lock's lease (60 s) for another host's. A run whose lock is held by a live worker
// (BullMQ lost touch with it while it trained, e.g. Redis restarted) goes back to the queue for a while
// instead, and so does one that another host took over while this worker trained it (training stops it at
// once, writing nothing more): the run lock, not the queue, keeps two workers from training one run at once.
// A pack job (several runs, from a sweep on the webgpu engine) trains with the pack loop on a webgpu worker,
// its runs one after another on a worker of another engine.

import { fork } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DelayedError, Job, WaitingError, Worker } from "bullmq";
import { EngineOptions, resolveEngineName } from "../engines/index";
import { LockLostError, readLockHolder, RunLockedError } from "../store/lock";
import { displayPath, RunStore } from "../store/run-store";
import { PackResult, trainInPacks } from "../training/pack";
import { train, TrainOptions } from "../training/trainer";
import { errorLine, UserError } from "../util/errors";
import {
  checkQueueReachable,
  parseQueueUrl,
  QUEUE_NAME,
  QueueConnection,
  QueueJobData,
  QueueJobProgress,
  RunProgress,
  scrubbed,
} from "./queue";

export interface QueueWorkerOptions extends EngineOptions {
  /** The Redis URL (see parseQueueUrl). */
  queue: string;
  /** The shared run store (default: the project's data/runs, or $GROK_STORE); it must exist and be writable. */
  store?: string;
  /** Worker processes (default 1). */
  workers?: number;
  /** BullMQ's lock on a job being trained: renewed every half of it; a dead worker's job stalls after it. */
  lockSeconds?: number;
  /** How often BullMQ looks for stalled jobs (whose worker stopped renewing their lock). */
  stalledSeconds?: number;
  /** Seconds to wait for Redis to answer at start (default 10). */
  connectSeconds?: number;
  /** Exit once no job has come for this many seconds (default: wait for jobs until stopped). */
  idleSeconds?: number;
  /** Where the lines go (default: stderr). */
  log?: (message: string) => void;
  /** Aborting stops the worker as Ctrl-C does. */
  signal?: AbortSignal;
  /** Stop on SIGINT/SIGTERM (the CLI sets this). */
  handleSignals?: boolean;
}

export const DEFAULT_LOCK_SECONDS = 30;
export const DEFAULT_STALLED_SECONDS = 30;
/** Times a job may stall (its worker died) before BullMQ fails it: a run resumes safely, so many. */
const MAX_STALLED = 1000;
/** Least milliseconds between two progress reports of a running run. */
const REPORT_MS = 1000;

/** The store must exist and take a file here: a missing mount or a read-only one is a UserError. */
export function checkStoreWritable(root: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(root);
  } catch {
    throw new UserError(`store ${root}: no such directory (a worker needs the shared store mounted)`);
  }
  if (!stat.isDirectory()) throw new UserError(`store ${root}: not a directory`);
  const probe = path.join(root, `.write-check-${os.hostname()}-${process.pid}`);
  try {
    fs.writeFileSync(probe, "");
    fs.rmSync(probe);
  } catch (err) {
    throw new UserError(`store ${root}: not writable here (${errorLine(err)})`);
  }
}

/** Checks the store, the engine and Redis, then trains jobs until stopped (see the top of this file). */
export async function runQueueWorkers(options: QueueWorkerOptions): Promise<void> {
  const conn = parseQueueUrl(options.queue);
  const store = RunStore.of(options.store);
  checkStoreWritable(store.root);
  resolveEngineName(options);
  await checkQueueReachable(conn, options.connectSeconds);
  if ((options.workers ?? 1) > 1) return runWorkerProcesses(options);
  return runWorker(conn, store, options);
}

/** What the processor of one worker process shares with its jobs. */
interface WorkerContext {
  me: string;
  store: RunStore;
  options: QueueWorkerOptions;
  log: (message: string) => void;
  /** The run being trained, to stop it. */
  current: AbortController | null;
  stopping: boolean;
  busy: boolean;
  lastBusy: number;
}

async function runWorker(conn: QueueConnection, store: RunStore, options: QueueWorkerOptions): Promise<void> {
  const me = `${os.hostname()}:${process.pid}`;
  const out = options.log ?? ((m: string) => process.stderr.write(m + "\n"));
  const log = (m: string) => out(`worker ${me}: ${m}`);
  const ctx: WorkerContext = {
    me,
    store,
    options,
    log,
    current: null,
    stopping: false,
    busy: false,
    lastBusy: Date.now(),
  };
  const worker = new Worker<QueueJobData>(QUEUE_NAME, (job, token) => processJob(job, token ?? "", ctx), {
    connection: conn.options,
    concurrency: 1,
    name: me,
    lockDuration: (options.lockSeconds ?? DEFAULT_LOCK_SECONDS) * 1000,
    stalledInterval: (options.stalledSeconds ?? DEFAULT_STALLED_SECONDS) * 1000,
    maxStalledCount: MAX_STALLED,
    autorun: false,
  });
  let lastError = "";
  worker.on("error", (err) => {
    const line = scrubbed(conn, err);
    if (line !== lastError) log(`queue ${conn.display}: ${line}`);
    lastError = line;
  });
  const stop = (why: string) => {
    if (ctx.stopping) return;
    ctx.stopping = true;
    log(`${why}: stopping (a running run ends after its step with a checkpoint and goes back to the queue)`);
    ctx.current?.abort();
    worker.close().catch(() => {}); // run() below ends, and its finally closes again
  };
  const onSignal = (signal: NodeJS.Signals) => stop(signal);
  const onAbort = () => stop("asked to stop");
  if (options.handleSignals) {
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  }
  options.signal?.addEventListener("abort", onAbort);
  const idleCheck = setInterval(() => {
    const idle = options.idleSeconds;
    if (idle !== undefined && !ctx.busy && Date.now() - ctx.lastBusy > idle * 1000) stop(`no job for ${idle} s`);
  }, 1000);
  idleCheck.unref();
  log(`taking jobs from ${conn.display}; store ${displayPath(store.root)}`);
  try {
    if (options.signal?.aborted) onAbort();
    else await worker.run();
  } finally {
    await worker.close();
    clearInterval(idleCheck);
    if (options.handleSignals) {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
    options.signal?.removeEventListener("abort", onAbort);
  }
  log("stopped");
}

/**
 * Trains the runs of a job: a pack job (several runs) on a webgpu worker in packs, else one run after the
 * other; returns where each stands. How a job can end: see trainRun.
 */
async function processJob(
  job: Job<QueueJobData>,
  token: string,
  ctx: WorkerContext,
): Promise<{ worker: string; runs: { id: string; stepsDone: number }[] }> {
  ctx.busy = true;
  try {
    const runs: { id: string; stepsDone: number }[] = [];
    if (job.data.runs.length > 1 && resolveEngineName(ctx.options) === "webgpu")
      runs.push(...(await trainPackJob(job, token, ctx)));
    else for (const run of job.data.runs) runs.push({ id: run.id, stepsDone: await trainRun(job, token, run, ctx) });
    return { worker: ctx.me, runs };
  } finally {
    ctx.busy = false;
    ctx.lastBusy = Date.now();
  }
}

/** A run's name in the worker's lines: its id, sweep and place in the sweep. */
function runTag(job: Job<QueueJobData>, run: QueueJobData["runs"][number]): string {
  return `run ${run.id} (sweep ${job.data.sweep} #${run.index + 1})`;
}

/**
 * The TrainOptions of a job's runs: its checkpoint settings; the engine the sweep named, else the worker's
 * (a pack job's runs always go on the worker's engine: in packs on webgpu, else one after another); train()'s
 * own messages in the worker's log; a line per run started or resumed; the runs' progress on the job.
 */
function jobTrainOptions(job: Job<QueueJobData>, ctx: WorkerContext, signal: AbortSignal): TrainOptions {
  const { options, log } = ctx;
  const { engine, backend, kernels, ...checkpoints } = job.data.options;
  const engineChoice =
    job.data.runs.length > 1
      ? { engine: options.engine, backend: options.backend, kernels: options.kernels }
      : { engine: engine ?? options.engine, backend: backend ?? options.backend, kernels: kernels ?? options.kernels };
  const runs = new Map(job.data.runs.map((r) => [r.id, r]));
  const progress = new Map<string, RunProgress>();
  let lastReport = 0;
  const report = () => {
    lastReport = Date.now();
    const p: QueueJobProgress = { worker: ctx.me, runs: [...progress.values()] };
    // not awaited: training goes on while Redis is away, and the report waits in the client's queue
    job.updateProgress(p).catch(() => {});
  };
  // train() calls onResume, onEval or onStep only once it holds the run's lock, and onResume first
  const runProgress = (id: string, step: number, started: boolean): RunProgress => {
    let p = progress.get(id);
    if (!p) {
      const run = runs.get(id)!;
      p = { runId: id, step, steps: run.config.training.steps, valAcc: NaN };
      progress.set(id, p);
      const where = started ? "started at step 0" : "resumed from the checkpoint at step " + step;
      log(`${runTag(job, run)}: ${where} of ${p.steps}`);
    }
    return p;
  };
  return {
    ...checkpoints,
    ...engineChoice,
    threads: options.threads ?? 1,
    store: ctx.store,
    progress: false,
    // train()'s own messages too: a checkpoint set aside, softmax saturation, the run's summary
    log,
    signal,
    onResume: (step, { id }) => void runProgress(id, step, false),
    onEval: (row, { id }) => {
      Object.assign(runProgress(id, 0, true), { step: row.step, valAcc: row.val_acc });
      report();
    },
    onStep: (step, { id }) => {
      runProgress(id, 0, true).step = step;
      if (Date.now() - lastReport >= REPORT_MS) report();
    },
  };
}

/**
 * Trains one run of a job to its end; returns its steps done. A run stopped by the worker's stop puts the
 * job back on the queue (WaitingError); a run whose lock another live process holds, or took over while this
 * worker trained it, delays the job (DelayedError); a run that fails fails the job.
 */
async function trainRun(
  job: Job<QueueJobData>,
  token: string,
  run: QueueJobData["runs"][number],
  ctx: WorkerContext,
): Promise<number> {
  const { store, log } = ctx;
  const tag = runTag(job, run);
  if (store.has(run.id) && store.readState(run.id).status === "finished") {
    log(`${tag}: already finished in the store`);
    return store.readState(run.id).stepsDone;
  }
  const controller = startJob(ctx);
  let result: Awaited<ReturnType<typeof train>>;
  try {
    result = await train(run.config, jobTrainOptions(job, ctx, controller.signal));
  } catch (err) {
    if (err instanceof RunLockedError || err instanceof LockLostError) await holdBack(job, token, tag, err, ctx);
    log(`${tag}: FAILED: ${errorLine(err)}`);
    throw err;
  } finally {
    ctx.current = null;
  }
  if (result.interrupted) {
    log(
      `${tag}: stopped at step ${result.stepsDone} of ${run.config.training.steps} with a checkpoint; back to the queue`,
    );
    await job.moveToWait(token);
    throw new WaitingError();
  }
  log(finishedLine(tag, result));
  return result.stepsDone;
}

/** What the worker stops (its stop aborts the job's training). */
function startJob(ctx: WorkerContext): AbortController {
  const controller = new AbortController();
  ctx.current = controller;
  if (ctx.stopping) controller.abort();
  return controller;
}

function finishedLine(tag: string, r: { stepsDone: number; firstTrain99: number | null; firstVal99: number | null }) {
  return (
    `${tag}: finished at step ${r.stepsDone}; train acc ≥ 99% at ${r.firstTrain99 ?? "-"}, ` +
    `val acc ≥ 99% at ${r.firstVal99 ?? "-"}`
  );
}

/**
 * Trains a pack job's runs together on the webgpu engine (trainInPacks: the job holds one pack, or packs of
 * as many as fit the adapter); returns where each run stands. Stopped, every run checkpoints and the job goes
 * back on the queue; a run another host took over delays the job once the others have ended.
 */
async function trainPackJob(
  job: Job<QueueJobData>,
  token: string,
  ctx: WorkerContext,
): Promise<{ id: string; stepsDone: number }[]> {
  const { log } = ctx;
  const tag = `pack ${job.id} (sweep ${job.data.sweep}, ${job.data.runs.length} runs)`;
  const controller = startJob(ctx);
  let result: PackResult;
  try {
    result = await trainInPacks(
      job.data.runs.map((r) => r.config),
      jobTrainOptions(job, ctx, controller.signal),
    );
  } catch (err) {
    if (err instanceof RunLockedError) await holdBack(job, token, tag, err, ctx);
    log(`${tag}: FAILED: ${errorLine(err)}`);
    throw err;
  } finally {
    ctx.current = null;
  }
  const runOf = new Map(job.data.runs.map((r) => [r.id, r]));
  const tagOf = (id: string) => runTag(job, runOf.get(id)!);
  for (const r of result.runs) if (!r.interrupted) log(finishedLine(tagOf(r.id), r));
  if (result.lost.length > 0) {
    // the run is another host's now; the job comes back for the others once that host's lease can have expired
    const [id] = result.lost;
    const holder = readLockHolder(path.join(ctx.store.dir(id), "lock"));
    await holdBack(job, token, tagOf(id), new LockLostError(id, holder), ctx);
  }
  if (result.interrupted) {
    log(`${tag}: stopped with a checkpoint of each unfinished run; back to the queue`);
    await job.moveToWait(token);
    throw new WaitingError();
  }
  return result.runs.map((r) => ({ id: r.id, stepsDone: r.stepsDone }));
}

/**
 * Another live process holds the run's lock, or took it over: put the job back for a while, until that
 * holder's lease can have expired if it is on another host, else for one job lock's length. Throws DelayedError.
 */
async function holdBack(
  job: Job<QueueJobData>,
  token: string,
  tag: string,
  err: RunLockedError | LockLostError,
  ctx: WorkerContext,
): Promise<never> {
  const h = err.holder;
  const leaseLeftMs =
    h && h.host !== os.hostname() ? Date.parse(h.heartbeatAt) + h.leaseSeconds * 1000 - Date.now() : 0;
  const delayMs = Math.max((ctx.options.lockSeconds ?? DEFAULT_LOCK_SECONDS) * 1000, leaseLeftMs + 1000);
  const who = h ? `process ${h.pid} on ${h.host}` : "another process";
  const what =
    err instanceof LockLostError
      ? `taken over by ${who} after this worker's lease expired: stopped without writing more`
      : `locked by ${who}`;
  ctx.log(`${tag}: ${what}; back to the queue for ${Math.round(delayMs / 1000)} s`);
  await job.moveToDelayed(Date.now() + delayMs, token);
  throw new DelayedError();
}

/** Parent → worker process. */
type ToQueueWorker =
  { type: "start"; options: Omit<QueueWorkerOptions, "log" | "signal" | "handleSignals"> } | { type: "stop" };

/**
 * N worker processes (forked from this file; the URL goes over the IPC channel, never on a command line).
 * A first SIGINT/SIGTERM stops them gracefully, a second kills them.
 */
async function runWorkerProcesses(options: QueueWorkerOptions): Promise<void> {
  const { log: _log, signal, handleSignals, ...serializable } = options;
  const out = options.log ?? ((m: string) => process.stderr.write(m + "\n"));
  const children = new Set<ReturnType<typeof fork>>();
  let stopping = false;
  const stop = () => {
    if (stopping) {
      out("second interrupt: killing the worker processes (runs lose the steps since their last checkpoint)");
      for (const c of children) c.kill("SIGKILL");
      return;
    }
    stopping = true;
    for (const c of children) if (c.connected) c.send({ type: "stop" } satisfies ToQueueWorker);
  };
  if (handleSignals) {
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  }
  signal?.addEventListener("abort", stop);
  try {
    await Promise.all(
      Array.from(
        { length: options.workers ?? 1 },
        () =>
          new Promise<void>((resolve) => {
            const child = fork(__filename, [], { execArgv: [], stdio: ["ignore", "inherit", "inherit", "ipc"] });
            children.add(child);
            child.send({ type: "start", options: { ...serializable, workers: 1 } } satisfies ToQueueWorker);
            child.on("exit", (code, sig) => {
              children.delete(child);
              if (code !== 0) out(`worker process ${child.pid} exited (${sig ?? `code ${code}`})`);
              resolve();
            });
          }),
      ),
    );
  } finally {
    if (handleSignals) {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    }
    signal?.removeEventListener("abort", stop);
  }
}

if (require.main === module) {
  // a Ctrl-C reaches the whole process group: the parent decides, and sends "stop"
  process.on("SIGINT", () => {});
  const controller = new AbortController();
  // a SIGTERM to this process alone (a cluster's scheduler signals every process) stops it gracefully too
  process.on("SIGTERM", () => controller.abort());
  process.on("disconnect", () => controller.abort());
  process.on("message", (msg: ToQueueWorker) => {
    if (msg.type === "stop") controller.abort();
    else if (msg.type === "start") {
      runQueueWorkers({ ...msg.options, signal: controller.signal }).then(
        () => process.exit(0),
        (err: Error) => {
          process.stderr.write(`grok worker: ${maskedMessage(msg.options.queue, err)}\n`);
          process.exit(err instanceof UserError ? 2 : 1);
        },
      );
    }
  });
}

function maskedMessage(url: string, err: unknown): string {
  try {
    return scrubbed(parseQueueUrl(url), err);
  } catch {
    return errorLine(err);
  }
}
