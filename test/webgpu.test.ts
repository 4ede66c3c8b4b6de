// The webgpu engine's pieces on a real WebGPU adapter (lavapipe in CI): the adapter is found and described,
// and each WGSL kernel agrees with the fast engine's TypeScript kernel on random inputs.
//
// Agreement is measured normwise: max_i |gpu_i − ts_i| / max_i |ts_i| ≤ 1e-4 per output array (the
// TypeScript kernels sum in double, the WGSL ones in f32, so single elements that cancel to near zero
// have no meaningful relative error of their own; the norm is the scale their rounding errors live on).
// Without the `webgpu` package or an adapter the tests skip with the reason, unless GROK_REQUIRE_WEBGPU=1,
// which makes that a failure.

import assert from "node:assert/strict";
import { test } from "node:test";
import { DeviceError } from "../src/engines/engine";
import { tsKernels } from "../src/engines/fast/ts-kernels";
import { formatAdapter, WebGpu } from "../src/engines/webgpu/device";
import { GpuContext } from "../src/engines/webgpu/kernels/dispatch";
import { activationBackward, activationForward } from "../src/engines/webgpu/kernels/activations";
import { adamUpdate } from "../src/engines/webgpu/kernels/adam";
import { attentionBackward, attentionForward } from "../src/engines/webgpu/kernels/attention";
import { softmaxCrossEntropy } from "../src/engines/webgpu/kernels/cross-entropy";
import { layerNormBackward, layerNormForward } from "../src/engines/webgpu/kernels/layer-norm";
import { matmul } from "../src/engines/webgpu/kernels/matmul";
import { addInto, biasAdd, columnSum, multiply, residualAdd } from "../src/engines/webgpu/kernels/elementwise";
import { gatherRows, scatterAddRows } from "../src/engines/webgpu/kernels/rows";
import { grokfastFilter, orthogonalGrad, sgdUpdate } from "../src/engines/webgpu/kernels/sgd";
import { hyperparameterRecords, StepHyperparameters } from "../src/engines/webgpu/kernels/hyperparameters";
import { OutputKind } from "../src/model/config";
import { Optimizer, OptimizerConfig, orthogonalizeGradient, PAPER_OPTIMIZER } from "../src/optim/optimizer";
import { Rng, Stream } from "../src/util/rng";
import { requireWebGpu, webGpuForTests } from "./webgpu-device";

const deviceFor = webGpuForTests();

/** A test that runs on the WebGPU device with a fresh kernel context. */
function gpuTest(name: string, fn: (gpu: GpuContext, webgpu: WebGpu) => Promise<void>): void {
  test(name, async (t) => {
    const webgpu = await deviceFor(t);
    if (webgpu) await fn(new GpuContext(webgpu.device), webgpu);
  });
}

const rng = new Rng(20260113);

/** One run's optimizer hyperparameters (the optimizer kernels' per-run records): defaults, then `over`. */
function hyperparameters(gpu: GpuContext, over: Partial<StepHyperparameters>) {
  return gpu.array("f32", hyperparameterRecords([runHyperparameters(over)]));
}

function runHyperparameters(over: Partial<StepHyperparameters>): StepHyperparameters {
  const defaults: StepHyperparameters = {
    lr: 0,
    beta1: 0,
    beta2: 0,
    eps: 0,
    bc1: 1,
    bc2: 1,
    weightDecay: 0,
    decoupled: false,
    towardInit: false,
    withNoise: false,
    momentum: 0,
    grokfast: null,
    orthogonalGrad: false,
  };
  return { ...defaults, ...over };
}
const uniform = (n: number, lo = -1, hi = 1) => rng.fillUniform(new Float32Array(n), lo, hi);

/** max_i |actual_i − expected_i| / max_i |expected_i| (0 when both are all zeros). */
function normwiseError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length, "lengths differ");
  let maxErr = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    maxErr = Number.isNaN(err) ? Infinity : Math.max(maxErr, err);
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  return maxErr === 0 ? 0 : maxErr / maxRef;
}

function assertAgrees(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol = 1e-4): void {
  const err = normwiseError(actual, expected);
  assert.ok(err <= tol, `${what}: normwise relative error ${err.toExponential(2)} > ${tol}`);
}

/**
 * For kernels that accumulate into a nonzero start: the increment (result − start) must agree, so that a
 * small wrong contribution cannot hide behind a large start value.
 */
function assertIncrementAgrees(actual: Float32Array, expected: Float32Array, start: Float32Array, what: string): void {
  const increment = (a: Float32Array) => Float64Array.from(a, (x, i) => x - start[i]);
  assertAgrees(increment(actual), increment(expected), `${what} (increment)`);
  assertAgrees(actual, expected, what);
}

