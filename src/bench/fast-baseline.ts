// The CPU's throughput as a GPU pack's baseline: the fast engine on every core at once, one single-thread
// worker process per core, each training its own run of the paper's model. Run-steps per second are summed
// over the workers, all timing together (they warm up, wait for each other, then time their steps).

import { fork } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";
import type { BenchResult, TimingOptions } from "./engine-timing";

export interface FastBaseline {
  workers: number;
  batchSize: number;
  /** Each worker's timing, in worker order. */
  perWorker: BenchResult[];
  /** Σ over workers of 1000 / median ms per step. */
  runStepsPerSecond: number;
}

/** What the parent sends a worker (as argv[2], JSON). */
export interface FastWorkerJob extends TimingOptions {
  batchSize: number | "paper" | "full";
}

/** The compiled worker script beside this file (dist/src/bench/fast-worker.js). */
const WORKER = path.join(__dirname, "fast-worker.js");

/**
 * Times `workers` (default: one per CPU) fast-engine workers on native kernels, 1 thread each, concurrently.
 * Rejects when a worker fails (e.g. the native kernels are not built), with its message.
 */
export async function measureFastBaseline(opts: FastWorkerJob & { workers?: number }): Promise<FastBaseline> {
  const workers = opts.workers ?? os.cpus().length;
  const job: FastWorkerJob = {
    batchSize: opts.batchSize,
    steps: opts.steps,
    warmup: opts.warmup,
    seconds: opts.seconds,
  };
  const children = Array.from({ length: workers }, () =>
    fork(WORKER, [JSON.stringify(job)], { stdio: ["ignore", "ignore", "pipe", "ipc"] }),
  );
  let ready = 0;
  const results = children.map(
    (child) =>
      new Promise<BenchResult>((resolve, reject) => {
        let stderr = "";
        child.stderr!.on("data", (d) => (stderr += d));
        child.on("message", (msg: { ready?: true; result?: BenchResult; error?: string }) => {
          if (msg.ready && ++ready === workers) for (const c of children) c.send({ go: true });
          if (msg.result) resolve(msg.result);
          if (msg.error) reject(new Error(msg.error));
        });
        child.on("exit", (code) => reject(new Error(`a fast-engine worker exited with ${code}: ${stderr.trim()}`)));
      }),
  );
  try {
    const perWorker = await Promise.all(results);
    const runStepsPerSecond = perWorker.reduce((sum, r) => sum + 1000 / r.msPerStep.median, 0);
    return { workers, batchSize: perWorker[0].batchSize, perWorker, runStepsPerSecond };
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill();
  }
}
