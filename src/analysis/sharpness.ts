// Sharpness (Keskar et al. 2017, the measure of the paper's Appendix A.5): how much the training loss f can
// rise inside a small box around the weights x,
//
//   φ = 100 · (max_{y ∈ C} f(x + A y) − f(x)) / (1 + f(x)),   C = { y : |y_i| ≤ ε (|(A⁺x)_i| + 1) }.
//
// "subspace" (the default, as in openai/grok's get_sharpness): A⁺ is p×n with entries uniform in [−1, 1],
// each row scaled to unit length, and A = pinv(A⁺). "full": A = I, so the box is |δ_i| ≤ ε (|x_i| + 1) over
// every weight. φ is a *maximum*: the official grokking code hands the loss to a minimizer (L-BFGS-B,
// maxiter 10), which measures nothing of the kind. We maximize with a projected L-BFGS (maximizeInBox).

import { Dataset, encodeInputs, makeDataset, modelDims } from "../data/dataset";
import { createEngine, EngineOptions } from "../engines/index";
import { RunStore } from "../store/run-store";
import { RunConfig } from "../config/run-config";
import { deriveSeed, Rng } from "../util/rng";
import { NamedTensors } from "../util/tensors";
import { loadWeights } from "./runs";

export interface MaximizeOptions {
  /** Most quasi-Newton iterations per start (default 100; the paper's code used 10). */
  maxIterations?: number;
  /** Stop when the gain still available to first order, or an iteration's gain, is below tolerance·(1+|f|) (default 1e-9). */
  tolerance?: number;
  /** Random starting points inside the box, besides its centre (default 0: the centre, as Keskar et al.). */
  restarts?: number;
  seed?: number;
}

export interface BoxMaximum {
  value: number;
  y: Float64Array;
  /** Iterations and objective evaluations, over all starts. */
  iterations: number;
  evaluations: number;
  /** Why the best start stopped: the first-order conditions hold, no step gains anything, or the cap. */
  stop: "converged" | "stalled" | "maxIterations";
}

/** f and its gradient at y; a Promise where an engine computes it (engines read results back asynchronously). */
type Objective = (
  y: Float64Array,
) => { value: number; grad: Float64Array } | Promise<{ value: number; grad: Float64Array }>;

/** A step s and the change y of −f's gradient along it, with ρ = 1/sᵀy and γ = sᵀy/yᵀy. */
interface CurvaturePair {
  s: Float64Array;
  y: Float64Array;
  rho: number;
  gamma: number;
}

/** L-BFGS memory: the last curvature pairs kept. */
const MEMORY = 10;
/** Armijo's sufficient-increase constant. */
const ARMIJO = 1e-4;
/** Step halvings before a line search gives up. */
const MAX_HALVINGS = 20;

/**
 * Maximizes f over the box |y_i| ≤ bound_i by projected L-BFGS with an Armijo line search along the
 * projected path, from the centre and `restarts` random points; returns the best point found. It works in
 * the box's own units (z = y / bound, so the box is [−1, 1]ⁿ), where coordinates pinned at a face with the
 * gradient pointing out are held fixed and the quasi-Newton step moves the others.
 */
export function maximizeInBox(f: Objective, bound: Float64Array, opts: MaximizeOptions = {}): Promise<BoxMaximum> {
  const n = bound.length;
  for (let i = 0; i < n; i++)
    if (!(bound[i] > 0 && Number.isFinite(bound[i])))
      throw new Error(`maximizeInBox: half-width ${i} is ${bound[i]}, not a positive number`);
  const maxIterations = opts.maxIterations ?? 100;
  if (!Number.isInteger(maxIterations) || maxIterations < 0)
    throw new Error(`maximizeInBox: maxIterations must be a non-negative integer (got ${maxIterations})`);
  const tolerance = opts.tolerance ?? 1e-9;
  const restarts = opts.restarts ?? 0;
  const rng = new Rng(deriveSeed(opts.seed ?? 0, 1));
  // bad arguments throw at once (above); the search itself is asynchronous, as f may be
  const search = async (): Promise<BoxMaximum> => {
    let best: BoxMaximum | null = null;
    let iterations = 0;
    let evaluations = 0;
    for (let start = 0; start <= restarts; start++) {
      const z0 = new Float64Array(n);
      if (start > 0) for (let i = 0; i < n; i++) z0[i] = 2 * rng.uniform() - 1;
      const r = await ascend(f, bound, z0, maxIterations, tolerance);
      iterations += r.iterations;
      evaluations += r.evaluations;
      if (!best || r.value > best.value) best = r;
    }
    return { ...best!, iterations, evaluations };
  };
  return search();
}

