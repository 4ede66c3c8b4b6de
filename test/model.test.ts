import assert from "node:assert/strict";
import { test } from "node:test";
import { dropoutMasks } from "../src/engines/engine";
import { TfjsEngine } from "../src/engines/tfjs/engine";
import {
  countParams,
  initParams,
  ModelConfig,
  ModelDims,
  PAPER_TRANSFORMER,
  paramSpecs,
  sinusoidalPositions,
} from "../src/model/config";
import { PAPER_OPTIMIZER } from "../src/optim/optimizer";
import { Rng } from "../src/util/rng";
import { NamedTensors } from "../src/util/tensors";
import { CONFIGS, randomBatch, SMALL_DIMS } from "./helpers";
import { referenceLogits, referenceLoss } from "./reference-model";

const PAPER_DIMS: ModelDims = { vocabSize: 99, numSymbols: 97, seqLen: 4 };

async function engineFor(model: ModelConfig, dims: ModelDims, weights: NamedTensors, seed = 0) {
  const engine = await TfjsEngine.create("auto");
  engine.initialize({ model, dims, optimizer: PAPER_OPTIMIZER, seed }, weights);
  return engine;
}

test("the paper's transformer has about 4·10⁵ non-embedding parameters", () => {
  const { nonEmbedding, total } = countParams(PAPER_TRANSFORMER, PAPER_DIMS);
  // 2 layers × (4·128² attention + 2·4·128² FFN + 2 layer norms)
  assert.equal(nonEmbedding, 2 * (4 * 128 * 128 + 2 * 4 * 128 * 128 + 4 * 128));
  assert.ok(nonEmbedding > 3.5e5 && nonEmbedding < 4.5e5, `non-embedding params ${nonEmbedding}`);
  assert.equal(total, nonEmbedding + 99 * 128 + 128 * 97);
});

test("initial weights follow PyTorch's defaults and depend only on the seed", () => {
  const a = initParams(PAPER_TRANSFORMER, PAPER_DIMS, 7);
  const b = initParams(PAPER_TRANSFORMER, PAPER_DIMS, 7);
  const c = initParams(PAPER_TRANSFORMER, PAPER_DIMS, 8);
  assert.deepEqual(
    [...a.keys()],
    paramSpecs(PAPER_TRANSFORMER, PAPER_DIMS).map((s) => s.name),
  );
  assert.deepEqual(a.get("blocks.0.attn.wq")!.data, b.get("blocks.0.attn.wq")!.data);
  assert.notDeepEqual(a.get("blocks.0.attn.wq")!.data, c.get("blocks.0.attn.wq")!.data);
  const wq = a.get("blocks.0.attn.wq")!.data;
  const bound = 1 / Math.sqrt(128);
  assert.ok(wq.every((v) => Math.abs(v) <= bound));
  // U(±b) has standard deviation b/√3
  const std = Math.sqrt(wq.reduce((s, v) => s + v * v, 0) / wq.length);
  assert.ok(Math.abs(std - bound / Math.sqrt(3)) < 0.01 * bound, `std ${std}`);
  const emb = a.get("embed.token")!.data;
  const embStd = Math.sqrt(emb.reduce((s, v) => s + v * v, 0) / emb.length);
  assert.ok(Math.abs(embStd - 1) < 0.03, `embedding std ${embStd}`);
  assert.ok(a.get("blocks.1.ln2.weight")!.data.every((v) => v === 1));
  assert.ok(a.get("blocks.1.ln2.bias")!.data.every((v) => v === 0));
});

test("sinusoidal positions are openai/grok's formula", () => {
  const pe = sinusoidalPositions(4, 8);
  assert.equal(pe[0 * 8 + 0], 0); // sin(0)
  assert.equal(pe[0 * 8 + 1], 1); // cos(0)
  assert.ok(Math.abs(pe[3 * 8 + 2] - Math.sin(3 / Math.pow(10000, 2 / 8))) < 1e-7);
  assert.ok(Math.abs(pe[3 * 8 + 5] - Math.cos(3 / Math.pow(10000, 4 / 8))) < 1e-7);
});

