// Run-steps per second of a pack: R runs of the paper's model (x/y mod 97, half the table) trained together
// on one GPU, each with its own seed (weights, batches). A pack step trains every run one step; its time ends
// when the GPU has done the work (flush).

import type { EngineSetup } from "../engines/engine";
import { PackCapacity, packCapacity } from "../engines/webgpu/capacity";
import { openWebGpu, WebGpu } from "../engines/webgpu/device";
import { WebGpuPackEngine } from "../engines/webgpu/pack-engine";
import { initParams } from "../model/config";
import { UserError } from "../util/errors";
import { BatchSampler } from "../training/batches";
import { MsPerStep, msSince, PaperBench, paperBench, timeSteps, TimingOptions } from "./engine-timing";

/**
 * The design target of the webgpu engine: 4,000 run-steps per second for a pack of 64 runs of the paper's
 * model at batch 512 on an H100/H200-class GPU. A target, not a measurement.
 */
export const PACK_TARGET_RUN_STEPS_PER_SECOND = 4000;

export interface PackBenchResult {
  engine: string;
  backend: string;
  /** Runs in the pack. */
  runs: number;
  /** Each run's batch. */
  batchSize: number;
  steps: number;
  warmup: number;
  /** Milliseconds per pack step (every run one step). */
  msPerPackStep: MsPerStep;
  /** runs / the median seconds per pack step. */
  runStepsPerSecond: number;
}

/** Run r's setup in a benchmark pack: the paper's model and optimizer, seed r. */
const paperSetup = ({ cfg, dims }: PaperBench, seed: number): EngineSetup => ({
  model: cfg.model,
  dims,
  optimizer: cfg.optimizer,
  seed,
});

/** An open WebGPU device for benchmark packs, or a UserError saying why there is none. */
export async function openBenchGpu(): Promise<WebGpu> {
  const opened = await openWebGpu();
  if (!opened.ok) throw new UserError(`engine webgpu cannot start: ${opened.reason}`);
  return opened.gpu;
}

/**
 * How many runs of the paper's model, training at `batchSize`, the adapter's buffer limits allow in one pack.
 * A benchmark sets no memory budget of its own (a trainer's pack keeps to PACK_BUDGET_BYTES, since WebGPU
 * does not tell an adapter's memory): its pack takes what it needs, and the device's out-of-memory error,
 * which the engine reports as a capacity UserError, is the limit.
 */
export function paperPackCapacity(webgpu: WebGpu, batchSize: number | "paper" | "full"): PackCapacity {
  const bench = paperBench(batchSize);
  return packCapacity(webgpu, paperSetup(bench, 0), bench.batchSize, Infinity);
}

/**
 * Times pack steps of `runs` paper-model runs on a pack engine on `webgpu` (the device stays open); a
 * UserError when that many runs do not fit the adapter's buffer limits or its memory.
 */
export async function benchmarkPack(
  webgpu: WebGpu,
  opts: TimingOptions & { runs: number; batchSize: number | "paper" | "full" },
): Promise<PackBenchResult> {
  const bench = paperBench(opts.batchSize);
  const { cfg, dims, train, batchSize } = bench;
  const capacity = paperPackCapacity(webgpu, batchSize);
  if (opts.runs > capacity.runs)
    throw new UserError(
      `a pack of ${opts.runs}: the adapter's buffers hold at most ${capacity.runs} runs of the paper model at ` +
        `batch ${batchSize} (${capacity.limit})`,
    );
  const seeds = Array.from({ length: opts.runs }, (_, r) => r);
  const engine = new WebGpuPackEngine(webgpu, false, opts.runs * capacity.bytesPerRun);
  try {
    await engine.initialize(
      seeds.map((seed) => paperSetup(bench, seed)),
      seeds.map((seed) => initParams(cfg.model, dims, seed)),
    );
    const samplers = seeds.map((seed) => new BatchSampler(train, batchSize, seed, dims.seqLen));
    let step = 0;
    const timeStep = async (): Promise<number> => {
      const batches = samplers.map((s) => s.at(step));
      const t0 = process.hrtime.bigint();
      await engine.trainStep(
        batches,
        seeds.map(() => step),
      );
      await engine.flush();
      step++;
      return msSince(t0);
    };
    const { steps, warmup, msPerStep } = await timeSteps(timeStep, opts);
    return {
      engine: engine.name,
      backend: engine.backend,
      runs: opts.runs,
      batchSize,
      steps,
      warmup,
      msPerPackStep: msPerStep,
      runStepsPerSecond: opts.runs / (msPerStep.median / 1000),
    };
  } finally {
    engine.dispose();
  }
}
