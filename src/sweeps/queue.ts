// Sweeps across machines: the runs of a sweep become jobs on a BullMQ queue in Redis, and `grok worker`
// processes (sweeps/queue-worker.ts) on any machine that mounts the same run store train them. This side
// enqueues the runs the store has not finished and follows them to the end, with the local sweep's display.
//
// A job is named by its runs (`run-<id>`, or `pack-<id>-<id>…` for the runs of a pack on the webgpu engine,
// grouped as a local sweep groups them), so enqueuing a run twice (two `grok sweep` commands, or one run
// again after Ctrl-C) is a no-op while its job is queued or running. The store stays the truth: a run is
// done when the store says it is finished, and the run lock (a lease, store/lock.ts) keeps two workers from
// training one run at once even when BullMQ hands a stalled job to a second worker.
//
// A password in the URL never leaves this file's connection options: messages show the URL masked
// (redis://:***@host:port), and error text from the Redis client is scrubbed of it.

import { Job, Queue, RedisOptions } from "bullmq";
import { Redis } from "ioredis";
import { RunConfig } from "../config/run-config";
import { resolveEngineName } from "../engines/index";
import { displayPath, RunStore } from "../store/run-store";
import { formatDuration, progressDisplayFor } from "../training/progress";
import { errorLine, UserError } from "../util/errors";
import type { Live, SweepOptions, SweepResult, SweepRunResult } from "./runner";
import {
  checkPackOption,
  progressLine,
  runEndLine,
  runResult,
  statusSummary,
  summarize,
  summaryLine,
  sweepJobs,
} from "./runner";
import { expandSweep, SweepRun, SweepSpec } from "./spec";
import type { WorkerTrainOptions } from "./worker";

/** The one queue every sweep and worker shares (a job names its runs; the runs name their sweep). */
export const QUEUE_NAME = "grok-runs";

/**
 * Completed jobs are kept this long (for --status), then removed; the store still says the run is finished,
 * and a follower that finds a job gone asks the store first.
 */
const KEEP_COMPLETED_SECONDS = 7 * 24 * 3600;

/** How long to wait for Redis to answer before giving up, by default. */
export const DEFAULT_CONNECT_SECONDS = 10;

/** A parsed queue URL: the client's options, and the URL as messages may print it. */
export interface QueueConnection {
  options: RedisOptions;
  /** The URL with its password masked: redis://:***@host:port/db. */
  display: string;
  /** The password, scrubbed from any error text (undefined: none). */
  secret?: string;
}

/**
 * A job: its runs (one, or the runs of a pack: trained together by a worker on the webgpu engine, one after
 * another by a worker on another engine), and how to train them. The engine of a one-run job is the job's
 * when the sweep named one, else the worker's; a pack job's is the worker's; threads are always the worker's.
 */
export interface QueueJobData {
  sweep: string;
  runs: { index: number; id: string; config: RunConfig }[];
  options: Omit<WorkerTrainOptions, "store" | "threads">;
}

/** Where a run of a job stands, as its worker last reported. */
export interface RunProgress {
  runId: string;
  step: number;
  steps: number;
  valAcc: number;
}

/** What a worker reports while it trains a job (job.progress): each of its runs that has begun. */
export interface QueueJobProgress {
  /** host:pid of the worker process. */
  worker: string;
  runs: RunProgress[];
}

/** The job id of a set of runs: one per run, so a run is queued once however often it is enqueued. */
export function jobIdFor(runIds: string[]): string {
  return runIds.length === 1 ? `run-${runIds[0]}` : `pack-${runIds.join("-")}`;
}

/** Masks the password of every redis:// or rediss:// URL in a text: redis://:***@host. */
export function maskQueueUrls(text: string): string {
  return text.replace(/(rediss?:\/\/)([^@/\s]*)@/gi, (_all, scheme: string, auth: string) => {
    const user = auth.includes(":") ? auth.slice(0, auth.indexOf(":")) : "";
    return `${scheme}${user}:***@`;
  });
}

