// Sharpness (Keskar et al. 2017, the measure of the paper's Appendix A.5): how much the loss can rise inside
// a small box around the weights, within a random low-dimensional subspace,
//
//   φ = 100 · (max_{y ∈ C} f(x + A y) − f(x)) / (1 + f(x)),   C = { y : |y_i| ≤ ε (|(A⁺x)_i| + 1) },
//
// with x the weights, f the training loss, A a random n×p matrix and A⁺ its pseudo-inverse. It is a
// *maximization*: the official grokking code minimizes instead, which measures nothing of the kind.
// Keskar et al. solve it with L-BFGS-B; we use projected gradient ascent with sign steps from several
// starting points, which reaches the box's vertices where a convex loss has its maximum (maximizeInBox,
// tested on functions whose maximum is known).

import { Dataset, encodeInputs, makeDataset } from "../data/dataset";
import { createEngine, EngineOptions } from "../engines/index";
import { RunStore } from "../store/run-store";
import { RunConfig } from "../training/config";
import { Rng } from "../util/rng";
import { NamedTensors } from "../util/tensors";
import { loadWeights } from "./runs";

export interface BoxMaximum {
  value: number;
  y: Float64Array;
  /** Objective evaluations used. */
  evaluations: number;
}

export interface MaximizeOptions {
  /** Ascent steps per start (default 60). */
  steps?: number;
  /** Random starting points inside the box, besides its centre (default 3). */
  restarts?: number;
  seed?: number;
}

/**
 * Maximizes f over the box [−bound, bound] (per coordinate) by projected sign-gradient ascent: each step
 * moves every coordinate by a shrinking fraction of its half-width in the direction of its gradient, then
 * clips to the box. Starts at the centre and at `restarts` random points; returns the best point seen.
 */
export function maximizeInBox(f: (y: Float64Array) => { value: number; grad: Float64Array }, bound: Float64Array, opts: MaximizeOptions = {}): BoxMaximum {
  const p = bound.length;
  const steps = opts.steps ?? 60;
  const rng = new Rng(opts.seed ?? 0);
  let best: BoxMaximum = { value: -Infinity, y: new Float64Array(p), evaluations: 0 };
  let evaluations = 0;
  for (let start = 0; start <= (opts.restarts ?? 3); start++) {
    const y = new Float64Array(p);
    if (start > 0) for (let i = 0; i < p; i++) y[i] = (2 * rng.uniform() - 1) * bound[i];
    for (let s = 0; s <= steps; s++) {
      const { value, grad } = f(y);
      evaluations++;
      if (value > best.value) best = { value, y: Float64Array.from(y), evaluations: 0 };
      if (s === steps) break;
      // large moves first, then finer ones: the first steps reach the faces, the later ones settle inside
      const stepSize = 0.5 * Math.pow(0.02, s / Math.max(1, steps - 1));
      for (let i = 0; i < p; i++) {
        const move = Math.sign(grad[i]) * stepSize * bound[i];
        y[i] = Math.min(bound[i], Math.max(-bound[i], y[i] + move));
      }
    }
  }
  return { ...best, evaluations };
}

export interface SharpnessOptions extends EngineOptions, MaximizeOptions {
  /** Box size relative to the weights (default 1e-3, Keskar et al.'s smaller setting). */
  epsilon?: number;
  /** Dimension p of the random subspace (default 10). */
  dims?: number;
}

export interface SharpnessResult {
  /** φ, in percent. */
  sharpness: number;
  /** Training loss at the weights, and the largest found in the box. */
  loss: number;
  maxLoss: number;
  evaluations: number;
}

/** Solves the p×p system M z = b (M symmetric positive definite) by Gaussian elimination. */
function solve(M: Float64Array, b: Float64Array, p: number): Float64Array {
  const a = Float64Array.from(M);
  const z = Float64Array.from(b);
  for (let c = 0; c < p; c++) {
    let piv = c;
    for (let r = c + 1; r < p; r++) if (Math.abs(a[r * p + c]) > Math.abs(a[piv * p + c])) piv = r;
    if (piv !== c) {
      for (let k = 0; k < p; k++) [a[c * p + k], a[piv * p + k]] = [a[piv * p + k], a[c * p + k]];
      [z[c], z[piv]] = [z[piv], z[c]];
    }
    for (let r = c + 1; r < p; r++) {
      const m = a[r * p + c] / a[c * p + c];
      for (let k = c; k < p; k++) a[r * p + k] -= m * a[c * p + k];
      z[r] -= m * z[c];
    }
  }
  for (let c = p - 1; c >= 0; c--) {
    let s = z[c];
    for (let k = c + 1; k < p; k++) s -= a[c * p + k] * z[k];
    z[c] = s / a[c * p + c];
  }
  return z;
}

