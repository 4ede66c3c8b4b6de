// The webgpu engine against the fast engine (TypeScript kernels) on a real WebGPU adapter (lavapipe in CI):
// loss and every gradient (softmax and StableMax), each optimizer's update (⊥Grad too), a resumed run, a
// 200-step training curve, and how the engine is selected. The two engines run the same model sequence
// (src/engines/shared) on different kernel sets, and the WGSL kernels sum in f32 where the TypeScript ones
// sum in double, so they agree to rounding: each tensor within 1e-4 of its largest element (normwise, as
// test/webgpu.test.ts explains).
// Without the `webgpu` package or an adapter the tests skip with the reason, unless GROK_REQUIRE_WEBGPU=1.

import assert from "node:assert/strict";
import { test } from "node:test";
import { createEngine } from "../src/engines";
import { Batch } from "../src/engines/engine";
import { FastEngine } from "../src/engines/fast/engine";
import { hardwareAdapter, loadNodeGpu, WebGpu } from "../src/engines/webgpu/device";
import { WebGpuEngine } from "../src/engines/webgpu/engine";
import { initParams, ModelConfig, ModelDims, PAPER_TRANSFORMER } from "../src/model/config";
import { Optimizer, OptimizerConfig, PAPER_OPTIMIZER } from "../src/optim/optimizer";
import { train } from "../src/training/trainer";
import { UserError } from "../src/util/errors";
import { cloneTensors, NamedTensors } from "../src/util/tensors";
import { CONFIGS, randomBatch, SMALL_DIMS, tempStore, tinyConfig } from "./helpers";
import { webGpuForTests } from "./webgpu-device";

const deviceFor = webGpuForTests();

function gpuTest(name: string, fn: (webgpu: WebGpu) => Promise<void>): void {
  test(name, async (t) => {
    const webgpu = await deviceFor(t);
    if (webgpu) await fn(webgpu);
  });
}

/** max_i |a_i − b_i| ≤ tol · max_i |b_i| (a NaN fails). */
function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, what: string, tol = 1e-4): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  let scale = 0;
  let err = 0;
  for (let i = 0; i < b.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    const d = Math.abs(a[i] - b[i]);
    err = Number.isNaN(d) ? Infinity : Math.max(err, d);
  }
  assert.ok(err <= tol * scale, `${what}: max error ${err.toExponential(2)} > ${tol} × ${scale.toExponential(2)}`);
}

/** Both engines set up alike: the fast engine on TypeScript kernels, the webgpu engine on the shared device. */
function engines(webgpu: WebGpu, model: ModelConfig, dims: ModelDims, optimizer: OptimizerConfig, seed = 11) {
  const fast = FastEngine.create("typescript");
  const gpu = new WebGpuEngine(webgpu);
  const weights = initParams(model, dims, 5);
  for (const e of [fast, gpu]) e.initialize({ model, dims, optimizer, seed }, weights);
  return { fast, gpu, weights };
}

