// The fast engine's kernel set for the shared model sequences: the hot kernels (native or TypeScript) and
// the sequence's own steps as plain loops over Float32Arrays, buffers from a Workspace. CPU data needs no
// upload: upload() and indices() hand the array itself to the sequence.
//
// Each loop stores to a Float32Array after every operation, so it rounds exactly where the inline loops it
// replaced did: the fast engine's results are bit for bit what they were. The fast engine runs one run at
// a time (runs = 1); the kernels that take a run count loop over the runs' subarrays otherwise.

import { OutputKind } from "../../model/config";
import { ModelKernels } from "../shared/model-kernels";
import { Kernels } from "./kernels";
import { Workspace } from "./workspace";

export class CpuModelKernels implements ModelKernels<Float32Array, Int32Array> {
  private readonly kernels: Kernels;
  readonly attentionForward: Kernels["attentionForward"];
  readonly attentionBackward: Kernels["attentionBackward"];
  readonly activationForward: Kernels["activationForward"];
  readonly activationBackward: Kernels["activationBackward"];
  private readonly ws = new Workspace();

  constructor(kernels: Kernels) {
    // the contract lets every kernel be called detached from its object
    this.kernels = kernels;
    this.attentionForward = kernels.attentionForward;
    this.attentionBackward = kernels.attentionBackward;
    this.activationForward = kernels.activationForward;
    this.activationBackward = kernels.activationBackward;
  }

  matmul(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    accumulate: boolean,
    runs: number,
  ): void {
    if (runs === 1) return this.kernels.matmul(transA, transB, m, n, k, a, b, c, accumulate);
    for (let r = 0; r < runs; r++)
      this.kernels.matmul(
        transA,
        transB,
        m,
        n,
        k,
        runSlice(a, r, m * k),
        runSlice(b, r, k * n),
        runSlice(c, r, m * n),
        accumulate,
      );
  }

  layerNormForward(
    x: Float32Array,
    weight: Float32Array,
    bias: Float32Array,
    rows: number,
    width: number,
    out: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    runs: number,
  ): void {
    if (runs === 1) return this.kernels.layerNormForward(x, weight, bias, rows, width, out, mean, rstd);
    const R = rows / runs;
    for (let r = 0; r < runs; r++)
      this.kernels.layerNormForward(
        runSlice(x, r, R * width),
        runSlice(weight, r, width),
        runSlice(bias, r, width),
        R,
        width,
        runSlice(out, r, R * width),
        runSlice(mean, r, R),
        runSlice(rstd, r, R),
      );
  }

  layerNormBackward(
    dout: Float32Array,
    x: Float32Array,
    weight: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    rows: number,
    width: number,
    dx: Float32Array,
    dweight: Float32Array,
    dbias: Float32Array,
    runs: number,
  ): void {
    const kernel = this.kernels.layerNormBackward;
    if (runs === 1) return kernel(dout, x, weight, mean, rstd, rows, width, dx, dweight, dbias);
    const R = rows / runs;
    const rowsOf = (a: Float32Array, r: number) => runSlice(a, r, R * width);
    for (let r = 0; r < runs; r++)
      kernel(
        rowsOf(dout, r),
        rowsOf(x, r),
        runSlice(weight, r, width),
        runSlice(mean, r, R),
        runSlice(rstd, r, R),
        R,
        width,
        rowsOf(dx, r),
        runSlice(dweight, r, width),
        runSlice(dbias, r, width),
      );
  }

  gatherRows(
    table: Float32Array,
    index: Int32Array,
    rows: number,
    width: number,
    out: Float32Array,
    outRows: Int32Array | null,
    accumulate: boolean,
  ): void {
    for (let r = 0; r < rows; r++) {
      const from = index[r] * width;
      const to = (outRows ? outRows[r] : r) * width;
      if (accumulate) for (let c = 0; c < width; c++) out[to + c] += table[from + c];
      else out.set(table.subarray(from, from + width), to);
    }
  }

  scatterAddRows(
    src: Float32Array,
    index: Int32Array,
    rows: number,
    width: number,
    tableRows: number,
    table: Float32Array,
    _runs: number, // every row is scanned: a run's rows index only its own table rows
  ): void {
    for (let r = 0; r < rows; r++) {
      const v = index[r];
      if (v < 0 || v >= tableRows) continue;
      for (let c = 0; c < width; c++) table[v * width + c] += src[r * width + c];
    }
  }

  residualAdd(x: Float32Array, y: Float32Array, mask: Float32Array | null, n: number, out: Float32Array): void {
    if (mask) for (let i = 0; i < n; i++) out[i] = x[i] + Math.fround(y[i] * mask[i]);
    else for (let i = 0; i < n; i++) out[i] = x[i] + y[i];
  }

  addInto(x: Float32Array, n: number, out: Float32Array): void {
    for (let i = 0; i < n; i++) out[i] += x[i];
  }

  multiply(x: Float32Array, mask: Float32Array, n: number, out: Float32Array): void {
    for (let i = 0; i < n; i++) out[i] = x[i] * mask[i];
  }

  softmaxCrossEntropy(
    logits: Float32Array,
    targets: Int32Array,
    rows: number,
    classes: number,
    losses: Float32Array,
    dlogits: Float32Array | null,
    counts: number[],
    output: OutputKind,
  ): void {
    const kernel = output === "stablemax" ? this.kernels.stablemaxCrossEntropy : this.kernels.softmaxCrossEntropy;
    if (counts.length === 1 && counts[0] === rows)
      return kernel(logits, targets, rows, classes, losses, dlogits, 1 / rows);
    const R = rows / counts.length;
    counts.forEach((count, r) => {
      kernel(
        runSlice(logits, r, R * classes),
        targets.subarray(r * R, (r + 1) * R),
        R,
        classes,
        runSlice(losses, r, R),
        dlogits && runSlice(dlogits, r, R * classes),
        1 / count,
      );
      // the run's padding rows add nothing
      dlogits?.fill(0, (r * R + count) * classes, (r + 1) * R * classes);
    });
  }

  biasAdd(x: Float32Array, bias: Float32Array, rows: number, width: number, runs: number): void {
    const R = rows / runs;
    for (let r = 0; r < rows; r++) {
      const b = Math.floor(r / R) * width; // this row's run's bias
      for (let c = 0; c < width; c++) x[r * width + c] += bias[b + c];
    }
  }

  columnSum(x: Float32Array, rows: number, width: number, out: Float32Array, runs: number): void {
    const R = rows / runs;
    for (let r = 0; r < rows; r++) {
      const o = Math.floor(r / R) * width;
      for (let c = 0; c < width; c++) out[o + c] += x[r * width + c];
    }
  }

  copy(src: Float32Array, dst: Float32Array, n: number): void {
    dst.set(src.subarray(0, n));
  }

  buffer(role: string, n: number): Float32Array {
    return this.ws.get(role, n);
  }

  zeros(role: string, n: number): Float32Array {
    return this.ws.zeros(role, n);
  }

  upload(_role: string, data: Float32Array): Float32Array {
    return data;
  }

  indices(_role: string, data: Int32Array): Int32Array {
    return data;
  }
}

/** Run r's block of `size` values of a pack's array [runs × size]. */
function runSlice(a: Float32Array, r: number, size: number): Float32Array {
  return a.subarray(r * size, (r + 1) * size);
}