test("the error measure catches a wrong element and NaN", () => {
  const ref = Float32Array.from([1, -2, 0.5, 0]);
  assert.equal(normwiseError(ref, ref), 0);
  assert.ok(normwiseError(Float32Array.from([1, -2, 0.5, 0.001]), ref) > 1e-4);
  assert.equal(normwiseError(Float32Array.from([1, -2, NaN, 0]), ref), Infinity);
});

test("the WebGPU adapter is found and described (lavapipe reads as software)", async (t) => {
  const webgpu = await deviceFor(t);
  if (!webgpu) return;
  const a = webgpu.adapter;
  t.diagnostic(`adapter: ${formatAdapter(a)}`);
  for (const field of ["vendor", "architecture", "device", "description"] as const)
    assert.equal(typeof a[field], "string", field);
  assert.equal(typeof a.software, "boolean");
  // lavapipe is Mesa's llvmpipe behind Vulkan: the adapter must say it runs on the CPU
  if (/llvmpipe|lavapipe/i.test(`${a.device} ${a.description}`)) assert.equal(a.software, true);
  if (requireWebGpu) assert.equal(a.software, true, "CI runs on lavapipe, a software adapter");
  assert.match(formatAdapter(a), a.software ? /software adapter$/ : /hardware adapter$/);
});

gpuTest(
  "a validation error in a recording rejects its submit with DeviceError, and the device goes on",
  async (gpu) => {
    const [gone, target] = [gpu.array("f32", 4), gpu.array("f32", 4)];
    gone.buffer.destroy();
    const rec = gpu.record();
    rec.copy(gone, target, 4);
    await assert.rejects(
      rec.submit(),
      (err: Error) => err instanceof DeviceError && err.kind === "validation" && /destroyed/.test(err.message),
    );
    assert.deepEqual(await gpu.readFloats(gpu.array("f32", Float32Array.from([1, 2]))), Float32Array.from([1, 2]));
  },
);

// ---------------------------------------------------------------------------------------------------
// matmul

const MATMUL_SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [37, 53, 70], // ragged against the 16×16 tiles everywhere
  [128, 97, 512], // the paper model's head on a batch
  [16, 16, 0], // k = 0
];

for (const transA of [false, true])
  for (const transB of [false, true])
    for (const accumulate of [false, true])
      gpuTest(
        `matmul ${transA ? "Aᵀ" : "A"}·${transB ? "Bᵀ" : "B"}${accumulate ? " (accumulating)" : ""} matches TypeScript`,
        async (gpu) => {
          for (const [m, n, k] of MATMUL_SHAPES) {
            const a = uniform(m * k);
            const b = uniform(k * n);
            const c0 = uniform(m * n);
            const expected = Float32Array.from(c0);
            tsKernels.matmul(transA, transB, m, n, k, a, b, expected, accumulate);
            const c = gpu.array("f32", c0);
            const rec = gpu.record();
            matmul(rec, transA, transB, m, n, k, gpu.array("f32", a), gpu.array("f32", b), c, accumulate);
            await rec.submit();
            assertIncrementAgrees(
              await gpu.readFloats(c),
              expected,
              accumulate ? c0 : new Float32Array(m * n),
              `${m}×${n}×${k}`,
            );
          }
        },
      );

// ---------------------------------------------------------------------------------------------------
// layer norm

const LAYER_NORM_SHAPES: [number, number][] = [
  [1, 1], // one element: variance 0, so rstd = 1/√eps
  [37, 128], // the paper model's width: two values per thread
  [5, 200], // a width that is no multiple of the 64 threads per row
];

gpuTest("layerNormForward matches TypeScript (out, mean, rstd)", async (gpu) => {
  for (const [rows, width] of LAYER_NORM_SHAPES) {
    // an offset and a scale per row, so mean and variance are not all near 0 and 1
    const x = uniform(rows * width).map((v, i) => 3 * v * (1 + (i % 7)) + Math.floor(i / width));
    const weight = uniform(width, 0.5, 1.5);
    const bias = uniform(width);
    const expected = {
      out: new Float32Array(rows * width),
      mean: new Float32Array(rows),
      rstd: new Float32Array(rows),
    };
    tsKernels.layerNormForward(x, weight, bias, rows, width, expected.out, expected.mean, expected.rstd);
    const [out, mean, rstd] = [gpu.array("f32", rows * width), gpu.array("f32", rows), gpu.array("f32", rows)];
    const rec = gpu.record();
    layerNormForward(
      rec,
      gpu.array("f32", x),
      gpu.array("f32", weight),
      gpu.array("f32", bias),
      rows,
      width,
      out,
      mean,
      rstd,
    );
    await rec.submit();
    assertAgrees(await gpu.readFloats(out), expected.out, `out ${rows}×${width}`);
    assertAgrees(await gpu.readFloats(mean), expected.mean, `mean ${rows}×${width}`);
    assertAgrees(await gpu.readFloats(rstd), expected.rstd, `rstd ${rows}×${width}`);
  }
});