/** Parses redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or rediss:// (TLS); a bad URL is a UserError. */
export function parseQueueUrl(url: string): QueueConnection {
  const usage = "a Redis URL: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], or rediss:// for TLS";
  // whatever might be a password (anything before an @) is not shown, whatever the scheme
  const shown = url.replace(/^([a-z][\w+.-]*:\/\/)?[^@]*@/i, (_all, scheme?: string) => `${scheme ?? ""}***@`);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UserError(`--queue needs ${usage} (got "${shown}")`);
  }
  const bad = (why: string) => new UserError(`--queue ${shown}: ${why} (${usage})`);
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw bad(`unknown scheme "${u.protocol}"`);
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!host) throw bad("no host");
  const port = u.port === "" ? 6379 : Number(u.port);
  const dbText = u.pathname.replace(/^\//, "");
  if (dbText !== "" && !/^\d+$/.test(dbText)) throw bad(`the database must be a number (got "${dbText}")`);
  if (u.search || u.hash) throw bad("no query or fragment is allowed");
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  const username = u.username ? decodeURIComponent(u.username) : undefined;
  const options: RedisOptions = {
    host,
    port,
    db: dbText === "" ? 0 : Number(dbText),
    username,
    password,
    // commands wait while Redis restarts instead of failing (BullMQ's workers require it)
    maxRetriesPerRequest: null,
    // TLS checks the server's certificate against the system's CAs (a private CA: NODE_EXTRA_CA_CERTS)
    ...(u.protocol === "rediss:" ? { tls: {} } : {}),
  };
  const auth = password !== undefined ? `${username ?? ""}:***@` : username ? `${username}@` : "";
  const display = `${u.protocol}//${auth}${u.host}${dbText ? `/${dbText}` : ""}`;
  return { options, display, secret: password };
}

/** An error's first line, with the connection's password (plain or URL-encoded) masked. */
export function scrubbed(conn: QueueConnection, err: unknown): string {
  let text = maskQueueUrls(errorLine(err));
  if (conn.secret) {
    for (const s of new Set([conn.secret, encodeURIComponent(conn.secret)])) text = text.split(s).join("***");
  }
  return text;
}

/**
 * Waits until Redis answers a PING, for at most `seconds`; then a UserError naming the masked URL and
 * why. A wrong password fails at once.
 */