/**
 * The random subspace and box of φ for weights x: the p columns of A (Gaussian entries, from the seed) and
 * the box half-widths ε (|(A⁺x)_i| + 1), with A⁺x = (AᵀA)⁻¹Aᵀx.
 */
export function randomSubspace(x: Float32Array, opts: { dims?: number; epsilon?: number; seed?: number } = {}): { directions: Float32Array[]; bound: Float64Array } {
  const n = x.length;
  const p = opts.dims ?? 10;
  const eps = opts.epsilon ?? 1e-3;
  const rng = new Rng((opts.seed ?? 0) + 7919);
  const cols = Array.from({ length: p }, () => {
    const c = new Float32Array(n);
    for (let i = 0; i < n; i++) c[i] = rng.normal();
    return c;
  });
  const AtA = new Float64Array(p * p);
  const Atx = new Float64Array(p);
  for (let a = 0; a < p; a++) {
    for (let i = 0; i < n; i++) Atx[a] += cols[a][i] * x[i];
    for (let b = a; b < p; b++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += cols[a][i] * cols[b][i];
      AtA[a * p + b] = AtA[b * p + a] = s;
    }
  }
  const pinvX = solve(AtA, Atx, p);
  return { directions: cols, bound: Float64Array.from(pinvX, (v) => eps * (Math.abs(v) + 1)) };
}

/**
 * φ for a loss over a flat parameter vector x (length n): `loss(w)` returns the loss and its gradient at w.
 */
export function sharpnessOf(loss: (w: Float32Array) => { value: number; grad: Float32Array }, x: Float32Array, opts: SharpnessOptions = {}): SharpnessResult {
  const n = x.length;
  const { directions: cols, bound } = randomSubspace(x, opts);
  const p = cols.length;
  const w = new Float32Array(n);
  const f = (y: Float64Array) => {
    w.set(x);
    for (let a = 0; a < p; a++) {
      const c = cols[a];
      const ya = y[a];
      for (let i = 0; i < n; i++) w[i] += c[i] * ya;
    }
    const { value, grad } = loss(w);
    // d f(x + A y) / dy = Aᵀ ∇f
    const g = new Float64Array(p);
    for (let a = 0; a < p; a++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += cols[a][i] * grad[i];
      g[a] = s;
    }
    return { value, grad: g };
  };
  const at0 = loss(x).value;
  const best = maximizeInBox(f, bound, opts);
  const maxLoss = Math.max(at0, best.value);
  return { sharpness: (100 * (maxLoss - at0)) / (1 + at0), loss: at0, maxLoss, evaluations: best.evaluations + 1 };
}

/** φ of a stored run's weights (default: final) on its training set, without dropout or noise. */
export async function runSharpness(ref: string, which: "final" | "latest" | number = "final", opts: SharpnessOptions & { store?: RunStore | string } = {}): Promise<SharpnessResult> {
  const store = opts.store instanceof RunStore ? opts.store : new RunStore(opts.store);
  const id = store.resolve(ref);
  const config: RunConfig = store.readConfig(id);
  const dataset: Dataset = makeDataset(config.data);
  const { weights } = loadWeights(id, which, store);
  const { engine } = await createEngine(opts);
  try {
    const names = [...weights.keys()];
    const sizes = names.map((nm) => weights.get(nm)!.data.length);
    const n = sizes.reduce((a, b) => a + b, 0);
    const flat = new Float32Array(n);
    let off = 0;
    for (const nm of names) {
      flat.set(weights.get(nm)!.data, off);
      off += weights.get(nm)!.data.length;
    }
    const dims = { vocabSize: dataset.vocabSize, numSymbols: dataset.numSymbols, seqLen: dataset.seqLen };
    // the loss surface of the network itself: no dropout, no noise, no weight decay
    const model = { ...config.model, dropout: 0 };
    const optimizer = { ...config.optimizer, weightNoise: 0, updateNoise: 0 };
    engine.initialize({ model, dims, optimizer, seed: 0 }, weights);
    const batch = { size: dataset.train.size, inputs: encodeInputs(dataset, dataset.train), targets: dataset.train.answer };
    const loss = (w: Float32Array) => {
      const named: NamedTensors = new Map();
      let o = 0;
      names.forEach((nm, k) => {
        named.set(nm, { shape: weights.get(nm)!.shape, data: w.subarray(o, o + sizes[k]) });
        o += sizes[k];
      });
      engine.writeWeights(named);
      const r = engine.gradients(batch, 0);
      const grad = new Float32Array(n);
      let g = 0;
      for (const nm of names) {
        grad.set(r.grads.get(nm)!, g);
        g += weights.get(nm)!.data.length;
      }
      return { value: r.loss, grad };
    };
    return sharpnessOf(loss, flat, opts);
  } finally {
    engine.dispose();
  }
}
