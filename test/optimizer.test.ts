import assert from "node:assert/strict";
import { test } from "node:test";
import { noisyWeights } from "../src/engines/engine";
import { learningRate, Optimizer, OptimizerConfig, PAPER_OPTIMIZER } from "../src/optim/optimizer";
import { NamedTensors } from "../src/util/tensors";

const cfg = (over: Partial<OptimizerConfig>): OptimizerConfig => ({ ...PAPER_OPTIMIZER, warmupSteps: 0, ...over });
const weightsOf = (values: number[]): NamedTensors =>
  new Map([["w", { shape: [values.length], data: Float32Array.from(values) }]]);
const gradsOf = (values: number[]) => new Map([["w", Float32Array.from(values)]]);
const close = (a: number, b: number, tol = 1e-6) =>
  assert.ok(Math.abs(a - b) <= tol * (1 + Math.abs(b)), `${a} vs ${b}`);

/** Adam/AdamW in float64, straight from the papers' pseudo-code (Loshchilov & Hutter, Algorithm 2). */
function referenceAdam(p0: number[], grads: number[][], c: OptimizerConfig): number[] {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  grads.forEach((g, k) => {
    const t = k + 1;
    const lr = learningRate(c, k);
    for (let i = 0; i < p.length; i++) {
      let gi = g[i];
      if (c.kind === "adam") gi += c.weightDecay * p[i];
      m[i] = c.beta1 * m[i] + (1 - c.beta1) * gi;
      v[i] = c.beta2 * v[i] + (1 - c.beta2) * gi * gi;
      const mhat = m[i] / (1 - c.beta1 ** t);
      const vhat = v[i] / (1 - c.beta2 ** t);
      const decay = c.kind === "adamw" ? lr * c.weightDecay * p[i] : 0;
      p[i] = p[i] - decay - (lr * mhat) / (Math.sqrt(vhat) + c.eps);
    }
  });
  return p;
}

test("linear warmup reaches the learning rate after warmupSteps updates", () => {
  const c = cfg({ lr: 1e-3, warmupSteps: 10 });
  close(learningRate(c, 0), 1e-4);
  close(learningRate(c, 4), 5e-4);
  close(learningRate(c, 9), 1e-3);
  close(learningRate(c, 5000), 1e-3);
  close(learningRate(cfg({ lr: 3e-3 }), 0), 3e-3);
});

test("AdamW by hand: one step with decoupled decay", () => {
  const w = weightsOf([1]);
  new Optimizer(cfg({ lr: 0.1, weightDecay: 0.1 }), 0, w).update(w, gradsOf([0.5]), 0);
  // decay: 1·(1 − 0.01) = 0.99; the first bias-corrected Adam update is sign(g)·lr = 0.1
  close(w.get("w")!.data[0], 0.89);
});

test("Adam with weight decay is L2 in the gradient, not decoupled", () => {
  const w = weightsOf([1, -2]);
  new Optimizer(cfg({ kind: "adam", lr: 0.1, weightDecay: 0.1 }), 0, w).update(w, gradsOf([0.5, 0.1]), 0);
  // the first update is lr·sign(g + wd·w): +0.1 for the first weight, and 0.1 − 0.2 < 0 flips the second
  close(w.get("w")!.data[0], 0.9);
  close(w.get("w")!.data[1], -1.9);
});

test("Adam and AdamW match a float64 reference over many steps", () => {
  for (const kind of ["adam", "adamw"] as const) {
    const c = cfg({ kind, lr: 1e-2, weightDecay: 0.5, warmupSteps: 3 });
    const p0 = [0.3, -1.2, 2.5, 0.01];
    const grads = Array.from({ length: 20 }, (_, k) => p0.map((_, i) => Math.sin(k * 1.3 + i) + 0.2 * i));
    const w = weightsOf(p0);
    const opt = new Optimizer(c, 0, w);
    grads.forEach((g, k) => opt.update(w, gradsOf(g), k));
    const ref = referenceAdam(p0, grads, c);
    ref.forEach((r, i) => close(w.get("w")!.data[i], r, 1e-5));
  }
});

