// Reading runs back for analysis: metrics as a danfojs DataFrame, weights as arrays.

import type { DataFrame } from "danfojs-node";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EngineOptions } from "../engines/index";
import { train } from "../training/trainer";
import { Metrics, RunInfo, RunStore } from "../store/run-store";
import { Optimizer } from "../optim/optimizer";
import { formatDuration, ProgressDisplay, progressDisplayFor } from "../training/progress";
import { NamedTensors } from "../util/tensors";

export interface LoadedRun extends RunInfo {
  metrics: Metrics;
}

/** Every run in the store with its config and status. */
export function listRuns(store?: RunStore | string): RunInfo[] {
  return RunStore.of(store).list();
}

/** One run (by id, unique id prefix or directory) with its metrics. */
export function loadRun(ref: string, store?: RunStore | string): LoadedRun {
  const s = RunStore.of(store);
  const id = s.resolve(ref);
  return { ...s.info(id), metrics: s.readMetrics(id) };
}

/** A run's metrics as a danfojs DataFrame, one row per evaluation. */
export function metricsFrame(run: string | { metrics: Metrics }, store?: RunStore | string): DataFrame {
  // danfojs-node loads TensorFlow.js; load it only when a frame is asked for
  const dfd = require("danfojs-node") as typeof import("danfojs-node");
  const metrics = typeof run === "string" ? loadRun(run, store).metrics : run.metrics;
  if (metrics.rows.length === 0) return new dfd.DataFrame([], { columns: metrics.columns });
  return new dfd.DataFrame(
    metrics.rows.map((r) => metrics.columns.map((c) => r[c])),
    { columns: metrics.columns },
  );
}

/**
 * A run's weights (no optimizer state) from a checkpoint: "final", "latest", or the step of a periodic one.
 * Names as in model/config.paramSpecs; linear weights are [in, out].
 */
export function loadWeights(
  ref: string,
  which: "final" | "latest" | number = "latest",
  store?: RunStore | string,
): { step: number; weights: NamedTensors } {
  const s = RunStore.of(store);
  const ckpt = s.readCheckpoint(s.resolve(ref), which);
  const weights: NamedTensors = new Map([...ckpt.tensors].filter(([name]) => !Optimizer.isStateName(name)));
  return { step: ckpt.step, weights };
}

export interface SnapshotOptions extends EngineOptions {
  store?: RunStore | string;
  /**
   * Show the replay's progress (default: on a terminal or in a notebook, where it is one line updated in
   * place that ends as a summary), or draw it on this display, which the caller ends.
   */
  progress?: boolean | ProgressDisplay;
}

/**
 * Makes sure a run has weights after each of `steps` (a checkpoint or a snapshot), so loadWeights can read
 * them. Missing ones are recreated by replaying the run from its start in a scratch store: a run is a pure
 * function of its config, so the replayed weights are the weights the run had. Returns the steps written.
 */
export async function ensureSnapshots(ref: string, steps: number[], opts: SnapshotOptions = {}): Promise<number[]> {
  const s = RunStore.of(opts.store);
  const id = s.resolve(ref);
  const config = s.readConfig(id);
  const have = new Set([...s.checkpoints(id), ...s.snapshots(id)].map((c) => c.step));
  const bad = steps.filter((st) => !Number.isInteger(st) || st < 0 || st > config.training.steps);
  if (bad.length)
    throw new Error(
      `snapshot steps must be integers in [0, ${config.training.steps}] (the run's budget); got ${bad.join(", ")}`,
    );
  const missing = [...new Set(steps)].filter((st) => !have.has(st)).sort((a, b) => a - b);
  if (missing.length === 0) return [];
  const last = missing[missing.length - 1];
  const snapshots = `${missing.length} snapshot${missing.length === 1 ? "" : "s"}`;
  const { display: progress, owned } = progressDisplayFor(opts.progress, {
    label: `run ${id}: replaying for ${snapshots}`,
  });
  const startedAt = Date.now();
  let summary: string | undefined;
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "grok-replay-"));
  try {
    const replay = await train(config, {
      ...opts,
      store: scratch,
      snapshotSteps: missing,
      stopAfter: Math.max(1, last),
      progress: progress ?? false,
      log: () => {},
    });
    const scratchStore = new RunStore(scratch);
    const written: number[] = [];
    for (const snap of scratchStore.snapshots(replay.id)) {
      s.writeSnapshot(id, snap.step, scratchStore.readCheckpoint(replay.id, snap.step).tensors);
      written.push(snap.step);
    }
    const lost = missing.filter((st) => !written.includes(st));
    // a run that stopped early (early stop) has no weights after its last step
    if (lost.length)
      throw new Error(
        `run ${id}: no weights after step ${lost.join(", ")} (the run ended at step ${replay.stepsDone})`,
      );
    summary = `run ${id}: ${snapshots} written (replayed ${replay.stepsDone} steps in ${formatDuration((Date.now() - startedAt) / 1000)})`;
    return written;
  } finally {
    if (owned) progress?.done(summary);
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}
