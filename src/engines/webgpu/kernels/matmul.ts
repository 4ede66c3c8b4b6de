// C[m×n] = op(A)·op(B), or C += op(A)·op(B): the matmul of the kernel contract (src/engines/fast/kernels.ts)
// with every transpose form. op(A) is m×k: A stored m×k, or k×m when transA. op(B) is k×n: B stored k×n,
// or n×k when transB.
//
// With runs > 1 it is `runs` such products side by side (a pack of runs, each with its own weights): the
// grid's z is the run, and each operand of run r starts at r·(its stride); a stride of 0 shares the operand.
//
// Tiled: each 16×16 workgroup computes a 16×16 block of C. The block's rows of op(A) and columns of op(B)
// pass through workgroup memory 16 values of k at a time, so each value is read from the storage buffer
// once per tile instead of once per output. Sums are f32 fma chains (the native SGEMM's arithmetic).

import { checkArray, checkSizes, GpuArray, Recorder } from "./dispatch";

const TILE = 16;

export const MATMUL_WGSL = /* wgsl */ `
struct Params {
  m: u32, n: u32, k: u32, transA: u32, transB: u32, accumulate: u32, strideA: u32, strideB: u32, strideC: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;

const TILE = ${TILE}u;
var<workgroup> tileA: array<array<f32, ${TILE}>, ${TILE}>; // [row of C][index into k]
var<workgroup> tileB: array<array<f32, ${TILE}>, ${TILE}>; // [index into k][column of C]

// op(A)[i, p] of the run whose A starts at a, 0 outside the matrix (the ragged edge tiles)
fn opA(a: u32, i: u32, p: u32) -> f32 {
  if (i >= P.m || p >= P.k) { return 0.0; }
  if (P.transA == 1u) { return A[a + p * P.m + i]; }
  return A[a + i * P.k + p];
}

// op(B)[p, j] of the run whose B starts at b, 0 outside the matrix
fn opB(b: u32, p: u32, j: u32) -> f32 {
  if (p >= P.k || j >= P.n) { return 0.0; }
  if (P.transB == 1u) { return B[b + j * P.k + p]; }
  return B[b + p * P.n + j];
}

@compute @workgroup_size(${TILE}, ${TILE})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wid.y * TILE + lid.y;
  let col = wid.x * TILE + lid.x;
  let run = wid.z;
  let a = run * P.strideA;
  let b = run * P.strideB;
  var sum = 0.0;
  for (var t = 0u; t < P.k; t += TILE) {
    tileA[lid.y][lid.x] = opA(a, row, t + lid.x);
    tileB[lid.y][lid.x] = opB(b, t + lid.y, col);
    workgroupBarrier();
    for (var p = 0u; p < TILE; p++) {
      sum = fma(tileA[lid.y][p], tileB[p][lid.x], sum);
    }
    workgroupBarrier();
  }
  if (row < P.m && col < P.n) {
    let at = run * P.strideC + row * P.n + col;
    if (P.accumulate == 1u) { C[at] = C[at] + sum; } else { C[at] = sum; }
  }
}
`;

/** A batch of products: how many, and where each operand of product r starts (r·stride; 0: shared). */
export interface MatmulBatch {
  count: number;
  strideA: number;
  strideB: number;
  strideC: number;
}

/**
 * Records C = op(A)·op(B) (C += … when accumulate); k = 0 gives C = 0 (unchanged when accumulating).
 * With `batch`, batch.count such products, operands at r·stride.
 */
export function matmul(
  rec: Recorder,
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  a: GpuArray,
  b: GpuArray,
  c: GpuArray,
  accumulate: boolean,
  batch: MatmulBatch = { count: 1, strideA: 0, strideB: 0, strideC: 0 },
): void {
  const { count, strideA, strideB, strideC } = batch;
  checkSizes("matmul", { m, n, k, count, strideA, strideB, strideC });
  const last = count - 1;
  checkArray("matmul", "a", a, last * strideA + m * k);
  checkArray("matmul", "b", b, last * strideB + k * n);
  checkArray("matmul", "c", c, last * strideC + m * n);
  if (a === c || b === c) throw new Error("matmul: c must not be a or b");
  if (count > 1 && strideC < m * n) throw new Error("matmul: the products' outputs overlap");
  if (m === 0 || n === 0 || count === 0) return;
  const groupsX = Math.ceil(n / TILE);
  const groupsY = Math.ceil(m / TILE);
  if (groupsX > 65535 || groupsY > 65535 || count > 65535)
    throw new Error(`matmul: ${count} × ${m}×${n} is more than one dispatch covers`);
  rec.dispatch(
    rec.gpu.pipeline("matmul", MATMUL_WGSL),
    [
      ["u32", m],
      ["u32", n],
      ["u32", k],
      ["u32", transA ? 1 : 0],
      ["u32", transB ? 1 : 0],
      ["u32", accumulate ? 1 : 0],
      ["u32", strideA],
      ["u32", strideB],
      ["u32", strideC],
    ],
    [a, b, c],
    [groupsX, groupsY, count],
  );
}
