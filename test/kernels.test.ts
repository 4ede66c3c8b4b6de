// The fast engine's kernels: TypeScript against naive float64 references (and finite differences for the
// backward kernels), native against TypeScript, native with 1 and 2 threads bit for bit, and Adam native
// vs TypeScript bit for bit. Native tests are skipped when the addon is not built, unless
// GROK_REQUIRE_NATIVE=1, which makes a missing addon a failure.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { Kernels } from "../src/engines/fast/kernels";
import { loadKernels, NATIVE_ADDON_PATH } from "../src/engines/fast/load-kernels";
import { tsKernels } from "../src/engines/fast/ts-kernels";
import { Rng } from "../src/util/rng";

// ---------------------------------------------------------------------------------------------------
// setup

const requireNative = process.env.GROK_REQUIRE_NATIVE === "1";
const nativeLoad: { kernels: Kernels | null; error: string } = (() => {
  try {
    return { kernels: loadKernels("native").kernels, error: "" };
  } catch (err) {
    return { kernels: null, error: (err as Error).message };
  }
})();
const nativeSkip: string | false =
  nativeLoad.kernels || requireNative ? false : `native addon not loadable: ${nativeLoad.error}`;

/** A test of the native kernels: skipped when the addon is missing, failed if GROK_REQUIRE_NATIVE=1. */
function nativeTest(name: string, fn: (nk: Kernels) => void): void {
  test(`native: ${name}`, { skip: nativeSkip }, () => {
    if (!nativeLoad.kernels) assert.fail(`GROK_REQUIRE_NATIVE=1 but ${nativeLoad.error}`);
    fn(nativeLoad.kernels);
  });
}

/** Runs fn with the native kernels at the given thread count, restoring the count afterwards. */
function withThreads<T>(nk: Kernels, n: number, fn: () => T): T {
  const before = nk.threads();
  nk.setThreads(n);
  try {
    return fn();
  } finally {
    nk.setThreads(before);
  }
}

const rng = new Rng(20220106);
const uniform = (n: number, lo = -1, hi = 1) => rng.fillUniform(new Float32Array(n), lo, hi);
const normal = (n: number, std = 1) => rng.fillNormal(new Float32Array(n), std);
const f64 = (a: ArrayLike<number>) => Float64Array.from(a);

function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: (i: number) => number,
  what: string,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    if (!(err <= tol(i)))
      assert.fail(
        `${what}[${i}]: ${actual[i]} vs ${expected[i]} (|err| ${err.toExponential(2)} > ${tol(i).toExponential(2)})`,
      );
  }
}

function assertBitwise(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++)
    if (a[i] !== b[i]) assert.fail(`${what}[${i}]: ${actual[i]} !== ${expected[i]} (not bitwise equal)`);
}

/** |fd − analytic| within rel·scaleSum + abs: a directional derivative against Σ grad·dir. */
function assertDirectional(fd: number, analytic: number, scaleSum: number, what: string, rel = 2e-4): void {
  const err = Math.abs(fd - analytic);
  assert.ok(
    err <= rel * scaleSum + 1e-9,
    `${what}: finite difference ${fd} vs analytic ${analytic} (|err| ${err.toExponential(2)}, scale ${scaleSum.toExponential(2)})`,
  );
}

// ---------------------------------------------------------------------------------------------------
// matmul

type MatmulCase = { ta: boolean; tb: boolean; m: number; n: number; k: number };

function opA(c: MatmulCase, a: ArrayLike<number>, i: number, p: number): number {
  return c.ta ? a[p * c.m + i] : a[i * c.k + p];
}
function opB(c: MatmulCase, b: ArrayLike<number>, p: number, j: number): number {
  return c.tb ? b[j * c.k + p] : b[p * c.n + j];
}

/** Checks c (the kernel's result) against float64 sums at `entries` (all when null): c0 + op(A)·op(B). */
function checkMatmul(
  c: MatmulCase,
  a: Float32Array,
  b: Float32Array,
  c0: Float32Array | null,
  out: Float32Array,
  entries: number[] | null,
  what: string,
): void {
  const idx = entries ?? Array.from({ length: c.m * c.n }, (_, i) => i);
  // float32 products summed in float32 blocks of ≤ 256: allow ~1e-5 of Σ|a·b| per 512 terms
  const rel = 1e-5 * Math.max(1, c.k / 512);
  for (const e of idx) {
    const i = Math.floor(e / c.n);
    const j = e % c.n;
    let s = c0 ? c0[e] : 0;
    let mag = c0 ? Math.abs(c0[e]) : 0;
    for (let p = 0; p < c.k; p++) {
      const t = opA(c, a, i, p) * opB(c, b, p, j);
      s += t;
      mag += Math.abs(t);
    }
    const err = Math.abs(out[e] - s);
    if (!(err <= rel * mag + 1e-30))
      assert.fail(
        `${what}: C[${i},${j}] = ${out[e]} vs ${s} (|err| ${err.toExponential(2)}, Σ|ab| ${mag.toExponential(2)})`,
      );
  }
}

function sampleEntries(total: number, count: number): number[] | null {
  if (total <= count) return null;
  const out = [0, total - 1];
  for (let i = 0; i < count; i++) out.push(rng.int(total));
  return out;
}

const FORMS: Array<[boolean, boolean]> = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];
const formName = (ta: boolean, tb: boolean) => `${ta ? "T" : "N"}${tb ? "T" : "N"}`;
const SMALL_SHAPES: Array<[number, number, number]> = [
  [1, 1, 1],
  [7, 7, 7],
  [33, 7, 129],
  [129, 33, 7],
  [7, 129, 33],
  [33, 129, 129],
  [1, 97, 33],
  [129, 1, 7],
];
/** The real ones: forward (NN), weight gradient (TN), input gradient (NT) of a 2048×128 → 512 layer. */
const REAL: MatmulCase[] = [
  { ta: false, tb: false, m: 2048, n: 512, k: 128 },
  { ta: true, tb: false, m: 128, n: 512, k: 2048 },
  { ta: false, tb: true, m: 2048, n: 128, k: 512 },
  { ta: false, tb: false, m: 2048, n: 97, k: 128 },
];

function runMatmul(
  kern: Kernels,
  c: MatmulCase,
  a: Float32Array,
  b: Float32Array,
  c0: Float32Array | null,
): Float32Array {
  const out = c0 ? c0.slice() : new Float32Array(c.m * c.n).fill(Number.NaN); // NaN: a plain product must overwrite
  kern.matmul(c.ta, c.tb, c.m, c.n, c.k, a, b, out, c0 !== null);
  return out;
}

