// One Adam/AdamW update of n parameters in place (the kernel contract's adamUpdate), one thread per
// parameter:
//   if decay: p ← p − lr·wd·(p − target)   [decoupled]  or  g ← g + wd·(p − target)   [coupled]
//   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  u ← m/(√v/√bc2 + eps) (+ noise);  p ← p − (lr/bc1)·u
// target is `init` when given, else 0. The TypeScript kernel computes in double and rounds at each store;
// here every operation is f32, so the two agree to rounding, not bit for bit.

import { checkArray, checkSizes, GpuArray, gridFor, Recorder } from "./dispatch";

const THREADS = 256;

export const ADAM_WGSL = /* wgsl */ `
struct Params {
  n: u32, lr: f32, beta1: f32, beta2: f32, eps: f32, stepSize: f32, sqrtBc2: f32, weightDecay: f32,
  decoupled: u32, towardInit: u32, withNoise: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> init: array<f32>;
@group(0) @binding(6) var<storage, read> noise: array<f32>;

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.x + id.y * groups.x * ${THREADS}u;
  if (i >= P.n) { return; }
  var gi = g[i];
  var pi = p[i];
  if (P.weightDecay > 0.0) {
    var offset = pi;
    if (P.towardInit == 1u) { offset = pi - init[i]; }
    let decay = P.weightDecay * offset;
    if (P.decoupled == 1u) { pi -= P.lr * decay; } else { gi += decay; }
  }
  let mi = P.beta1 * m[i] + (1.0 - P.beta1) * gi;
  let vi = P.beta2 * v[i] + (1.0 - P.beta2) * gi * gi;
  var u = mi / (sqrt(vi) / P.sqrtBc2 + P.eps);
  if (P.withNoise == 1u) { u += noise[i]; }
  m[i] = mi;
  v[i] = vi;
  p[i] = pi - P.stepSize * u;
}`;

/** Records one Adam/AdamW step over p, m, v in place (arguments as in the kernel contract). */
export function adamUpdate(
  rec: Recorder,
  p: GpuArray,
  g: GpuArray,
  m: GpuArray,
  v: GpuArray,
  init: GpuArray | null,
  noise: GpuArray | null,
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
  checkSizes(K, { n });
  for (const [name, array] of [
    ["p", p],
    ["g", g],
    ["m", m],
    ["v", v],
    ["init", init],
    ["noise", noise],
  ] as const)
    if (array) checkArray(K, name, array, n);
  if (n === 0) return;
  rec.dispatch(
    rec.gpu.pipeline("adamUpdate", ADAM_WGSL),
    [
      ["u32", n],
      ["f32", lr],
      ["f32", beta1],
      ["f32", beta2],
      ["f32", eps],
      // derived once in double on the CPU, as the TypeScript kernel does
      ["f32", lr / bc1],
      ["f32", Math.sqrt(bc2)],
      ["f32", weightDecay],
      ["u32", decoupled ? 1 : 0],
      ["u32", init ? 1 : 0],
      ["u32", noise ? 1 : 0],
    ],
    [p, g, m, v, init ?? rec.gpu.absent(), noise ?? rec.gpu.absent()],
    gridFor(Math.ceil(n / THREADS)),
  );
}