gpuTest("layerNormBackward matches TypeScript (dx, dweight, dbias accumulated)", async (gpu) => {
  for (const [rows, width] of LAYER_NORM_SHAPES) {
    const x = uniform(rows * width, -2, 2);
    const weight = uniform(width, 0.5, 1.5);
    const bias = uniform(width);
    const [mean, rstd] = [new Float32Array(rows), new Float32Array(rows)];
    tsKernels.layerNormForward(x, weight, bias, rows, width, new Float32Array(rows * width), mean, rstd);
    const dout = uniform(rows * width);
    // the kernels accumulate: start from nonzero gradients
    const start = { dx: uniform(rows * width), dweight: uniform(width), dbias: uniform(width) };
    const expected = {
      dx: Float32Array.from(start.dx),
      dweight: Float32Array.from(start.dweight),
      dbias: Float32Array.from(start.dbias),
    };
    tsKernels.layerNormBackward(
      dout,
      x,
      weight,
      mean,
      rstd,
      rows,
      width,
      expected.dx,
      expected.dweight,
      expected.dbias,
    );
    const dx = gpu.array("f32", start.dx);
    const dweight = gpu.array("f32", start.dweight);
    const dbias = gpu.array("f32", start.dbias);
    const rec = gpu.record();
    const up = (a: Float32Array) => gpu.array("f32", a);
    layerNormBackward(rec, up(dout), up(x), up(weight), up(mean), up(rstd), rows, width, dx, dweight, dbias);
    await rec.submit();
    assertIncrementAgrees(await gpu.readFloats(dx), expected.dx, start.dx, `dx ${rows}×${width}`);
    assertIncrementAgrees(await gpu.readFloats(dweight), expected.dweight, start.dweight, `dweight ${rows}×${width}`);
    assertIncrementAgrees(await gpu.readFloats(dbias), expected.dbias, start.dbias, `dbias ${rows}×${width}`);
  }
});

// ---------------------------------------------------------------------------------------------------
// softmax cross-entropy

for (const output of ["softmax", "stablemax"] as OutputKind[]) {
  gpuTest(
    `${output} cross-entropy matches TypeScript (losses, and dlogits at each row's scale when asked)`,
    async (gpu) => {
      await checkCrossEntropy(gpu, output);
    },
  );
}

async function checkCrossEntropy(gpu: GpuContext, output: OutputKind): Promise<void> {
  const kernel = output === "softmax" ? tsKernels.softmaxCrossEntropy : tsKernels.stablemaxCrossEntropy;
  for (const [rows, classes] of [
    [1, 1],
    [50, 97], // the paper's modulus: more classes than threads per row
    [7, 3],
  ]) {
    const logits = uniform(rows * classes, -8, 8);
    const targets = Int32Array.from({ length: rows }, () => rng.int(classes));
    const scale = 1 / rows;
    const expected = { losses: new Float32Array(rows), dlogits: new Float32Array(rows * classes) };
    kernel(logits, targets, rows, classes, expected.losses, expected.dlogits, scale);
    // the last row of several has scale 0 (a padding row): its dlogits are zeros
    const scales = new Float32Array(rows).fill(scale);
    if (rows > 1) {
      scales[rows - 1] = 0;
      expected.dlogits.fill(0, (rows - 1) * classes);
    }
    for (const withGradient of [true, false]) {
      const losses = gpu.array("f32", rows);
      const dlogits = gpu.array("f32", rows * classes);
      const rec = gpu.record();
      const gpuLogits = gpu.array("f32", logits);
      softmaxCrossEntropy(
        rec,
        gpuLogits,
        gpu.array("i32", targets),
        rows,
        classes,
        losses,
        withGradient ? dlogits : null,
        withGradient ? gpu.array("f32", scales) : null,
        output,
      );
      await rec.submit();
      assertAgrees(await gpu.readFloats(losses), expected.losses, `losses ${rows}×${classes}`);
      if (withGradient) assertAgrees(await gpu.readFloats(dlogits), expected.dlogits, `dlogits ${rows}×${classes}`);
      else
        assert.ok(
          (await gpu.readFloats(dlogits)).every((v) => v === 0),
          "dlogits untouched when not asked",
        );
    }
  }
}

