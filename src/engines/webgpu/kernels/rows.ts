// Row movement by an index array, one thread per (row, column) or (table row, column): the pieces of the
// model sequence that are not in the kernel contract because the fast engine writes them as TypeScript
// loops (token and position embeddings and their gradients, the answer rows of the last layer, the
// prefix/suffix join of keys and values).
//
// Scatter-adds go without atomics (WGSL has none for f32): each output element is owned by one thread,
// which walks the index array in order, so the sums are deterministic and summed in the same order as the
// TypeScript loops (ascending source row).

import { checkArray, checkSizes, GpuArray, gridFor, Recorder } from "./dispatch";

const THREADS = 256;

const INDEX_WGSL = /* wgsl */ `
fn flatIndex(id: vec3<u32>, groups: vec3<u32>) -> u32 {
  return id.x + id.y * groups.x * ${THREADS}u;
}`;

export const GATHER_ROWS_WGSL = /* wgsl */ `
struct Params { rows: u32, width: u32, accumulate: u32, withOutRows: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> index: array<i32>;
@group(0) @binding(3) var<storage, read> outRows: array<i32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
${INDEX_WGSL}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flatIndex(id, groups);
  if (i >= P.rows * P.width) { return; }
  let r = i / P.width;
  let c = i % P.width;
  let value = table[u32(index[r]) * P.width + c];
  var o = i;
  if (P.withOutRows == 1u) { o = u32(outRows[r]) * P.width + c; }
  if (P.accumulate == 1u) { out[o] += value; } else { out[o] = value; }
}`;

export const SCATTER_ADD_ROWS_WGSL = /* wgsl */ `
struct Params { rows: u32, width: u32, tableRows: u32, runs: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> index: array<i32>;
@group(0) @binding(3) var<storage, read_write> table: array<f32>;
${INDEX_WGSL}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flatIndex(id, groups);
  if (i >= P.tableRows * P.width) { return; }
  let v = i32(i / P.width);
  let c = i % P.width;
  // a pack's run indexes only its own block of the table: scan only its own block of rows
  let run = (i / P.width) / (P.tableRows / P.runs);
  let rowsPerRun = P.rows / P.runs;
  var sum = table[i];
  for (var r = run * rowsPerRun; r < (run + 1u) * rowsPerRun; r++) {
    if (index[r] == v) { sum += src[r * P.width + c]; }
  }
  table[i] = sum;
}`;

/**
 * out[r] = table[index[r]] for each row r < rows (out += … when `accumulate`): rows of width values; with
 * `outRows`, row r goes to out[outRows[r]] instead (outRows distinct). Embeddings (table = token or position
 * embedding, index = the tokens or positions), row selection (table = an activation, index = the rows
 * kept), and placing rows among others (the keys and values of prefix and suffix, side by side). Indexes
 * must lie inside the table and out: the caller builds them on the CPU from the batch.
 */
export function gatherRows(
  rec: Recorder,
  table: GpuArray,
  index: GpuArray,
  rows: number,
  width: number,
  out: GpuArray,
  outRows: GpuArray | null,
  accumulate: boolean,
): void {
  const K = "gatherRows";
  checkSizes(K, { rows, width });
  checkArray(K, "index", index, rows, "i32");
  if (outRows) checkArray(K, "outRows", outRows, rows, "i32");
  else checkArray(K, "out", out, rows * width);
  if (table === out) throw new Error(`${K}: out must not be the table`);
  if (rows * width === 0) return;
  rec.dispatch(
    rec.gpu.pipeline(K, GATHER_ROWS_WGSL),
    [
      ["u32", rows],
      ["u32", width],
      ["u32", accumulate ? 1 : 0],
      ["u32", outRows ? 1 : 0],
    ],
    [table, index, outRows ?? rec.gpu.scratch("gatherRows.noOutRows", 1), out],
    gridFor(Math.ceil((rows * width) / THREADS)),
  );
}

/**
 * table[v] += Σ src[r] over the rows r < rows with index[r] = v, for every table row v < tableRows: the
 * backward of gatherRows (embedding gradients; a selection's gradient back into its source rows).
 * Indexes outside 0 … tableRows−1 add nowhere. With runs > 1 (a pack), rows and table rows are `runs`
 * equal blocks, and block r of the rows indexes only block r of the table (an index elsewhere adds nowhere).
 */
export function scatterAddRows(
  rec: Recorder,
  src: GpuArray,
  index: GpuArray,
  rows: number,
  width: number,
  tableRows: number,
  table: GpuArray,
  runs = 1,
): void {
  const K = "scatterAddRows";
  checkSizes(K, { rows, width, tableRows, runs });
  if (runs < 1 || rows % runs !== 0 || tableRows % runs !== 0)
    throw new Error(`${K}: ${rows} rows and ${tableRows} table rows do not split into ${runs} runs`);
  checkArray(K, "src", src, rows * width);
  checkArray(K, "index", index, rows, "i32");
  checkArray(K, "table", table, tableRows * width);
  if (src === table) throw new Error(`${K}: table must not be src`);
  if (tableRows * width === 0 || rows === 0) return;
  rec.dispatch(
    rec.gpu.pipeline(K, SCATTER_ADD_ROWS_WGSL),
    [
      ["u32", rows],
      ["u32", width],
      ["u32", tableRows],
      ["u32", runs],
    ],
    [src, index, table],
    gridFor(Math.ceil((tableRows * width) / THREADS)),
  );
}