async function assertSameGradients(fast: FastEngine, gpu: WebGpuEngine, batch: Batch, step: number, what: string) {
  const a = await gpu.gradients(batch, step);
  const b = await fast.gradients(batch, step);
  assert.ok(Math.abs(a.loss - b.loss) <= 1e-4 * Math.abs(b.loss), `${what}: loss ${a.loss} vs ${b.loss}`);
  assert.ok(Math.abs(a.accuracy - b.accuracy) <= 1 / batch.size, `${what}: accuracy ${a.accuracy} vs ${b.accuracy}`);
  assert.deepEqual([...a.grads.keys()], [...b.grads.keys()]);
  for (const [name, g] of b.grads) {
    assert.ok(
      g.some((v) => v !== 0),
      `${what}: ${name} has a nonzero gradient to compare`,
    );
    assertClose(a.grads.get(name)!, g, `${what}: gradient ${name}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// loss and gradients

for (const [name, model] of CONFIGS) {
  for (const dropout of [0, 0.2]) {
    const what = `${name}${dropout ? ", dropout" : ""}`;
    gpuTest(`loss and every gradient match the fast engine: ${what}`, async (webgpu) => {
      const { fast, gpu } = engines(webgpu, { ...model, dropout } as ModelConfig, SMALL_DIMS, PAPER_OPTIMIZER);
      // 40 examples over 11 symbols: most share their x with others, exercising the shared prefix
      await assertSameGradients(fast, gpu, randomBatch(SMALL_DIMS, 40, 3), 6, what);
      gpu.dispose();
    });
  }
}

for (const [name, model] of CONFIGS) {
  gpuTest(`StableMax: loss and every gradient match the fast engine: ${name}`, async (webgpu) => {
    const m = { ...model, output: "stablemax" } as ModelConfig;
    const { fast, gpu } = engines(webgpu, m, SMALL_DIMS, PAPER_OPTIMIZER);
    await assertSameGradients(fast, gpu, randomBatch(SMALL_DIMS, 40, 3), 6, `StableMax, ${name}`);
    gpu.dispose();
  });
}

gpuTest(
  "loss and every gradient match on the paper's model (97 symbols, width 128), with weight noise",
  async (webgpu) => {
    const dims: ModelDims = { vocabSize: 99, numSymbols: 97, seqLen: 4 };
    const optimizer = { ...PAPER_OPTIMIZER, weightNoise: 0.01 };
    const { fast, gpu } = engines(webgpu, PAPER_TRANSFORMER, dims, optimizer);
    await assertSameGradients(fast, gpu, randomBatch(dims, 64, 4), 2, "paper model");
    gpu.dispose();
  },
);

for (const output of ["softmax", "stablemax"] as const) {
  gpuTest(`evaluation and logits match the fast engine (${output})`, async (webgpu) => {
    const model = { ...CONFIGS[1][1], output } as ModelConfig;
    const { fast, gpu } = engines(webgpu, model, SMALL_DIMS, PAPER_OPTIMIZER);
    const set = randomBatch(SMALL_DIMS, 300, 9);
    const [a, b] = [await gpu.evaluate(set), await fast.evaluate(set)];
    assert.equal(a.count, 300);
    assert.ok(Math.abs(a.loss - b.loss) <= 1e-4 * b.loss, `loss ${a.loss} vs ${b.loss}`);
    assert.ok(Math.abs(a.accuracy - b.accuracy) <= 1 / 300, `accuracy ${a.accuracy} vs ${b.accuracy}`);
    assertClose(await gpu.logits(set), await fast.logits(set), "logits");
    gpu.dispose();
  });
}

// ---------------------------------------------------------------------------------------------------
// the optimizers: each update against optim/optimizer.ts applied to the same gradients
//
// Adam's update m/(√v + ε) is about ±lr for any gradient far above ε, so a gradient that cancels to near
// zero (a dead ReLU unit, a symmetric position) turns rounding-level differences between the engines'
// gradients into whole steps of opposite sign. The update is therefore checked on the GPU's own gradients
// (gradients() computes exactly what trainStep() then uses), while the gradients are checked above.

const OPTIMIZERS: [string, Partial<OptimizerConfig>][] = [
  ["AdamW toward zero, warmup", { warmupSteps: 10 }],
  ["AdamW toward the initial weights", { decayToward: "init", weightDecay: 0.5 }],
  ["Adam with L2", { kind: "adam", weightDecay: 0.1 }],
  ["AdamW with update noise and weight noise", { updateNoise: 0.5, weightNoise: 0.01 }],
  ["AdamW with Grokfast", { grokfast: { alpha: 0.9, lambda: 2 } }],
  [
    "SGD, momentum, L2 toward init, update noise",
    { kind: "sgd", lr: 0.05, momentum: 0.9, weightDecay: 0.1, decayToward: "init", updateNoise: 0.1 },
  ],
  ["SGD plain, Grokfast", { kind: "sgd", lr: 0.1, momentum: 0, weightDecay: 0, grokfast: { alpha: 0.8, lambda: 1 } }],
  // ⊥Grad's dot products are f32 sums on the GPU, so its gradients differ from the optimizer's by rounding,
  // and a weight near 1 may land one f32 ulp (6e-8) apart: a learning rate without warmup makes the change
  // large enough (~3e-2) that one ulp is far below 1e-4 of it
  ["⊥AdamW without weight decay", { weightDecay: 0, orthogonalGrad: true, lr: 1e-2, warmupSteps: 0 }],
  ["⊥Grad after Grokfast, SGD", { kind: "sgd", lr: 0.1, grokfast: { alpha: 0.8, lambda: 1 }, orthogonalGrad: true }],
];

/** Every tensor's change from `start` agrees (so a wrong small update cannot hide behind the weights). */
function assertSameChange(got: NamedTensors, expected: NamedTensors, start: NamedTensors, what: string) {
  assert.deepEqual([...got.keys()], [...expected.keys()], `${what}: names`);
  for (const [name, e] of expected) {
    const s = start.get(name)!.data;
    const change = (t: Float32Array) => Float64Array.from(t, (v, i) => v - s[i]);
    const moved = change(e.data);
    assert.ok(
      moved.some((v) => v !== 0),
      `${what}: ${name} changed`,
    );
    assertClose(change(got.get(name)!.data), moved, `${what}: ${name}`);
  }
}

for (const [name, over] of OPTIMIZERS) {
  gpuTest(`the update matches optim/optimizer.ts over 3 steps: ${name}`, async (webgpu) => {
    const optimizer = { ...PAPER_OPTIMIZER, ...over } as OptimizerConfig;
    const model = CONFIGS[0][1];
    const seed = 11;
    const gpu = new WebGpuEngine(webgpu);
    const start = initParams(model, SMALL_DIMS, 5);
    gpu.initialize({ model, dims: SMALL_DIMS, optimizer, seed }, start);
    const cpuWeights = cloneTensors(start);
    const reference = new Optimizer(optimizer, seed, cpuWeights);
    for (let step = 0; step < 3; step++) {
      const batch = randomBatch(SMALL_DIMS, 24, 20 + step);
      const { grads } = await gpu.gradients(batch, step);
      reference.update(cpuWeights, grads, step);
      await gpu.trainStep(batch, step);
    }
    assertSameChange(await gpu.readWeights(), cpuWeights, start, `${name}: weights`);
    // the state: the same slots under the same names ("init" is the initial weights themselves)
    const state = reference.state(cpuWeights);
    const gpuState = await gpu.readOptimizerState();
    assert.deepEqual([...gpuState.keys()].sort(), [...state.keys()].sort(), `${name}: state names`);
    for (const [key, t] of state) assertClose(gpuState.get(key)!.data, t.data, `${name}: ${key}`);
    gpu.dispose();
  });
}

gpuTest("a run resumed from read-back weights and optimizer state continues exactly", async (webgpu) => {
  const optimizer = { ...PAPER_OPTIMIZER, decayToward: "init", grokfast: { alpha: 0.9, lambda: 2 } } as OptimizerConfig;
  const model = { ...CONFIGS[0][1], dropout: 0.1 } as ModelConfig;
  const batches = [0, 1, 2, 3].map((s) => randomBatch(SMALL_DIMS, 16, 40 + s));
  const { gpu: whole } = engines(webgpu, model, SMALL_DIMS, optimizer);
  for (let s = 0; s < 4; s++) await whole.trainStep(batches[s], s);
  const { gpu: first } = engines(webgpu, model, SMALL_DIMS, optimizer);
  for (let s = 0; s < 2; s++) await first.trainStep(batches[s], s);
  const [weights, state] = [await first.readWeights(), await first.readOptimizerState()];
  const resumed = new WebGpuEngine(webgpu);
  resumed.initialize({ model, dims: SMALL_DIMS, optimizer, seed: 11 }, initParams(model, SMALL_DIMS, 99));
  resumed.writeWeights(weights);
  resumed.writeOptimizerState(state);
  for (let s = 2; s < 4; s++) await resumed.trainStep(batches[s], s);
  // the GPU computes the same step the same way: identical, not merely close
  assert.deepEqual(await resumed.readWeights(), await whole.readWeights());
  assert.deepEqual(await resumed.readOptimizerState(), await whole.readOptimizerState());
  assert.throws(() => resumed.writeOptimizerState(new Map()), /optimizer state is missing optim\.m\./);
  for (const e of [whole, first, resumed]) e.dispose();
});

// ---------------------------------------------------------------------------------------------------
// training and selection

const quiet = { progress: false, log: () => {} };

gpuTest("200 training steps on the webgpu and the fast engine give the same curve", async () => {
  const cfg = tinyConfig({ steps: 200, batchSize: 16 });
  const gpu = await train(cfg, { store: tempStore("curve-webgpu"), engine: "webgpu", ...quiet });
  const fast = await train(cfg, { store: tempStore("curve-fast-ts"), engine: "fast", kernels: "typescript", ...quiet });
  assert.equal(gpu.engine, "webgpu");
  assert.equal(gpu.metrics.rows.length, fast.metrics.rows.length);
  gpu.metrics.rows.forEach((r, i) => {
    const f = fast.metrics.rows[i];
    assert.equal(r.step, f.step);
    // rounding differences grow over 200 steps of training; 1e-3 as between the fast and tfjs engines
    for (const col of ["train_loss", "val_loss", "weight_norm"])
      assert.ok(
        Math.abs(r[col] - f[col]) <= 1e-3 * Math.abs(f[col]) + 1e-4,
        `step ${r.step} ${col}: webgpu ${r[col]} vs fast ${f[col]}`,
      );
    for (const col of ["train_acc", "val_acc"])
      assert.ok(Math.abs(r[col] - f[col]) <= 0.02, `step ${r.step} ${col}: webgpu ${r[col]} vs fast ${f[col]}`);
  });
});

gpuTest("--engine webgpu names the adapter; auto never takes a software adapter", async (webgpu) => {
  const created = await createEngine({ engine: "webgpu" });
  assert.equal(created.engine.name, "webgpu");
  assert.match(created.description, /^engine webgpu on .*(software|hardware) adapter/);
  created.engine.dispose();
  const auto = await createEngine({ engine: "auto" });
  if (webgpu.adapter.software) {
    // asked directly (past the look for a GPU device node), Dawn's adapter here is software: not taken
    const loaded = loadNodeGpu();
    assert.ok(loaded.ok);
    assert.equal(await hardwareAdapter(loaded.gpu), null, "a software adapter is no hardware adapter");
    assert.equal(await hardwareAdapter(), null);
    assert.notEqual(auto.engine.name, "webgpu", `auto took ${auto.description}`);
  } else {
    assert.equal(auto.engine.name, "webgpu");
  }
  auto.engine.dispose();
});

test("without an adapter, the webgpu engine cannot start and says why (a UserError: exit 2)", async () => {
  const noAdapter = { requestAdapter: async () => null } as unknown as GPU;
  await assert.rejects(
    WebGpuEngine.create(noAdapter),
    (err: Error) => err instanceof UserError && /^engine webgpu cannot start: no WebGPU adapter/.test(err.message),
  );
  assert.equal(await hardwareAdapter(noAdapter), null);
});
