// `grok bench`: milliseconds per training step of the paper's model (x/y mod 97, half the table) on an engine.

import { parseArgs } from "node:util";
import { encodeInputs, makeDataset } from "../data/dataset";
import { createEngine, EngineChoice } from "../engines/index";
import { TfjsBackendChoice } from "../engines/tfjs/backend";
import { initParams, ModelDims } from "../model/config";
import { ConfigError, paperConfig, resolveBatchSize } from "../training/config";
import { BatchSampler } from "../training/batches";

export interface BenchResult {
  engine: string;
  backend: string;
  batchSize: number;
  steps: number;
  msPerStep: { mean: number; median: number; min: number };
}

/** Times `steps` training steps after `warmup` untimed ones. */
export async function benchmarkEngine(opts: {
  engine?: EngineChoice;
  backend?: TfjsBackendChoice;
  batchSize: number | "paper" | "full";
  steps: number;
  warmup: number;
}): Promise<BenchResult> {
  const cfg = paperConfig();
  const ds = makeDataset(cfg.data);
  const dims: ModelDims = { vocabSize: ds.vocabSize, numSymbols: ds.numSymbols, seqLen: ds.seqLen };
  const { engine } = await createEngine({ engine: opts.engine, backend: opts.backend });
  try {
    engine.initialize({ model: cfg.model, dims, optimizer: cfg.optimizer, seed: 0 }, initParams(cfg.model, dims, 0));
    const train = { size: ds.train.size, inputs: encodeInputs(ds, ds.train), targets: ds.train.answer };
    const batchSize = resolveBatchSize(opts.batchSize, train.size);
    const sampler = new BatchSampler(train, batchSize, 0, dims.seqLen);
    const times: number[] = [];
    for (let step = 0; step < opts.warmup + opts.steps; step++) {
      const batch = sampler.at(step);
      const t0 = process.hrtime.bigint();
      engine.trainStep(batch, step);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (step >= opts.warmup) times.push(ms);
    }
    times.sort((a, b) => a - b);
    return {
      engine: engine.name,
      backend: engine.backend,
      batchSize,
      steps: opts.steps,
      msPerStep: { mean: times.reduce((a, b) => a + b, 0) / times.length, median: times[Math.floor(times.length / 2)], min: times[0] },
    };
  } finally {
    engine.dispose();
  }
}

export async function runBenchmark(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      "batch-size": { type: "string" },
      steps: { type: "string" },
      warmup: { type: "string" },
      engine: { type: "string" },
      backend: { type: "string" },
      json: { type: "boolean" },
    },
    strict: true,
  });
  const int = (name: string, fallback: number, min: number) => {
    const raw = values[name as keyof typeof values];
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (!Number.isInteger(v) || v < min) throw new ConfigError(`--${name} needs an integer ≥ ${min} (got "${raw}")`);
    return v;
  };
  const rawBatch = values["batch-size"] ?? "512";
  const batchSize = rawBatch === "full" || rawBatch === "paper" ? rawBatch : int("batch-size", 512, 1);
  const result = await benchmarkEngine({
    engine: values.engine as EngineChoice | undefined,
    backend: values.backend as TfjsBackendChoice | undefined,
    batchSize,
    steps: int("steps", 10, 1),
    warmup: int("warmup", 2, 0),
  });
  if (values.json) process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  else {
    const m = result.msPerStep;
    process.stdout.write(
      `paper model (2 layers, width 128, x/y mod 97, 50%), batch ${result.batchSize}, engine ${result.engine} on ${result.backend}: ` +
        `${m.mean.toFixed(1)} ms/step mean, ${m.median.toFixed(1)} median, ${m.min.toFixed(1)} min over ${result.steps} steps\n`,
    );
  }
  return 0;
}