test("AdamW decaying toward the initial weights pulls back to them, not to zero", () => {
  const w = weightsOf([2]);
  const opt = new Optimizer(cfg({ lr: 0.1, weightDecay: 1, decayToward: "init" }), 0, w);
  w.get("w")!.data[0] = 3; // moved away from its initial value 2
  opt.update(w, gradsOf([0]), 0);
  // zero gradient: only the decay acts, 3 − 0.1·1·(3 − 2)
  close(w.get("w")!.data[0], 2.9);
  const z = weightsOf([2]);
  const toZero = new Optimizer(cfg({ lr: 0.1, weightDecay: 1 }), 0, z);
  toZero.update(z, gradsOf([0]), 0);
  close(z.get("w")!.data[0], 1.8);
});

test("SGD with momentum by hand", () => {
  const w = weightsOf([1]);
  const opt = new Optimizer(cfg({ kind: "sgd", lr: 0.1, momentum: 0.9, weightDecay: 0 }), 0, w);
  opt.update(w, gradsOf([1]), 0); // buf 1, w 0.9
  opt.update(w, gradsOf([1]), 1); // buf 1.9, w 0.71
  close(w.get("w")!.data[0], 0.71);
});

test("Grokfast amplifies the slow component of the gradient", () => {
  const w = weightsOf([0]);
  const opt = new Optimizer(
    cfg({ kind: "sgd", lr: 1, momentum: 0, weightDecay: 0, grokfast: { alpha: 0.5, lambda: 2 } }),
    0,
    w,
  );
  opt.update(w, gradsOf([1]), 0); // ema 0.5, g 1 + 2·0.5 = 2
  close(w.get("w")!.data[0], -2);
  opt.update(w, gradsOf([1]), 1); // ema 0.75, g 2.5
  close(w.get("w")!.data[0], -4.5);
});

test("update noise is Gaussian with the given σ, and a function of seed and step", () => {
  const n = 20000;
  const run = (seed: number, step: number) => {
    const w = weightsOf(new Array(n).fill(0));
    // SGD with zero gradient: the update is the noise alone, w = −lr·σ·N(0,1)
    new Optimizer(cfg({ kind: "sgd", lr: 1, momentum: 0, weightDecay: 0, updateNoise: 0.1 }), seed, w).update(
      w,
      gradsOf(new Array(n).fill(0)),
      step,
    );
    return w.get("w")!.data;
  };
  const a = run(1, 5);
  assert.deepEqual(a, run(1, 5));
  assert.notDeepEqual(a, run(1, 6));
  assert.notDeepEqual(a, run(2, 5));
  const std = Math.sqrt(a.reduce((s, v) => s + v * v, 0) / n);
  assert.ok(Math.abs(std - 0.1) < 0.005, `std ${std}`);
});

test("weight noise perturbs a copy with σ and leaves the weights alone", () => {
  const w = weightsOf(new Array(20000).fill(1));
  const noisy = noisyWeights(w, 0.01, 3, 7);
  assert.ok(w.get("w")!.data.every((v) => v === 1));
  const d = noisy.get("w")!.data.map((v) => v - 1);
  const std = Math.sqrt(d.reduce((s, v) => s + v * v, 0) / d.length);
  assert.ok(Math.abs(std - 0.01) < 0.0005, `std ${std}`);
  assert.deepEqual(noisy.get("w")!.data, noisyWeights(w, 0.01, 3, 7).get("w")!.data);
});

test("optimizer state saved mid-run and restored continues identically", () => {
  const c = cfg({
    lr: 1e-2,
    weightDecay: 1,
    decayToward: "init",
    updateNoise: 0.05,
    grokfast: { alpha: 0.9, lambda: 1 },
  });
  const g = (k: number) => gradsOf([Math.cos(k), Math.sin(k), 0.3]);
  const straight = weightsOf([1, 2, 3]);
  const opt = new Optimizer(c, 9, straight);
  for (let k = 0; k < 10; k++) opt.update(straight, g(k), k);

  const first = weightsOf([1, 2, 3]);
  const before = new Optimizer(c, 9, first);
  for (let k = 0; k < 4; k++) before.update(first, g(k), k);
  const saved = before.state(first);
  assert.ok([...saved.keys()].some((k) => k.startsWith("optim.init.")));
  // a fresh optimizer built from other weights, then restored
  const resumed = weightsOf([...first.get("w")!.data]);
  const after = new Optimizer(c, 9, weightsOf([0, 0, 0]));
  after.loadState(saved);
  for (let k = 4; k < 10; k++) after.update(resumed, g(k), k);
  assert.deepEqual(resumed.get("w")!.data, straight.get("w")!.data);
  assert.throws(() => after.loadState(new Map()), /missing optim\.m\.w/);
});