gpuTest("softmaxCrossEntropy gives a NaN loss for a target outside the classes", async (gpu) => {
  const losses = gpu.array("f32", 3);
  const rec = gpu.record();
  const targets = gpu.array("i32", Int32Array.from([0, 5, -1]));
  softmaxCrossEntropy(rec, gpu.array("f32", uniform(3 * 5)), targets, 3, 5, losses, null, null);
  await rec.submit();
  const got = await gpu.readFloats(losses);
  assert.ok(Number.isFinite(got[0]), "a valid row keeps its loss");
  assert.ok(Number.isNaN(got[1]) && Number.isNaN(got[2]), `out-of-range targets: ${got[1]}, ${got[2]}`);
});

// ---------------------------------------------------------------------------------------------------
// Adam / AdamW

const ADAM_VARIANTS: { name: string; weightDecay: number; decoupled: boolean; towardInit: boolean; noise: boolean }[] =
  [
    { name: "AdamW toward 0", weightDecay: 1, decoupled: true, towardInit: false, noise: false },
    { name: "AdamW toward the initial weights", weightDecay: 0.5, decoupled: true, towardInit: true, noise: false },
    { name: "Adam with L2", weightDecay: 0.1, decoupled: false, towardInit: false, noise: false },
    { name: "Adam, no decay, update noise", weightDecay: 0, decoupled: true, towardInit: false, noise: true },
  ];

for (const variant of ADAM_VARIANTS)
  gpuTest(`adamUpdate matches TypeScript over 3 steps: ${variant.name}`, async (gpu) => {
    const n = 1000; // no multiple of the 256 threads per workgroup
    const [lr, beta1, beta2, eps] = [1e-2, 0.9, 0.98, 1e-8];
    const init = uniform(n);
    const ref = { p: Float32Array.from(init), m: new Float32Array(n), v: new Float32Array(n) };
    const p = gpu.array("f32", init);
    const m = gpu.array("f32", n);
    const v = gpu.array("f32", n);
    const gpuInit = variant.towardInit ? gpu.array("f32", init) : null;
    for (let step = 1; step <= 3; step++) {
      const g = uniform(n);
      const noise = variant.noise ? rng.fillNormal(new Float32Array(n), 0.1) : null;
      const [bc1, bc2] = [1 - beta1 ** step, 1 - beta2 ** step];
      const before = Float32Array.from(ref.p);
      tsKernels.adamUpdate(
        ref.p,
        g,
        ref.m,
        ref.v,
        variant.towardInit ? init : null,
        noise,
        n,
        lr,
        beta1,
        beta2,
        eps,
        bc1,
        bc2,
        variant.weightDecay,
        variant.decoupled,
      );
      const rec = gpu.record();
      const gpuNoise = noise ? gpu.array("f32", noise) : null;
      const { weightDecay, decoupled, towardInit } = variant;
      const hyper = { lr, beta1, beta2, eps, bc1, bc2, weightDecay, decoupled, towardInit, withNoise: variant.noise };
      adamUpdate(rec, p, gpu.array("f32", g), m, v, gpuInit, gpuNoise, n, hyperparameters(gpu, hyper));
      await rec.submit();
      const got = await gpu.readFloats(p);
      // the step itself, not just p (a step is ~lr next to |p| ~ 1, so comparing p alone would hide it)
      const delta = (after: Float32Array) => after.map((x, i) => x - before[i]);
      assertAgrees(delta(got), delta(ref.p), `step ${step}: p − p_before`);
      assertAgrees(got, ref.p, `step ${step}: p`);
      assertAgrees(await gpu.readFloats(m), ref.m, `step ${step}: m`);
      assertAgrees(await gpu.readFloats(v), ref.v, `step ${step}: v`);
      // both sides now continue from the GPU's p, so rounding differences do not compound
      ref.p.set(got);
    }
  });

gpuTest(
  "a batch of matmuls equals each product alone, bit for bit (A with a gap between runs, B shared)",
  async (gpu) => {
    const [m, n, k, runs] = [37, 21, 19, 3];
    const strideA = m * k + 5; // each run's A starts 5 values past the end of the one before
    const a = uniform(runs * strideA);
    const b = uniform(k * n);
    const c0 = uniform(runs * m * n);
    for (const accumulate of [false, true]) {
      const c = gpu.array("f32", c0);
      const rec = gpu.record();
      const batch = { count: runs, strideA, strideB: 0, strideC: m * n };
      matmul(rec, false, true, m, n, k, gpu.array("f32", a), gpu.array("f32", b), c, accumulate, batch);
      await rec.submit();
      const got = await gpu.readFloats(c);
      for (let r = 0; r < runs; r++) {
        const alone = gpu.array("f32", c0.subarray(r * m * n, (r + 1) * m * n));
        const single = gpu.record();
        const ar = gpu.array("f32", a.subarray(r * strideA, r * strideA + m * k));
        matmul(single, false, true, m, n, k, ar, gpu.array("f32", b), alone, accumulate);
        await single.submit();
        assert.deepEqual(got.subarray(r * m * n, (r + 1) * m * n), await gpu.readFloats(alone), `run ${r}`);
      }
    }
  },
);

