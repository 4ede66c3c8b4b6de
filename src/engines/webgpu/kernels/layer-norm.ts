// Layer norm forward and backward (the kernel contract's layerNormForward/layerNormBackward): population
// variance, eps 1e-5 inside the square root. One workgroup per row for the row statistics and dx; the
// weight and bias gradients, which sum over rows, are a second pass with one thread per column, so every
// sum has one writer and no atomics are needed (results do not depend on scheduling).
//
// With runs > 1 the rows are `runs` equal blocks, each normalized with its own run's weight and bias
// ([runs × width]); the weight and bias gradients are one thread per (run, column), summing that run's
// rows in order, as a run alone would.

import { checkArray, GpuArray, gridFor, perRun, Recorder, WORKGROUP_INDEX_WGSL } from "./dispatch";
import { ROW_REDUCE_WGSL, ROW_THREADS } from "./reduce";

const LN_EPS = "1e-5";

export const LAYER_NORM_FORWARD_WGSL = /* wgsl */ `
struct Params { rows: u32, width: u32, rowsPerRun: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;
${WORKGROUP_INDEX_WGSL}
${ROW_REDUCE_WGSL}

@compute @workgroup_size(${ROW_THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
  let row = workgroupIndex(wid, groups);
  if (row >= P.rows) { return; } // the same for the whole workgroup
  let o = row * P.width;
  var s = 0.0;
  for (var j = lane; j < P.width; j += ROW_THREADS) { s += x[o + j]; }
  let mu = rowSum(lane, s) / f32(P.width);
  // two passes (mean, then squared deviations): no cancellation as in E[x²] − E[x]²
  var ss = 0.0;
  for (var j = lane; j < P.width; j += ROW_THREADS) { let d = x[o + j] - mu; ss += d * d; }
  let rs = 1.0 / sqrt(rowSum(lane, ss) / f32(P.width) + ${LN_EPS});
  if (lane == 0u) { mean[row] = mu; rstd[row] = rs; }
  let w = (row / P.rowsPerRun) * P.width; // this run's weight and bias
  for (var j = lane; j < P.width; j += ROW_THREADS) {
    out[o + j] = (x[o + j] - mu) * rs * weight[w + j] + bias[w + j];
  }
}`;

/** dx += rstd·(dout·weight − mean(dout·weight) − x̂·mean(dout·weight·x̂)), per row. */
export const LAYER_NORM_BACKWARD_DX_WGSL = /* wgsl */ `
struct Params { rows: u32, width: u32, rowsPerRun: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
${WORKGROUP_INDEX_WGSL}
${ROW_REDUCE_WGSL}

@compute @workgroup_size(${ROW_THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
  let row = workgroupIndex(wid, groups);
  if (row >= P.rows) { return; }
  let o = row * P.width;
  let mu = mean[row];
  let rs = rstd[row];
  let w = (row / P.rowsPerRun) * P.width;
  var sumG = 0.0;  // Σ dx̂, dx̂ = dout·weight
  var sumGX = 0.0; // Σ dx̂·x̂
  for (var j = lane; j < P.width; j += ROW_THREADS) {
    let g = dout[o + j] * weight[w + j];
    sumG += g;
    sumGX += g * (x[o + j] - mu) * rs;
  }
  let meanG = rowSum(lane, sumG) / f32(P.width);
  let meanGX = rowSum(lane, sumGX) / f32(P.width);
  for (var j = lane; j < P.width; j += ROW_THREADS) {
    let xh = (x[o + j] - mu) * rs;
    dx[o + j] += rs * (dout[o + j] * weight[w + j] - meanG - xh * meanGX);
  }
}`;

/** dweight[j] += Σ_rows dout·x̂, dbias[j] += Σ_rows dout: one thread per column (of each run). */
export const LAYER_NORM_BACKWARD_PARAMS_WGSL = /* wgsl */ `
struct Params { rows: u32, width: u32, rowsPerRun: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbias: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.x + id.y * groups.x * 64u;
  if (i >= (P.rows / P.rowsPerRun) * P.width) { return; }
  let run = i / P.width;
  let j = i % P.width;
  var dw = 0.0;
  var db = 0.0;
  for (var r = run * P.rowsPerRun; r < (run + 1u) * P.rowsPerRun; r++) {
    let dy = dout[r * P.width + j];
    dw += dy * (x[r * P.width + j] - mean[r]) * rstd[r];
    db += dy;
  }
  dweight[i] += dw;
  dbias[i] += db;
}`;

/**
 * Records out = layerNorm(x)·weight + bias per row of x [rows×width], saving mean and rstd [rows]. With
 * runs > 1, row r uses run ⌊r / (rows/runs)⌋'s weight and bias (weight, bias [runs × width]).
 */
export function layerNormForward(
  rec: Recorder,
  x: GpuArray,
  weight: GpuArray,
  bias: GpuArray,
  rows: number,
  width: number,
  out: GpuArray,
  mean: GpuArray,
  rstd: GpuArray,
  runs = 1,
): void {
  const K = "layerNormForward";
  const rowsPerRun = perRun(K, rows, runs, width);
  checkArray(K, "x", x, rows * width);
  checkArray(K, "weight", weight, runs * width);
  checkArray(K, "bias", bias, runs * width);
  checkArray(K, "out", out, rows * width);
  checkArray(K, "mean", mean, rows);
  checkArray(K, "rstd", rstd, rows);
  if (rows === 0 || width === 0) return;
  rec.dispatch(
    rec.gpu.pipeline("layerNormForward", LAYER_NORM_FORWARD_WGSL),
    [
      ["u32", rows],
      ["u32", width],
      ["u32", rowsPerRun],
    ],
    [x, weight, bias, out, mean, rstd],
    gridFor(rows),
  );
}

/**
 * Records dx += ∂/∂x, dweight += ∂/∂weight, dbias += ∂/∂bias from dout, given the forward's mean, rstd;
 * with runs > 1, each run's rows into its own weight's gradients (as layerNormForward).
 */
export function layerNormBackward(
  rec: Recorder,
  dout: GpuArray,
  x: GpuArray,
  weight: GpuArray,
  mean: GpuArray,
  rstd: GpuArray,
  rows: number,
  width: number,
  dx: GpuArray,
  dweight: GpuArray,
  dbias: GpuArray,
  runs = 1,
): void {
  const K = "layerNormBackward";
  const rowsPerRun = perRun(K, rows, runs, width);
  checkArray(K, "dout", dout, rows * width);
  checkArray(K, "x", x, rows * width);
  checkArray(K, "weight", weight, runs * width);
  checkArray(K, "mean", mean, rows);
  checkArray(K, "rstd", rstd, rows);
  checkArray(K, "dx", dx, rows * width);
  checkArray(K, "dweight", dweight, runs * width);
  checkArray(K, "dbias", dbias, runs * width);
  if (rows === 0 || width === 0) return;
  const params: ["u32", number][] = [
    ["u32", rows],
    ["u32", width],
    ["u32", rowsPerRun],
  ];
  rec.dispatch(
    rec.gpu.pipeline("layerNormBackwardDx", LAYER_NORM_BACKWARD_DX_WGSL),
    params,
    [dout, x, weight, mean, rstd, dx],
    gridFor(rows),
  );
  rec.dispatch(
    rec.gpu.pipeline("layerNormBackwardParams", LAYER_NORM_BACKWARD_PARAMS_WGSL),
    params,
    [dout, x, mean, rstd, dweight, dbias],
    gridFor(Math.ceil((runs * width) / 64)), // one thread per (run, column)
  );
}