test("ts matmul: all transpose forms, odd sizes, accumulate, vs float64", () => {
  for (const [m, n, k] of SMALL_SHAPES)
    for (const [ta, tb] of FORMS)
      for (const acc of [false, true]) {
        const c: MatmulCase = { ta, tb, m, n, k };
        const a = uniform(m * k);
        const b = uniform(k * n);
        const c0 = acc ? uniform(m * n) : null;
        checkMatmul(
          c,
          a,
          b,
          c0,
          runMatmul(tsKernels, c, a, b, c0),
          null,
          `ts ${formName(ta, tb)} ${m}×${n}×${k}${acc ? " acc" : ""}`,
        );
      }
});

test("ts matmul: the real sizes vs float64 (sampled entries)", () => {
  for (const c of REAL) {
    const a = uniform(c.m * c.k);
    const b = uniform(c.k * c.n);
    const c0 = c.n === 97 ? uniform(c.m * c.n) : null;
    checkMatmul(
      c,
      a,
      b,
      c0,
      runMatmul(tsKernels, c, a, b, c0),
      sampleEntries(c.m * c.n, 300),
      `ts ${formName(c.ta, c.tb)} ${c.m}×${c.n}×${c.k}`,
    );
  }
});

test("ts matmul: k = 0 zeroes (or keeps) C; bad sizes throw", () => {
  const c = new Float32Array([1, 2, 3, 4]);
  tsKernels.matmul(false, false, 2, 2, 0, new Float32Array(0), new Float32Array(0), c, true);
  assert.deepEqual([...c], [1, 2, 3, 4]);
  tsKernels.matmul(false, false, 2, 2, 0, new Float32Array(0), new Float32Array(0), c, false);
  assert.deepEqual([...c], [0, 0, 0, 0]);
  assert.throws(
    () => tsKernels.matmul(false, false, 2, 2, 2, new Float32Array(4), new Float32Array(4), new Float32Array(3), false),
    /matmul: c has 3 elements, needs at least 4/,
  );
  assert.throws(
    () =>
      tsKernels.matmul(false, false, 2.5, 2, 2, new Float32Array(6), new Float32Array(4), new Float32Array(6), false),
    /matmul: m must be a non-negative integer/,
  );
  assert.throws(
    () =>
      tsKernels.matmul(
        false,
        false,
        2,
        2,
        2,
        new Float64Array(4) as unknown as Float32Array,
        new Float32Array(4),
        new Float32Array(4),
        false,
      ),
    /matmul: a must be a Float32Array/,
  );
  assert.throws(
    () =>
      tsKernels.layerNormForward(
        new Float32Array(8),
        new Float32Array(4),
        new Float32Array(4),
        2,
        4,
        new Float32Array(8),
        new Float32Array(1),
        new Float32Array(2),
      ),
    /layerNormForward: mean has 1 elements, needs at least 2/,
  );
});

nativeTest("matmul: all transpose forms, odd sizes, accumulate, vs float64 and TypeScript", (nk) => {
  for (const [m, n, k] of [...SMALL_SHAPES, [65, 47, 300], [12, 200, 513]] as Array<[number, number, number]>)
    for (const [ta, tb] of FORMS)
      for (const acc of [false, true]) {
        const c: MatmulCase = { ta, tb, m, n, k };
        const a = uniform(m * k);
        const b = uniform(k * n);
        const c0 = acc ? uniform(m * n) : null;
        const what = `native ${formName(ta, tb)} ${m}×${n}×${k}${acc ? " acc" : ""}`;
        const got = runMatmul(nk, c, a, b, c0);
        checkMatmul(c, a, b, c0, got, null, what);
        const ts = runMatmul(tsKernels, c, a, b, c0);
        assertClose(got, ts, (i) => 1e-5 * (Math.abs(ts[i]) + Math.sqrt(k)), `${what} vs ts`);
      }
});

nativeTest("matmul: the real sizes vs float64 and TypeScript, bitwise equal with 1 and 2 threads", (nk) => {
  const more: MatmulCase[] = [
    { ta: true, tb: true, m: 129, n: 97, k: 129 },
    { ta: false, tb: false, m: 12, n: 512, k: 2048 },
    { ta: true, tb: true, m: 601, n: 47, k: 300 },
    { ta: true, tb: false, m: 777, n: 33, k: 513 },
    { ta: false, tb: true, m: 1000, n: 9, k: 77 },
  ];
  for (const c of [...REAL, ...more]) {
    const a = uniform(c.m * c.k);
    const b = uniform(c.k * c.n);
    for (const acc of [false, true]) {
      const c0 = acc ? uniform(c.m * c.n) : null;
      const what = `native ${formName(c.ta, c.tb)} ${c.m}×${c.n}×${c.k}${acc ? " acc" : ""}`;
      const one = withThreads(nk, 1, () => runMatmul(nk, c, a, b, c0));
      const two = withThreads(nk, 2, () => runMatmul(nk, c, a, b, c0));
      assertBitwise(two, one, `${what}: 2 threads vs 1`);
      checkMatmul(c, a, b, c0, one, sampleEntries(c.m * c.n, 300), what);
      if (!acc) {
        const ts = runMatmul(tsKernels, c, a, b, c0);
        assertClose(one, ts, (i) => 1e-5 * (Math.abs(ts[i]) + Math.sqrt(c.k)), `${what} vs ts`);
      }
    }
  }
});

nativeTest("matmul: k = 0, and sizes that would read out of bounds throw a named Error", (nk) => {
  const c = new Float32Array([1, 2, 3, 4]);
  nk.matmul(false, false, 2, 2, 0, new Float32Array(0), new Float32Array(0), c, true);
  assert.deepEqual([...c], [1, 2, 3, 4]);
  nk.matmul(true, true, 2, 2, 0, new Float32Array(0), new Float32Array(0), c, false);
  assert.deepEqual([...c], [0, 0, 0, 0]);
  assert.throws(
    () => nk.matmul(false, false, 2, 2, 2, new Float32Array(4), new Float32Array(4), new Float32Array(3), false),
    /matmul: c has 3 elements, needs at least 4/,
  );
  assert.throws(
    () => nk.matmul(false, false, 2, 3, 2, new Float32Array(4), new Float32Array(5), new Float32Array(6), false),
    /matmul: b has 5 elements, needs at least 6/,
  );
  assert.throws(
    () => nk.matmul(false, false, -1, 2, 2, new Float32Array(4), new Float32Array(4), new Float32Array(4), false),
    /matmul: m must be a non-negative integer/,
  );
  assert.throws(
    () =>
      nk.matmul(
        false,
        false,
        2,
        2,
        2,
        new Float64Array(4) as unknown as Float32Array,
        new Float32Array(4),
        new Float32Array(4),
        false,
      ),
    /matmul: a must be a Float32Array/,
  );
  assert.throws(
    () => (nk.matmul as unknown as (...args: unknown[]) => void)(false, false, 2),
    /matmul: expected 9 arguments/,
  );
});

// ---------------------------------------------------------------------------------------------------
// layer norm