// ---------------------------------------------------------------------------------------------------
// activations

for (const kind of ["relu", "gelu"] as const)
  gpuTest(`activation ${kind} forward and backward match TypeScript`, async (gpu) => {
    const n = 1000; // no multiple of the 256 threads per workgroup
    // both tails of GELU (x·Φ(x) is tiny but nonzero far left) and exact zeros for ReLU's kink
    const x = uniform(n, -12, 12);
    x[0] = 0;
    x[1] = -0;
    const dout = uniform(n);
    const expected = { out: new Float32Array(n), dx: new Float32Array(n) };
    tsKernels.activationForward(kind, x, expected.out, n);
    tsKernels.activationBackward(kind, dout, x, expected.dx, n);
    const out = gpu.array("f32", n);
    const dx = gpu.array("f32", n);
    const gpuX = gpu.array("f32", x);
    const rec = gpu.record();
    activationForward(rec, kind, gpuX, out, n);
    activationBackward(rec, kind, gpu.array("f32", dout), gpuX, dx, n);
    await rec.submit();
    assertAgrees(await gpu.readFloats(out), expected.out, `${kind} out`);
    assertAgrees(await gpu.readFloats(dx), expected.dx, `${kind} dx`);
    if (kind === "gelu") {
      // normwise error is dominated by the large values: check the small ones element by element too
      const got = await gpu.readFloats(out);
      for (let i = 0; i < n; i++)
        if (Math.abs(x[i]) < 4)
          assert.ok(
            Math.abs(got[i] - expected.out[i]) <= 1e-4 * Math.max(Math.abs(expected.out[i]), 1e-3),
            `gelu(${x[i]}): ${got[i]} vs ${expected.out[i]}`,
          );
    }
  });

// ---------------------------------------------------------------------------------------------------
// attention

/** [batch, tq, tk, heads, headDim, queryOffset] */
const ATTENTION_SHAPES: [number, number, number, number, number, number][] = [
  [3, 4, 4, 4, 32, 0], // the paper model: 4 positions, 4 heads of 32
  [5, 1, 4, 4, 32, 3], // the last layer's shortcut: only the answer position queries
  [2, 2, 5, 3, 5, 1], // keys beyond the last query are masked too
];

gpuTest("attentionForward and attentionBackward match TypeScript (att, out; dq, dk, dv accumulated)", async (gpu) => {
  for (const [batch, tq, tk, heads, headDim, queryOffset] of ATTENTION_SHAPES) {
    const shape = `${batch}×${tq}/${tk}×${heads}×${headDim}+${queryOffset}`;
    const D = heads * headDim;
    const q = uniform(batch * tq * D, -2, 2);
    const k = uniform(batch * tk * D, -2, 2);
    const v = uniform(batch * tk * D);
    const dout = uniform(batch * tq * D);
    const start = { dq: uniform(batch * tq * D), dk: uniform(batch * tk * D), dv: uniform(batch * tk * D) };
    const ref = {
      att: new Float32Array(batch * heads * tq * tk),
      out: new Float32Array(batch * tq * D),
      dq: Float32Array.from(start.dq),
      dk: Float32Array.from(start.dk),
      dv: Float32Array.from(start.dv),
    };
    tsKernels.attentionForward(q, k, v, batch, tq, tk, heads, headDim, queryOffset, ref.att, ref.out);
    tsKernels.attentionBackward(
      dout,
      q,
      k,
      v,
      ref.att,
      batch,
      tq,
      tk,
      heads,
      headDim,
      queryOffset,
      ref.dq,
      ref.dk,
      ref.dv,
    );
    const up = (a: Float32Array) => gpu.array("f32", a);
    const [gq, gk, gv] = [up(q), up(k), up(v)];
    const att = gpu.array("f32", ref.att.length);
    const out = gpu.array("f32", ref.out.length);
    const [dq, dk, dv] = [up(start.dq), up(start.dk), up(start.dv)];
    // forward and backward in one recording: the backward reads the forward's att on the GPU
    const rec = gpu.record();
    attentionForward(rec, gq, gk, gv, batch, tq, tk, heads, headDim, queryOffset, att, out);
    attentionBackward(rec, up(dout), gq, gk, gv, att, batch, tq, tk, heads, headDim, queryOffset, dq, dk, dv);
    await rec.submit();
    const gotAtt = await gpu.readFloats(att);
    assertAgrees(gotAtt, ref.att, `att ${shape}`);
    assert.ok(
      gotAtt.every((p, i) => (ref.att[i] === 0 ? p === 0 : true)),
      `att ${shape}: masked entries exactly 0`,
    );
    assertAgrees(await gpu.readFloats(out), ref.out, `out ${shape}`);
    assertIncrementAgrees(await gpu.readFloats(dq), ref.dq, start.dq, `dq ${shape}`);
    assertIncrementAgrees(await gpu.readFloats(dk), ref.dk, start.dk, `dk ${shape}`);
    assertIncrementAgrees(await gpu.readFloats(dv), ref.dv, start.dv, `dv ${shape}`);
  }
});

