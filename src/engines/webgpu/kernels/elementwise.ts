// The elementwise and broadcast steps of the model sequence that the fast engine writes as TypeScript
// loops: residual sums with a dropout mask, the mask in the backward pass, the MLP's biases and their
// gradients. One thread per output element; outputs must not be inputs (WebGPU forbids one buffer bound
// both read-only and writable), except biasAdd, which works in place by design. biasAdd and columnSum
// take a run count: the rows are `runs` equal blocks, each with its own bias (or bias gradient).

import { checkArray, checkSizes, GpuArray, gridFor, perRun, Recorder } from "./dispatch";

const THREADS = 256;

const INDEX_WGSL = /* wgsl */ `
fn flatIndex(id: vec3<u32>, groups: vec3<u32>) -> u32 {
  return id.x + id.y * groups.x * ${THREADS}u;
}`;

export const RESIDUAL_ADD_WGSL = /* wgsl */ `
struct Params { n: u32, masked: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
${INDEX_WGSL}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flatIndex(id, groups);
  if (i >= P.n) { return; }
  var yi = y[i];
  if (P.masked == 1u) { yi *= mask[i]; }
  out[i] = x[i] + yi;
}`;

export const ADD_INTO_WGSL = /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${INDEX_WGSL}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flatIndex(id, groups);
  if (i >= P.n) { return; }
  out[i] += x[i];
}`;

export const MULTIPLY_WGSL = /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
${INDEX_WGSL}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flatIndex(id, groups);
  if (i >= P.n) { return; }
  out[i] = x[i] * mask[i];
}`;

export const BIAS_ADD_WGSL = /* wgsl */ `
struct Params { rows: u32, width: u32, rowsPerRun: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
${INDEX_WGSL}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flatIndex(id, groups);
  if (i >= P.rows * P.width) { return; }
  let run = i / (P.rowsPerRun * P.width);
  x[i] += bias[run * P.width + i % P.width];
}`;

export const COLUMN_SUM_WGSL = /* wgsl */ `
struct Params { rows: u32, width: u32, rowsPerRun: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${INDEX_WGSL}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flatIndex(id, groups); // one thread per (run, column)
  if (i >= (P.rows / P.rowsPerRun) * P.width) { return; }
  let run = i / P.width;
  let c = i % P.width;
  var sum = out[i];
  for (var r = run * P.rowsPerRun; r < (run + 1u) * P.rowsPerRun; r++) { sum += x[r * P.width + c]; }
  out[i] = sum;
}`;

function distinct(kernel: string, output: GpuArray, inputs: (GpuArray | null)[]): void {
  if (inputs.includes(output)) throw new Error(`${kernel}: the output must not be an input`);
}

/**
 * out = x + y ⊙ mask over n values (out = x + y without a mask): a residual sum after dropout, and the
 * weight-noise step (x = weights, y = σ·N(0,1)).
 */
export function residualAdd(
  rec: Recorder,
  x: GpuArray,
  y: GpuArray,
  mask: GpuArray | null,
  n: number,
  out: GpuArray,
): void {
  const K = "residualAdd";
  checkSizes(K, { n });
  checkArray(K, "x", x, n);
  checkArray(K, "y", y, n);
  if (mask) checkArray(K, "mask", mask, n);
  checkArray(K, "out", out, n);
  distinct(K, out, [x, y, mask]);
  if (n === 0) return;
  rec.dispatch(
    rec.gpu.pipeline(K, RESIDUAL_ADD_WGSL),
    [
      ["u32", n],
      ["u32", mask ? 1 : 0],
    ],
    [x, y, mask ?? rec.gpu.absent(), out],
    gridFor(Math.ceil(n / THREADS)),
  );
}

/** out += x over n values (a residual's gradient into its input's). */
export function addInto(rec: Recorder, x: GpuArray, n: number, out: GpuArray): void {
  const K = "addInto";
  checkSizes(K, { n });
  checkArray(K, "x", x, n);
  checkArray(K, "out", out, n);
  distinct(K, out, [x]);
  if (n === 0) return;
  rec.dispatch(rec.gpu.pipeline(K, ADD_INTO_WGSL), [["u32", n]], [x, out], gridFor(Math.ceil(n / THREADS)));
}

/** out = x ⊙ mask over n values: dropout in the backward pass. */
export function multiply(rec: Recorder, x: GpuArray, mask: GpuArray, n: number, out: GpuArray): void {
  const K = "multiply";
  checkSizes(K, { n });
  checkArray(K, "x", x, n);
  checkArray(K, "mask", mask, n);
  checkArray(K, "out", out, n);
  distinct(K, out, [x, mask]);
  if (n === 0) return;
  rec.dispatch(rec.gpu.pipeline(K, MULTIPLY_WGSL), [["u32", n]], [x, mask, out], gridFor(Math.ceil(n / THREADS)));
}

/** x[r, c] += bias[c] for x [rows × width], in place; with runs > 1, each run's rows its own bias [runs × width]. */
export function biasAdd(rec: Recorder, x: GpuArray, bias: GpuArray, rows: number, width: number, runs = 1): void {
  const K = "biasAdd";
  const rowsPerRun = perRun(K, rows, runs, width);
  checkArray(K, "x", x, rows * width);
  checkArray(K, "bias", bias, runs * width);
  distinct(K, x, [bias]);
  if (rows * width === 0) return;
  rec.dispatch(
    rec.gpu.pipeline(K, BIAS_ADD_WGSL),
    [
      ["u32", rows],
      ["u32", width],
      ["u32", rowsPerRun],
    ],
    [bias, x],
    gridFor(Math.ceil((rows * width) / THREADS)),
  );
}

/**
 * out[c] += Σ_r x[r, c] for x [rows × width] (a bias gradient), rows summed in ascending order; with
 * runs > 1, each run's rows into its own row of out [runs × width].
 */
export function columnSum(rec: Recorder, x: GpuArray, rows: number, width: number, out: GpuArray, runs = 1): void {
  const K = "columnSum";
  const rowsPerRun = perRun(K, rows, runs, width);
  checkArray(K, "x", x, rows * width);
  checkArray(K, "out", out, runs * width);
  distinct(K, out, [x]);
  if (width === 0) return;
  rec.dispatch(
    rec.gpu.pipeline(K, COLUMN_SUM_WGSL),
    [
      ["u32", rows],
      ["u32", width],
      ["u32", rowsPerRun],
    ],
    [x, out],
    gridFor(Math.ceil((runs * width) / THREADS)),
  );
}