function refLayerNorm(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number>, rows: number, width: number) {
  const out = new Float64Array(rows * width);
  const mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < width; j++) s += x[r * width + j];
    const mu = s / width;
    let v = 0;
    for (let j = 0; j < width; j++) v += (x[r * width + j] - mu) ** 2;
    const rs = 1 / Math.sqrt(v / width + 1e-5);
    mean[r] = mu;
    rstd[r] = rs;
    for (let j = 0; j < width; j++) out[r * width + j] = (x[r * width + j] - mu) * rs * w[j] + b[j];
  }
  return { out, mean, rstd };
}

/** Analytic float64 gradients of Σ dout·LN(x). */
function refLayerNormGrad(
  dout: ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  width: number,
) {
  const { mean, rstd } = refLayerNorm(x, w, new Float64Array(width), rows, width);
  const dx = new Float64Array(rows * width);
  const dw = new Float64Array(width);
  const db = new Float64Array(width);
  for (let r = 0; r < rows; r++) {
    const xh = (j: number) => (x[r * width + j] - mean[r]) * rstd[r];
    let g1 = 0;
    let g2 = 0;
    for (let j = 0; j < width; j++) {
      const g = dout[r * width + j] * w[j];
      g1 += g;
      g2 += g * xh(j);
      dw[j] += dout[r * width + j] * xh(j);
      db[j] += dout[r * width + j];
    }
    for (let j = 0; j < width; j++)
      dx[r * width + j] = (rstd[r] / width) * (width * dout[r * width + j] * w[j] - g1 - xh(j) * g2);
  }
  return { dx, dw, db };
}

const LN_SHAPES: Array<[number, number]> = [
  [1, 1],
  [7, 7],
  [33, 129],
  [2048, 128],
];

function lnInputs(rows: number, width: number) {
  const x = normal(rows * width, 2);
  for (let r = 0; r < rows; r++) for (let j = 0; j < width; j++) x[r * width + j] += r % 5; // row offsets
  return { x, w: uniform(width, 0.5, 1.5), b: uniform(width, -0.5, 0.5), dout: normal(rows * width) };
}

function runLnForward(kern: Kernels, x: Float32Array, w: Float32Array, b: Float32Array, rows: number, width: number) {
  const out = new Float32Array(rows * width);
  const mean = new Float32Array(rows);
  const rstd = new Float32Array(rows);
  kern.layerNormForward(x, w, b, rows, width, out, mean, rstd);
  return { out, mean, rstd };
}

function runLnBackward(
  kern: Kernels,
  dout: Float32Array,
  x: Float32Array,
  w: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  rows: number,
  width: number,
  init: { dx: Float32Array; dw: Float32Array; db: Float32Array },
) {
  const dx = init.dx.slice();
  const dw = init.dw.slice();
  const db = init.db.slice();
  kern.layerNormBackward(dout, x, w, mean, rstd, rows, width, dx, dw, db);
  return { dx, dw, db };
}

function checkLayerNorm(kern: Kernels, rows: number, width: number): void {
  const what = `${kern.kind} layer norm ${rows}×${width}`;
  const { x, w, b, dout } = lnInputs(rows, width);
  const ref = refLayerNorm(x, w, b, rows, width);
  const fw = runLnForward(kern, x, w, b, rows, width);
  assertClose(fw.out, ref.out, (i) => 1e-5 * (1 + Math.abs(ref.out[i])), `${what} out`);
  assertClose(fw.mean, ref.mean, (i) => 1e-6 * (1 + Math.abs(ref.mean[i])), `${what} mean`);
  assertClose(fw.rstd, ref.rstd, (i) => 1e-6 * Math.abs(ref.rstd[i]), `${what} rstd`);

  // backward accumulates onto what is there
  const init = { dx: uniform(rows * width), dw: uniform(width), db: uniform(width) };
  const got = runLnBackward(kern, dout, x, w, fw.mean, fw.rstd, rows, width, init);
  const g = refLayerNormGrad(dout, x, w, rows, width);
  const gradTol = (ref: Float64Array, scale: number) => (i: number) => 2e-5 * (Math.abs(ref[i]) + scale);
  const sub = (a: Float32Array, b: Float32Array) => f64(a).map((v, i) => v - b[i]);
  assertClose(sub(got.dx, init.dx), g.dx, gradTol(g.dx, 1), `${what} dx`);
  assertClose(sub(got.dw, init.dw), g.dw, gradTol(g.dw, Math.sqrt(rows)), `${what} dweight`);
  assertClose(sub(got.db, init.db), g.db, gradTol(g.db, Math.sqrt(rows)), `${what} dbias`);

  // directional derivative of L = Σ dout·LN(x; w, b) in float64
  const L = (xx: ArrayLike<number>, ww: ArrayLike<number>, bb: ArrayLike<number>) => {
    const o = refLayerNorm(xx, ww, bb, rows, width).out;
    let s = 0;
    for (let i = 0; i < o.length; i++) s += dout[i] * o[i];
    return s;
  };
  const dirX = normal(rows * width);
  const dirW = normal(width);
  const dirB = normal(width);
  const h = 1e-5;
  const shift = (v: ArrayLike<number>, d: ArrayLike<number>, t: number) => f64(v).map((e, i) => e + t * d[i]);
  const fd =
    (L(shift(x, dirX, h), shift(w, dirW, h), shift(b, dirB, h)) -
      L(shift(x, dirX, -h), shift(w, dirW, -h), shift(b, dirB, -h))) /
    (2 * h);
  let an = 0;
  let mag = 0;
  const parts: Array<[Float64Array, Float32Array]> = [
    [sub(got.dx, init.dx), dirX],
    [sub(got.dw, init.dw), dirW],
    [sub(got.db, init.db), dirB],
  ];
  for (const [gr, dir] of parts)
    for (let i = 0; i < gr.length; i++) {
      an += gr[i] * dir[i];
      mag += Math.abs(gr[i] * dir[i]);
    }
  assertDirectional(fd, an, mag, `${what} directional derivative`);
}

test("ts layer norm forward/backward vs float64 reference and finite differences", () => {
  for (const [rows, width] of LN_SHAPES) checkLayerNorm(tsKernels, rows, width);
});