gpuTest("activations work in place (out = x; dx = dout; dx = x), as the contract allows", async (gpu) => {
  const n = 300;
  for (const kind of ["relu", "gelu"] as const) {
    const x = uniform(n, -4, 4);
    const dout = uniform(n);
    const expected = { out: new Float32Array(n), dx: new Float32Array(n) };
    tsKernels.activationForward(kind, x, expected.out, n);
    tsKernels.activationBackward(kind, dout, x, expected.dx, n);
    const inPlace = gpu.array("f32", x);
    const gradIntoDout = gpu.array("f32", dout);
    const gradIntoX = gpu.array("f32", x);
    const rec = gpu.record();
    activationForward(rec, kind, inPlace, inPlace, n);
    activationBackward(rec, kind, gradIntoDout, gpu.array("f32", x), gradIntoDout, n);
    activationBackward(rec, kind, gpu.array("f32", dout), gradIntoX, gradIntoX, n);
    await rec.submit();
    assertAgrees(await gpu.readFloats(inPlace), expected.out, `${kind} out = x`);
    assertAgrees(await gpu.readFloats(gradIntoDout), expected.dx, `${kind} dx = dout`);
    assertAgrees(await gpu.readFloats(gradIntoX), expected.dx, `${kind} dx = x`);
  }
});

// ---------------------------------------------------------------------------------------------------
// the model sequence's own steps (rows.ts, elementwise.ts), against plain loops

gpuTest("gatherRows and scatterAddRows: embeddings, row selection and their gradients", async (gpu) => {
  const tableRows = 7;
  const width = 5;
  const rows = 40;
  const table = uniform(tableRows * width);
  // every table row but 3 is used; 5 repeatedly, so the scatter sums many rows into one
  const index = Int32Array.from({ length: rows }, (_, r) => (r % 3 === 0 ? 5 : [0, 1, 2, 4, 6][r % 5]));
  const start = uniform(rows * width);
  const src = uniform(rows * width);
  const tableStart = uniform(tableRows * width);
  const expected = {
    gathered: new Float32Array(rows * width),
    accumulated: Float32Array.from(start),
    table: Float32Array.from(tableStart),
  };
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < width; c++) {
      expected.gathered[r * width + c] = table[index[r] * width + c];
      expected.accumulated[r * width + c] += table[index[r] * width + c];
      expected.table[index[r] * width + c] += src[r * width + c];
    }
  const gIndex = gpu.array("i32", index);
  const gTable = gpu.array("f32", table);
  const gathered = gpu.array("f32", rows * width);
  const accumulated = gpu.array("f32", start);
  const scattered = gpu.array("f32", tableStart);
  const rec = gpu.record();
  gatherRows(rec, gTable, gIndex, rows, width, gathered, null, false);
  gatherRows(rec, gTable, gIndex, rows, width, accumulated, null, true);
  scatterAddRows(rec, gpu.array("f32", src), gIndex, rows, width, tableRows, scattered);
  await rec.submit();
  assert.deepEqual(await gpu.readFloats(gathered), expected.gathered, "a gather copies exactly");
  assertIncrementAgrees(await gpu.readFloats(accumulated), expected.accumulated, start, "gather accumulated");
  // rows placed among others: row r of the table's rows `index` goes to out row outRows[r]
  const outRows = Int32Array.from({ length: rows }, (_, r) => rows - 1 - r);
  const placedStart = uniform(rows * width);
  const expectedPlaced = Float32Array.from(placedStart);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < width; c++) expectedPlaced[outRows[r] * width + c] += table[index[r] * width + c];
  const placed = gpu.array("f32", placedStart);
  const rec2 = gpu.record();
  gatherRows(rec2, gTable, gIndex, rows, width, placed, gpu.array("i32", outRows), true);
  await rec2.submit();
  assertIncrementAgrees(await gpu.readFloats(placed), expectedPlaced, placedStart, "gather into outRows");
  const gotTable = await gpu.readFloats(scattered);
  assertIncrementAgrees(gotTable, expected.table, tableStart, "scatter-add");
  assert.deepEqual(
    gotTable.subarray(3 * width, 4 * width),
    tableStart.subarray(3 * width, 4 * width),
    "row 3 untouched",
  );
  assert.throws(
    () => gatherRows(gpu.record(), gTable, gpu.array("f32", rows), rows, width, gathered, null, false),
    /gatherRows: index must be an i32 array/,
  );
});