export async function checkQueueReachable(conn: QueueConnection, seconds = DEFAULT_CONNECT_SECONDS): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  let last: unknown;
  for (;;) {
    const client = new Redis({
      ...conn.options,
      lazyConnect: true,
      connectTimeout: Math.max(250, deadline - Date.now()),
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
    });
    // the client's own error (ECONNREFUSED, a TLS failure) says more than the "Connection is closed" that follows
    let clientError: unknown;
    client.on("error", (err) => (clientError ??= err));
    try {
      await client.connect();
      await client.ping();
      return;
    } catch (err) {
      last = clientError ?? err;
      if (/NOAUTH|WRONGPASS|invalid password|invalid username/i.test(errorLine(err))) break;
    } finally {
      client.disconnect();
    }
    if (Date.now() >= deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new UserError(`cannot reach Redis at ${conn.display} (waited ${seconds} s): ${scrubbed(conn, last)}`);
}

/** A queue handle whose errors (Redis away for a while) are logged once each, masked, rather than thrown. */
export function openQueue(conn: QueueConnection, log: (message: string) => void): Queue<QueueJobData> {
  const queue = new Queue<QueueJobData>(QUEUE_NAME, { connection: conn.options });
  let lastError = "";
  queue.on("error", (err) => {
    const line = scrubbed(conn, err);
    if (line !== lastError) log(`queue ${conn.display}: ${line}`);
    lastError = line;
  });
  return queue;
}

/**
 * Puts the jobs on the queue (each a run, or the runs of a pack), unless a job of the same runs is already
 * waiting or running. A job left completed or failed by an earlier session (its runs were since deleted, or
 * it failed) is replaced.
 */
async function enqueue(
  queue: Queue<QueueJobData>,
  name: string,
  jobs: SweepRun[][],
  options: QueueJobData["options"],
): Promise<number> {
  let added = 0;
  for (const runs of jobs) {
    const jobId = jobIdFor(runs.map((r) => r.id));
    const existing = await queue.getJob(jobId);
    if (existing) {
      const state = await existing.getState();
      if (state !== "completed" && state !== "failed") continue;
      await existing.remove();
    }
    const data: QueueJobData = {
      sweep: name,
      runs: runs.map((r) => ({ index: r.index, id: r.id, config: r.config })),
      options,
    };
    await queue.add(name, data, { jobId, removeOnComplete: { age: KEEP_COMPLETED_SECONDS } });
    added++;
  }
  return added;
}

/** The training options a job carries: the sweep's checkpoint settings and, when named, its engine. */
function jobOptions(options: SweepOptions): QueueJobData["options"] {
  const picked: QueueJobData["options"] = {
    engine: options.engine,
    backend: options.backend,
    kernels: options.kernels,
    checkpointEvery: options.checkpointEvery,
    checkpointSeconds: options.checkpointSeconds,
    keepCheckpoints: options.keepCheckpoints,
    snapshotSteps: options.snapshotSteps,
  };
  // JSON in Redis: leave out what is not set rather than store nulls
  return Object.fromEntries(Object.entries(picked).filter(([, v]) => v !== undefined));
}

/**
 * Enqueues every run of the sweep that the store has not finished and follows the jobs until each has
 * completed or failed, showing the local sweep's display. Stopping (Ctrl-C, the signal) only stops
 * following: the jobs stay queued, and calling this again follows them again.
 */
export async function runQueuedSweep(
  spec: SweepSpec | SweepRun[],
  options: SweepOptions & { queue: string },
): Promise<SweepResult> {
  const runs = Array.isArray(spec) ? spec : expandSweep(spec);
  const name = Array.isArray(spec) ? "sweep" : (spec.name ?? "sweep");
  const store = RunStore.of(options.store);
  const log = options.log ?? ((m: string) => process.stderr.write(m + "\n"));
  // bad input fails here, before anything is enqueued
  checkPackOption(options);
  const packed = resolveEngineName(options) === "webgpu";
  const conn = parseQueueUrl(options.queue);
  await checkQueueReachable(conn, options.connectSeconds);
  const results = runs.map((r) => runResult(store, r));
  const firstIndex = new Map<string, number>();
  for (const r of runs) if (!firstIndex.has(r.id)) firstIndex.set(r.id, r.index);
  const todo = results.filter((r) => r.status !== "finished" && firstIndex.get(r.id) === r.index).map((r) => r.index);
  const skipped = results.filter((r) => r.status === "finished").length;
  if (todo.length === 0) {
    log(`sweep ${name}: all ${runs.length} runs are finished in ${displayPath(store.root)}`);
    return summarize(name, results, { skipped, trained: 0, failed: 0 }, false, 0);
  }
  // on the webgpu engine, runs that can share a pack go as one job (at most --pack runs)
  const jobs = sweepJobs(runs, todo, packed, options.pack);
  const queue = openQueue(conn, log);
  try {
    const added = await enqueue(
      queue,
      name,
      jobs.map((job) => job.map((i) => runs[i])),
      jobOptions(options),
    );
    const what = packed ? `${jobs.length} pack${jobs.length > 1 ? "s" : ""} of ${todo.length} runs` : `${todo.length}`;
    log(
      `sweep ${name}: ${runs.length} runs, ${skipped} finished, ${what} on the queue ${conn.display} ` +
        `(${added} job${added === 1 ? "" : "s"} enqueued now, ${jobs.length - added} already queued); ` +
        `store ${displayPath(store.root)}`,
    );
    return await follow(queue, name, runs, results, jobs, store, options, log);
  } finally {
    await queue.close();
  }
}

/** Follows the jobs (indexes of their runs) until each has ended or the caller stops following; see runQueuedSweep. */
async function follow(
  queue: Queue<QueueJobData>,
  name: string,
  runs: SweepRun[],
  results: SweepRunResult[],
  jobs: number[][],
  store: RunStore,
  options: SweepOptions,
  log: (message: string) => void,
): Promise<SweepResult> {
  const startedAt = Date.now();
  const { display: progress, owned } = progressDisplayFor(options.progress, { label: `sweep ${name}`, out: log }, true);
  const say = (m: string) => (progress ? progress.log(m, log) : log(m));
  const counts = { skipped: results.filter((r) => r.status === "finished").length, trained: 0, failed: 0 };
  const todo = jobs.flat();
  const pending = new Set(todo);
  const live = new Map<number, Live>();
  const stepsTotal = todo.reduce((s, i) => s + results[i].steps, 0);
  const stepsAtStart = todo.reduce((s, i) => s + results[i].stepsDone, 0);
  let stopping = false;
  const stop = () => {
    if (!stopping) say(`sweep ${name}: stopped following; its runs stay queued (the same command follows them again)`);
    stopping = true;
  };
  if (options.handleSignals) {
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  }
  options.signal?.addEventListener("abort", stop);
  if (options.signal?.aborted) stop();
  const endRun = (index: number, failure?: string) => {
    pending.delete(index);
    live.delete(index);
    const r = runResult(store, runs[index]);
    if (failure !== undefined) Object.assign(r, { status: "failed", error: failure });
    if (r.status === "finished") counts.trained++;
    else if (r.status === "failed") counts.failed++;
    results[index] = r;
    for (const other of runs) if (other.id === r.id && other.index !== index) results[other.index] = { ...r, ...other };
    const done = results.filter((x) => x.status === "finished").length;
    if (r.status !== "finished" || progress?.mode !== "kernel") say(runEndLine(r, done, runs.length));
    options.onRunEnd?.(r);
  };
  // a job gone from the queue (Redis lost it, or someone removed it) while a run of it is unfinished is put back
  const requeue = async (job: number[]) => {
    const unfinished = job.filter((i) => runResult(store, runs[i]).status !== "finished");
    for (const i of job) if (!unfinished.includes(i)) endRun(i);
    if (unfinished.length === 0) return;
    const named = job.map((i) => `#${i + 1} (${runs[i].id})`).join(", ");
    say(`${named}: ${job.length > 1 ? "their" : "its"} job is gone from the queue: enqueued again`);
    await enqueue(queue, name, [job.map((i) => runs[i])], jobOptions(options));
  };
  let summary: string | undefined;
  let result: SweepResult;
  try {
    while (pending.size > 0 && !stopping) {
      await pollJobs(queue, runs, jobs, pending, live, endRun, requeue);
      if (progress) {
        const liveSteps = [...live.entries()].reduce((s, [i, l]) => s + (l.step || results[i].stepsDone), 0);
        const endedSteps = todo.filter((i) => !pending.has(i)).reduce((s, i) => s + results[i].steps, 0);
        const done = results.filter((x) => x.status === "finished").length;
        const seconds = (Date.now() - startedAt) / 1000;
        const line = progressLine(done, runs.length, live, endedSteps + liveSteps, stepsTotal, seconds, stepsAtStart);
        progress.draw(line);
      }
      if (pending.size > 0 && !stopping) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    const seconds = (Date.now() - startedAt) / 1000;
    result = summarize(name, results, counts, stopping, seconds);
    summary = summaryLine(result);
  } finally {
    if (owned) progress?.done(summary);
    if (options.handleSignals) {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    }
    options.signal?.removeEventListener("abort", stop);
  }
  if (!(owned && progress)) log(summary);
  return result;
}

/** How often the follower asks Redis where the jobs stand. */
const POLL_MS = 500;

/**
 * One look at the queue: the running jobs' progress into `live`, the runs of every job that has completed or
 * failed ended, and a job that is gone requeued. An error (Redis away) leaves everything until the next look.
 */
async function pollJobs(
  queue: Queue<QueueJobData>,
  runs: SweepRun[],
  jobs: number[][],
  pending: Set<number>,
  live: Map<number, Live>,
  endRun: (index: number, failure?: string) => void,
  requeue: (job: number[]) => Promise<void>,
): Promise<void> {
  try {
    const active = await queue.getJobs(["active"]);
    live.clear();
    for (const job of active) {
      const p = job.progress as Partial<QueueJobProgress>;
      for (const r of Array.isArray(p.runs) ? p.runs : []) {
        const index = job.data.runs.find((x) => x.id === r.runId)?.index;
        if (index === undefined || !pending.has(index)) continue;
        live.set(index, { step: r.step, steps: r.steps, valAcc: r.valAcc ?? NaN });
      }
    }
    for (const indexes of jobs) {
      const left = indexes.filter((i) => pending.has(i));
      if (left.length === 0) continue;
      const job = await queue.getJob(jobIdFor(indexes.map((i) => runs[i].id)));
      const state = job ? await job.getState() : "unknown";
      if (state === "completed") for (const i of left) endRun(i);
      else if (state === "failed") for (const i of left) endRun(i, job?.failedReason ?? "its job failed");
      else if (state === "unknown") await requeue(indexes);
    }
  } catch {
    // Redis is away: the queue logs its errors; the next poll tries again
  }
}

/** Where each run of the sweep stands in the store and on the queue, and which worker holds it. */
export async function queueStatus(
  spec: SweepSpec | SweepRun[],
  options: { store?: RunStore | string; queue: string; connectSeconds?: number },
): Promise<SweepResult> {
  const runs = Array.isArray(spec) ? spec : expandSweep(spec);
  const conn = parseQueueUrl(options.queue);
  await checkQueueReachable(conn, options.connectSeconds);
  const store = RunStore.of(options.store);
  const results = runs.map((r) => runResult(store, r));
  const queue = openQueue(conn, () => {});
  try {
    let packJobs: Job<QueueJobData>[] | null = null;
    for (const r of results) {
      // a run's own job, else the newest pack job that holds it
      let job: Job<QueueJobData> | undefined = await queue.getJob(jobIdFor([r.id]));
      if (!job) {
        packJobs ??= (await queue.getJobs()).filter((j) => j?.data?.runs?.length > 1);
        job = packJobs
          .filter((j) => j.data.runs.some((x) => x.id === r.id))
          .sort((a, b) => b.timestamp - a.timestamp)[0];
      }
      const state = job ? await job.getState() : "-";
      const p = job?.progress as Partial<QueueJobProgress> | undefined;
      const worker = state === "active" ? (p?.worker ?? job?.processedBy ?? null) : null;
      r.queue = { state, worker };
      const reported = Array.isArray(p?.runs) ? p.runs.find((x) => x.runId === r.id) : undefined;
      if (state === "active" && reported) r.stepsDone = reported.step;
    }
  } finally {
    await queue.close();
  }
  return statusSummary(spec, results);
}
