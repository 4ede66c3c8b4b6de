// The webgpu engine's kernel set for the shared model sequences (../shared): each call records a WGSL
// kernel into the current Recorder, so a whole forward/backward pass becomes one command buffer that runs
// when the engine submits it. Buffers live on the GPU under their role and are reused from pass to pass;
// CPU data (the batch's index arrays, dropout masks, fixed positions) is written into its role's buffer
// through the queue, which orders it before the command buffer that reads it.

import { OutputKind } from "../../model/config";
import { ModelKernels } from "../shared/model-kernels";
import * as K from "./kernels";
import { GpuArray, GpuContext, Recorder } from "./kernels/dispatch";

export class GpuModelKernels implements ModelKernels<GpuArray, GpuArray> {
  private recorder: Recorder | null = null;
  private readonly buffers = new Map<string, GpuArray>();

  constructor(readonly gpu: GpuContext) {}

  /** Records the passes run while `rec` is current into it. */
  begin(rec: Recorder): void {
    this.recorder = rec;
  }

  private get rec(): Recorder {
    if (!this.recorder) throw new Error("GpuModelKernels: a kernel was called outside begin()");
    return this.recorder;
  }

  matmul(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    a: GpuArray,
    b: GpuArray,
    c: GpuArray,
    accumulate: boolean,
    runs: number,
  ): void {
    const batch = { count: runs, strideA: m * k, strideB: k * n, strideC: m * n };
    K.matmul(this.rec, transA, transB, m, n, k, a, b, c, accumulate, batch);
  }

  layerNormForward(
    x: GpuArray,
    weight: GpuArray,
    bias: GpuArray,
    rows: number,
    width: number,
    out: GpuArray,
    mean: GpuArray,
    rstd: GpuArray,
    runs: number,
  ): void {
    K.layerNormForward(this.rec, x, weight, bias, rows, width, out, mean, rstd, runs);
  }

  layerNormBackward(
    dout: GpuArray,
    x: GpuArray,
    weight: GpuArray,
    mean: GpuArray,
    rstd: GpuArray,
    rows: number,
    width: number,
    dx: GpuArray,
    dweight: GpuArray,
    dbias: GpuArray,
    runs: number,
  ): void {
    K.layerNormBackward(this.rec, dout, x, weight, mean, rstd, rows, width, dx, dweight, dbias, runs);
  }

  attentionForward(
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
    K.attentionForward(this.rec, q, k, v, batch, tq, tk, heads, headDim, queryOffset, att, out);
  }

  attentionBackward(
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
    K.attentionBackward(this.rec, dout, q, k, v, att, batch, tq, tk, heads, headDim, queryOffset, dq, dk, dv);
  }

  softmaxCrossEntropy(
    logits: GpuArray,
    targets: GpuArray,
    rows: number,
    classes: number,
    losses: GpuArray,
    dlogits: GpuArray | null,
    counts: number[],
    output: OutputKind,
  ): void {
    const scales = dlogits ? this.upload("softmaxCrossEntropy.scales", lossScales(rows, counts)) : null;
    K.softmaxCrossEntropy(this.rec, logits, targets, rows, classes, losses, dlogits, scales, output);
  }

  activationForward(kind: "relu" | "gelu", x: GpuArray, out: GpuArray, n: number): void {
    K.activationForward(this.rec, kind, x, out, n);
  }

  activationBackward(kind: "relu" | "gelu", dout: GpuArray, x: GpuArray, dx: GpuArray, n: number): void {
    K.activationBackward(this.rec, kind, dout, x, dx, n);
  }

  gatherRows(
    table: GpuArray,
    index: GpuArray,
    rows: number,
    width: number,
    out: GpuArray,
    outRows: GpuArray | null,
    accumulate: boolean,
  ): void {
    K.gatherRows(this.rec, table, index, rows, width, out, outRows, accumulate);
  }

  scatterAddRows(
    src: GpuArray,
    index: GpuArray,
    rows: number,
    width: number,
    tableRows: number,
    table: GpuArray,
    runs: number,
  ): void {
    K.scatterAddRows(this.rec, src, index, rows, width, tableRows, table, runs);
  }

  residualAdd(x: GpuArray, y: GpuArray, mask: GpuArray | null, n: number, out: GpuArray): void {
    K.residualAdd(this.rec, x, y, mask, n, out);
  }

  addInto(x: GpuArray, n: number, out: GpuArray): void {
    K.addInto(this.rec, x, n, out);
  }

  multiply(x: GpuArray, mask: GpuArray, n: number, out: GpuArray): void {
    K.multiply(this.rec, x, mask, n, out);
  }

  biasAdd(x: GpuArray, bias: GpuArray, rows: number, width: number, runs: number): void {
    K.biasAdd(this.rec, x, bias, rows, width, runs);
  }

  columnSum(x: GpuArray, rows: number, width: number, out: GpuArray, runs: number): void {
    K.columnSum(this.rec, x, rows, width, out, runs);
  }

  copy(src: GpuArray, dst: GpuArray, n: number): void {
    this.rec.copy(src, dst, n);
  }

  buffer(role: string, n: number): GpuArray {
    return this.array(role, "f32", n);
  }

  zeros(role: string, n: number): GpuArray {
    const array = this.buffer(role, n);
    this.rec.clear(array);
    return array;
  }

  upload(role: string, data: Float32Array): GpuArray {
    const array = this.array(role, "f32", data.length);
    this.gpu.write(array, data);
    return array;
  }

  indices(role: string, data: Int32Array): GpuArray {
    const array = this.array(`${role}#i32`, "i32", data.length);
    this.gpu.write(array, data);
    return array;
  }

  /**
   * The role's array of exactly n elements. A new size replaces it; the old one is destroyed once the
   * work recorded with it is submitted (WebGPU keeps a buffer until the commands that use it are done).
   */
  private array(role: string, type: "f32" | "i32", n: number): GpuArray {
    let array = this.buffers.get(role);
    if (!array || array.length !== n || array.type !== type) {
      if (array) this.rec.retire(array);
      array = this.gpu.array(type, n);
      this.buffers.set(role, array);
    }
    return array;
  }
}

/** Each row's loss scale: 1/counts[r] for run r's real rows (the first counts[r] of its block), 0 for padding. */
export function lossScales(rows: number, counts: number[]): Float32Array {
  const size = rows / counts.length;
  const scales = new Float32Array(rows);
  counts.forEach((count, r) => scales.fill(1 / count, r * size, r * size + count));
  return scales;
}
