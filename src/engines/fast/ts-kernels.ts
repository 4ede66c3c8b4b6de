// The fast engine's kernels in plain TypeScript: the fallback wherever the native addon (native/) did not
// build, and the reference the native kernels are tested against. Semantics: see kernels.ts.
//
// Arithmetic: sums are carried in double precision (JS numbers) and rounded to float32 once, when stored.
// Scratch buffers are module-level and grow on demand, so the hot loops allocate nothing.

import { Kernels } from "./kernels";
import { adamUpdate as referenceAdamUpdate } from "../../optim/optimizer";

// ---------------------------------------------------------------------------------------------------
// validation (cheap, once per call): a wrong size would otherwise read undefined → NaN, or drop writes

function fail(kernel: string, problem: string): never {
  throw new Error(`${kernel}: ${problem}`);
}

function checkDims(kernel: string, dims: Record<string, number>): void {
  for (const name in dims) {
    const v = dims[name];
    if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff)
      fail(kernel, `${name} must be a non-negative integer (got ${v})`);
  }
}

/** A Float32Array (an Int32Array when `int`) of at least `need` elements. */
function checkLen(kernel: string, name: string, arr: Float32Array | Int32Array, need: number, int = false): void {
  if (int ? !(arr instanceof Int32Array) : !(arr instanceof Float32Array))
    fail(kernel, `${name} must be ${int ? "an Int32Array" : "a Float32Array"}`);
  if (arr.length < need) fail(kernel, `${name} has ${arr.length} elements, needs at least ${need}`);
}

// ---------------------------------------------------------------------------------------------------
// scratch: one buffer per role, grown on demand and never shrunk

class Scratch<T extends Float32Array | Float64Array> {
  private buffer: T;

  constructor(private readonly create: (n: number) => T) {
    this.buffer = create(0);
  }

  /** At least n elements; their contents are whatever the last user left. */
  take(n: number): T {
    if (this.buffer.length < n) this.buffer = this.create(Math.max(n, 2 * this.buffer.length));
    return this.buffer;
  }
}

const float32 = (n: number) => new Float32Array(n);
const float64 = (n: number) => new Float64Array(n);
const matmulRowsOfA = new Scratch(float32); // [m × k] op(A) by rows
const matmulColumnsOfB = new Scratch(float32); // [n × k] op(B) by columns
const layerNormDWeight = new Scratch(float64); // [width]
const layerNormDBias = new Scratch(float64); // [width]
const attentionScores = new Scratch(float64); // [tk] one query's scores, then probabilities
const attentionOut = new Scratch(float64); // [headDim] one query's output
const attentionDScores = new Scratch(float64); // [tk] one query's score gradients
const attentionDKeys = new Scratch(float64); // [tk × headDim] one (sequence, head)'s key gradients
const attentionDValues = new Scratch(float64); // [tk × headDim] its value gradients

// ---------------------------------------------------------------------------------------------------
// matmul: op(A) as rows (m×k, contiguous) times op(B) as columns (n×k, contiguous), 2×4 register tiles of
// double dot products. Operands not already in that layout are transposed into scratch first (O(mk + kn),
// small next to the O(mnk) product).

