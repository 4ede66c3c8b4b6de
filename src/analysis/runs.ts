// Reading runs back for analysis: metrics as a danfojs DataFrame, weights as arrays.

import type { DataFrame } from "danfojs-node";
import { Metrics, RunInfo, RunStore } from "../store/run-store";
import { Optimizer } from "../training/optimizer";
import { NamedTensors } from "../util/tensors";

export interface LoadedRun extends RunInfo {
  metrics: Metrics;
}

function storeOf(store?: RunStore | string): RunStore {
  return store instanceof RunStore ? store : new RunStore(store);
}

/** Every run in the store with its config and status. */
export function listRuns(store?: RunStore | string): RunInfo[] {
  return storeOf(store).list();
}

/** One run (by id, unique id prefix or directory) with its metrics. */
export function loadRun(ref: string, store?: RunStore | string): LoadedRun {
  const s = storeOf(store);
  const id = s.resolve(ref);
  return { ...s.info(id), metrics: s.readMetrics(id) };
}

/** A run's metrics as a danfojs DataFrame, one row per evaluation. */
export function metricsFrame(run: string | { metrics: Metrics }, store?: RunStore | string): DataFrame {
  // danfojs-node loads TensorFlow.js; load it only when a frame is asked for
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const dfd = require("danfojs-node") as typeof import("danfojs-node");
  const metrics = typeof run === "string" ? loadRun(run, store).metrics : run.metrics;
  if (metrics.rows.length === 0) return new dfd.DataFrame([], { columns: metrics.columns });
  return new dfd.DataFrame(metrics.rows.map((r) => metrics.columns.map((c) => r[c])), { columns: metrics.columns });
}

/**
 * A run's weights (no optimizer state) from a checkpoint: "final", "latest", or the step of a periodic one.
 * Names as in model/config.paramSpecs; linear weights are [in, out].
 */
export function loadWeights(ref: string, which: "final" | "latest" | number = "latest", store?: RunStore | string): { step: number; weights: NamedTensors } {
  const s = storeOf(store);
  const ckpt = s.readCheckpoint(s.resolve(ref), which);
  const weights: NamedTensors = new Map([...ckpt.tensors].filter(([name]) => !Optimizer.isStateName(name)));
  return { step: ckpt.step, weights };
}