/** One projected L-BFGS ascent from z (box units); the result's y is in the caller's units. */
async function ascend(
  f: Objective,
  bound: Float64Array,
  z: Float64Array,
  maxIterations: number,
  tolerance: number,
): Promise<BoxMaximum> {
  const n = bound.length;
  let evaluations = 0;
  const evaluate = async (at: Float64Array) => {
    evaluations++;
    const { value, grad } = await f(Float64Array.from(at, (v, i) => v * bound[i]));
    if (!Number.isFinite(value)) throw new Error(`maximizeInBox: the objective is ${value} inside the box`);
    return { value, g: Float64Array.from(grad, (v, i) => v * bound[i]) };
  };
  let { value, g } = await evaluate(z);
  const pairs: CurvaturePair[] = [];
  const done = (stop: BoxMaximum["stop"], iterations: number): BoxMaximum => ({
    value,
    y: Float64Array.from(z, (v, i) => v * bound[i]),
    iterations,
    evaluations,
    stop,
  });
  for (let iter = 0; ; iter++) {
    // coordinates at a face whose gradient points out of the box stay there
    const free = Uint8Array.from(z, (v, i) => ((v >= 1 && g[i] > 0) || (v <= -1 && g[i] < 0) ? 0 : 1));
    // the first-order gain still available: zero exactly at a KKT point
    let gap = 0;
    for (let i = 0; i < n; i++) gap += g[i] > 0 ? g[i] * (1 - z[i]) : -g[i] * (1 + z[i]);
    if (gap <= tolerance * (1 + Math.abs(value))) return done("converged", iter);
    if (iter === maxIterations) return done("maxIterations", iter);

    let d = quasiNewtonDirection(g, free, pairs);
    let slope = 0;
    for (let i = 0; i < n; i++) slope += g[i] * d[i];
    if (!(slope > 0)) {
      // the curvature pairs no longer describe the free coordinates: restart from the gradient
      pairs.length = 0;
      d = Float64Array.from(g, (v, i) => v * free[i]);
    }
    // without curvature information the step's size is unknown: let the largest move cross the box
    let step = 1;
    if (pairs.length === 0) step = 2 / d.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

    let accepted = null;
    for (let halving = 0; halving < MAX_HALVINGS && !accepted; halving++, step /= 2) {
      const trial = Float64Array.from(z, (v, i) => Math.min(1, Math.max(-1, v + step * d[i])));
      let predicted = 0;
      for (let i = 0; i < n; i++) predicted += g[i] * (trial[i] - z[i]);
      const at = await evaluate(trial);
      if (at.value > value && at.value >= value + ARMIJO * predicted) accepted = { z: trial, ...at };
    }
    if (!accepted) return done("stalled", iter);

    const s = Float64Array.from(accepted.z, (v, i) => v - z[i]);
    // curvature of −f, which the maximizer minimizes: kept only where −f curves upward
    const y = Float64Array.from(accepted.g, (v, i) => g[i] - v);
    let sy = 0;
    let yy = 0;
    for (let i = 0; i < n; i++) {
      sy += s[i] * y[i];
      yy += y[i] * y[i];
    }
    if (sy > 1e-10 * yy) {
      pairs.push({ s, y, rho: 1 / sy, gamma: sy / yy });
      if (pairs.length > MEMORY) pairs.shift();
    }
    const gain = accepted.value - value;
    z = accepted.z;
    value = accepted.value;
    g = accepted.g;
    if (gain <= tolerance * (1 + Math.abs(value))) return done("converged", iter + 1);
  }
}

