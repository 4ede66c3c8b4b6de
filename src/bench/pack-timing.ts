// Run-steps per second of a pack: R runs of the paper's model (x/y mod 97, half the table) trained together
// on one GPU, each with its own seed (weights, batches). A pack step trains every run one step; its time ends
// when the GPU has done the work (flush).

import type { PackEngine } from "../engines/engine";
import { initParams } from "../model/config";
import { BatchSampler } from "../training/batches";
import { MsPerStep, msSince, paperBench, timeSteps, TimingOptions } from "./engine-timing";

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

/** Times pack steps of `runs` paper-model runs on the pack engine that `open` gives (disposed after). */
export async function benchmarkPack(
  open: () => Promise<PackEngine>,
  opts: TimingOptions & { runs: number; batchSize: number | "paper" | "full" },
): Promise<PackBenchResult> {
  const { cfg, dims, train, batchSize } = paperBench(opts.batchSize);
  const seeds = Array.from({ length: opts.runs }, (_, r) => r);
  const engine = await open();
  try {
    await engine.initialize(
      seeds.map((seed) => ({ model: cfg.model, dims, optimizer: cfg.optimizer, seed })),
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
