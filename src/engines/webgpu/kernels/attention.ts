// Causal multi-head attention for short sequences (the kernel contract's attentionForward/attentionBackward).
// q [batch×tq×(heads·headDim)] holds the queries of positions queryOffset … queryOffset+tq−1; k, v
// [batch×tk×(heads·headDim)] the keys and values of positions 0 … tk−1; query position i sees keys j ≤ i.
// att [batch×heads×tq×tk] holds the softmax probabilities, exactly 0 where masked.
//
// The sequences are a few tokens long, so one thread per query row does the whole softmax: no workgroup
// memory, and each score is recomputed rather than stored (a dot product of headDim values).
// The backward pass has two kernels so that every output has one writer: per query, the score gradients
// dS (kept in a scratch array) and dq; then per key and feature, dk and dv summed over the queries.

import { checkArray, checkSizes, GpuArray, gridFor, Recorder } from "./dispatch";

const THREADS = 64;

const ATTENTION_COMMON_WGSL = /* wgsl */ `
struct Params { batch: u32, tq: u32, tk: u32, heads: u32, headDim: u32, queryOffset: u32, scale: f32 }
@group(0) @binding(0) var<uniform> P: Params;

fn flatIndex(id: vec3<u32>, groups: vec3<u32>) -> u32 {
  return id.x + id.y * groups.x * ${THREADS}u;
}

// offset of row t of sequence b, head h, in a [batch×t×(heads·headDim)] array with tLen rows per sequence
fn rowOffset(b: u32, t: u32, tLen: u32, h: u32) -> u32 {
  return (b * tLen + t) * P.heads * P.headDim + h * P.headDim;
}`;

export const ATTENTION_FORWARD_WGSL = /* wgsl */ `
${ATTENTION_COMMON_WGSL}
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> att: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn score(qo: u32, b: u32, j: u32, h: u32) -> f32 {
  let ko = rowOffset(b, j, P.tk, h);
  var s = 0.0;
  for (var d = 0u; d < P.headDim; d++) { s = fma(q[qo + d], k[ko + d], s); }
  return s * P.scale;
}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  // one thread per (b, h, i), i fastest
  let row = flatIndex(id, groups);
  if (row >= P.batch * P.heads * P.tq) { return; }
  let i = row % P.tq;
  let h = (row / P.tq) % P.heads;
  let b = row / (P.tq * P.heads);
  let last = P.queryOffset + i; // keys 0..last are visible
  let qo = rowOffset(b, i, P.tq, h);
  let ao = row * P.tk;
  var m = -3.0e38;
  for (var j = 0u; j <= last; j++) { m = max(m, score(qo, b, j, h)); }
  var sum = 0.0;
  for (var j = 0u; j <= last; j++) { sum += exp(score(qo, b, j, h) - m); }
  for (var j = 0u; j < P.tk; j++) {
    if (j <= last) { att[ao + j] = exp(score(qo, b, j, h) - m) / sum; } else { att[ao + j] = 0.0; }
  }
  for (var d = 0u; d < P.headDim; d++) {
    var acc = 0.0;
    for (var j = 0u; j <= last; j++) { acc = fma(att[ao + j], v[rowOffset(b, j, P.tk, h) + d], acc); }
    out[qo + d] = acc;
  }
}`;

/** Per query row: dP_j = dout·v_j, dS_j = P_j·(dP_j − Σ P·dP)·scale (to scratch), dq += Σ_j dS_j·k_j. */
export const ATTENTION_BACKWARD_QUERIES_WGSL = /* wgsl */ `
${ATTENTION_COMMON_WGSL}
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> att: array<f32>;
@group(0) @binding(5) var<storage, read_write> dScores: array<f32>;
@group(0) @binding(6) var<storage, read_write> dq: array<f32>;

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let row = flatIndex(id, groups);
  if (row >= P.batch * P.heads * P.tq) { return; }
  let i = row % P.tq;
  let h = (row / P.tq) % P.heads;
  let b = row / (P.tq * P.heads);
  let last = P.queryOffset + i;
  let qo = rowOffset(b, i, P.tq, h);
  let ao = row * P.tk;
  var dot = 0.0; // Σ_j P_j·dP_j
  for (var j = 0u; j <= last; j++) {
    let vo = rowOffset(b, j, P.tk, h);
    var dp = 0.0;
    for (var d = 0u; d < P.headDim; d++) { dp = fma(dout[qo + d], v[vo + d], dp); }
    dScores[ao + j] = dp;
    dot += att[ao + j] * dp;
  }
  for (var j = 0u; j < P.tk; j++) {
    if (j <= last) { dScores[ao + j] = att[ao + j] * (dScores[ao + j] - dot) * P.scale; } else { dScores[ao + j] = 0.0; }
  }
  for (var d = 0u; d < P.headDim; d++) {
    var s = 0.0;
    for (var j = 0u; j <= last; j++) { s = fma(dScores[ao + j], k[rowOffset(b, j, P.tk, h) + d], s); }
    dq[qo + d] += s;
  }
}`;

