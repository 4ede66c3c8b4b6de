// One Adam/AdamW update in place (the kernel contract's adamUpdate), one thread per parameter, for every
// run of a pack at once: the tensors are [runs × size] and each run reads its own hyperparameters
// (hyperparameters.ts):
//   if decay: p ← p − lr·wd·(p − target)   [decoupled]  or  g ← g + wd·(p − target)   [coupled]
//   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  u ← m/(√v/√bc2 + eps) (+ noise);  p ← p − (lr/bc1)·u
// target is `init` when the run decays toward it, else 0. The TypeScript kernel computes in double and
// rounds at each store; here every operation is f32, so the two agree to rounding, not bit for bit.

import { checkArray, checkSizes, GpuArray, gridFor, Recorder } from "./dispatch";
import { hyperparametersWgsl, recordCount } from "./hyperparameters";

const THREADS = 256;

export const ADAM_WGSL = /* wgsl */ `
struct Params { n: u32, size: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> init: array<f32>;
@group(0) @binding(6) var<storage, read> noise: array<f32>;
${hyperparametersWgsl(7)}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.x + id.y * groups.x * ${THREADS}u;
  if (i >= P.n) { return; }
  let h = H[i / P.size];
  var gi = g[i];
  var pi = p[i];
  if (h.weightDecay > 0.0) {
    var offset = pi;
    if (h.towardInit == 1.0) { offset = pi - init[i]; }
    let decay = h.weightDecay * offset;
    if (h.decoupled == 1.0) { pi -= h.lr * decay; } else { gi += decay; }
  }
  let mi = h.beta1 * m[i] + (1.0 - h.beta1) * gi;
  let vi = h.beta2 * v[i] + (1.0 - h.beta2) * gi * gi;
  var u = mi / (sqrt(vi) / h.sqrtBc2 + h.eps);
  if (h.withNoise == 1.0) { u += noise[i]; }
  m[i] = mi;
  v[i] = vi;
  p[i] = pi - h.stepSize * u;
}`;

/**
 * Records one Adam/AdamW step over p, m, v [runs × size] in place, run r with record r of `hyper`
 * (hyperparameterRecords). `init` and `noise` may be null when no run reads them.
 */
export function adamUpdate(
  rec: Recorder,
  p: GpuArray,
  g: GpuArray,
  m: GpuArray,
  v: GpuArray,
  init: GpuArray | null,
  noise: GpuArray | null,
  size: number,
  hyper: GpuArray,
): void {
  const K = "adamUpdate";
  const runs = recordCount(hyper);
  const n = runs * size;
  checkSizes(K, { size, n });
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
      ["u32", size],
    ],
    [p, g, m, v, init ?? rec.gpu.absent(), noise ?? rec.gpu.absent(), hyper],
    gridFor(Math.ceil(n / THREADS)),
  );
}
