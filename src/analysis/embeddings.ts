// What a network learned about its symbols: the output layer's weight row of each symbol (the paper's Fig 3)
// and the input embeddings, laid out by t-SNE, and their discrete Fourier transform over the residues for
// modular arithmetic.

import { NamedTensors } from "../util/tensors";
import { deriveSeed, Rng } from "../util/rng";
import { quantile } from "./sweeps";

/**
 * One vector per symbol: "output", the output layer's weights for that symbol (a column of head.weight,
 * stored [in, out]); "input", the symbol's token embedding.
 */
export function symbolVectors(weights: NamedTensors, numSymbols: number, which: "output" | "input"): Float32Array[] {
  if (which === "input") {
    const emb = weights.get("embed.token");
    if (!emb) throw new Error("the weights have no embed.token");
    const d = emb.shape[1];
    return Array.from({ length: numSymbols }, (_, s) => emb.data.slice(s * d, (s + 1) * d));
  }
  const head = weights.get("head.weight");
  if (!head) throw new Error("the weights have no head.weight");
  const [rows, cols] = head.shape;
  if (cols !== numSymbols) throw new Error(`head.weight has ${cols} outputs, not ${numSymbols} symbols`);
  return Array.from({ length: numSymbols }, (_, s) =>
    Float32Array.from({ length: rows }, (_, i) => head.data[i * cols + s]),
  );
}

export interface TsneOptions {
  seed?: number;
  perplexity?: number;
  iterations?: number;
  learningRate?: number;
}

/**
 * 2-D t-SNE of the vectors (tsne-js, exact). tsne-js draws its starting layout from Math.random; it is
 * swapped for a seeded generator while it runs, so the same seed gives the same layout.
 */
export function tsne2d(vectors: Float32Array[], opts: TsneOptions = {}): [number, number][] {
  const mod = require("tsne-js");
  const TSNE = mod.default ?? mod;
  const rng = new Rng(opts.seed ?? 0);
  const original = Math.random;
  Math.random = () => rng.uniform();
  try {
    const model = new TSNE({
      dim: 2,
      perplexity: Math.min(opts.perplexity ?? 30, Math.max(2, Math.floor((vectors.length - 1) / 3))),
      earlyExaggeration: 4,
      // tsne-js diverges at the usual 100-200 on small sets (its KL divergence grows); 10 converges
      learningRate: opts.learningRate ?? 10,
      nIter: opts.iterations ?? 1000,
      metric: "euclidean",
    });
    model.init({ data: vectors.map((v) => Array.from(v)), type: "dense" });
    model.run();
    return (model.getOutputScaled() as number[][]).map((p) => [p[0], p[1]]);
  } finally {
    Math.random = original;
  }
}

export interface FourierSpectrum {
  /** Frequencies 0 … ⌊p/2⌋ (k and p−k carry the same power for real vectors and are summed). */
  frequencies: number[];
  /** Share of the vectors' total power (over all dimensions, mean removed) at each frequency; sums to 1. */
  power: number[];
}

/**
 * The discrete Fourier transform over residues x = 0 … p−1 of p vectors (one per residue), taken in every
 * dimension: power(k) ∝ Σ_dims |Σ_x v_x e^{−2πikx/p}|², frequency 0 (the mean) left out.
 */
export function fourierSpectrum(vectors: Float32Array[]): FourierSpectrum {
  const p = vectors.length;
  const d = vectors[0]?.length ?? 0;
  const half = Math.floor(p / 2);
  const raw = new Array<number>(half + 1).fill(0);
  for (let k = 1; k < p; k++) {
    let pk = 0;
    for (let j = 0; j < d; j++) {
      let re = 0;
      let im = 0;
      for (let x = 0; x < p; x++) {
        const a = (-2 * Math.PI * k * x) / p;
        re += vectors[x][j] * Math.cos(a);
        im += vectors[x][j] * Math.sin(a);
      }
      pk += re * re + im * im;
    }
    raw[Math.min(k, p - k)] += pk;
  }
  const total = raw.reduce((a, b) => a + b, 0) || 1;
  return { frequencies: raw.map((_, k) => k), power: raw.map((v) => v / total) };
}

/** The `count` frequencies with the most power, strongest first. */
export function keyFrequencies(spectrum: FourierSpectrum, count: number): { frequency: number; power: number }[] {
  return spectrum.frequencies
    .map((frequency, i) => ({ frequency, power: spectrum.power[i] }))
    .filter((f) => f.frequency > 0)
    .sort((a, b) => b.power - a.power)
    .slice(0, count);
}

