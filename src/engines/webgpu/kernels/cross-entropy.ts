// Softmax and StableMax cross-entropy (the kernel contract's softmaxCrossEntropy and stablemaxCrossEntropy):
// per row of logits [rows×classes], losses[r] = −log softmax(logits[r])[targets[r]], and when asked
// dlogits[r] = (softmax − onehot)·scales[r] (written, not accumulated): a row's own scale, so that a pack's
// runs each take the mean over their own batch (1/size), and padding rows give exact zeros (scale 0); the
// same with StableMax in place of softmax. One workgroup per row; for softmax the maximum is subtracted
// before exp, as in the TypeScript kernel.
//
// The TypeScript kernel throws on a target outside 0..classes−1. Here targets live on the GPU and are not
// checked on the CPU at every step, so such a row gets a NaN loss (and NaN gradients): a bad target shows
// up in the loss, never as a plausible number.

import { OutputKind } from "../../../model/config";
import { checkArray, checkSizes, GpuArray, gridFor, Recorder, WORKGROUP_INDEX_WGSL } from "./dispatch";
import { ROW_REDUCE_WGSL, ROW_THREADS } from "./reduce";

/**
 * WGSL of each output function (mx: the row's maximum logit), with q_j = prob(x_j) and S = Σ q_j:
 * loss = log S − log q_t, and dloss/dx_j = slope(x_j)/S − [j = t]·targetTerm, targetTerm = slope(x_t)/q_t
 * (softmax: slope = prob, and the target's terms are exact: log q_t = x_t − mx, targetTerm = 1).
 */
const OUTPUT_WGSL: Record<OutputKind, string> = {
  softmax: /* wgsl */ `
fn prob(x: f32, mx: f32) -> f32 { return exp(x - mx); }
fn slope(x: f32, mx: f32) -> f32 { return exp(x - mx); }
fn rowLoss(sum: f32, xt: f32, mx: f32) -> f32 { return log(sum) - (xt - mx); }
fn targetTerm(xt: f32, mx: f32) -> f32 { return 1.0; }`,
  // StableMax is not shift-invariant: no maximum is subtracted (s grows linearly and does not overflow)
  stablemax: /* wgsl */ `
fn prob(x: f32, mx: f32) -> f32 { return select(1.0 / (1.0 - x), x + 1.0, x >= 0.0); }
fn slope(x: f32, mx: f32) -> f32 { return select(1.0 / ((1.0 - x) * (1.0 - x)), 1.0, x >= 0.0); }
fn rowLoss(sum: f32, xt: f32, mx: f32) -> f32 { return log(sum) - log(prob(xt, mx)); }
fn targetTerm(xt: f32, mx: f32) -> f32 { return slope(xt, mx) / prob(xt, mx); }`,
};

/** The kernel for one output function (OUTPUT_WGSL). */
export function crossEntropyWgsl(output: OutputKind): string {
  return /* wgsl */ `
struct Params { rows: u32, classes: u32, withGradient: u32, invalid: f32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> losses: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(5) var<storage, read> scales: array<f32>;
${WORKGROUP_INDEX_WGSL}
${ROW_REDUCE_WGSL}
${OUTPUT_WGSL[output]}

@compute @workgroup_size(${ROW_THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
  let row = workgroupIndex(wid, groups);
  if (row >= P.rows) { return; } // the same for the whole workgroup
  let o = row * P.classes;
  var m = -3.0e38;
  for (var j = lane; j < P.classes; j += ROW_THREADS) { m = max(m, logits[o + j]); }
  let rowMaximum = rowMax(lane, m);
  var s = 0.0;
  for (var j = lane; j < P.classes; j += ROW_THREADS) { s += prob(logits[o + j], rowMaximum); }
  let sum = rowSum(lane, s);
  let t = targets[row];
  let valid = t >= 0 && u32(t) < P.classes;
  // NaN for a bad target: it comes from the CPU, as WGSL has no NaN constant (and may fold computed ones)
  let nan = P.invalid;
  var xt = 0.0; // the target's logit
  if (valid) { xt = logits[o + u32(t)]; }
  if (lane == 0u) {
    if (valid) { losses[row] = rowLoss(sum, xt, rowMaximum); } else { losses[row] = nan; }
  }
  if (P.withGradient == 1u) {
    let fromTarget = targetTerm(xt, rowMaximum);
    for (var j = lane; j < P.classes; j += ROW_THREADS) {
      var d = slope(logits[o + j], rowMaximum) / sum;
      if (valid && j == u32(t)) { d -= fromTarget; }
      dlogits[o + j] = select(nan, d * scales[row], valid);
    }
  }
}`;
}

/**
 * Records the losses of logits [rows×classes] against targets [rows] (i32), and when dlogits is given, the
 * gradients scaled by each row's scale (scales [rows]).
 */
export function softmaxCrossEntropy(
  rec: Recorder,
  logits: GpuArray,
  targets: GpuArray,
  rows: number,
  classes: number,
  losses: GpuArray,
  dlogits: GpuArray | null,
  scales: GpuArray | null,
  output: OutputKind = "softmax",
): void {
  const K = "softmaxCrossEntropy";
  checkSizes(K, { rows, classes });
  checkArray(K, "logits", logits, rows * classes);
  checkArray(K, "targets", targets, rows, "i32");
  checkArray(K, "losses", losses, rows);
  if (dlogits) {
    checkArray(K, "dlogits", dlogits, rows * classes);
    if (!scales) throw new Error(`${K}: dlogits need each row's scale`);
    checkArray(K, "scales", scales, rows);
  }
  if (rows === 0) return;
  rec.dispatch(
    rec.gpu.pipeline(`${K}.${output}`, crossEntropyWgsl(output)),
    [
      ["u32", rows],
      ["u32", classes],
      ["u32", dlogits ? 1 : 0],
      ["f32", NaN],
    ],
    // without dlogits the scales are not read: logits stand in (the placeholder is dlogits' already, and
    // one buffer cannot be bound writable and read-only in one dispatch)
    [logits, targets, losses, dlogits ?? rec.gpu.absent(), dlogits ? scales! : logits],
    gridFor(rows),
  );
}
