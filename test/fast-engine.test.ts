import assert from "node:assert/strict";
import { test } from "node:test";
import { Batch, Engine } from "../src/engines/engine";
import { FastEngine } from "../src/engines/fast/engine";
import { nativeKernelsAvailable } from "../src/engines/fast/load-kernels";
import { TfjsEngine } from "../src/engines/tfjs/engine";
import { initParams, ModelConfig, ModelDims } from "../src/model/config";
import { PAPER_OPTIMIZER } from "../src/optim/optimizer";
import { train } from "../src/training/trainer";
import { Rng } from "../src/util/rng";
import { NamedTensors } from "../src/util/tensors";
import { CONFIGS, randomBatch, SMALL_DIMS, tempStore, tinyConfig, withoutTime } from "./helpers";
import { referenceLogits } from "./reference-model";

const KERNELS = nativeKernelsAvailable() ? (["typescript", "native"] as const) : (["typescript"] as const);
if (!nativeKernelsAvailable()) {
  test(
    "native kernels are built",
    { skip: process.env.GROK_REQUIRE_NATIVE === "1" ? false : "the native addon is not built (npm run build:native)" },
    () => {
      assert.fail("GROK_REQUIRE_NATIVE=1 but the native kernels did not load");
    },
  );
}

const quiet = { progress: false, log: () => {} };

function setup(engine: Engine, model: ModelConfig, dims: ModelDims, seed: number) {
  engine.initialize({ model, dims, optimizer: PAPER_OPTIMIZER, seed }, initParams(model, dims, 5));
}

/** |a − b| ≤ tol·max|b| over the whole tensor. */
function assertClose(a: Float32Array, b: Float32Array, tol: number, what: string) {
  let scale = 0;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= tol * scale + 1e-12, `${what}[${i}]: ${a[i]} vs ${b[i]} (scale ${scale})`);
  }
}

for (const kernels of KERNELS) {
  for (const [name, model] of CONFIGS) {
    for (const dropout of [0, 0.2]) {
      test(`fast engine (${kernels} kernels) matches tfjs, loss and every gradient: ${name}${dropout ? ", dropout" : ""}`, async () => {
        const m = { ...model, dropout } as ModelConfig;
        const fast = FastEngine.create(kernels);
        const tfjs = await TfjsEngine.create();
        setup(fast, m, SMALL_DIMS, 11);
        setup(tfjs, m, SMALL_DIMS, 11);
        // 40 examples over 11 symbols: most share their x with others, exercising the shared prefix
        const batch = randomBatch(SMALL_DIMS, 40, 3);
        const a = await fast.gradients(batch, 6);
        const b = await tfjs.gradients(batch, 6);
        assert.ok(Math.abs(a.loss - b.loss) <= 1e-4 * Math.abs(b.loss), `loss ${a.loss} vs ${b.loss}`);
        assert.equal(a.accuracy, b.accuracy);
        assert.deepEqual([...a.grads.keys()].sort(), [...b.grads.keys()].sort());
        for (const [n, g] of b.grads) assertClose(a.grads.get(n)!, g, 1e-4, n);
        tfjs.dispose();
      });
    }
  }

  test(`fast engine (${kernels} kernels) logits match the float64 reference on the paper-sized model`, async () => {
    const model = { ...CONFIGS[0][1], layers: 2, width: 128, heads: 4 } as ModelConfig;
    const dims: ModelDims = { vocabSize: 99, numSymbols: 97, seqLen: 4 };
    const engine = FastEngine.create(kernels);
    setup(engine, model, dims, 0);
    const batch = randomBatch(dims, 12, 8);
    const logits = await engine.logits(batch);
    const weights = initParams(model, dims, 5);
    for (let b = 0; b < batch.size; b++) {
      const ref = referenceLogits(model, dims, weights, batch.inputs.subarray(b * 4, b * 4 + 4));
      for (let c = 0; c < 97; c++) {
        assert.ok(Math.abs(logits[b * 97 + c] - ref[c]) <= 1e-4 * (1 + Math.abs(ref[c])), `example ${b} class ${c}`);
      }
    }
  });
}

/** Mean StableMax cross-entropy of a batch in float64, on the float64 reference model's logits. */
function referenceStablemaxLoss(model: ModelConfig, dims: ModelDims, w: NamedTensors, batch: Batch): number {
  const s = (x: number) => (x >= 0 ? x + 1 : 1 / (1 - x));
  let total = 0;
  for (let b = 0; b < batch.size; b++) {
    const logits = referenceLogits(model, dims, w, batch.inputs.subarray(b * dims.seqLen, (b + 1) * dims.seqLen));
    total += Math.log(logits.reduce((sum, x) => sum + s(x), 0)) - Math.log(s(logits[batch.targets[b]]));
  }
  return total / batch.size;
}