gpuTest("residualAdd, addInto, multiply, biasAdd and columnSum match plain loops", async (gpu) => {
  const rows = 9;
  const width = 300; // more than one workgroup of columns
  const n = rows * width;
  const x = uniform(n);
  const y = uniform(n);
  const mask = Float32Array.from({ length: n }, (_, i) => (i % 4 === 0 ? 0 : 1 / 0.75));
  const bias = uniform(width);
  const sumStart = uniform(width);
  const expected = {
    masked: Float32Array.from(x, (xi, i) => xi + y[i] * mask[i]),
    plain: Float32Array.from(x, (xi, i) => xi + y[i]),
    product: Float32Array.from(x, (xi, i) => xi * mask[i]),
    biased: Float32Array.from(x, (xi, i) => xi + bias[i % width]),
    sums: Float32Array.from(sumStart),
  };
  for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) expected.sums[c] += x[r * width + c];
  const [gx, gy, gMask] = [gpu.array("f32", x), gpu.array("f32", y), gpu.array("f32", mask)];
  const masked = gpu.array("f32", n);
  const plain = gpu.array("f32", n);
  const product = gpu.array("f32", n);
  const biased = gpu.array("f32", x);
  const sums = gpu.array("f32", sumStart);
  const added = gpu.array("f32", y);
  const rec = gpu.record();
  addInto(rec, gx, n, added);
  residualAdd(rec, gx, gy, gMask, n, masked);
  residualAdd(rec, gx, gy, null, n, plain);
  multiply(rec, gx, gMask, n, product);
  biasAdd(rec, biased, gpu.array("f32", bias), rows, width);
  columnSum(rec, gx, rows, width, sums);
  await rec.submit();
  // a single f32 operation rounds as Math.fround of the exact result; with the mask there are two roundings
  // (or one fused multiply-add), so those agree to f32 rounding only
  assertAgrees(await gpu.readFloats(masked), expected.masked, "residual with a dropout mask", 1e-6);
  assert.deepEqual(await gpu.readFloats(plain), expected.plain, "residual without a mask");
  assert.deepEqual(await gpu.readFloats(added), expected.plain, "addInto");
  assertAgrees(await gpu.readFloats(product), expected.product, "mask product", 1e-6);
  assert.deepEqual(await gpu.readFloats(biased), expected.biased, "bias added in place");
  assertIncrementAgrees(await gpu.readFloats(sums), expected.sums, sumStart, "column sums");
  assert.throws(() => residualAdd(gpu.record(), gx, gy, null, n, gx), /residualAdd: the output must not be an input/);
});

gpuTest("orthogonalGrad projects each run's gradient off its own weights, for the runs that ask", async (gpu) => {
  const size = 700; // more values than threads per workgroup
  const runs = 3;
  const w = uniform(runs * size);
  w.fill(0, 2 * size); // run 2: all-zero weights keep their gradient
  // gradients with a large component along the weights, so the projection matters
  const g = Float32Array.from(uniform(runs * size), (gi, i) => gi + 3 * w[i]);
  const flags = [true, false, true];
  const records = hyperparameterRecords(flags.map((on) => runHyperparameters({ orthogonalGrad: on })));
  const gg = gpu.array("f32", g);
  const rec = gpu.record();
  orthogonalGrad(rec, gg, gpu.array("f32", w), size, gpu.array("f32", records));
  await rec.submit();
  const got = await gpu.readFloats(gg);
  for (let r = 0; r < runs; r++) {
    const gr = g.slice(r * size, (r + 1) * size);
    const wr = w.subarray(r * size, (r + 1) * size);
    if (flags[r]) orthogonalizeGradient(gr, wr);
    const mine = got.subarray(r * size, (r + 1) * size);
    assertAgrees(mine, gr, `run ${r}`);
    if (!flags[r] || r === 2) assert.deepEqual(mine, gr, `run ${r} keeps its gradient`);
    // what is left is orthogonal to the weights, to f32 rounding of the dot products
    const dot = mine.reduce((s, gi, i) => s + gi * wr[i], 0);
    const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, x) => s + x * x, 0));
    if (flags[r] && r !== 2) assert.ok(Math.abs(dot) <= 1e-4 * norm(mine) * norm(wr), `run ${r}: g⊥·w = ${dot}`);
  }
});

// ---------------------------------------------------------------------------------------------------
// SGD and Grokfast (sgd.ts), against optim/optimizer.ts itself: three updates of one tensor