nativeTest("layer norm forward/backward vs float64 and TypeScript; 1 and 2 threads bitwise", (nk) => {
  for (const [rows, width] of LN_SHAPES) checkLayerNorm(nk, rows, width);
  for (const [rows, width] of [
    [2048, 128],
    [333, 97],
  ] as Array<[number, number]>) {
    const what = `native layer norm ${rows}×${width}`;
    const { x, w, b, dout } = lnInputs(rows, width);
    const init = { dx: uniform(rows * width), dw: uniform(width), db: uniform(width) };
    const run = () => {
      const fw = runLnForward(nk, x, w, b, rows, width);
      return { fw, bw: runLnBackward(nk, dout, x, w, fw.mean, fw.rstd, rows, width, init) };
    };
    const one = withThreads(nk, 1, run);
    const two = withThreads(nk, 2, run);
    for (const key of ["out", "mean", "rstd"] as const)
      assertBitwise(two.fw[key], one.fw[key], `${what} ${key} 2 vs 1 threads`);
    for (const key of ["dx", "dw", "db"] as const)
      assertBitwise(two.bw[key], one.bw[key], `${what} ${key} 2 vs 1 threads`);
    const fwTs = runLnForward(tsKernels, x, w, b, rows, width);
    const bwTs = runLnBackward(tsKernels, dout, x, w, fwTs.mean, fwTs.rstd, rows, width, init);
    assertClose(one.fw.out, fwTs.out, (i) => 1e-6 * (1 + Math.abs(fwTs.out[i])), `${what} out vs ts`);
    assertClose(one.bw.dx, bwTs.dx, (i) => 1e-6 * (1 + Math.abs(bwTs.dx[i])), `${what} dx vs ts`);
    assertClose(one.bw.dw, bwTs.dw, (i) => 1e-6 * (1 + Math.abs(bwTs.dw[i])), `${what} dweight vs ts`);
  }
  assert.throws(
    () =>
      nk.layerNormForward(
        new Float32Array(8),
        new Float32Array(4),
        new Float32Array(4),
        2,
        4,
        new Float32Array(8),
        new Float32Array(1),
        new Float32Array(2),
      ),
    /layerNormForward: mean has 1 elements, needs at least 2/,
  );
  assert.throws(
    () =>
      nk.layerNormBackward(
        new Float32Array(8),
        new Float32Array(8),
        new Float32Array(4),
        new Float32Array(2),
        new Float32Array(2),
        2,
        4,
        new Float32Array(8),
        new Float32Array(3),
        new Float32Array(4),
      ),
    /layerNormBackward: dweight has 3 elements/,
  );
});

// ---------------------------------------------------------------------------------------------------
// attention

type AttDims = { batch: number; tq: number; tk: number; heads: number; headDim: number; offset: number };
const ATT_CASES: AttDims[] = [
  { batch: 3, tq: 4, tk: 4, heads: 4, headDim: 32, offset: 0 },
  { batch: 3, tq: 2, tk: 4, heads: 4, headDim: 32, offset: 2 },
  { batch: 3, tq: 1, tk: 4, heads: 4, headDim: 32, offset: 3 },
  { batch: 1, tq: 1, tk: 1, heads: 1, headDim: 1, offset: 0 },
  { batch: 2, tq: 3, tk: 7, heads: 3, headDim: 5, offset: 1 },
];

function refAttention(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, d: AttDims) {
  const { batch, tq, tk, heads, headDim, offset } = d;
  const D = heads * headDim;
  const att = new Float64Array(batch * heads * tq * tk);
  const out = new Float64Array(batch * tq * D);
  const scale = 1 / Math.sqrt(headDim);
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < tq; i++) {
        const s: number[] = [];
        for (let j = 0; j < tk; j++) {
          if (j > offset + i) {
            s.push(-Infinity);
            continue;
          }
          let dot = 0;
          for (let e = 0; e < headDim; e++)
            dot += q[(b * tq + i) * D + h * headDim + e] * k[(b * tk + j) * D + h * headDim + e];
          s.push(dot * scale);
        }
        const mx = Math.max(...s);
        const ex = s.map((x) => Math.exp(x - mx));
        const z = ex.reduce((p, c) => p + c, 0);
        for (let j = 0; j < tk; j++) att[((b * heads + h) * tq + i) * tk + j] = ex[j] / z;
        for (let e = 0; e < headDim; e++) {
          let o = 0;
          for (let j = 0; j < tk; j++)
            o += att[((b * heads + h) * tq + i) * tk + j] * v[(b * tk + j) * D + h * headDim + e];
          out[(b * tq + i) * D + h * headDim + e] = o;
        }
      }
  return { att, out };
}

/** Analytic float64 gradients of Σ dout·attention(q, k, v). */
function refAttentionGrad(
  dout: ArrayLike<number>,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  d: AttDims,
) {
  const { batch, tq, tk, heads, headDim } = d;
  const D = heads * headDim;
  const { att } = refAttention(q, k, v, d);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const scale = 1 / Math.sqrt(headDim);
  const qi = (b: number, i: number, h: number, e: number) => (b * tq + i) * D + h * headDim + e;
  const kj = (b: number, j: number, h: number, e: number) => (b * tk + j) * D + h * headDim + e;
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < tq; i++) {
        const P = (j: number) => att[((b * heads + h) * tq + i) * tk + j];
        const dP = new Float64Array(tk);
        for (let j = 0; j < tk; j++)
          for (let e = 0; e < headDim; e++) dP[j] += dout[qi(b, i, h, e)] * v[kj(b, j, h, e)];
        let rowDot = 0;
        for (let j = 0; j < tk; j++) rowDot += P(j) * dP[j];
        for (let j = 0; j < tk; j++) {
          const dS = P(j) * (dP[j] - rowDot);
          for (let e = 0; e < headDim; e++) {
            dv[kj(b, j, h, e)] += P(j) * dout[qi(b, i, h, e)];
            dq[qi(b, i, h, e)] += dS * scale * k[kj(b, j, h, e)];
            dk[kj(b, j, h, e)] += dS * scale * q[qi(b, i, h, e)];
          }
        }
      }
  return { dq, dk, dv };
}

function attInputs(d: AttDims) {
  const D = d.heads * d.headDim;
  return {
    q: normal(d.batch * d.tq * D),
    k: normal(d.batch * d.tk * D),
    v: normal(d.batch * d.tk * D),
    dout: normal(d.batch * d.tq * D),
  };
}

function runAttention(
  kern: Kernels,
  inp: ReturnType<typeof attInputs>,
  d: AttDims,
  init: { dq: Float32Array; dk: Float32Array; dv: Float32Array },
) {
  const att = new Float32Array(d.batch * d.heads * d.tq * d.tk).fill(Number.NaN);
  const out = new Float32Array(inp.dout.length).fill(Number.NaN);
  kern.attentionForward(inp.q, inp.k, inp.v, d.batch, d.tq, d.tk, d.heads, d.headDim, d.offset, att, out);
  const dq = init.dq.slice();
  const dk = init.dk.slice();
  const dv = init.dv.slice();
  kern.attentionBackward(
    inp.dout,
    inp.q,
    inp.k,
    inp.v,
    att,
    d.batch,
    d.tq,
    d.tk,
    d.heads,
    d.headDim,
    d.offset,
    dq,
    dk,
    dv,
  );
  return { att, out, dq, dk, dv };
}