for (const kernels of KERNELS) {
  for (const [name, model] of CONFIGS) {
    test(`fast engine (${kernels} kernels) StableMax loss and gradients vs float64 finite differences: ${name}`, async () => {
      const m = { ...model, output: "stablemax" } as ModelConfig;
      const weights = initParams(m, SMALL_DIMS, 5);
      const engine = FastEngine.create(kernels);
      engine.initialize({ model: m, dims: SMALL_DIMS, optimizer: PAPER_OPTIMIZER, seed: 11 }, weights);
      const batch = randomBatch(SMALL_DIMS, 12, 3);
      const { loss, grads } = await engine.gradients(batch, 0);
      const logits = await engine.logits(batch);
      assert.ok(logits.some((x) => x < 0) && logits.some((x) => x > 0), "logits on both sides of s's seam at 0");
      const refLoss = referenceStablemaxLoss(m, SMALL_DIMS, weights, batch);
      assert.ok(Math.abs(loss - refLoss) <= 1e-5 * (1 + refLoss), `loss ${loss} vs reference ${refLoss}`);
      // Central differences of the float64 loss along one random direction per tensor. With a shift of 1e-6
      // the difference quotient is accurate to ~1e-9 (float64 loss, O(h²) truncation) and ReLU kinks are
      // almost never crossed; the shift is recomputed from the float32 weights it lands on. The engine's
      // gradients are float32 through ~20 rounded operations (~1e-5 relative), so 1e-3 relative leaves
      // margin, while a wrong term of the StableMax gradient (a missing s′, a softmax in its place) is off
      // by far more.
      const rng = new Rng(99);
      const h = 1e-6;
      for (const tensor of weights.keys()) {
        const dir = rng.fillNormal(new Float32Array(weights.get(tensor)!.data.length));
        const shifted = (sign: number): NamedTensors =>
          new Map(
            [...weights].map(([n, t]) => [
              n,
              { shape: t.shape, data: n === tensor ? t.data.map((v, i) => v + sign * h * dir[i]) : t.data },
            ]),
          );
        const plus = shifted(1).get(tensor)!.data;
        const minus = shifted(-1).get(tensor)!.data;
        const g = grads.get(tensor)!;
        let analytic = 0;
        for (let i = 0; i < g.length; i++) analytic += (g[i] * (plus[i] - minus[i])) / (2 * h);
        const numeric =
          (referenceStablemaxLoss(m, SMALL_DIMS, shifted(1), batch) -
            referenceStablemaxLoss(m, SMALL_DIMS, shifted(-1), batch)) /
          (2 * h);
        assert.ok(
          Math.abs(analytic - numeric) <= 1e-3 * Math.abs(numeric) + 1e-5,
          `${tensor}: analytic ${analytic} vs numeric ${numeric}`,
        );
      }
    });
  }
}

test("200 training steps on the fast and the tfjs engine give the same curve", async () => {
  const cfg = tinyConfig({ steps: 200, batchSize: 16 });
  const fast = await train(cfg, { store: tempStore("curve-fast"), engine: "fast", ...quiet });
  const tfjs = await train(cfg, { store: tempStore("curve-tfjs"), engine: "tfjs", ...quiet });
  assert.equal(fast.engine, "fast");
  assert.equal(tfjs.engine, "tfjs");
  assert.equal(fast.metrics.rows.length, tfjs.metrics.rows.length);
  fast.metrics.rows.forEach((r, i) => {
    const t = tfjs.metrics.rows[i];
    assert.equal(r.step, t.step);
    for (const col of ["train_loss", "val_loss", "weight_norm"]) {
      assert.ok(
        Math.abs(r[col] - t[col]) <= 1e-3 * Math.abs(t[col]) + 1e-4,
        `step ${r.step} ${col}: fast ${r[col]} vs tfjs ${t[col]}`,
      );
    }
    for (const col of ["train_acc", "val_acc"])
      assert.ok(Math.abs(r[col] - t[col]) <= 0.02, `step ${r.step} ${col}: fast ${r[col]} vs tfjs ${t[col]}`);
  });
});

test("the same seed on the fast engine and the same thread count gives identical metrics", async () => {
  const cfg = tinyConfig({ steps: 30, batchSize: 16 });
  const a = await train(cfg, { store: tempStore("same-a"), engine: "fast", threads: 2, ...quiet });
  const b = await train(cfg, { store: tempStore("same-b"), engine: "fast", threads: 2, ...quiet });
  assert.deepEqual(withoutTime(a.metrics.rows), withoutTime(b.metrics.rows));
});
