// The webgpu engine's pieces on a real WebGPU adapter (lavapipe in CI): the adapter is found and described,
// and each WGSL kernel agrees with the fast engine's TypeScript kernel on random inputs.
//
// Agreement is measured normwise: max_i |gpu_i − ts_i| / max_i |ts_i| ≤ 1e-4 per output array (the
// TypeScript kernels sum in double, the WGSL ones in f32, so single elements that cancel to near zero
// have no meaningful relative error of their own; the norm is the scale their rounding errors live on).
// Without the `webgpu` package or an adapter the tests skip with the reason, unless GROK_REQUIRE_WEBGPU=1,
// which makes that a failure.

import assert from "node:assert/strict";
import { after, test, TestContext } from "node:test";
import { tsKernels } from "../src/engines/fast/ts-kernels";
import { formatAdapter, openWebGpu, WebGpu } from "../src/engines/webgpu/device";
import { GpuContext } from "../src/engines/webgpu/kernels/dispatch";
import { matmul } from "../src/engines/webgpu/kernels/matmul";
import { Rng } from "../src/util/rng";

const requireWebGpu = process.env.GROK_REQUIRE_WEBGPU === "1";
const opening = openWebGpu();

after(async () => {
  const opened = await opening;
  if (opened.ok) opened.gpu.device.destroy();
});

/** The open device, or null after marking the test skipped (a failure when GROK_REQUIRE_WEBGPU=1). */
async function deviceFor(t: TestContext): Promise<WebGpu | null> {
  const opened = await opening;
  if (opened.ok) return opened.gpu;
  if (requireWebGpu) assert.fail(`GROK_REQUIRE_WEBGPU=1 but ${opened.reason}`);
  t.skip(opened.reason);
  return null;
}

/** A test that runs on the WebGPU device with a fresh kernel context. */
function gpuTest(name: string, fn: (gpu: GpuContext, webgpu: WebGpu) => Promise<void>): void {
  test(name, async (t) => {
    const webgpu = await deviceFor(t);
    if (webgpu) await fn(new GpuContext(webgpu.device), webgpu);
  });
}

const rng = new Rng(20260113);
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
            assertAgrees(await gpu.readFloats(c), expected, `${m}×${n}×${k}`);
          }
        },
      );