/** Per key row and feature: dk_j += Σ_i dS_ij·q_i, dv_j += Σ_i P_ij·dout_i (masked pairs have P = dS = 0). */
export const ATTENTION_BACKWARD_KEYS_WGSL = /* wgsl */ `
${ATTENTION_COMMON_WGSL}
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> att: array<f32>;
@group(0) @binding(4) var<storage, read> dScores: array<f32>;
@group(0) @binding(5) var<storage, read_write> dk: array<f32>;
@group(0) @binding(6) var<storage, read_write> dv: array<f32>;

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  // one thread per (b, h, j, d), d fastest
  let index = flatIndex(id, groups);
  if (index >= P.batch * P.heads * P.tk * P.headDim) { return; }
  let d = index % P.headDim;
  let j = (index / P.headDim) % P.tk;
  let h = (index / (P.headDim * P.tk)) % P.heads;
  let b = index / (P.headDim * P.tk * P.heads);
  var dkSum = 0.0;
  var dvSum = 0.0;
  for (var i = 0u; i < P.tq; i++) {
    let ai = ((b * P.heads + h) * P.tq + i) * P.tk + j;
    let qo = rowOffset(b, i, P.tq, h);
    dkSum = fma(dScores[ai], q[qo + d], dkSum);
    dvSum = fma(att[ai], dout[qo + d], dvSum);
  }
  let o = rowOffset(b, j, P.tk, h) + d;
  dk[o] += dkSum;
  dv[o] += dvSum;
}`;

function checkAttention(
  K: string,
  batch: number,
  tq: number,
  tk: number,
  heads: number,
  headDim: number,
  queryOffset: number,
): void {
  checkSizes(K, { batch, tq, tk, heads, headDim, queryOffset });
  if (queryOffset + tq > tk)
    throw new Error(`${K}: queryOffset + tq (${queryOffset} + ${tq}) must not exceed tk (${tk})`);
}

function attentionParams(
  batch: number,
  tq: number,
  tk: number,
  heads: number,
  headDim: number,
  queryOffset: number,
): ["u32" | "f32", number][] {
  return [
    ["u32", batch],
    ["u32", tq],
    ["u32", tk],
    ["u32", heads],
    ["u32", headDim],
    ["u32", queryOffset],
    ["f32", 1 / Math.sqrt(headDim)],
  ];
}

/** Records att (probabilities) and out for the queries q against keys k and values v. */
export function attentionForward(
  rec: Recorder,
  q: GpuArray,
  k: GpuArray,
  v: GpuArray,
  batch: number,
  tq: number,
  tk: number,
  heads: number,
  headDim: number,
  queryOffset: number,
  att: GpuArray,
  out: GpuArray,
): void {
  const K = "attentionForward";
  checkAttention(K, batch, tq, tk, heads, headDim, queryOffset);
  const D = heads * headDim;
  checkArray(K, "q", q, batch * tq * D);
  checkArray(K, "k", k, batch * tk * D);
  checkArray(K, "v", v, batch * tk * D);
  checkArray(K, "att", att, batch * heads * tq * tk);
  checkArray(K, "out", out, batch * tq * D);
  const rows = batch * heads * tq;
  if (rows === 0) return;
  rec.dispatch(
    rec.gpu.pipeline("attentionForward", ATTENTION_FORWARD_WGSL),
    attentionParams(batch, tq, tk, heads, headDim, queryOffset),
    [q, k, v, att, out],
    gridFor(Math.ceil(rows / THREADS)),
  );
}

/** Records dq, dk, dv += the gradients from dout, given the forward's q, k, v and att. */
export function attentionBackward(
  rec: Recorder,
  dout: GpuArray,
  q: GpuArray,
  k: GpuArray,
  v: GpuArray,
  att: GpuArray,
  batch: number,
  tq: number,
  tk: number,
  heads: number,
  headDim: number,
  queryOffset: number,
  dq: GpuArray,
  dk: GpuArray,
  dv: GpuArray,
): void {
  const K = "attentionBackward";
  checkAttention(K, batch, tq, tk, heads, headDim, queryOffset);
  const D = heads * headDim;
  checkArray(K, "dout", dout, batch * tq * D);
  checkArray(K, "q", q, batch * tq * D);
  checkArray(K, "k", k, batch * tk * D);
  checkArray(K, "v", v, batch * tk * D);
  checkArray(K, "att", att, batch * heads * tq * tk);
  checkArray(K, "dq", dq, batch * tq * D);
  checkArray(K, "dk", dk, batch * tk * D);
  checkArray(K, "dv", dv, batch * tk * D);
  const rows = batch * heads * tq;
  if (rows === 0 || headDim === 0) return;
  const params = attentionParams(batch, tq, tk, heads, headDim, queryOffset);
  const dScores = rec.gpu.scratch("attention.dScores", batch * heads * tq * tk);
  rec.dispatch(
    rec.gpu.pipeline("attentionBackwardQueries", ATTENTION_BACKWARD_QUERIES_WGSL),
    params,
    [dout, k, v, att, dScores, dq],
    gridFor(Math.ceil(rows / THREADS)),
  );
  rec.dispatch(
    rec.gpu.pipeline("attentionBackwardKeys", ATTENTION_BACKWARD_KEYS_WGSL),
    params,
    [dout, q, att, dScores, dk, dv],
    gridFor(Math.ceil((batch * heads * tk * headDim) / THREADS)),
  );
}