const SGD_VARIANTS: { name: string; cfg: Partial<OptimizerConfig> }[] = [
  { name: "SGD, plain", cfg: { kind: "sgd", lr: 0.1, weightDecay: 0 } },
  { name: "SGD, momentum, L2 toward 0", cfg: { kind: "sgd", lr: 0.1, momentum: 0.9, weightDecay: 0.5 } },
  {
    name: "SGD, momentum, L2 toward init, update noise",
    cfg: { kind: "sgd", lr: 0.05, momentum: 0.8, weightDecay: 0.3, decayToward: "init", updateNoise: 0.2 },
  },
  { name: "SGD with Grokfast", cfg: { kind: "sgd", lr: 0.1, momentum: 0.5, grokfast: { alpha: 0.9, lambda: 2 } } },
  { name: "AdamW with Grokfast (the filter alone)", cfg: { kind: "adamw", grokfast: { alpha: 0.8, lambda: 5 } } },
  { name: "SGD with ⊥Grad", cfg: { kind: "sgd", lr: 0.1, weightDecay: 0, orthogonalGrad: true } },
  {
    name: "⊥AdamW with Grokfast",
    cfg: { kind: "adamw", weightDecay: 0, grokfast: { alpha: 0.8, lambda: 5 }, orthogonalGrad: true },
  },
];

for (const variant of SGD_VARIANTS) {
  gpuTest(`${variant.name} matches the optimizer over 3 steps`, async (gpu) => {
    const cfg: OptimizerConfig = { ...PAPER_OPTIMIZER, warmupSteps: 0, ...variant.cfg };
    const n = 1000;
    const seed = 11;
    const p0 = uniform(n);
    const weights = new Map([["w", { shape: [n], data: Float32Array.from(p0) }]]);
    const optimizer = new Optimizer(cfg, seed, weights);
    const p = gpu.array("f32", p0);
    const init = gpu.array("f32", p0);
    const buf = gpu.array("f32", n);
    const ema = gpu.array("f32", n);
    const m = gpu.array("f32", n);
    const v = gpu.array("f32", n);
    const g = gpu.array("f32", n);
    const grads: Float32Array[] = [];
    for (let step = 0; step < 3; step++) {
      const grad = uniform(n);
      grads.push(grad);
      gpu.write(g, grad);
      const rec = gpu.record();
      if (cfg.grokfast) grokfastFilter(rec, g, ema, n, hyperparameters(gpu, { grokfast: cfg.grokfast }));
      if (cfg.orthogonalGrad) orthogonalGrad(rec, g, p, n, hyperparameters(gpu, { orthogonalGrad: true }));
      if (cfg.kind === "sgd") {
        let noise: Float32Array | null = null;
        if (cfg.updateNoise > 0) {
          const rng = Rng.for(seed, Stream.updateNoise, step);
          noise = Float32Array.from({ length: n }, () => cfg.updateNoise * rng.normal());
        }
        const towardInit = cfg.decayToward === "init";
        const hyper = {
          lr: cfg.lr,
          momentum: cfg.momentum,
          weightDecay: cfg.weightDecay,
          towardInit,
          withNoise: !!noise,
        };
        sgdUpdate(
          rec,
          p,
          g,
          cfg.momentum > 0 ? buf : null,
          towardInit ? init : null,
          noise ? gpu.array("f32", noise) : null,
          n,
          hyperparameters(gpu, hyper),
        );
      } else {
        const t = step + 1;
        const { lr, beta1, beta2, eps, weightDecay } = cfg;
        const [bc1, bc2] = [1 - beta1 ** t, 1 - beta2 ** t];
        const hyper = { lr, beta1, beta2, eps, bc1, bc2, weightDecay, decoupled: true };
        adamUpdate(rec, p, g, m, v, null, null, n, hyperparameters(gpu, hyper));
      }
      await rec.submit();
      optimizer.update(weights, new Map([["w", Float32Array.from(grad)]]), step);
    }
    const expected = weights.get("w")!.data;
    const moved = Float64Array.from(expected, (x, i) => x - p0[i]);
    const got = await gpu.readFloats(p);
    assertAgrees(
      Float64Array.from(got, (x, i) => x - p0[i]),
      moved,
      `${variant.name}: the weights' change`,
    );
    const state = optimizer.state(weights);
    if (cfg.grokfast) assertAgrees(await gpu.readFloats(ema), state.get("optim.ema.w")!.data, "Grokfast EMA");
    if (cfg.kind === "sgd" && cfg.momentum > 0)
      assertAgrees(await gpu.readFloats(buf), state.get("optim.buf.w")!.data, "momentum buffer");
  });
}
