import assert from "node:assert/strict";
import { test } from "node:test";
import { noisyWeights } from "../src/engines/engine";
import {
  learningRate,
  Optimizer,
  OptimizerConfig,
  orthogonalizeGradient,
  PAPER_OPTIMIZER,
} from "../src/optim/optimizer";
import { NamedTensors } from "../src/util/tensors";

const cfg = (over: Partial<OptimizerConfig>): OptimizerConfig => ({ ...PAPER_OPTIMIZER, warmupSteps: 0, ...over });
const weightsOf = (values: number[]): NamedTensors =>
  new Map([["w", { shape: [values.length], data: Float32Array.from(values) }]]);
const gradsOf = (values: number[]) => new Map([["w", Float32Array.from(values)]]);
const close = (a: number, b: number, tol = 1e-6) =>
  assert.ok(Math.abs(a - b) <= tol * (1 + Math.abs(b)), `${a} vs ${b}`);

/** ⊥Grad in float64 (Prieto et al. 2025, eq. 9): ∇ − (θ·∇ / θ·θ)·θ. */
function referenceOrthogonal(g: number[], w: number[]): number[] {
  const dot = (a: number[], b: number[]) => a.reduce((s, ai, i) => s + ai * b[i], 0);
  const c = dot(g, w) / dot(w, w);
  return g.map((gi, i) => gi - c * w[i]);
}

/**
 * Adam/AdamW in float64, straight from the papers' pseudo-code (Loshchilov & Hutter, Algorithm 2); with
 * c.orthogonalGrad, each gradient is first projected off the current weights (⊥AdamW).
 */
function referenceAdam(p0: number[], grads: number[][], c: OptimizerConfig): number[] {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  grads.forEach((g0, k) => {
    const g = c.orthogonalGrad ? referenceOrthogonal(g0, p) : g0;
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

test("⊥AdamW and ⊥Adam match a float64 reference over many steps", () => {
  for (const kind of ["adam", "adamw"] as const) {
    const c = cfg({ kind, lr: 1e-2, weightDecay: 0.5, warmupSteps: 3, orthogonalGrad: true });
    const p0 = [0.3, -1.2, 2.5, 0.01];
    const grads = Array.from({ length: 20 }, (_, k) => p0.map((_, i) => Math.sin(k * 1.3 + i) + 0.2 * i));
    const w = weightsOf(p0);
    const opt = new Optimizer(c, 0, w);
    grads.forEach((g, k) => opt.update(w, gradsOf(g), k));
    const ref = referenceAdam(p0, grads, c);
    ref.forEach((r, i) => close(w.get("w")!.data[i], r, 1e-5));
    // and the projection changed the result: plain AdamW ends elsewhere
    const plain = referenceAdam(p0, grads, { ...c, orthogonalGrad: false });
    assert.ok(
      plain.some((r, i) => Math.abs(r - ref[i]) > 1e-3),
      `${kind}: ⊥Grad made no difference`,
    );
  }
});

test("⊥Grad: the update's gradient is orthogonal to the weights, per tensor; zero weights keep theirs", () => {
  // SGD without momentum or decay: the update is −lr·g⊥ exactly, and the gradients are projected in place
  const w0 = [0.5, -1.25, 2, 0.75];
  const g0 = [0.3, 0.1, -0.7, 0.2];
  const weights: NamedTensors = new Map([
    ["w", { shape: [4], data: Float32Array.from(w0) }],
    ["bias", { shape: [2], data: new Float32Array(2) }],
  ]);
  const grads = new Map([
    ["w", Float32Array.from(g0)],
    ["bias", Float32Array.from([0.5, -0.25])],
  ]);
  const lr = 0.1;
  new Optimizer(cfg({ kind: "sgd", lr, momentum: 0, weightDecay: 0, orthogonalGrad: true }), 0, weights).update(
    weights,
    grads,
    0,
  );
  const expected = referenceOrthogonal(g0, w0);
  const projected = grads.get("w")!;
  expected.forEach((e, i) => close(projected[i], e));
  expected.forEach((e, i) => close(weights.get("w")!.data[i], w0[i] - lr * e));
  // g⊥·w ≈ 0 relative to |g|·|w| (float32 storage of g⊥)
  const dot = projected.reduce((s, gi, i) => s + gi * w0[i], 0);
  const norm = (a: ArrayLike<number>) => Math.hypot(...Array.from(a));
  assert.ok(Math.abs(dot) <= 1e-6 * norm(g0) * norm(w0), `g⊥·w = ${dot}`);
  // a tensor of zeros has no direction to remove
  assert.deepEqual([...grads.get("bias")!], [0.5, -0.25]);
  assert.deepEqual([...weights.get("bias")!.data], [Math.fround(-0.05), Math.fround(0.025)]);
});

test("orthogonalizeGradient: a gradient along the weights vanishes, one across them stays", () => {
  const w = Float32Array.from([3, 4]);
  const along = Float32Array.from([6, 8]);
  orthogonalizeGradient(along, w);
  assert.deepEqual([...along], [0, 0]);
  const across = Float32Array.from([-4, 3]);
  orthogonalizeGradient(across, w);
  assert.deepEqual([...across], [-4, 3]);
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