const attName = (d: AttDims) => `b${d.batch} tq${d.tq} tk${d.tk} h${d.heads}×${d.headDim} offset ${d.offset}`;

function checkAttention(kern: Kernels, d: AttDims): void {
  const what = `${kern.kind} attention ${attName(d)}`;
  const inp = attInputs(d);
  const init = { dq: uniform(inp.q.length), dk: uniform(inp.k.length), dv: uniform(inp.v.length) };
  const got = runAttention(kern, inp, d, init);
  const ref = refAttention(inp.q, inp.k, inp.v, d);
  assertClose(got.att, ref.att, () => 1e-6, `${what} att`);
  assertClose(got.out, ref.out, (i) => 1e-5 * (1 + Math.abs(ref.out[i])), `${what} out`);
  // causal mask: exactly 0 beyond the query's position; each row sums to 1
  for (let b = 0; b < d.batch; b++)
    for (let h = 0; h < d.heads; h++)
      for (let i = 0; i < d.tq; i++) {
        const row = ((b * d.heads + h) * d.tq + i) * d.tk;
        let s = 0;
        for (let j = 0; j < d.tk; j++) {
          if (j > d.offset + i)
            assert.ok(
              Object.is(got.att[row + j], 0),
              `${what}: att[${b},${h},${i},${j}] = ${got.att[row + j]} must be exactly 0`,
            );
          else assert.ok(got.att[row + j] > 0, `${what}: att[${b},${h},${i},${j}] must be positive`);
          s += got.att[row + j];
        }
        assert.ok(Math.abs(s - 1) < 1e-6, `${what}: row ${b},${h},${i} sums to ${s}`);
      }

  const g = refAttentionGrad(inp.dout, inp.q, inp.k, inp.v, d);
  const sub = (a: Float32Array, b: Float32Array) => f64(a).map((v, i) => v - b[i]);
  const grads = { dq: sub(got.dq, init.dq), dk: sub(got.dk, init.dk), dv: sub(got.dv, init.dv) };
  assertClose(grads.dq, g.dq, (i) => 2e-5 * (1 + Math.abs(g.dq[i])), `${what} dq`);
  assertClose(grads.dk, g.dk, (i) => 2e-5 * (1 + Math.abs(g.dk[i])), `${what} dk`);
  assertClose(grads.dv, g.dv, (i) => 2e-5 * (1 + Math.abs(g.dv[i])), `${what} dv`);

  // directional derivative of L = Σ dout·out(q, k, v)
  const L = (q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>) => {
    const o = refAttention(q, k, v, d).out;
    let s = 0;
    for (let i = 0; i < o.length; i++) s += inp.dout[i] * o[i];
    return s;
  };
  const dirs = { q: normal(inp.q.length), k: normal(inp.k.length), v: normal(inp.v.length) };
  const h = 1e-5;
  const shift = (x: Float32Array, dir: Float32Array, t: number) => f64(x).map((e, i) => e + t * dir[i]);
  const fd =
    (L(shift(inp.q, dirs.q, h), shift(inp.k, dirs.k, h), shift(inp.v, dirs.v, h)) -
      L(shift(inp.q, dirs.q, -h), shift(inp.k, dirs.k, -h), shift(inp.v, dirs.v, -h))) /
    (2 * h);
  let an = 0;
  let mag = 0;
  for (const [gr, dir] of [
    [grads.dq, dirs.q],
    [grads.dk, dirs.k],
    [grads.dv, dirs.v],
  ] as Array<[Float64Array, Float32Array]>)
    for (let i = 0; i < gr.length; i++) {
      an += gr[i] * dir[i];
      mag += Math.abs(gr[i] * dir[i]);
    }
  assertDirectional(fd, an, mag, `${what} directional derivative`);
}

test("ts attention forward/backward vs float64 reference and finite differences; exact causal mask", () => {
  for (const d of ATT_CASES) checkAttention(tsKernels, d);
  assert.throws(
    () => checkAttention(tsKernels, { batch: 1, tq: 2, tk: 4, heads: 1, headDim: 4, offset: 3 }),
    /attentionForward: queryOffset \+ tq \(3 \+ 2\) must not exceed tk \(4\)/,
  );
});

nativeTest("attention forward/backward vs float64 and TypeScript; 1 and 2 threads bitwise", (nk) => {
  for (const d of ATT_CASES) checkAttention(nk, d);
  for (const d of [
    { batch: 512, tq: 4, tk: 4, heads: 4, headDim: 32, offset: 0 },
    { batch: 300, tq: 1, tk: 4, heads: 4, headDim: 32, offset: 3 },
  ]) {
    const what = `native attention ${attName(d)}`;
    const inp = attInputs(d);
    const init = { dq: uniform(inp.q.length), dk: uniform(inp.k.length), dv: uniform(inp.v.length) };
    const one = withThreads(nk, 1, () => runAttention(nk, inp, d, init));
    const two = withThreads(nk, 2, () => runAttention(nk, inp, d, init));
    for (const key of ["att", "out", "dq", "dk", "dv"] as const)
      assertBitwise(two[key], one[key], `${what} ${key} 2 vs 1 threads`);
    const ts = runAttention(tsKernels, inp, d, init);
    for (const key of ["att", "out", "dq", "dk", "dv"] as const)
      assertClose(one[key], ts[key], (i) => 1e-6 * (1 + Math.abs(ts[key][i])), `${what} ${key} vs ts`);
  }
  const z = new Float32Array(64);
  assert.throws(
    () => nk.attentionForward(z, z, z, 1, 2, 4, 1, 4, 3, z, z),
    /attentionForward: queryOffset \+ tq \(3 \+ 2\) must not exceed tk \(4\)/,
  );
  assert.throws(
    () => nk.attentionForward(z, z, new Float32Array(15), 1, 4, 4, 1, 4, 0, z, z),
    /attentionForward: v has 15 elements, needs at least 16/,
  );
  assert.throws(
    () => nk.attentionBackward(z, z, z, z, z, 1, 4, 4, 1, 4, 0, z, z, new Float32Array(3)),
    /attentionBackward: dv has 3 elements/,
  );
});

// ---------------------------------------------------------------------------------------------------
// softmax and StableMax cross-entropy

type Output = "softmax" | "stablemax";

function refSoftmaxCE(logits: ArrayLike<number>, targets: Int32Array, rows: number, classes: number, scale: number) {
  const losses = new Float64Array(rows);
  const dlogits = new Float64Array(rows * classes);
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let j = 0; j < classes; j++) mx = Math.max(mx, logits[r * classes + j]);
    let z = 0;
    for (let j = 0; j < classes; j++) z += Math.exp(logits[r * classes + j] - mx);
    losses[r] = mx + Math.log(z) - logits[r * classes + targets[r]];
    for (let j = 0; j < classes; j++)
      dlogits[r * classes + j] = (Math.exp(logits[r * classes + j] - mx) / z - (j === targets[r] ? 1 : 0)) * scale;
  }
  return { losses, dlogits };
}