for (const [name, model] of CONFIGS) {
  test(`tfjs logits match the float64 reference: ${name}`, async () => {
    const weights = initParams(model, SMALL_DIMS, 3);
    const engine = await engineFor(model, SMALL_DIMS, weights);
    const batch = randomBatch(SMALL_DIMS, 9, 1);
    const logits = await engine.logits(batch);
    for (let b = 0; b < batch.size; b++) {
      const ref = referenceLogits(model, SMALL_DIMS, weights, batch.inputs.subarray(b * 4, b * 4 + 4));
      for (let c = 0; c < SMALL_DIMS.numSymbols; c++) {
        const got = logits[b * SMALL_DIMS.numSymbols + c];
        assert.ok(
          Math.abs(got - ref[c]) <= 1e-4 * (1 + Math.abs(ref[c])),
          `example ${b} class ${c}: ${got} vs ${ref[c]}`,
        );
      }
    }
    engine.dispose();
  });

  test(`tfjs gradients match float64 finite differences (with dropout): ${name}`, async () => {
    const withDropout = { ...model, dropout: 0.25 } as ModelConfig;
    const weights = initParams(withDropout, SMALL_DIMS, 5);
    const engine = await engineFor(withDropout, SMALL_DIMS, weights, 11);
    const batch = randomBatch(SMALL_DIMS, 6, 2);
    const step = 4;
    const { loss, grads } = await engine.gradients(batch, step);
    const masks = dropoutMasks(withDropout, SMALL_DIMS, batch.size, 11, step);
    const refLoss = referenceLoss(withDropout, SMALL_DIMS, weights, batch.inputs, batch.targets, masks);
    assert.ok(Math.abs(loss - refLoss) < 1e-5 * (1 + refLoss), `loss ${loss} vs reference ${refLoss}`);
    // the directional derivative along random directions, one per tensor and one for all at once
    const rng = new Rng(99);
    const directions: [string, NamedTensors][] = [];
    for (const name of weights.keys()) {
      const d: NamedTensors = new Map();
      for (const [n, t] of weights)
        d.set(n, {
          shape: t.shape,
          data: n === name ? rng.fillNormal(new Float32Array(t.data.length)) : new Float32Array(t.data.length),
        });
      directions.push([name, d]);
    }
    for (const [name, d] of directions) {
      // small enough that ReLU kinks are almost never crossed; the reference is float64, so it stays accurate
      const eps = 1e-6;
      const shifted = (sign: number): NamedTensors =>
        new Map(
          [...weights].map(([n, t]) => [
            n,
            { shape: t.shape, data: t.data.map((v, i) => v + sign * eps * d.get(n)!.data[i]) },
          ]),
        );
      // float32 weights limit the shift's precision; recompute the actual shift from the stored values
      const plus = shifted(1);
      const minus = shifted(-1);
      let analytic = 0;
      for (const [n, g] of grads) {
        const p = plus.get(n)!.data;
        const m = minus.get(n)!.data;
        for (let i = 0; i < g.length; i++) analytic += (g[i] * (p[i] - m[i])) / (2 * eps);
      }
      const numeric =
        (referenceLoss(withDropout, SMALL_DIMS, plus, batch.inputs, batch.targets, masks) -
          referenceLoss(withDropout, SMALL_DIMS, minus, batch.inputs, batch.targets, masks)) /
        (2 * eps);
      assert.ok(
        Math.abs(analytic - numeric) <= 1e-3 * Math.abs(numeric) + 1e-5,
        `${name}: analytic ${analytic} vs numeric ${numeric}`,
      );
    }
    engine.dispose();
  });
}

test("a few training steps of the paper's model lower the loss on a fixed batch", async () => {
  const weights = initParams(PAPER_TRANSFORMER, PAPER_DIMS, 0);
  const engine = await engineFor(PAPER_TRANSFORMER, PAPER_DIMS, weights);
  const batch = randomBatch(PAPER_DIMS, 64, 3);
  const first = (await engine.evaluate(batch)).loss;
  for (let s = 0; s < 15; s++) await engine.trainStep(batch, s);
  const last = (await engine.evaluate(batch)).loss;
  assert.ok(last < first - 0.5, `loss ${first} → ${last}`);
  engine.dispose();
});
