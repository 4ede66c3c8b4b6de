// The webgpu pack engine on a real WebGPU adapter (lavapipe in CI): runs trained together in one pack get
// exactly, bit for bit, what each gets alone in a pack of one (the webgpu engine), whatever their seeds,
// data, steps and hyperparameters; finished runs leave without disturbing the others; setups that cannot
// share a pack, a lost device and a pack too big for the adapter are errors that say so.
// Without the `webgpu` package or an adapter the tests skip with the reason, unless GROK_REQUIRE_WEBGPU=1.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Dataset, encodeInputs, makeDataset, modelDims } from "../src/data/dataset";
import { Batch, DeviceError, EngineSetup, packConflict } from "../src/engines/engine";
import { packCapacity } from "../src/engines/webgpu/capacity";
import { openWebGpu, WebGpu } from "../src/engines/webgpu/device";
import { WebGpuEngine } from "../src/engines/webgpu/engine";
import { WebGpuPackEngine } from "../src/engines/webgpu/pack-engine";
import { initParams, ModelConfig } from "../src/model/config";
import { OptimizerConfig, PAPER_OPTIMIZER } from "../src/optim/optimizer";
import { BatchSampler } from "../src/training/batches";
import { UserError } from "../src/util/errors";
import { Rng } from "../src/util/rng";
import { CONFIGS } from "./helpers";
import { requireWebGpu, webGpuForTests } from "./webgpu-device";

const deviceFor = webGpuForTests();

function gpuTest(name: string, fn: (webgpu: WebGpu) => Promise<void>): void {
  test(name, async (t) => {
    const webgpu = await deviceFor(t);
    if (webgpu) await fn(webgpu);
  });
}

const BATCH = 16;

/**
 * One run of a pack: its setup, its data (x+y mod 11 at its own training fraction) and its first step; with
 * a sampler, its batches are the trainer's (BatchSampler: an epoch's last batch is the rest of the set).
 */
interface RunSpec {
  setup: EngineSetup;
  data: Dataset;
  firstStep: number;
  sampler?: BatchSampler;
}

function runSpec(
  model: ModelConfig,
  seed: number,
  trainFraction: number,
  optimizer: Partial<OptimizerConfig>,
  firstStep = 0,
): RunSpec {
  const data = makeDataset({ op: "add", modulus: 11, trainFraction, splitSeed: seed, outliers: 0 });
  const setup = { model, dims: modelDims(data), optimizer: { ...PAPER_OPTIMIZER, ...optimizer }, seed };
  return { setup, data, firstStep };
}

/** Run `spec`'s batch at step `step`: its sampler's, or BATCH training examples drawn from its training set. */
function batchAt(spec: RunSpec, step: number): Batch {
  const { data } = spec;
  if (spec.sampler) return spec.sampler.at(step);
  const rng = new Rng(spec.setup.seed * 1000 + step);
  const positions = Int32Array.from({ length: BATCH }, () => rng.int(data.train.size));
  return {
    size: BATCH,
    inputs: encodeInputs(data, data.train, positions),
    targets: Int32Array.from(positions, (p) => data.train.answer[p]),
  };
}

function validationSet(spec: RunSpec): Batch {
  const { data } = spec;
  return { size: data.val.size, inputs: encodeInputs(data, data.val), targets: data.val.answer };
}

/** The distinct prefixes (x, op) of a batch. */
function prefixCount(batch: Batch): number {
  return new Set(Array.from({ length: batch.size }, (_, e) => batch.inputs[e * 4])).size;
}

const weightsOf = (spec: RunSpec) => initParams(spec.setup.model, spec.setup.dims, spec.setup.seed);

/** A run alone: the webgpu engine (a pack of one) after `steps` steps from its first. */
async function trainAlone(webgpu: WebGpu, spec: RunSpec, steps: number): Promise<WebGpuEngine> {
  const engine = new WebGpuEngine(webgpu);
  engine.initialize(spec.setup, weightsOf(spec));
  for (let s = spec.firstStep; s < spec.firstStep + steps; s++) await engine.trainStep(batchAt(spec, s), s);
  return engine;
}

/** Trains a pack `steps` steps, each run from where it is (`at`, advanced). */
async function trainPack(pack: WebGpuPackEngine, specs: RunSpec[], at: number[], steps: number): Promise<void> {
  for (let k = 0; k < steps; k++) {
    await pack.trainStep(
      specs.map((spec, r) => batchAt(spec, at[r])),
      at,
    );
    at.forEach((_, r) => at[r]++);
  }
}