export interface FourierCircle {
  frequency: number;
  /** Each symbol's coordinates in the plane of the frequency's cosine and sine directions (mean removed). */
  points: [number, number][];
  /**
   * Share of the vectors' variance (mean removed) in their frequency-k component, the part of them that
   * lies on the circle: fourierSpectrum's power at k. Other frequencies may still project onto the plane
   * (a random plane holds about 2/d of any variance); they show in the radius and angles.
   */
  share: number;
  /** Spread of the radius: its standard deviation over its mean (0 for a circle). */
  radiusSpread: number;
  /** Root-mean-square difference (radians) between the angles and 2πkx/p plus the best constant. */
  angleError: number;
  /** Whether going round the circle (by increasing angle) visits the symbols in the order of x·k mod p. */
  inOrder: boolean;
}

/**
 * The symbols (p vectors, one per residue x) projected onto the plane of frequency k: spanned by
 * u = Σ_x cos(2πkx/p) v_x and w = Σ_x sin(2πkx/p) v_x, orthonormalized, which hold the whole of the
 * vectors' frequency-k component. A network that computes x+y mod p with this frequency puts its symbols on
 * a circle there, at angles 2πkx/p plus a constant (the sine direction sets the sense of rotation, so the
 * angles grow with x·k mod p).
 */
export function fourierCircle(vectors: Float32Array[], k: number): FourierCircle {
  const p = vectors.length;
  const d = vectors[0]?.length ?? 0;
  if (p < 3 || vectors.some((v) => v.length !== d))
    throw new Error(`fourierCircle needs at least 3 vectors of one length (got ${p})`);
  if (!Number.isInteger(k) || k < 1 || k >= p || 2 * k === p)
    throw new Error(`fourierCircle: frequency ${k} is not an integer from 1 to ${p - 1} other than ${p / 2}`);
  const mean = new Float64Array(d);
  for (const v of vectors) for (let j = 0; j < d; j++) mean[j] += v[j] / p;
  const centred = vectors.map((v) => Float64Array.from(v, (value, j) => value - mean[j]));
  const theta = (x: number) => (2 * Math.PI * ((k * x) % p)) / p;
  const u = new Float64Array(d);
  const w = new Float64Array(d);
  centred.forEach((v, x) => {
    for (let j = 0; j < d; j++) {
      u[j] += Math.cos(theta(x)) * v[j];
      w[j] += Math.sin(theta(x)) * v[j];
    }
  });
  const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, value, j) => s + value * b[j], 0);
  const uNorm = Math.sqrt(dot(u, u));
  if (!(uNorm > 0)) throw new Error(`fourierCircle: the vectors have no component at frequency ${k}`);
  const e1 = u.map((value) => value / uNorm);
  const wPerp = w.map((value, j) => value - dot(w, e1) * e1[j]);
  const e2 = wPerp.map((value) => value / (Math.sqrt(dot(wPerp, wPerp)) || 1));
  const points = centred.map((v): [number, number] => [dot(v, e1), dot(v, e2)]);

  const total = centred.reduce((s, v) => s + dot(v, v), 0);
  // the frequency-k component (2/p)(u cos θ_x + w sin θ_x) has variance (2/p)(|u|² + |w|²)
  const atFrequency = (2 / p) * (dot(u, u) + dot(w, w));
  const radii = points.map(([a, b]) => Math.hypot(a, b));
  const meanRadius = radii.reduce((s, r) => s + r, 0) / p;
  const radiusSd = Math.sqrt(radii.reduce((s, r) => s + (r - meanRadius) ** 2, 0) / p);
  // the angles against θ_x: the best constant is the circular mean of the differences
  const angles = points.map(([a, b]) => Math.atan2(b, a));
  const diffs = angles.map((a, x) => a - theta(x));
  const offset = Math.atan2(
    diffs.reduce((s, a) => s + Math.sin(a), 0),
    diffs.reduce((s, a) => s + Math.cos(a), 0),
  );
  const angleError = Math.sqrt(
    diffs.reduce((s, a) => s + Math.atan2(Math.sin(a - offset), Math.cos(a - offset)) ** 2, 0) / p,
  );
  // round the circle x·k mod p steps by g = gcd(k, p) (1 for a prime p), and by 0 within the g symbols that
  // share each angle
  let g = k;
  for (let r = p; r > 0;) [g, r] = [r, g % r];
  const order = angles.map((a, x) => [a, (k * x) % p] as const).sort((s, t) => s[0] - t[0]);
  const inOrder = order.every(([, m], i) => [0, g].includes((order[(i + 1) % p][1] - m + p) % p));
  return {
    frequency: k,
    points,
    share: total > 0 ? atFrequency / total : 0,
    radiusSpread: radiusSd / meanRadius,
    angleError,
    inOrder,
  };
}

/**
 * How much a set of points clusters by a labelling: the share of each point's k nearest neighbours that
 * carry its label (averaged over points). Distances are cosine (1 − cos, for weight vectors, whose scale a
 * layer norm or softmax mostly ignores) or euclidean (for a 2-D layout). With labels that ignore the points,
 * the share is about (size of a label's class − 1) / (n − 1): chanceShare gives it.
 */
