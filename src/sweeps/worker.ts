// A sweep worker: a child process (forked by runSweep) that trains the runs it is sent, one at a time, and
// reports over the IPC channel. It ignores SIGINT: a Ctrl-C reaches the whole process group, and the parent
// decides, sending "stop", upon which the current run ends after its step with a checkpoint.

import { train, TrainOptions } from "../training/trainer";
import { RunConfig } from "../config/run-config";

/** Parent → worker. */
export type ToWorker =
  { type: "run"; index: number; config: RunConfig; options: WorkerTrainOptions } | { type: "stop" };

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
};

/** Worker → parent. */
export type FromWorker =
  | { type: "ready" }
  | { type: "resumed"; index: number; step: number }
  | { type: "eval"; index: number; step: number; steps: number; valAcc: number }
  | { type: "step"; index: number; step: number }
  | { type: "done"; index: number; interrupted: boolean }
  | { type: "failed"; index: number; message: string };

/** Least milliseconds between two "step" messages: evaluations are log-spaced, far apart late in a run. */
const STEP_REPORT_MS = 1000;

const send = (m: FromWorker) =>
  new Promise<void>((resolve) => (process.send ? process.send(m, () => resolve()) : resolve()));

let current: AbortController | null = null;
let stopping = false;

async function runOne(msg: Extract<ToWorker, { type: "run" }>): Promise<void> {
  current = new AbortController();
  if (stopping) current.abort();
  let lastReport = Date.now();
  try {
    const result = await train(msg.config, {
      ...msg.options,
      progress: false,
      signal: current.signal,
      // the sweep prints its own lines for a run
      log: () => {},
      onResume: (step) => void send({ type: "resumed", index: msg.index, step }),
      onEval: (row, run) =>
        send({ type: "eval", index: msg.index, step: row.step, steps: run.steps, valAcc: row.val_acc }),
      onStep: (step) => {
        if (Date.now() - lastReport < STEP_REPORT_MS) return;
        lastReport = Date.now();
        void send({ type: "step", index: msg.index, step });
      },
    });
    await send({ type: "done", index: msg.index, interrupted: result.interrupted });
  } catch (err) {
    await send({ type: "failed", index: msg.index, message: (err as Error).message });
  } finally {
    current = null;
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
    } else if (msg.type === "run") queue = queue.then(() => runOne(msg));
  });
  // the parent closes the channel when the sweep ends: finish the current run's checkpoint, then exit
  process.on("disconnect", () => {
    stopping = true;
    current?.abort();
    void queue.then(() => process.exit(0));
  });
  void send({ type: "ready" });
}