/** Run r of the pack and `alone` agree exactly: weights, optimizer state, evaluation and logits. */
async function assertSameRun(pack: WebGpuPackEngine, r: number, alone: WebGpuEngine, spec: RunSpec, what: string) {
  const run = pack.run(r);
  assert.deepEqual(await run.readWeights(), await alone.readWeights(), `${what}: run ${r} weights`);
  assert.deepEqual(await run.readOptimizerState(), await alone.readOptimizerState(), `${what}: run ${r} state`);
  const set = validationSet(spec);
  assert.deepEqual(await run.evaluate(set), await alone.evaluate(set), `${what}: run ${r} evaluation`);
  assert.deepEqual(await run.logits(set), await alone.logits(set), `${what}: run ${r} logits`);
}

/** Three runs of one model: different seeds, data, decays (one toward init), and one with Grokfast and noise. */
function threeRuns(model: ModelConfig, kind: OptimizerConfig["kind"], firstSteps = [0, 0, 0]): RunSpec[] {
  const sgd = kind === "sgd" ? { lr: 0.05, momentum: 0.9 } : {};
  return [
    runSpec(model, 1, 0.15, { kind, ...sgd }, firstSteps[0]),
    runSpec(
      model,
      2,
      0.5,
      { kind, ...sgd, weightDecay: 0.5, decayToward: "init", lr: 3e-3, beta2: 0.99 },
      firstSteps[1],
    ),
    runSpec(
      model,
      3,
      0.8,
      {
        kind,
        warmupSteps: 2,
        weightDecay: 0.1,
        grokfast: { alpha: 0.9, lambda: 2 },
        updateNoise: 0.01,
        weightNoise: 0.01,
      },
      firstSteps[2],
    ),
  ];
}

/** A pack of the runs equals each run alone: gradients at the first step, then after K steps. */
async function assertPackEqualsAlone(webgpu: WebGpu, specs: RunSpec[], what: string, K = 5): Promise<void> {
  const pack = new WebGpuPackEngine(webgpu);
  await pack.initialize(
    specs.map((s) => s.setup),
    specs.map(weightsOf),
  );
  const at = specs.map((s) => s.firstStep);
  const grads = await pack.gradients(
    specs.map((s, r) => batchAt(s, at[r])),
    at,
  );
  for (const [r, spec] of specs.entries()) {
    const alone = new WebGpuEngine(webgpu);
    alone.initialize(spec.setup, weightsOf(spec));
    assert.deepEqual(grads[r], await alone.gradients(batchAt(spec, at[r]), at[r]), `${what}: run ${r} gradients`);
    alone.dispose();
  }
  await trainPack(pack, specs, at, K);
  for (const [r, spec] of specs.entries()) {
    const alone = await trainAlone(webgpu, spec, K);
    await assertSameRun(pack, r, alone, spec, what);
    alone.dispose();
  }
  pack.dispose();
}

// ---------------------------------------------------------------------------------------------------
// a pack equals its runs alone

gpuTest(
  "a pack's runs equal their runs alone, bit for bit: the paper's transformer (post-LN, sinusoidal)",
  async (webgpu) => {
    const specs = threeRuns(CONFIGS[0][1], "adamw");
    // the runs' batches have different numbers of distinct prefixes: the pack pads the smaller ones
    const counts = specs.map((s) => prefixCount(batchAt(s, 0)));
    assert.ok(new Set(counts).size > 1, `distinct prefixes per run: ${counts}`);
    await assertPackEqualsAlone(webgpu, specs, "post-LN");
  },
);

const PACKS: [string, ModelConfig, OptimizerConfig["kind"]][] = [
  ["pre-LN, learned positions, Adam", CONFIGS[1][1], "adam"],
  ["post-LN with dropout, SGD", { ...CONFIGS[0][1], dropout: 0.1 } as ModelConfig, "sgd"],
  ["pre-LN, sinusoidal, 3 layers, dropout", { ...CONFIGS[3][1], dropout: 0.2 } as ModelConfig, "adamw"],
  ["the MLP", CONFIGS[4][1], "adamw"],
  ["the MLP with dropout, SGD", { ...CONFIGS[5][1], dropout: 0.1 } as ModelConfig, "sgd"],
];

for (const [name, model, kind] of PACKS)
  gpuTest(`a pack's runs equal their runs alone, bit for bit: ${name}`, async (webgpu) => {
    await assertPackEqualsAlone(webgpu, threeRuns(model, kind), name);
  });

gpuTest("a pack with ⊥Grad runs beside a plain one equals each run alone", async (webgpu) => {
  const model = CONFIGS[0][1];
  const specs = [
    runSpec(model, 1, 0.5, { weightDecay: 0 }),
    runSpec(model, 2, 0.5, { weightDecay: 0, orthogonalGrad: true, lr: 3e-3 }),
    runSpec(model, 3, 0.8, { weightDecay: 0.1, orthogonalGrad: true, grokfast: { alpha: 0.9, lambda: 2 } }),
  ];
  await assertPackEqualsAlone(webgpu, specs, "⊥Grad beside plain");
});

