// A sweep worker: a child process (forked by runSweep) that trains the jobs it is sent, one at a time, and
// reports over the IPC channel. A job is one run, or on the webgpu engine runs trained in packs. It ignores
// SIGINT: a Ctrl-C reaches the whole process group, and the parent decides, sending "stop", upon which the
// current runs end after their step with a checkpoint.

import { DeviceError } from "../engines/engine";
import { trainInPacks } from "../training/pack";
import { train, TrainOptions } from "../training/trainer";
import { normalizeConfig, RunConfig } from "../config/run-config";
import { RunStore } from "../store/run-store";

/** A run of a job: its index in the sweep and its config. */
export interface JobRun {
  index: number;
  config: RunConfig;
}

/** Parent → worker. */
export type ToWorker = { type: "job"; runs: JobRun[]; options: WorkerTrainOptions } | { type: "stop" };

/** Parent → worker: the serializable part of TrainOptions. */
export type WorkerTrainOptions = Pick<
  TrainOptions,
  | "engine"
  | "backend"
  | "kernels"
  | "threads"
  | "checkpointEvery"
  | "checkpointSeconds"
  | "keepCheckpoints"
  | "snapshotSteps"
> & {
  store: string;
  /** Train the job's runs in packs of at most this many (a number, or "fit": as many as the adapter holds). */
  pack?: number | "fit";
};

/** Worker → parent: "ready" for a job (at the start and after each one); news of each run by index. */
export type FromWorker =
  | { type: "ready" }
  | { type: "device-error"; message: string }
  | { type: "resumed"; index: number; step: number }
  | { type: "eval"; index: number; step: number; steps: number; valAcc: number }
  | { type: "step"; index: number; step: number }
  | { type: "done"; index: number; interrupted: boolean }
  | { type: "unstarted"; index: number }
  | { type: "failed"; index: number; message: string };

/** Least milliseconds between two "step" messages: evaluations are log-spaced, far apart late in a run. */
const STEP_REPORT_MS = 1000;

const send = (m: FromWorker) =>
  new Promise<void>((resolve) => (process.send ? process.send(m, () => resolve()) : resolve()));

let current: AbortController | null = null;
let stopping = false;

/** The TrainOptions of a job: its runs' news go to the parent, by index (the sweep prints its own lines). */
function jobOptions(
  job: Extract<ToWorker, { type: "job" }>,
  indexOf: Map<string, number>,
  signal: AbortSignal,
): TrainOptions {
  let lastReport = Date.now();
  return {
    ...job.options,
    progress: false,
    signal,
    log: () => {},
    onResume: (step, run) => void send({ type: "resumed", index: indexOf.get(run.id)!, step }),
    onEval: (row, run) =>
      send({ type: "eval", index: indexOf.get(run.id)!, step: row.step, steps: run.steps, valAcc: row.val_acc }),
    onStep: (step, run) => {
      if (Date.now() - lastReport < STEP_REPORT_MS) return;
      lastReport = Date.now();
      void send({ type: "step", index: indexOf.get(run.id)!, step });
    },
  };
}

async function runJob(job: Extract<ToWorker, { type: "job" }>): Promise<void> {
  current = new AbortController();
  if (stopping) current.abort();
  const indexOf = new Map(job.runs.map((r) => [RunStore.idFor(normalizeConfig(r.config)), r.index]));
  const options = jobOptions(job, indexOf, current.signal);
  const reported = new Set<number>();
  const done = async (index: number, interrupted: boolean) => {
    reported.add(index);
    await send({ type: "done", index, interrupted });
  };
  try {
    if (job.options.pack === undefined) {
      const result = await train(job.runs[0].config, options);
      await done(job.runs[0].index, result.interrupted);
    } else {
      await trainInPacks(
        job.runs.map((r) => r.config),
        {
          ...options,
          maxPack: job.options.pack === "fit" ? undefined : job.options.pack,
          onRunEnd: (id, reason) => void done(indexOf.get(id)!, reason === null),
        },
      );
      // runs of packs that a stop kept from starting
      for (const r of job.runs) if (!reported.has(r.index)) await send({ type: "unstarted", index: r.index });
    }
  } catch (err) {
    // a device error leaves its runs stopped at their checkpoints, resumable: not failed
    if (err instanceof DeviceError) await send({ type: "device-error", message: err.message });
    for (const r of job.runs)
      if (!reported.has(r.index))
        await (err instanceof DeviceError
          ? done(r.index, true)
          : send({ type: "failed", index: r.index, message: (err as Error).message }));
  } finally {
    current = null;
    await send({ type: "ready" });
  }
}

if (require.main === module) {
  if (!process.send) {
    process.stderr.write("sweep worker: run by runSweep, not by hand (it talks over an IPC channel)\n");
    process.exit(2);
  }
  process.on("SIGINT", () => {});
  // a SIGTERM sent to this process alone (not through the parent) still ends the run with a checkpoint
  process.on("SIGTERM", () => {
    stopping = true;
    current?.abort();
  });
  let queue = Promise.resolve();
  process.on("message", (msg: ToWorker) => {
    if (msg.type === "stop") {
      stopping = true;
      current?.abort();
    } else if (msg.type === "job") queue = queue.then(() => runJob(msg));
  });
  // the parent closes the channel when the sweep ends: finish the current run's checkpoint, then exit
  process.on("disconnect", () => {
    stopping = true;
    current?.abort();
    void queue.then(() => process.exit(0));
  });
  void send({ type: "ready" });
}