/** The L-BFGS two-loop recursion H·g on the free coordinates (binding ones held at zero). */
function quasiNewtonDirection(g: Float64Array, free: Uint8Array, pairs: CurvaturePair[]): Float64Array {
  const n = g.length;
  const dot = (a: Float64Array, b: Float64Array) => {
    let t = 0;
    for (let i = 0; i < n; i++) if (free[i]) t += a[i] * b[i];
    return t;
  };
  const q = Float64Array.from(g, (v, i) => v * free[i]);
  const alpha = new Array<number>(pairs.length);
  for (let k = pairs.length - 1; k >= 0; k--) {
    alpha[k] = pairs[k].rho * dot(pairs[k].s, q);
    for (let i = 0; i < n; i++) if (free[i]) q[i] -= alpha[k] * pairs[k].y[i];
  }
  // the initial inverse Hessian γI, γ = sᵀy / yᵀy of the latest pair
  const gamma = pairs.length > 0 ? pairs[pairs.length - 1].gamma : 1;
  for (let i = 0; i < n; i++) q[i] *= gamma;
  for (let k = 0; k < pairs.length; k++) {
    const beta = pairs[k].rho * dot(pairs[k].y, q);
    for (let i = 0; i < n; i++) if (free[i]) q[i] += (alpha[k] - beta) * pairs[k].s[i];
  }
  return q;
}

/** Solves the p×p system M z = b by Gaussian elimination with partial pivoting. */
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

export interface Subspace {
  /** A⁺: p rows of length n, entries uniform in [−1, 1] scaled to unit length. */
  rows: Float64Array[];
  /** A = pinv(A⁺) = A⁺ᵀ (A⁺A⁺ᵀ)⁻¹: p columns of length n, so that A⁺A = I. */
  columns: Float64Array[];
}

/**
 * The random subspace of openai/grok's get_sharpness for n weights: the same seed gives the same subspace
 * for every network with n weights.
 */
export function randomSubspace(n: number, dims: number, seed: number): Subspace {
  if (!Number.isInteger(dims) || dims < 1 || dims > n)
    throw new Error(`sharpness: dims must be an integer from 1 to the ${n} weights (got ${dims})`);
  const rng = new Rng(seed);
  const rows = Array.from({ length: dims }, () => {
    const row = Float64Array.from({ length: n }, () => 2 * rng.uniform() - 1);
    const norm = Math.sqrt(row.reduce((s, v) => s + v * v, 0));
    return row.map((v) => v / norm);
  });
  // the Gram matrix A⁺A⁺ᵀ (close to I: random unit vectors in many dimensions are nearly orthogonal)
  const gram = new Float64Array(dims * dims);
  for (let a = 0; a < dims; a++) {
    for (let b = a; b < dims; b++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += rows[a][i] * rows[b][i];
      gram[a * dims + b] = gram[b * dims + a] = s;
    }
  }
  const columns = Array.from({ length: dims }, (_, a) => {
    const unit = new Float64Array(dims);
    unit[a] = 1;
    const inverseColumn = solve(gram, unit, dims);
    const col = new Float64Array(n);
    for (let b = 0; b < dims; b++) for (let i = 0; i < n; i++) col[i] += rows[b][i] * inverseColumn[b];
    return col;
  });
  return { rows, columns };
}

export interface SharpnessOptions extends MaximizeOptions {
  /** "subspace" (default): Keskar's random p-dimensional subspace; "full": every weight (A = I). */
  variant?: "subspace" | "full";
  /** Box size relative to the weights (default 1e-3, Keskar et al.'s smaller setting and the paper's). */
  epsilon?: number;
  /** Dimension p of the subspace (default 10). The seed (default 0) draws the subspace, and any restarts. */
  dims?: number;
}

export interface SharpnessResult {
  /** φ, in percent. */
  sharpness: number;
  variant: "subspace" | "full";
  /** Training loss at the weights, and the largest found in the box. */
  loss: number;
  maxLoss: number;
  /** Where the maximum is (y: p subspace coordinates, or the n weight offsets) and the box's half-widths. */
  y: Float64Array;
  bound: Float64Array;
  iterations: number;
  evaluations: number;
  stop: BoxMaximum["stop"];
}

/**
 * φ for a loss over a flat parameter vector x (length n): `loss(w)` returns the loss and its gradient at w.
 */