gpuTest("a pack of StableMax runs, one with ⊥AdamW, equals each run alone", async (webgpu) => {
  for (const model of [CONFIGS[1][1], CONFIGS[4][1]]) {
    const stablemax = { ...model, output: "stablemax" } as ModelConfig;
    const specs = [
      runSpec(stablemax, 1, 0.3, { weightDecay: 0 }),
      runSpec(stablemax, 2, 0.6, { weightDecay: 0, orthogonalGrad: true }),
    ];
    await assertPackEqualsAlone(webgpu, specs, `StableMax ${model.kind}`);
  }
});

gpuTest("runs at different steps in one pack equal their runs alone", async (webgpu) => {
  await assertPackEqualsAlone(webgpu, threeRuns(CONFIGS[1][1], "adamw", [0, 3, 7]), "mixed steps");
});

// training sets of 37, 50 and 64 examples at batch 16: epochs of 3, 4 and 4 steps, whose last batches have 5,
// 2 and 16 examples; from steps 2, 3 and 0 the first pack step has batches of 5, 2 and 16
const UNEVEN: [string, ModelConfig, OptimizerConfig["kind"]][] = [
  ["post-LN", CONFIGS[0][1], "adamw"],
  ["pre-LN, learned positions, dropout", { ...CONFIGS[1][1], dropout: 0.1 } as ModelConfig, "adam"],
  ["the MLP with dropout, SGD", { ...CONFIGS[5][1], dropout: 0.1 } as ModelConfig, "sgd"],
];

for (const [name, model, kind] of UNEVEN)
  gpuTest(`runs whose batches differ in size at a step equal their runs alone (${name})`, async (webgpu) => {
    const specs = threeRuns(model, kind, [2, 3, 0]).map((spec, r) => {
      const trainFraction = [37, 50, 64][r] / 121;
      const uneven = runSpec(model, spec.setup.seed, trainFraction, spec.setup.optimizer, spec.firstStep);
      const { data } = uneven;
      const set = { size: data.train.size, inputs: encodeInputs(data, data.train), targets: data.train.answer };
      return { ...uneven, sampler: new BatchSampler(set, BATCH, uneven.setup.seed, uneven.setup.dims.seqLen) };
    });
    assert.deepEqual(
      specs.map((s) => s.data.train.size),
      [37, 50, 64],
    );
    assert.deepEqual(
      specs.map((s) => batchAt(s, s.firstStep).size),
      [5, 2, 16],
    );
    // 9 steps: at least two epochs of every run, each last batch among them
    await assertPackEqualsAlone(webgpu, specs, `uneven batches, ${name}`, 9);
  });

gpuTest("after keep(), the runs that stay continue exactly as before", async (webgpu) => {
  const specs = threeRuns(CONFIGS[0][1], "adamw");
  const pack = new WebGpuPackEngine(webgpu);
  await pack.initialize(
    specs.map((s) => s.setup),
    specs.map(weightsOf),
  );
  const at = [0, 0, 0];
  await trainPack(pack, specs, at, 2);
  await pack.keep([2, 0]);
  assert.equal(pack.size, 2);
  const kept = [specs[2], specs[0]];
  await trainPack(pack, kept, [at[2], at[0]], 2);
  for (const [r, spec] of kept.entries()) {
    const alone = await trainAlone(webgpu, spec, 4);
    await assertSameRun(pack, r, alone, spec, "kept");
    alone.dispose();
  }
  assert.throws(() => pack.run(2), /pack of 2 runs has no run 2/);
  pack.dispose();
});

// ---------------------------------------------------------------------------------------------------
// errors

