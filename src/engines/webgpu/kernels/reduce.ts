// Workgroup reductions shared by the row kernels (layer norm, softmax cross-entropy): one workgroup of
// ROW_THREADS threads per row, each thread striding over the row, partial results combined in a tree.

/** Threads per row; a power of two (the tree halves it). */
export const ROW_THREADS = 64;

/**
 * WGSL: rowSum(lane, v) and rowMax(lane, v) return, in every thread, the sum or the maximum of the v of the
 * workgroup's ROW_THREADS threads. Must be called from uniform control flow (they contain barriers).
 */
export const ROW_REDUCE_WGSL = /* wgsl */ `
const ROW_THREADS = ${ROW_THREADS}u;
var<workgroup> partials: array<f32, ${ROW_THREADS}>;

fn rowSum(lane: u32, v: f32) -> f32 {
  partials[lane] = v;
  workgroupBarrier();
  for (var stride = ROW_THREADS / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) { partials[lane] += partials[lane + stride]; }
    workgroupBarrier();
  }
  let total = partials[0];
  workgroupBarrier(); // everyone has read partials[0] before it is reused
  return total;
}

fn rowMax(lane: u32, v: f32) -> f32 {
  partials[lane] = v;
  workgroupBarrier();
  for (var stride = ROW_THREADS / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) { partials[lane] = max(partials[lane], partials[lane + stride]); }
    workgroupBarrier();
  }
  let total = partials[0];
  workgroupBarrier();
  return total;
}`;
