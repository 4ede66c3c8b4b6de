// The optimizer steps besides Adam (adam.ts), as optim/optimizer.ts computes them, one thread per
// parameter: SGD with L2 decay (toward 0 or the initial weights), momentum and update noise, and the
// Grokfast-EMA gradient filter that runs before either optimizer. Every operation is f32 here; the
// optimizer computes in double and rounds at each store, so the two agree to rounding.

import { checkArray, checkSizes, GpuArray, gridFor, Recorder } from "./dispatch";

const THREADS = 256;

export const SGD_WGSL = /* wgsl */ `
struct Params { n: u32, lr: f32, momentum: f32, weightDecay: f32, towardInit: u32, withMomentum: u32, withNoise: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;
@group(0) @binding(4) var<storage, read> init: array<f32>;
@group(0) @binding(5) var<storage, read> noise: array<f32>;

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.x + id.y * groups.x * ${THREADS}u;
  if (i >= P.n) { return; }
  var gi = g[i];
  let pi = p[i];
  if (P.weightDecay > 0.0) {
    var offset = pi;
    if (P.towardInit == 1u) { offset = pi - init[i]; }
    gi += P.weightDecay * offset;
  }
  if (P.withMomentum == 1u) {
    gi = P.momentum * buf[i] + gi;
    buf[i] = gi;
  }
  var u = gi;
  if (P.withNoise == 1u) { u += noise[i]; }
  p[i] = pi - P.lr * u;
}`;

export const GROKFAST_WGSL = /* wgsl */ `
struct Params { n: u32, alpha: f32, lambda: f32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> ema: array<f32>;

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.x + id.y * groups.x * ${THREADS}u;
  if (i >= P.n) { return; }
  let e = P.alpha * ema[i] + (1.0 - P.alpha) * g[i];
  ema[i] = e;
  g[i] += P.lambda * e;
}`;

/**
 * One SGD update of n parameters in place, as Optimizer.update:
 *   g ← g + wd·(p − target) (when wd > 0);  with momentum: buf ← momentum·buf + g, g ← buf;
 *   p ← p − lr·(g + noise[i])
 * target is `init` when given, else 0; `buf` null means no momentum; `noise` holds σ·N(0,1) per parameter.
 */
export function sgdUpdate(
  rec: Recorder,
  p: GpuArray,
  g: GpuArray,
  buf: GpuArray | null,
  init: GpuArray | null,
  noise: GpuArray | null,
  n: number,
  lr: number,
  momentum: number,
  weightDecay: number,
): void {
  const K = "sgdUpdate";
  checkSizes(K, { n });
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
      ["f32", lr],
      ["f32", momentum],
      ["f32", weightDecay],
      ["u32", init ? 1 : 0],
      ["u32", buf ? 1 : 0],
      ["u32", noise ? 1 : 0],
    ],
    // buf is bound writable, so it cannot share the read-only placeholder that init and noise may use
    [p, g, buf ?? rec.gpu.scratch("sgdUpdate.noMomentum", 1), init ?? rec.gpu.absent(), noise ?? rec.gpu.absent()],
    gridFor(Math.ceil(n / THREADS)),
  );
}

/** Grokfast-EMA over n gradients in place: ema ← α·ema + (1−α)·g, then g ← g + λ·ema. */
export function grokfastFilter(
  rec: Recorder,
  g: GpuArray,
  ema: GpuArray,
  n: number,
  alpha: number,
  lambda: number,
): void {
  const K = "grokfastFilter";
  checkSizes(K, { n });
  checkArray(K, "g", g, n);
  checkArray(K, "ema", ema, n);
  if (g === ema) throw new Error(`${K}: ema must not be g`);
  if (n === 0) return;
  rec.dispatch(
    rec.gpu.pipeline(K, GROKFAST_WGSL),
    [
      ["u32", n],
      ["f32", alpha],
      ["f32", lambda],
    ],
    [g, ema],
    gridFor(Math.ceil(n / THREADS)),
  );
}