gpuTest("setups that cannot share a pack are rejected, saying why", async (webgpu) => {
  const [a] = threeRuns(CONFIGS[0][1], "adamw");
  const wider = runSpec({ ...CONFIGS[0][1], width: 32 } as ModelConfig, 2, 0.5, {});
  assert.match(packConflict(a.setup, wider.setup) ?? "", /the models differ in width \(16 vs 32\)/);
  const sgd = runSpec(CONFIGS[0][1], 2, 0.5, { kind: "sgd" });
  assert.match(packConflict(a.setup, sgd.setup) ?? "", /the optimizers differ \(adamw vs sgd\)/);
  const dropout = runSpec({ ...CONFIGS[0][1], dropout: 0.1 } as ModelConfig, 2, 0.5, {});
  assert.match(packConflict(a.setup, dropout.setup) ?? "", /dropout is on in one run \(0.1\) and off in the other/);
  const stablemax = runSpec({ ...CONFIGS[0][1], output: "stablemax" } as ModelConfig, 2, 0.5, {});
  assert.match(packConflict(a.setup, stablemax.setup) ?? "", /the outputs differ \(softmax vs stablemax\)/);
  const orthogonal = runSpec(CONFIGS[0][1], 2, 0.5, { orthogonalGrad: true });
  assert.equal(packConflict(a.setup, orthogonal.setup), null, "⊥Grad is a per-run flag");
  const otherRate = runSpec({ ...CONFIGS[0][1], dropout: 0.3 } as ModelConfig, 2, 0.5, {});
  assert.equal(packConflict(dropout.setup, otherRate.setup), null, "dropout rates may differ");
  assert.equal(packConflict(a.setup, runSpec(CONFIGS[0][1], 9, 0.3, { lr: 0.1 }).setup), null);
  const pack = new WebGpuPackEngine(webgpu);
  await assert.rejects(
    pack.initialize([a.setup, wider.setup], [weightsOf(a), weightsOf(wider)]),
    (err: Error) => err instanceof UserError && /runs 0 and 1 cannot share a pack: the models differ/.test(err.message),
  );
  await pack.initialize([a.setup, a.setup], [weightsOf(a), weightsOf(a)]);
  await assert.rejects(pack.trainStep([batchAt(a, 0)], [0, 0]), /pack of 2 runs: got 1 batches and 2 steps/);
  // the refused step left nothing behind: the pack trains on, and its runs are still each other's twins
  await pack.trainStep([batchAt(a, 0), batchAt(a, 0)], [0, 0]);
  assert.deepEqual(await pack.run(0).readWeights(), await pack.run(1).readWeights());
  pack.dispose();
});

test("a lost device rejects the next step and every read with DeviceError", async (t) => {
  const opened = await openWebGpu();
  if (!opened.ok) {
    if (requireWebGpu) assert.fail(`GROK_REQUIRE_WEBGPU=1 but ${opened.reason}`);
    return t.skip(opened.reason);
  }
  const specs = threeRuns(CONFIGS[0][1], "adamw");
  const pack = new WebGpuPackEngine(opened.gpu, true);
  await pack.initialize(
    specs.map((s) => s.setup),
    specs.map(weightsOf),
  );
  await trainPack(pack, specs, [0, 0, 0], 1);
  opened.gpu.device.destroy();
  const lost = (err: Error) => err instanceof DeviceError && err.kind === "lost" && /device lost/.test(err.message);
  await assert.rejects(trainPack(pack, specs, [1, 1, 1], 1), lost);
  await assert.rejects(pack.run(0).readWeights(), lost);
  await assert.rejects(pack.run(1).evaluate(validationSet(specs[1])), lost);
  await assert.rejects(pack.flush(), lost);
  assert.throws(() => pack.run(0).writeWeights(weightsOf(specs[0])), lost);
  pack.dispose();
});

gpuTest("a pack too big for the adapter is a UserError naming the pack size that fits", async (webgpu) => {
  const [spec] = threeRuns(CONFIGS[0][1], "adamw");
  const capacity = packCapacity(webgpu, spec.setup, BATCH);
  assert.ok(capacity.runs >= 3, `the adapter holds ${capacity.runs} small runs`);
  // room for two runs and a half: in the largest buffer, or in the memory budget
  const bufferLimit = Math.floor(2.5 * capacity.largestArrayPerRun);
  const smallBuffers: WebGpu = { ...webgpu, limits: { ...webgpu.limits, maxStorageBufferBindingSize: bufferLimit } };
  assert.equal(packCapacity(smallBuffers, spec.setup, BATCH).runs, 2);
  const limited: [string, WebGpuPackEngine][] = [
    ["maxStorageBufferBindingSize", new WebGpuPackEngine(smallBuffers)],
    ["a memory budget", new WebGpuPackEngine(webgpu, false, Math.floor(2.5 * capacity.bytesPerRun))],
  ];
  const three = [0, 1, 2].map(() => spec);
  for (const [limit, pack] of limited) {
    const tooMany = (err: Error) =>
      err instanceof UserError &&
      new RegExp(`^adapter .* holds at most 2 runs of this model, not 3 .*bounded by ${limit}`).test(err.message);
    // the parameters alone already exceed the room, or the activations do at the first step
    await pack
      .initialize(
        three.map((s) => s.setup),
        three.map(weightsOf),
      )
      .then(
        () =>
          assert.rejects(
            pack.trainStep(
              three.map((s) => batchAt(s, 0)),
              [0, 0, 0],
            ),
            tooMany,
          ),
        (err) => assert.ok(tooMany(err), err.message),
      );
    await pack.initialize(
      three.slice(0, 2).map((s) => s.setup),
      three.slice(0, 2).map(weightsOf),
    );
    await pack.trainStep([batchAt(spec, 0), batchAt(spec, 0)], [0, 0]);
    pack.dispose();
  }
});
