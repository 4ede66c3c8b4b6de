// Sweeps across machines: the runs of a sweep become jobs on a BullMQ queue in Redis, and `grok worker`
// processes (sweeps/queue-worker.ts) on any machine that mounts the same run store train them. This side
// enqueues the runs the store has not finished and follows them to the end, with the local sweep's display.
//
// A job is named by its runs (`run-<id>`), so enqueuing a run twice (two `grok sweep` commands, or one run
// again after Ctrl-C) is a no-op while its job is queued or running. The store stays the truth: a run is
// done when the store says it is finished, and the run lock (a lease, store/lock.ts) keeps two workers from
// training one run at once even when BullMQ hands a stalled job to a second worker.
//
// A password in the URL never leaves this file's connection options: messages show the URL masked
// (redis://:***@host:port), and error text from the Redis client is scrubbed of it.

import { Job, Queue, RedisOptions } from "bullmq";
import { Redis } from "ioredis";
import { RunConfig } from "../config/run-config";
import { engineChoices } from "../engines/index";
import { displayPath, RunStore } from "../store/run-store";
import { formatDuration, progressDisplayFor } from "../training/progress";
import { errorLine, UserError } from "../util/errors";
import type { Live, SweepOptions, SweepResult, SweepRunResult } from "./runner";
import { progressLine, runEndLine, runResult, summarize } from "./runner";
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
 * A job: the runs it trains one after the other (one run now; several runs of a pack later, trained
 * together on one GPU), and how to train them. The engine is the job's when the sweep named one, else
 * the worker's; threads are always the worker's (its machine's).
 */
export interface QueueJobData {
  sweep: string;
  runs: { index: number; id: string; config: RunConfig }[];
  options: Omit<WorkerTrainOptions, "store" | "threads">;
}

/** What a worker reports while it trains a job (job.progress). */
export interface QueueJobProgress {
  runId: string;
  step: number;
  steps: number;
  valAcc: number;
  /** host:pid of the worker process. */
  worker: string;
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
 * Puts the runs on the queue, one job each, unless their job is already waiting or running. A job left
 * completed or failed by an earlier session (its run was since deleted, or it failed) is replaced.
 */
async function enqueue(
  queue: Queue<QueueJobData>,
  name: string,
  runs: SweepRun[],
  options: QueueJobData["options"],
): Promise<number> {
  let added = 0;
  for (const run of runs) {
    const jobId = jobIdFor([run.id]);
    const existing = await queue.getJob(jobId);
    if (existing) {
      const state = await existing.getState();
      if (state !== "completed" && state !== "failed") continue;
      await existing.remove();
    }
    const data: QueueJobData = { sweep: name, runs: [{ index: run.index, id: run.id, config: run.config }], options };
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
  engineChoices(options);
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
  const queue = openQueue(conn, log);
  try {
    const added = await enqueue(
      queue,
      name,
      todo.map((i) => runs[i]),
      jobOptions(options),
    );
    log(
      `sweep ${name}: ${runs.length} runs, ${skipped} finished, ${todo.length} on the queue ${conn.display} ` +
        `(${added} enqueued now, ${todo.length - added} already queued); store ${displayPath(store.root)}`,
    );
    return await follow(queue, name, runs, results, todo, store, options, log);
  } finally {
    await queue.close();
  }
}

/** Follows the jobs of `todo` until each has ended or the caller stops following; see runQueuedSweep. */
async function follow(
  queue: Queue<QueueJobData>,
  name: string,
  runs: SweepRun[],
  results: SweepRunResult[],
  todo: number[],
  store: RunStore,
  options: SweepOptions,
  log: (message: string) => void,
): Promise<SweepResult> {
  const startedAt = Date.now();
  const { display: progress, owned } = progressDisplayFor(options.progress, { label: `sweep ${name}`, out: log }, true);
  const say = (m: string) => (progress ? progress.log(m, log) : log(m));
  const counts = { skipped: results.filter((r) => r.status === "finished").length, trained: 0, failed: 0 };
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
  // a job gone from the queue (Redis lost it, or someone removed it) while its run is unfinished is put back
  const requeue = async (index: number) => {
    if (runResult(store, runs[index]).status === "finished") return endRun(index);
    say(`#${index + 1} (${runs[index].id}): its job is gone from the queue: enqueued again`);
    await enqueue(queue, name, [runs[index]], jobOptions(options));
  };
  let summary: string | undefined;
  let result: SweepResult;
  try {
    while (pending.size > 0 && !stopping) {
      await pollJobs(queue, runs, pending, live, endRun, requeue);
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
    const finished = runs.length - result.unfinished;
    summary =
      `sweep ${name}: ${finished}/${runs.length} runs finished (${counts.trained} trained now, ` +
      `${counts.skipped} already done)${counts.failed ? `, ${counts.failed} failed` : ""}` +
      `${result.unfinished ? `, ${result.unfinished} unfinished` : ""} in ${formatDuration(seconds)}`;
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
 * One look at the queue: the running jobs' progress into `live`, every pending job that has completed or
 * failed ended, and one that is gone requeued. An error (Redis away) leaves everything until the next look.
 */
async function pollJobs(
  queue: Queue<QueueJobData>,
  runs: SweepRun[],
  pending: Set<number>,
  live: Map<number, Live>,
  endRun: (index: number, failure?: string) => void,
  requeue: (index: number) => Promise<void>,
): Promise<void> {
  try {
    const active = await queue.getJobs(["active"]);
    live.clear();
    for (const job of active) {
      const p = job.progress as Partial<QueueJobProgress>;
      const index = job.data.runs.find((r) => r.id === p.runId)?.index ?? job.data.runs[0].index;
      if (!pending.has(index)) continue;
      live.set(index, {
        step: p.step ?? 0,
        steps: p.steps ?? runs[index].config.training.steps,
        valAcc: p.valAcc ?? NaN,
      });
    }
    for (const index of [...pending]) {
      const job = await queue.getJob(jobIdFor([runs[index].id]));
      const state = job ? await job.getState() : "unknown";
      if (state === "completed") endRun(index);
      else if (state === "failed") endRun(index, job?.failedReason ?? "its job failed");
      else if (state === "unknown") await requeue(index);
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
    for (const r of results) {
      const job: Job<QueueJobData> | undefined = await queue.getJob(jobIdFor([r.id]));
      const state = job ? await job.getState() : "-";
      const p = job?.progress as Partial<QueueJobProgress> | undefined;
      const worker = state === "active" ? (p?.worker ?? job?.processedBy ?? null) : null;
      r.queue = { state, worker };
      if (state === "active" && p?.runId === r.id && typeof p.step === "number") r.stepsDone = p.step;
    }
  } finally {
    await queue.close();
  }
  const finished = results.filter((r) => r.status === "finished").length;
  return summarize(
    Array.isArray(spec) ? "sweep" : (spec.name ?? "sweep"),
    results,
    { skipped: finished, trained: 0, failed: 0 },
    false,
    0,
  );
}