/**
 * StableMax cross-entropy in float64, from Prieto et al. (2025) eq. 3: s(x) = x + 1 (x ≥ 0), 1/(1 − x)
 * (x < 0), p = s(x)/Σ s, loss = −log p_t; its gradient by the quotient rule, p_j·s'(x_j)/s(x_j) − [j = t]·
 * s'(x_t)/s(x_t).
 */
function refStablemaxCE(logits: ArrayLike<number>, targets: Int32Array, rows: number, classes: number, scale: number) {
  const s = (x: number) => (x >= 0 ? x + 1 : 1 / (1 - x));
  const ds = (x: number) => (x >= 0 ? 1 : 1 / (1 - x) ** 2);
  const losses = new Float64Array(rows);
  const dlogits = new Float64Array(rows * classes);
  for (let r = 0; r < rows; r++) {
    const x = (j: number) => logits[r * classes + j];
    let total = 0;
    for (let j = 0; j < classes; j++) total += s(x(j));
    const t = targets[r];
    losses[r] = -Math.log(s(x(t)) / total);
    for (let j = 0; j < classes; j++) {
      const p = s(x(j)) / total;
      dlogits[r * classes + j] = ((p * ds(x(j))) / s(x(j)) - (j === t ? ds(x(t)) / s(x(t)) : 0)) * scale;
    }
  }
  return { losses, dlogits };
}

const REF_CE = { softmax: refSoftmaxCE, stablemax: refStablemaxCE };

function ceInputs(rows: number, classes: number) {
  const logits = normal(rows * classes, 4);
  logits[0] += 80; // stability: a huge logit must not overflow
  if (logits.length > 2) logits[1] = 0; // StableMax's s changes its formula at 0
  const targets = new Int32Array(rows).map(() => rng.int(classes));
  return { logits, targets };
}

function runCE(
  kern: Kernels,
  logits: Float32Array,
  targets: Int32Array,
  rows: number,
  classes: number,
  scale: number,
  withGrad = true,
  output: Output = "softmax",
) {
  const losses = new Float32Array(rows).fill(Number.NaN);
  const dlogits = withGrad ? new Float32Array(rows * classes).fill(Number.NaN) : null;
  const kernel = output === "softmax" ? kern.softmaxCrossEntropy : kern.stablemaxCrossEntropy;
  kernel(logits, targets, rows, classes, losses, dlogits, scale);
  return { losses, dlogits };
}

const CE_SHAPES: Array<[number, number]> = [
  [1, 1],
  [7, 7],
  [33, 129],
  [2048, 97],
];

function checkCE(kern: Kernels, rows: number, classes: number, output: Output): void {
  const what = `${kern.kind} ${output} cross-entropy ${rows}×${classes}`;
  const { logits, targets } = ceInputs(rows, classes);
  const scale = 1 / rows;
  const got = runCE(kern, logits, targets, rows, classes, scale, true, output);
  const ref = REF_CE[output](logits, targets, rows, classes, scale);
  assertClose(got.losses, ref.losses, (i) => 1e-6 * (1 + Math.abs(ref.losses[i])), `${what} losses`);
  assertClose(got.dlogits!, ref.dlogits, (i) => 1e-6 * (scale + Math.abs(ref.dlogits[i])), `${what} dlogits`);
  const noGrad = runCE(kern, logits, targets, rows, classes, scale, false, output);
  assertBitwise(noGrad.losses, got.losses, `${what} losses without dlogits`);
  // directional derivative of scale·Σ losses (central differences of the float64 loss; s is smooth at 0:
  // both pieces have value 1 and slope 1 there, so the kink-free estimate holds)
  const L = (x: ArrayLike<number>) =>
    REF_CE[output](x, targets, rows, classes, scale).losses.reduce((s, l) => s + l, 0) * scale;
  const dir = normal(logits.length);
  const h = 1e-5;
  const fd = (L(f64(logits).map((v, i) => v + h * dir[i])) - L(f64(logits).map((v, i) => v - h * dir[i]))) / (2 * h);
  let an = 0;
  let mag = 0;
  for (let i = 0; i < dir.length; i++) {
    an += got.dlogits![i] * dir[i];
    mag += Math.abs(got.dlogits![i] * dir[i]);
  }
  assertDirectional(fd, an, mag, `${what} directional derivative`);
}

for (const output of ["softmax", "stablemax"] as const) {
  const K = `${output}CrossEntropy`;

  test(`ts ${output} cross-entropy vs float64 reference and finite differences`, () => {
    for (const [rows, classes] of CE_SHAPES) checkCE(tsKernels, rows, classes, output);
    assert.throws(
      () => runCE(tsKernels, new Float32Array(6), new Int32Array([0, 3]), 2, 3, 1, true, output),
      new RegExp(`${K}: target 3 of row 1 is outside 0\\.\\.2`),
    );
  });

  nativeTest(`${output} cross-entropy vs float64 and TypeScript; 1 and 2 threads bitwise`, (nk) => {
    for (const [rows, classes] of CE_SHAPES) checkCE(nk, rows, classes, output);
    const { logits, targets } = ceInputs(2048, 97);
    const one = withThreads(nk, 1, () => runCE(nk, logits, targets, 2048, 97, 0.5, true, output));
    const two = withThreads(nk, 2, () => runCE(nk, logits, targets, 2048, 97, 0.5, true, output));
    assertBitwise(two.losses, one.losses, "losses 2 vs 1 threads");
    assertBitwise(two.dlogits!, one.dlogits!, "dlogits 2 vs 1 threads");
    const ts = runCE(tsKernels, logits, targets, 2048, 97, 0.5, true, output);
    assertClose(one.losses, ts.losses, (i) => 1e-6 * (1 + Math.abs(ts.losses[i])), "losses vs ts");
    assertClose(one.dlogits!, ts.dlogits!, (i) => 1e-6 * (1e-3 + Math.abs(ts.dlogits![i])), "dlogits vs ts");
    const kernel = output === "softmax" ? nk.softmaxCrossEntropy : nk.stablemaxCrossEntropy;
    assert.throws(
      () => runCE(nk, new Float32Array(6), new Int32Array([0, -1]), 2, 3, 1, true, output),
      new RegExp(`${K}: target -1 of row 1 is outside 0\\.\\.2`),
    );
    assert.throws(
      () =>
        kernel(new Float32Array(6), new Float32Array(2) as unknown as Int32Array, 2, 3, new Float32Array(2), null, 1),
      new RegExp(`${K}: targets must be an Int32Array`),
    );
    assert.throws(
      () => kernel(new Float32Array(6), new Int32Array(2), 2, 3, new Float32Array(2), new Float32Array(5), 1),
      new RegExp(`${K}: dlogits has 5 elements`),
    );
  });
}

