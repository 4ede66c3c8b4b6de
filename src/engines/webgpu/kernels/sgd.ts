// The optimizer steps besides Adam (adam.ts), as optim/optimizer.ts computes them, one thread per
// parameter: SGD with L2 decay (toward 0 or the initial weights), momentum and update noise, and the
// Grokfast-EMA gradient filter that runs before either optimizer; and ⊥Grad after it, one workgroup per
// run and tensor (it needs the tensor's dot products). Every operation is f32 here; the
// optimizer computes in double and rounds at each store, so the two agree to rounding. As in adam.ts, one
// dispatch updates every run of a pack, each with its own hyperparameters (hyperparameters.ts).

import { checkArray, checkSizes, GpuArray, gridFor, Recorder, WORKGROUP_INDEX_WGSL } from "./dispatch";
import { hyperparametersWgsl, recordCount } from "./hyperparameters";
import { ROW_REDUCE_WGSL, ROW_THREADS } from "./reduce";

const THREADS = 256;

export const SGD_WGSL = /* wgsl */ `
struct Params { n: u32, size: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;
@group(0) @binding(4) var<storage, read> init: array<f32>;
@group(0) @binding(5) var<storage, read> noise: array<f32>;
${hyperparametersWgsl(6)}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.x + id.y * groups.x * ${THREADS}u;
  if (i >= P.n) { return; }
  let h = H[i / P.size];
  var gi = g[i];
  let pi = p[i];
  if (h.weightDecay > 0.0) {
    var offset = pi;
    if (h.towardInit == 1.0) { offset = pi - init[i]; }
    gi += h.weightDecay * offset;
  }
  if (h.withMomentum == 1.0) {
    gi = h.momentum * buf[i] + gi;
    buf[i] = gi;
  }
  var u = gi;
  if (h.withNoise == 1.0) { u += noise[i]; }
  p[i] = pi - h.lr * u;
}`;

export const GROKFAST_WGSL = /* wgsl */ `
struct Params { n: u32, size: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> ema: array<f32>;
${hyperparametersWgsl(3)}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.x + id.y * groups.x * ${THREADS}u;
  if (i >= P.n) { return; }
  let h = H[i / P.size];
  if (h.grokfast != 1.0) { return; } // a run without the filter keeps its gradient
  let e = h.alpha * ema[i] + (1.0 - h.alpha) * g[i];
  ema[i] = e;
  g[i] += h.lambda * e;
}`;

export const ORTHOGONAL_GRAD_WGSL = /* wgsl */ `
struct Params { runs: u32, size: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read> p: array<f32>;
${hyperparametersWgsl(3)}
${WORKGROUP_INDEX_WGSL}
${ROW_REDUCE_WGSL}

@compute @workgroup_size(${ROW_THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
  let run = workgroupIndex(wid, groups);
  if (run >= P.runs) { return; } // the same for the whole workgroup
  if (H[run].orthogonalGrad != 1.0) { return; } // a run without ⊥Grad keeps its gradient
  let o = run * P.size;
  var gw = 0.0;
  var ww = 0.0;
  for (var i = lane; i < P.size; i += ROW_THREADS) {
    gw += g[o + i] * p[o + i];
    ww += p[o + i] * p[o + i];
  }
  let gDotW = rowSum(lane, gw);
  let wDotW = rowSum(lane, ww);
  if (wDotW == 0.0) { return; } // all-zero weights: no direction to remove
  let c = gDotW / wDotW;
  for (var i = lane; i < P.size; i += ROW_THREADS) { g[o + i] -= c * p[o + i]; }
}`;

/**
 * ⊥Grad over g [runs × size] in place, for the runs whose record has it, as optim/optimizer.ts's
 * orthogonalizeGradient: g ← g − (g·p / p·p)·p per run, the dot products summed in f32 by one workgroup
 * per run.
 */
export function orthogonalGrad(rec: Recorder, g: GpuArray, p: GpuArray, size: number, hyper: GpuArray): void {
  const K = "orthogonalGrad";
  const runs = recordCount(hyper);
  checkSizes(K, { size, runs });
  checkArray(K, "g", g, runs * size);
  checkArray(K, "p", p, runs * size);
  if (g === p) throw new Error(`${K}: p must not be g`);
  if (runs * size === 0) return;
  rec.dispatch(
    rec.gpu.pipeline(K, ORTHOGONAL_GRAD_WGSL),
    [
      ["u32", runs],
      ["u32", size],
    ],
    [g, p, hyper],
    gridFor(runs),
  );
}

/**
 * One SGD update of p [runs × size] in place, run r with record r of `hyper`, as Optimizer.update:
 *   g ← g + wd·(p − target) (when wd > 0);  with momentum: buf ← momentum·buf + g, g ← buf;
 *   p ← p − lr·(g + noise[i])
 * target is `init` for a run that decays toward it, else 0; `noise` holds σ·N(0,1) per parameter. `buf`,
 * `init` and `noise` may be null when no run reads them.
 */
export function sgdUpdate(
  rec: Recorder,
  p: GpuArray,
  g: GpuArray,
  buf: GpuArray | null,
  init: GpuArray | null,
  noise: GpuArray | null,
  size: number,
  hyper: GpuArray,
): void {
  const K = "sgdUpdate";
  const n = recordCount(hyper) * size;
  checkSizes(K, { size, n });
  for (const [name, array] of [
    ["p", p],
    ["g", g],
    ["buf", buf],
    ["init", init],
    ["noise", noise],
  ] as const)
    if (array) checkArray(K, name, array, n);
  if (n === 0) return;
  rec.dispatch(
    rec.gpu.pipeline(K, SGD_WGSL),
    [
      ["u32", n],
      ["u32", size],
    ],
    // buf is bound writable, so it cannot share the read-only placeholder that init and noise may use
    [
      p,
      g,
      buf ?? rec.gpu.scratch("sgdUpdate.noMomentum", 1),
      init ?? rec.gpu.absent(),
      noise ?? rec.gpu.absent(),
      hyper,
    ],
    gridFor(Math.ceil(n / THREADS)),
  );
}

/**
 * Grokfast-EMA over g [runs × size] in place, for the runs whose record has the filter:
 * ema ← α·ema + (1−α)·g, then g ← g + λ·ema.
 */
export function grokfastFilter(rec: Recorder, g: GpuArray, ema: GpuArray, size: number, hyper: GpuArray): void {
  const K = "grokfastFilter";
  const n = recordCount(hyper) * size;
  checkSizes(K, { size, n });
  checkArray(K, "g", g, n);
  checkArray(K, "ema", ema, n);
  if (g === ema) throw new Error(`${K}: ema must not be g`);
  if (n === 0) return;
  rec.dispatch(
    rec.gpu.pipeline(K, GROKFAST_WGSL),
    [
      ["u32", n],
      ["u32", size],
    ],
    [g, ema, hyper],
    gridFor(Math.ceil(n / THREADS)),
  );
}
