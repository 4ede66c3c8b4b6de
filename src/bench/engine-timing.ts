// Milliseconds per training step of the paper's model (x/y mod 97, half the table) on one engine.

import { encodeInputs, makeDataset, modelDims } from "../data/dataset";
import type { Batch } from "../engines/engine";
import { createEngine, EngineChoice } from "../engines/index";
import type { KernelChoice } from "../engines/fast/kernels";
import { TfjsBackendChoice } from "../engines/tfjs/backend";
import { initParams, ModelDims } from "../model/config";
import { BatchSampler } from "../training/batches";
import { paperConfig, resolveBatchSize, RunConfig } from "../config/run-config";

export interface MsPerStep {
  mean: number;
  median: number;
  min: number;
}

export interface BenchResult {
  engine: string;
  backend: string;
  batchSize: number;
  steps: number;
  warmup: number;
  msPerStep: MsPerStep;
}

/**
 * Whether to time another step when timing for about `seconds`: until the budget is spent, and at least 3
 * steps, or 2 when the first one took over half the budget.
 */
export function wantAnotherStep(timesMs: readonly number[], seconds: number): boolean {
  const budgetMs = seconds * 1000;
  const spent = timesMs.reduce((a, b) => a + b, 0);
  const minSteps = timesMs.length > 0 && timesMs[0] > budgetMs / 2 ? 2 : 3;
  return timesMs.length < minSteps || (spent < budgetMs && timesMs.length < 10000);
}

function summarize(times: number[]): MsPerStep {
  const sorted = [...times].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { mean: sorted.reduce((a, b) => a + b, 0) / sorted.length, median, min: sorted[0] };
}

/** The paper's model and data as every benchmark times them: x/y mod 97, half the table for training. */
export interface PaperBench {
  cfg: RunConfig;
  dims: ModelDims;
  train: Batch;
  batchSize: number;
}

export function paperBench(batchSize: number | "paper" | "full"): PaperBench {
  const cfg = paperConfig();
  const ds = makeDataset(cfg.data);
  const train = { size: ds.train.size, inputs: encodeInputs(ds, ds.train), targets: ds.train.answer };
  return { cfg, dims: modelDims(ds), train, batchSize: resolveBatchSize(batchSize, train.size) };
}

/** How many steps to time: `steps: "auto"` times for about `seconds` (see timeSteps). */
export interface TimingOptions {
  steps: number | "auto";
  warmup: number;
  seconds?: number;
}

/**
 * Times `timeStep` (one step, returning its milliseconds) after untimed warmup steps. `steps: "auto"` times
 * steps for about `seconds` (default 8; see wantAnotherStep); then `warmup` is at most 2 and at least 1,
 * and a first step that takes over half the budget is the only warmup step. `afterWarmup` runs between the
 * warmup and the timed steps (concurrent benchmarks start timing together there).
 */
export async function timeSteps(
  timeStep: () => Promise<number>,
  opts: TimingOptions & { afterWarmup?: () => Promise<void> },
): Promise<{ steps: number; warmup: number; msPerStep: MsPerStep }> {
  const seconds = opts.seconds ?? 8;
  let warmup = 0;
  const times: number[] = [];
  if (opts.steps === "auto") {
    const first = await timeStep();
    warmup = 1;
    if (opts.warmup >= 2 && first <= (seconds * 1000) / 2) {
      await timeStep();
      warmup = 2;
    }
    await opts.afterWarmup?.();
    while (wantAnotherStep(times, seconds)) times.push(await timeStep());
  } else {
    for (; warmup < opts.warmup; warmup++) await timeStep();
    await opts.afterWarmup?.();
    for (let i = 0; i < opts.steps; i++) times.push(await timeStep());
  }
  return { steps: times.length, warmup, msPerStep: summarize(times) };
}

/** Milliseconds since `t0` (process.hrtime.bigint()). */
export const msSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

/** Times training steps of the paper's model on one engine (see timeSteps). */
export async function benchmarkEngine(
  opts: TimingOptions & {
    engine?: EngineChoice;
    backend?: TfjsBackendChoice;
    kernels?: KernelChoice;
    threads?: number;
    batchSize: number | "paper" | "full";
    afterWarmup?: () => Promise<void>;
  },
): Promise<BenchResult> {
  const { cfg, dims, train, batchSize } = paperBench(opts.batchSize);
  const { engine } = await createEngine({
    engine: opts.engine,
    backend: opts.backend,
    kernels: opts.kernels,
    threads: opts.threads,
  });
  try {
    engine.initialize({ model: cfg.model, dims, optimizer: cfg.optimizer, seed: 0 }, initParams(cfg.model, dims, 0));
    const sampler = new BatchSampler(train, batchSize, 0, dims.seqLen);
    let step = 0;
    // a step's time ends when its work is done (flush: a GPU engine only queues it)
    const timeStep = async (): Promise<number> => {
      const batch = sampler.at(step);
      const t0 = process.hrtime.bigint();
      await engine.trainStep(batch, step);
      await engine.flush();
      step++;
      return msSince(t0);
    };
    const timed = await timeSteps(timeStep, opts);
    return { engine: engine.name, backend: engine.backend, batchSize, ...timed };
  } finally {
    engine.dispose();
  }
}