function matmul(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  accumulate: boolean,
): void {
  checkDims("matmul", { m, n, k });
  checkLen("matmul", "a", a, m * k);
  checkLen("matmul", "b", b, k * n);
  checkLen("matmul", "c", c, m * n);
  if (m === 0 || n === 0) return;
  if (k === 0) {
    if (!accumulate) c.fill(0, 0, m * n);
    return;
  }
  // rows of op(A): A itself, or Aᵀ (A stored k×m)
  let ar = a;
  if (transA) {
    ar = matmulRowsOfA.take(m * k);
    for (let p = 0; p < k; p++) {
      const src = p * m;
      for (let i = 0; i < m; i++) ar[i * k + p] = a[src + i];
    }
  }
  // columns of op(B): B itself when transB (stored n×k), else Bᵀ (B stored k×n)
  let bc = b;
  if (!transB) {
    bc = matmulColumnsOfB.take(n * k);
    for (let p = 0; p < k; p++) {
      const src = p * n;
      for (let j = 0; j < n; j++) bc[j * k + p] = b[src + j];
    }
  }
  const m2 = m - (m % 2);
  const n4 = n - (n % 4);
  for (let i = 0; i < m2; i += 2) {
    const a0 = i * k;
    const a1 = a0 + k;
    const c0 = i * n;
    const c1 = c0 + n;
    for (let j = 0; j < n4; j += 4) {
      const b0 = j * k;
      const b1 = b0 + k;
      const b2 = b1 + k;
      const b3 = b2 + k;
      let s00 = 0,
        s01 = 0,
        s02 = 0,
        s03 = 0,
        s10 = 0,
        s11 = 0,
        s12 = 0,
        s13 = 0;
      for (let p = 0; p < k; p++) {
        const x0 = ar[a0 + p];
        const x1 = ar[a1 + p];
        let y = bc[b0 + p];
        s00 += x0 * y;
        s10 += x1 * y;
        y = bc[b1 + p];
        s01 += x0 * y;
        s11 += x1 * y;
        y = bc[b2 + p];
        s02 += x0 * y;
        s12 += x1 * y;
        y = bc[b3 + p];
        s03 += x0 * y;
        s13 += x1 * y;
      }
      if (accumulate) {
        c[c0 + j] += s00;
        c[c0 + j + 1] += s01;
        c[c0 + j + 2] += s02;
        c[c0 + j + 3] += s03;
        c[c1 + j] += s10;
        c[c1 + j + 1] += s11;
        c[c1 + j + 2] += s12;
        c[c1 + j + 3] += s13;
      } else {
        c[c0 + j] = s00;
        c[c0 + j + 1] = s01;
        c[c0 + j + 2] = s02;
        c[c0 + j + 3] = s03;
        c[c1 + j] = s10;
        c[c1 + j + 1] = s11;
        c[c1 + j + 2] = s12;
        c[c1 + j + 3] = s13;
      }
    }
    for (let j = n4; j < n; j++) {
      const b0 = j * k;
      let s0 = 0,
        s1 = 0;
      for (let p = 0; p < k; p++) {
        const y = bc[b0 + p];
        s0 += ar[a0 + p] * y;
        s1 += ar[a1 + p] * y;
      }
      if (accumulate) {
        c[c0 + j] += s0;
        c[c1 + j] += s1;
      } else {
        c[c0 + j] = s0;
        c[c1 + j] = s1;
      }
    }
  }
  if (m2 < m) {
    const a0 = m2 * k;
    const c0 = m2 * n;
    for (let j = 0; j < n; j++) {
      const b0 = j * k;
      let s = 0;
      for (let p = 0; p < k; p++) s += ar[a0 + p] * bc[b0 + p];
      if (accumulate) c[c0 + j] += s;
      else c[c0 + j] = s;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// layer norm (population variance, eps 1e-5 inside the square root; statistics in double)

const LN_EPS = 1e-5;

function layerNormForward(
  x: Float32Array,
  weight: Float32Array,
  bias: Float32Array,
  rows: number,
  width: number,
  out: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
): void {
  const K = "layerNormForward";
  checkDims(K, { rows, width });
  checkLen(K, "x", x, rows * width);
  checkLen(K, "weight", weight, width);
  checkLen(K, "bias", bias, width);
  checkLen(K, "out", out, rows * width);
  checkLen(K, "mean", mean, rows);
  checkLen(K, "rstd", rstd, rows);
  if (width === 0) return;
  for (let r = 0; r < rows; r++) {
    const o = r * width;
    let s = 0;
    for (let j = 0; j < width; j++) s += x[o + j];
    const mu = s / width;
    let ss = 0;
    for (let j = 0; j < width; j++) {
      const d = x[o + j] - mu;
      ss += d * d;
    }
    const rs = 1 / Math.sqrt(ss / width + LN_EPS);
    mean[r] = mu;
    rstd[r] = rs;
    for (let j = 0; j < width; j++) out[o + j] = (x[o + j] - mu) * rs * weight[j] + bias[j];
  }
}

function layerNormBackward(
  dout: Float32Array,
  x: Float32Array,
  weight: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  rows: number,
  width: number,
  dx: Float32Array,
  dweight: Float32Array,
  dbias: Float32Array,
): void {
  const K = "layerNormBackward";
  checkDims(K, { rows, width });
  checkLen(K, "dout", dout, rows * width);
  checkLen(K, "x", x, rows * width);
  checkLen(K, "weight", weight, width);
  checkLen(K, "mean", mean, rows);
  checkLen(K, "rstd", rstd, rows);
  checkLen(K, "dx", dx, rows * width);
  checkLen(K, "dweight", dweight, width);
  checkLen(K, "dbias", dbias, width);
  if (width === 0) return;
  const dw = layerNormDWeight.take(width);
  const db = layerNormDBias.take(width);
  dw.fill(0, 0, width);
  db.fill(0, 0, width);
  for (let r = 0; r < rows; r++) {
    const o = r * width;
    const mu = mean[r];
    const rs = rstd[r];
    let sumG = 0; // Σ dxhat
    let sumGX = 0; // Σ dxhat·xhat
    for (let j = 0; j < width; j++) {
      const xh = (x[o + j] - mu) * rs;
      const dy = dout[o + j];
      const g = dy * weight[j];
      sumG += g;
      sumGX += g * xh;
      dw[j] += dy * xh;
      db[j] += dy;
    }
    const meanG = sumG / width;
    const meanGX = sumGX / width;
    for (let j = 0; j < width; j++) {
      const xh = (x[o + j] - mu) * rs;
      dx[o + j] += rs * (dout[o + j] * weight[j] - meanG - xh * meanGX);
    }
  }
  for (let j = 0; j < width; j++) {
    dweight[j] += dw[j];
    dbias[j] += db[j];
  }
}

// ---------------------------------------------------------------------------------------------------
// attention (double precision inside; one (sequence, head) at a time)

function checkAttention(
  K: string,
  batch: number,
  tq: number,
  tk: number,
  heads: number,
  headDim: number,
  queryOffset: number,
): void {
  checkDims(K, { batch, tq, tk, heads, headDim, queryOffset });
  if (queryOffset + tq > tk) fail(K, `queryOffset + tq (${queryOffset} + ${tq}) must not exceed tk (${tk})`);
}

function attentionForward(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  batch: number,
  tq: number,
  tk: number,
  heads: number,
  headDim: number,
  queryOffset: number,
  att: Float32Array,
  out: Float32Array,
): void {
  const K = "attentionForward";
  checkAttention(K, batch, tq, tk, heads, headDim, queryOffset);
  const D = heads * headDim;
  checkLen(K, "q", q, batch * tq * D);
  checkLen(K, "k", k, batch * tk * D);
  checkLen(K, "v", v, batch * tk * D);
  checkLen(K, "att", att, batch * heads * tq * tk);
  checkLen(K, "out", out, batch * tq * D);
  const scale = 1 / Math.sqrt(headDim);
  const p = attentionScores.take(tk);
  const acc = attentionOut.take(headDim);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < tq; i++) {
        const last = queryOffset + i; // keys 0..last are visible
        const qo = (b * tq + i) * D + h * headDim;
        let max = -Infinity;
        for (let j = 0; j <= last; j++) {
          const ko = (b * tk + j) * D + h * headDim;
          let s = 0;
          for (let d = 0; d < headDim; d++) s += q[qo + d] * k[ko + d];
          s *= scale;
          p[j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = 0; j <= last; j++) {
          const e = Math.exp(p[j] - max);
          p[j] = e;
          sum += e;
        }
        const ao = ((b * heads + h) * tq + i) * tk;
        acc.fill(0, 0, headDim);
        for (let j = 0; j <= last; j++) {
          const pj = p[j] / sum;
          att[ao + j] = pj;
          const vo = (b * tk + j) * D + h * headDim;
          for (let d = 0; d < headDim; d++) acc[d] += pj * v[vo + d];
        }
        for (let j = last + 1; j < tk; j++) att[ao + j] = 0;
        for (let d = 0; d < headDim; d++) out[qo + d] = acc[d];
      }
    }
  }
}

function attentionBackward(
  dout: Float32Array,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  att: Float32Array,
  batch: number,
  tq: number,
  tk: number,
  heads: number,
  headDim: number,
  queryOffset: number,
  dq: Float32Array,
  dk: Float32Array,
  dv: Float32Array,
): void {
  const K = "attentionBackward";
  checkAttention(K, batch, tq, tk, heads, headDim, queryOffset);
  const D = heads * headDim;
  checkLen(K, "dout", dout, batch * tq * D);
  checkLen(K, "q", q, batch * tq * D);
  checkLen(K, "k", k, batch * tk * D);
  checkLen(K, "v", v, batch * tk * D);
  checkLen(K, "att", att, batch * heads * tq * tk);
  checkLen(K, "dq", dq, batch * tq * D);
  checkLen(K, "dk", dk, batch * tk * D);
  checkLen(K, "dv", dv, batch * tk * D);
  const scale = 1 / Math.sqrt(headDim);
  const ds = attentionDScores.take(tk);
  const dkAcc = attentionDKeys.take(tk * headDim);
  const dvAcc = attentionDValues.take(tk * headDim);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      dkAcc.fill(0, 0, tk * headDim);
      dvAcc.fill(0, 0, tk * headDim);
      for (let i = 0; i < tq; i++) {
        const last = queryOffset + i;
        const qo = (b * tq + i) * D + h * headDim;
        const ao = ((b * heads + h) * tq + i) * tk;
        // dP_j = dout_i·v_j; dv_j += P_ij·dout_i
        let dot = 0;
        for (let j = 0; j <= last; j++) {
          const vo = (b * tk + j) * D + h * headDim;
          const pj = att[ao + j];
          let s = 0;
          for (let d = 0; d < headDim; d++) {
            const g = dout[qo + d];
            s += g * v[vo + d];
            dvAcc[j * headDim + d] += pj * g;
          }
          ds[j] = s;
          dot += pj * s;
        }
        // dS_j = P_ij·(dP_j − Σ P·dP)·scale; dq_i += Σ_j dS_j·k_j; dk_j += dS_j·q_i
        for (let j = 0; j <= last; j++) ds[j] = att[ao + j] * (ds[j] - dot) * scale;
        for (let d = 0; d < headDim; d++) {
          const qd = q[qo + d];
          let s = 0;
          for (let j = 0; j <= last; j++) {
            const ko = (b * tk + j) * D + h * headDim;
            s += ds[j] * k[ko + d];
            dkAcc[j * headDim + d] += ds[j] * qd;
          }
          dq[qo + d] += s;
        }
      }
      for (let j = 0; j < tk; j++) {
        const o = (b * tk + j) * D + h * headDim;
        for (let d = 0; d < headDim; d++) {
          dk[o + d] += dkAcc[j * headDim + d];
          dv[o + d] += dvAcc[j * headDim + d];
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// softmax cross-entropy (double precision)

/** The checks both cross-entropy kernels make before they read anything. */
function checkCrossEntropy(
  K: string,
  logits: Float32Array,
  targets: Int32Array,
  rows: number,
  classes: number,
  losses: Float32Array,
  dlogits: Float32Array | null,
): void {
  checkDims(K, { rows, classes });
  checkLen(K, "logits", logits, rows * classes);
  checkLen(K, "targets", targets, rows, true);
  checkLen(K, "losses", losses, rows);
  if (dlogits) checkLen(K, "dlogits", dlogits, rows * classes);
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t < 0 || t >= classes) fail(K, `target ${t} of row ${r} is outside 0..${classes - 1}`);
  }
}

function softmaxCrossEntropy(
  logits: Float32Array,
  targets: Int32Array,
  rows: number,
  classes: number,
  losses: Float32Array,
  dlogits: Float32Array | null,
  scale: number,
): void {
  checkCrossEntropy("softmaxCrossEntropy", logits, targets, rows, classes, losses, dlogits);
  for (let r = 0; r < rows; r++) {
    const o = r * classes;
    let max = -Infinity;
    for (let j = 0; j < classes; j++) if (logits[o + j] > max) max = logits[o + j];
    let sum = 0;
    for (let j = 0; j < classes; j++) sum += Math.exp(logits[o + j] - max);
    const t = targets[r];
    losses[r] = Math.log(sum) - (logits[o + t] - max);
    if (dlogits) {
      for (let j = 0; j < classes; j++) {
        const pj = Math.exp(logits[o + j] - max) / sum;
        dlogits[o + j] = (j === t ? pj - 1 : pj) * scale;
      }
    }
  }
}

/** StableMax's s(x): x + 1 for x ≥ 0, 1/(1 − x) below (continuous, with slope 1 at 0 from both sides). */
function stablemaxS(x: number): number {
  return x >= 0 ? x + 1 : 1 / (1 - x);
}

/** s'(x): 1 for x ≥ 0, 1/(1 − x)² below. */
function stablemaxSlope(x: number): number {
  return x >= 0 ? 1 : 1 / ((1 - x) * (1 - x));
}

function stablemaxCrossEntropy(
  logits: Float32Array,
  targets: Int32Array,
  rows: number,
  classes: number,
  losses: Float32Array,
  dlogits: Float32Array | null,
  scale: number,
): void {
  checkCrossEntropy("stablemaxCrossEntropy", logits, targets, rows, classes, losses, dlogits);
  for (let r = 0; r < rows; r++) {
    const o = r * classes;
    let sum = 0;
    for (let j = 0; j < classes; j++) sum += stablemaxS(logits[o + j]);
    const t = targets[r];
    const st = stablemaxS(logits[o + t]);
    losses[r] = Math.log(sum) - Math.log(st);
    if (dlogits) {
      for (let j = 0; j < classes; j++) {
        const dj = stablemaxSlope(logits[o + j]) / sum;
        dlogits[o + j] = (j === t ? dj - stablemaxSlope(logits[o + t]) / st : dj) * scale;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// activations

/** erfc(z) for z ≥ 0: Chebyshev fit (Numerical Recipes 3rd ed., Erf::erfccheb), ~1e-14 relative. */
const ERFC_COF = [
  -1.3026537197817094, 6.4196979235649026e-1, 1.9476473204185836e-2, -9.561514786808631e-3, -9.46595344482036e-4,
  3.66839497852761e-4, 4.2523324806907e-5, -2.0278578112534e-5, -1.624290004647e-6, 1.30365583558e-6, 1.5626441722e-8,
  -8.5238095915e-8, 6.529054439e-9, 5.059343495e-9, -9.91364156e-10, -2.27365122e-10, 9.6467911e-11, 2.394038e-12,
  -6.886027e-12, 8.94487e-13, 3.13092e-13, -1.12708e-13, 3.81e-16, 7.106e-15, -1.523e-15, -9.4e-17, 1.21e-16, -2.8e-17,
];
function erfcPos(z: number): number {
  const t = 2 / (2 + z);
  const ty = 4 * t - 2;
  let d = 0;
  let dd = 0;
  for (let j = ERFC_COF.length - 1; j > 0; j--) {
    const tmp = d;
    d = ty * d - dd + ERFC_COF[j];
    dd = tmp;
  }
  return t * Math.exp(-z * z + 0.5 * (ERFC_COF[0] + ty * d) - dd);
}
/** The complementary error function in double precision (JS has no Math.erf). */
export function erfc(x: number): number {
  return x >= 0 ? erfcPos(x) : 2 - erfcPos(-x);
}
/** Φ(x), the standard normal CDF, accurate in relative terms in both tails. */
export function normalCdf(x: number): number {
  return 0.5 * erfc(-x * Math.SQRT1_2);
}
const INV_SQRT_2PI = 0.3989422804014327;

function checkAct(K: string, kind: string, n: number, arrays: Record<string, Float32Array>): void {
  if (kind !== "relu" && kind !== "gelu") fail(K, `unknown activation "${kind}" (relu or gelu)`);
  checkDims(K, { n });
  for (const name in arrays) checkLen(K, name, arrays[name], n);
}

function activationForward(kind: "relu" | "gelu", x: Float32Array, out: Float32Array, n: number): void {
  checkAct("activationForward", kind, n, { x, out });
  if (kind === "relu") {
    for (let i = 0; i < n; i++) {
      const xi = x[i];
      out[i] = xi <= 0 ? 0 : xi; // NaN propagates
    }
  } else {
    for (let i = 0; i < n; i++) {
      const xi = x[i];
      out[i] = xi * normalCdf(xi);
    }
  }
}

function activationBackward(
  kind: "relu" | "gelu",
  dout: Float32Array,
  x: Float32Array,
  dx: Float32Array,
  n: number,
): void {
  checkAct("activationBackward", kind, n, { dout, x, dx });
  if (kind === "relu") {
    for (let i = 0; i < n; i++) dx[i] = x[i] > 0 ? dout[i] : 0;
  } else {
    for (let i = 0; i < n; i++) {
      const xi = x[i];
      dx[i] = dout[i] * (normalCdf(xi) + xi * INV_SQRT_2PI * Math.exp(-0.5 * xi * xi));
    }
  }
}

// Adam / AdamW: the optimizer's own loop (optim/optimizer.ts), which the native kernel reproduces bit for bit
function adamUpdate(
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  init: Float32Array | null,
  noise: Float32Array | null,
  n: number,
  lr: number,
  beta1: number,
  beta2: number,
  eps: number,
  bc1: number,
  bc2: number,
  weightDecay: number,
  decoupled: boolean,
): void {
  const K = "adamUpdate";
  checkDims(K, { n });
  checkLen(K, "p", p, n);
  checkLen(K, "g", g, n);
  checkLen(K, "m", m, n);
  checkLen(K, "v", v, n);
  if (init) checkLen(K, "init", init, n);
  if (noise) checkLen(K, "noise", noise, n);
  referenceAdamUpdate(p, g, m, v, init, noise, n, lr, beta1, beta2, eps, bc1, bc2, weightDecay, decoupled);
}

export const tsKernels: Kernels = {
  kind: "typescript",
  threads: () => 1,
  setThreads: (_n: number) => {},
  matmul,
  layerNormForward,
  layerNormBackward,
  attentionForward,
  attentionBackward,
  softmaxCrossEntropy,
  stablemaxCrossEntropy,
  activationForward,
  activationBackward,
  adamUpdate,
};