export function nearestNeighbourShare(
  points: ArrayLike<number>[],
  labels: ArrayLike<number>,
  opts: { k?: number; metric?: "cosine" | "euclidean" } = {},
): number {
  const n = points.length;
  const k = opts.k ?? 5;
  if (labels.length !== n) throw new Error(`nearestNeighbourShare: ${n} points but ${labels.length} labels`);
  if (!Number.isInteger(k) || k < 1 || k >= n)
    throw new Error(`nearestNeighbourShare: k must be an integer from 1 to ${n - 1} (got ${k})`);
  const norms = points.map((p) => Math.sqrt(Array.from(p).reduce((t, x) => t + x * x, 0)));
  const distance = (i: number, j: number) => {
    let dot = 0,
      sq = 0;
    for (let t = 0; t < points[i].length; t++) {
      dot += points[i][t] * points[j][t];
      sq += (points[i][t] - points[j][t]) ** 2;
    }
    return opts.metric === "euclidean" ? sq : 1 - dot / (norms[i] * norms[j] || 1);
  };
  let same = 0;
  for (let i = 0; i < n; i++) {
    const nearest = Array.from({ length: n }, (_, j) => j)
      .filter((j) => j !== i)
      .map((j) => [distance(i, j), j] as const)
      .sort((a, b) => a[0] - b[0] || a[1] - b[1])
      .slice(0, k);
    same += nearest.filter(([, j]) => labels[j] === labels[i]).length;
  }
  return same / (k * n);
}

/** The share nearestNeighbourShare gives for points placed without regard to the labels. */
export function chanceShare(labels: ArrayLike<number>): number {
  const n = labels.length;
  const sizes = new Map<number, number>();
  for (let i = 0; i < n; i++) sizes.set(labels[i], (sizes.get(labels[i]) ?? 0) + 1);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += (sizes.get(labels[i])! - 1) / (n - 1);
  return sum / n;
}

/** Ranks 1 … n, ties given their average rank. */
function ranks(values: number[]): number[] {
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const out = new Array<number>(values.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
    for (let k = i; k <= j; k++) out[order[k][1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return out;
}

function pearson(a: number[], b: number[]): number {
  const n = a.length;
  const ma = a.reduce((s, v) => s + v, 0) / n;
  const mb = b.reduce((s, v) => s + v, 0) / n;
  let sab = 0,
    saa = 0,
    sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : NaN;
}

export interface SpearmanOptions {
  /** Shuffles for the permutation test (default 20,000). */
  permutations?: number;
  /** Resamples of the pairs for the bootstrap interval (default 2,000). */
  bootstrap?: number;
  /** Coverage of the interval (default 0.95). */
  confidence?: number;
  seed?: number;
}

export interface SpearmanResult {
  rho: number;
  /** Two-sided permutation p-value. */
  pValue: number;
  /** Percentile bootstrap interval for ρ. */
  ci: [number, number];
}

/**
 * Spearman's rank correlation, its two-sided p-value from a seeded permutation test (the share of
 * shuffles of b whose |ρ| is at least the observed one), which needs no distributional assumption, and a
 * seeded percentile bootstrap interval: ρ recomputed (ranks and all) on resamples of the pairs drawn with
 * replacement. A resample whose a or b values are all tied has no ρ and is left out of the interval.
 */
export function spearman(a: number[], b: number[], opts: SpearmanOptions = {}): SpearmanResult {
  if (a.length !== b.length || a.length < 3)
    throw new Error(`spearman needs two lists of the same length ≥ 3 (got ${a.length} and ${b.length})`);
  const confidence = opts.confidence ?? 0.95;
  if (!(confidence > 0 && confidence < 1))
    throw new Error(`spearman: confidence must be between 0 and 1 (got ${confidence})`);
  const ra = ranks(a);
  const rb = ranks(b);
  const rho = pearson(ra, rb);
  const n = opts.permutations ?? 20_000;
  const rng = new Rng(opts.seed ?? 0);
  const shuffled = [...rb];
  let extreme = 0;
  for (let t = 0; t < n; t++) {
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
    }
    if (Math.abs(pearson(ra, shuffled)) >= Math.abs(rho) - 1e-12) extreme++;
  }
  // a stream of its own, so the interval does not depend on the number of permutations
  const resampling = new Rng(deriveSeed(opts.seed ?? 0, 1));
  const resampled: number[] = [];
  for (let t = 0; t < (opts.bootstrap ?? 2000); t++) {
    const pick = Array.from(a, () => resampling.int(a.length));
    const r = pearson(ranks(pick.map((i) => a[i])), ranks(pick.map((i) => b[i])));
    if (!Number.isNaN(r)) resampled.push(r);
  }
  const ci: [number, number] = [quantile(resampled, (1 - confidence) / 2), quantile(resampled, (1 + confidence) / 2)];
  return { rho, pValue: (extreme + 1) / (n + 1), ci };
}