export function sharpnessOf(
  loss: (w: Float32Array) => { value: number; grad: Float32Array } | Promise<{ value: number; grad: Float32Array }>,
  x: Float32Array,
  opts: SharpnessOptions = {},
): Promise<SharpnessResult> {
  const n = x.length;
  const variant = opts.variant ?? "subspace";
  const eps = opts.epsilon ?? 1e-3;
  if (!(eps > 0 && Number.isFinite(eps))) throw new Error(`sharpness: epsilon must be a positive number (got ${eps})`);
  const w = new Float32Array(n);
  let objective: Objective;
  let bound: Float64Array;
  if (variant === "full") {
    bound = Float64Array.from(x, (v) => eps * (Math.abs(v) + 1));
    objective = async (y) => {
      for (let i = 0; i < n; i++) w[i] = x[i] + y[i];
      const { value, grad } = await loss(w);
      return { value, grad: Float64Array.from(grad) };
    };
  } else if (variant === "subspace") {
    const { rows, columns } = randomSubspace(n, opts.dims ?? 10, opts.seed ?? 0);
    bound = Float64Array.from(rows, (row) => eps * (Math.abs(row.reduce((s, v, i) => s + v * x[i], 0)) + 1));
    const offset = new Float64Array(n);
    objective = async (y) => {
      offset.fill(0);
      columns.forEach((col, a) => {
        for (let i = 0; i < n; i++) offset[i] += col[i] * y[a];
      });
      for (let i = 0; i < n; i++) w[i] = x[i] + offset[i];
      const { value, grad } = await loss(w);
      // d f(x + A y) / dy = Aᵀ ∇f
      return { value, grad: Float64Array.from(columns, (col) => col.reduce((s, v, i) => s + v * grad[i], 0)) };
    };
  } else {
    throw new Error(`sharpness: variant must be "subspace" or "full" (got ${JSON.stringify(variant)})`);
  }
  // bad options throw at once (above); the search is asynchronous, as the loss may be
  const search = async (): Promise<SharpnessResult> => {
    const at0 = (await loss(x)).value;
    const best = await maximizeInBox(objective, bound, opts);
    // the centre is in the box, so the maximum is never below f(x)
    const maxLoss = Math.max(at0, best.value);
    return {
      sharpness: (100 * (maxLoss - at0)) / (1 + at0),
      variant,
      loss: at0,
      maxLoss,
      y: best.y,
      bound,
      iterations: best.iterations,
      evaluations: best.evaluations + 1,
      stop: best.stop,
    };
  };
  return search();
}

/** φ of a stored run's weights (default: final) on its training set, without dropout or noise. */
export async function runSharpness(
  ref: string,
  which: "final" | "latest" | number = "final",
  opts: SharpnessOptions & EngineOptions & { store?: RunStore | string } = {},
): Promise<SharpnessResult> {
  const store = RunStore.of(opts.store);
  const id = store.resolve(ref);
  const config: RunConfig = store.readConfig(id);
  const dataset: Dataset = makeDataset(config.data);
  const { weights } = loadWeights(id, which, store);
  const { engine } = await createEngine(opts);
  try {
    // the weights as one flat vector, in the order of the named tensors
    const names = [...weights.keys()];
    const offsets = [0];
    for (const nm of names) offsets.push(offsets[offsets.length - 1] + weights.get(nm)!.data.length);
    const flat = new Float32Array(offsets[names.length]);
    names.forEach((nm, k) => flat.set(weights.get(nm)!.data, offsets[k]));
    const dims = modelDims(dataset);
    // the loss surface of the network itself: no dropout, no noise, no weight decay
    const model = { ...config.model, dropout: 0 };
    const optimizer = { ...config.optimizer, weightNoise: 0, updateNoise: 0 };
    engine.initialize({ model, dims, optimizer, seed: 0 }, weights);
    const batch = {
      size: dataset.train.size,
      inputs: encodeInputs(dataset, dataset.train),
      targets: dataset.train.answer,
    };
    const loss = async (w: Float32Array) => {
      const named: NamedTensors = new Map(
        names.map((nm, k) => [nm, { shape: weights.get(nm)!.shape, data: w.subarray(offsets[k], offsets[k + 1]) }]),
      );
      engine.writeWeights(named);
      const r = await engine.gradients(batch, 0);
      const grad = new Float32Array(flat.length);
      names.forEach((nm, k) => grad.set(r.grads.get(nm)!, offsets[k]));
      return { value: r.loss, grad };
    };
    return await sharpnessOf(loss, flat, opts);
  } finally {
    engine.dispose();
  }
}