test("stablemax cross-entropy does not saturate where softmax does: a fitted row keeps a loss and a gradient", () => {
  // a logit margin of 120 saturates float32 softmax (exp(−120) ≈ 8e−53 is below f32's smallest value once
  // the loss is stored); StableMax's probabilities fall off as 1/x and stay representable
  const logits = Float32Array.from([120, 0, -3]);
  const targets = new Int32Array([0]);
  const softmax = runCE(tsKernels, logits, targets, 1, 3, 1, true, "softmax");
  const stablemax = runCE(tsKernels, logits, targets, 1, 3, 1, true, "stablemax");
  assert.equal(softmax.losses[0], 0);
  assert.ok(stablemax.losses[0] > 0, `stablemax loss ${stablemax.losses[0]}`);
  assert.ok(stablemax.dlogits!.some((d) => d !== 0));
});

// ---------------------------------------------------------------------------------------------------
// activations

/** erf by its everywhere-positive series (2/√π)·e^(−x²)·Σ 2ⁿx^(2n+1)/(1·3·…·(2n+1)): no cancellation. */
function refErf(x: number): number {
  const ax = Math.abs(x);
  if (ax > 7) return Math.sign(x);
  let term = ax;
  let sum = ax;
  for (let n = 0; n < 400 && term > 1e-17 * sum; n++) {
    term *= (2 * ax * ax) / (2 * n + 3);
    sum += term;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
}
const refGelu = (x: number) => 0.5 * x * (1 + refErf(x / Math.SQRT2));
const refGeluGrad = (x: number) =>
  0.5 * (1 + refErf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);

function actInputs(n: number): Float32Array {
  const x = uniform(n, -7, 7);
  const special = [0, -0, 1e-3, -1e-3, 1, -1, 3, -3, 6.5, -6.5];
  for (let i = 0; i < Math.min(n, special.length); i++) x[i] = special[i];
  return x;
}

function runAct(kern: Kernels, kind: "relu" | "gelu", x: Float32Array, dout: Float32Array) {
  const out = new Float32Array(x.length).fill(Number.NaN);
  const dx = new Float32Array(x.length).fill(Number.NaN);
  kern.activationForward(kind, x, out, x.length);
  kern.activationBackward(kind, dout, x, dx, x.length);
  return { out, dx };
}

function checkActivations(kern: Kernels, n: number): void {
  const x = actInputs(n);
  const dout = normal(n);
  const relu = runAct(kern, "relu", x, dout);
  for (let i = 0; i < n; i++) {
    assert.equal(relu.out[i], x[i] > 0 ? x[i] : 0, `${kern.kind} relu(${x[i]})`);
    assert.equal(relu.dx[i], x[i] > 0 ? dout[i] : 0, `${kern.kind} relu'(${x[i]})`);
  }
  const gelu = runAct(kern, "gelu", x, dout);
  const what = `${kern.kind} gelu n=${n}`;
  assertClose(gelu.out, f64(x).map(refGelu), (i) => 1e-7 + 1e-6 * Math.abs(refGelu(x[i])), `${what} forward`);
  assertClose(
    gelu.dx,
    f64(x).map((v, i) => dout[i] * refGeluGrad(v)),
    (i) => 1e-7 + 1e-6 * Math.abs(dout[i]),
    `${what} backward`,
  );
  // finite differences of the float64 reference forward, elementwise
  const h = 1e-6;
  for (let i = 0; i < n; i++) {
    const fd = (dout[i] * (refGelu(x[i] + h) - refGelu(x[i] - h))) / (2 * h);
    assert.ok(
      Math.abs(gelu.dx[i] - fd) <= 1e-5 * (1 + Math.abs(dout[i])),
      `${what}: gelu'(${x[i]})·${dout[i]} = ${gelu.dx[i]} vs finite difference ${fd}`,
    );
  }
}

test("ts relu/gelu forward/backward vs float64 reference and finite differences", () => {
  for (const n of [1, 7, 33, 129, 4096]) checkActivations(tsKernels, n);
  const nan = runAct(tsKernels, "relu", new Float32Array([Number.NaN]), new Float32Array([1]));
  assert.ok(Number.isNaN(nan.out[0]), "relu propagates NaN");
  assert.throws(
    () => tsKernels.activationForward("tanh" as "relu", new Float32Array(1), new Float32Array(1), 1),
    /activationForward: unknown activation "tanh"/,
  );
});

nativeTest("relu/gelu vs float64 and TypeScript; 1 and 2 threads bitwise", (nk) => {
  for (const n of [1, 7, 33, 129, 4096]) checkActivations(nk, n);
  const n = 2048 * 512;
  const x = actInputs(n);
  const dout = normal(n);
  for (const kind of ["relu", "gelu"] as const) {
    const one = withThreads(nk, 1, () => runAct(nk, kind, x, dout));
    const two = withThreads(nk, 2, () => runAct(nk, kind, x, dout));
    assertBitwise(two.out, one.out, `${kind} forward 2 vs 1 threads`);
    assertBitwise(two.dx, one.dx, `${kind} backward 2 vs 1 threads`);
    const ts = runAct(tsKernels, kind, x, dout);
    assertClose(one.out, ts.out, (i) => 1e-7 + 1e-6 * Math.abs(ts.out[i]), `${kind} forward vs ts`);
    assertClose(one.dx, ts.dx, (i) => 1e-7 + 1e-6 * Math.abs(ts.dx[i]), `${kind} backward vs ts`);
  }
  const nan = runAct(nk, "relu", new Float32Array([Number.NaN]), new Float32Array([1]));
  assert.ok(Number.isNaN(nan.out[0]), "relu propagates NaN");
  assert.throws(
    () => nk.activationForward("tanh" as "relu", new Float32Array(1), new Float32Array(1), 1),
    /activationForward: unknown activation "tanh"/,
  );
  assert.throws(
    () => nk.activationBackward("gelu", new Float32Array(4), new Float32Array(3), new Float32Array(4), 4),
    /activationBackward: x has 3 elements/,
  );
});

// ---------------------------------------------------------------------------------------------------
// Adam / AdamW

type AdamCase = { n: number; init: boolean; noise: boolean; decoupled: boolean; weightDecay: number };
const ADAM_HYPER = { lr: 1e-3, beta1: 0.9, beta2: 0.98, eps: 1e-8 };

function adamState(c: AdamCase) {
  return {
    p: normal(c.n, 0.1),
    g: normal(c.n, 0.01),
    m: normal(c.n, 0.001),
    v: uniform(c.n, 0, 1e-4),
    init: c.init ? normal(c.n, 0.1) : null,
    noise: c.noise ? normal(c.n, 0.01) : null,
  };
}
type AdamState = ReturnType<typeof adamState>;
const cloneState = (s: AdamState): AdamState => ({
  p: s.p.slice(),
  g: s.g.slice(),
  m: s.m.slice(),
  v: s.v.slice(),
  init: s.init,
  noise: s.noise,
});

function runAdam(kern: Kernels, s: AdamState, c: AdamCase, step: number): void {
  const { lr, beta1, beta2, eps } = ADAM_HYPER;
  kern.adamUpdate(
    s.p,
    s.g,
    s.m,
    s.v,
    s.init,
    s.noise,
    c.n,
    lr,
    beta1,
    beta2,
    eps,
    1 - beta1 ** step,
    1 - beta2 ** step,
    c.weightDecay,
    c.decoupled,
  );
}

const ADAM_CASES: AdamCase[] = [];
for (const init of [false, true])
  for (const noise of [false, true])
    for (const decoupled of [false, true]) ADAM_CASES.push({ n: 1001, init, noise, decoupled, weightDecay: 1 });
ADAM_CASES.push(
  { n: 7, init: true, noise: true, decoupled: true, weightDecay: 0 },
  { n: 1, init: false, noise: false, decoupled: false, weightDecay: 0.1 },
);

test("ts adamUpdate vs a float64 reference (one step)", () => {
  for (const c of ADAM_CASES) {
    const s0 = adamState(c);
    const s = cloneState(s0);
    const step = 3;
    runAdam(tsKernels, s, c, step);
    const { lr, beta1, beta2, eps } = ADAM_HYPER;
    const bc1 = 1 - beta1 ** step;
    const bc2 = 1 - beta2 ** step;
    for (let i = 0; i < c.n; i++) {
      let p = s0.p[i];
      let g = s0.g[i];
      const target = s0.init ? s0.init[i] : 0;
      if (c.weightDecay > 0) {
        if (c.decoupled) p -= lr * c.weightDecay * (p - target);
        else g += c.weightDecay * (p - target);
      }
      const m = beta1 * s0.m[i] + (1 - beta1) * g;
      const v = beta2 * s0.v[i] + (1 - beta2) * g * g;
      // the contract: u = m/(√v/√bc2 + eps) + noise; p −= (lr/bc1)·u (so the noise is scaled by lr/bc1 too)
      const u = m / (Math.sqrt(v) / Math.sqrt(bc2) + eps) + (s0.noise ? s0.noise[i] : 0);
      p -= (lr / bc1) * u;
      const what = `adam ${JSON.stringify(c)} [${i}]`;
      assert.ok(Math.abs(s.m[i] - m) <= 1e-7 * Math.abs(m) + 1e-30, `${what} m ${s.m[i]} vs ${m}`);
      assert.ok(Math.abs(s.v[i] - v) <= 1e-7 * Math.abs(v) + 1e-30, `${what} v ${s.v[i]} vs ${v}`);
      assert.ok(Math.abs(s.p[i] - p) <= 3e-7 * Math.abs(p) + 1e-6 * lr, `${what} p ${s.p[i]} vs ${p}`);
    }
  }
});

nativeTest("adamUpdate is bitwise identical to TypeScript (init, noise, coupled/decoupled; 1 and 2 threads)", (nk) => {
  for (const base of ADAM_CASES)
    for (const n of [base.n, 100_003]) {
      const c = { ...base, n };
      const s0 = adamState(c);
      const ts = cloneState(s0);
      const one = cloneState(s0);
      const two = cloneState(s0);
      for (let step = 1; step <= 3; step++) {
        runAdam(tsKernels, ts, c, step);
        withThreads(nk, 1, () => runAdam(nk, one, c, step));
        withThreads(nk, 2, () => runAdam(nk, two, c, step));
        for (const key of ["p", "m", "v"] as const) {
          assertBitwise(one[key], ts[key], `adam ${JSON.stringify(c)} step ${step} ${key} native vs ts`);
          assertBitwise(two[key], one[key], `adam ${JSON.stringify(c)} step ${step} ${key} 2 vs 1 threads`);
        }
      }
    }
  // overlapping arrays are refused rather than computed under a broken no-aliasing promise
  const p = new Float32Array(8);
  assert.throws(
    () =>
      nk.adamUpdate(
        p,
        new Float32Array(8),
        new Float32Array(8),
        new Float32Array(8),
        p,
        null,
        8,
        1e-3,
        0.9,
        0.98,
        1e-8,
        0.1,
        0.02,
        1,
        true,
      ),
    /must not overlap/,
  );
  assert.throws(
    () =>
      nk.adamUpdate(
        new Float32Array(4),
        new Float32Array(4),
        new Float32Array(4),
        new Float32Array(4),
        new Float32Array(3),
        null,
        4,
        1e-3,
        0.9,
        0.98,
        1e-8,
        0.1,
        0.02,
        1,
        true,
      ),
    /adamUpdate: init has 3 elements, needs at least 4/,
  );
});

// ---------------------------------------------------------------------------------------------------
// threads and loading

nativeTest("threads: setThreads clamps to 1..cores; GROK_THREADS sets the default", (nk) => {
  const before = nk.threads();
  try {
    nk.setThreads(1);
    assert.equal(nk.threads(), 1);
    nk.setThreads(2);
    const cores = Math.max(1, require("node:os").availableParallelism?.() ?? require("node:os").cpus().length);
    assert.equal(nk.threads(), Math.min(2, cores));
    nk.setThreads(10_000);
    assert.ok(nk.threads() >= 1 && nk.threads() <= 10_000);
    assert.throws(() => nk.setThreads(0), /setThreads: thread count must be an integer >= 1/);
    assert.throws(() => nk.setThreads(1.5), /setThreads/);
  } finally {
    nk.setThreads(before);
  }
  const child = spawnSync(
    process.execPath,
    ["-e", `process.stdout.write(String(require(${JSON.stringify(NATIVE_ADDON_PATH)}).threads()))`],
    {
      env: { ...process.env, GROK_THREADS: "1" },
      encoding: "utf8",
    },
  );
  assert.equal(child.stdout, "1", child.stderr);
});

test("loadKernels: typescript on request; auto says which kernels and why", () => {
  const ts = loadKernels("typescript");
  assert.equal(ts.kernels, tsKernels);
  assert.equal(ts.kernels.kind, "typescript");
  assert.equal(ts.kernels.threads(), 1);
  const auto = loadKernels();
  if (nativeLoad.kernels) {
    assert.equal(auto.kernels, nativeLoad.kernels, "the addon is loaded once and cached");
    assert.equal(auto.kernels.kind, "native");
    assert.match(auto.note, /^native kernels \(.*\d+ threads?\)$/);
  } else {
    assert.equal(auto.kernels, tsKernels);
    assert.match(auto.note, /native kernels not built \(.*\); using TypeScript kernels/);
    assert.throws(() => loadKernels("native"), /npm run build:native/);
  }
});
