// What the model sequences (transformer.ts, mlp.ts) run on: the kernel contract (fast/kernels.ts) over an
// engine's own array type, the few steps the sequence needs besides it, and its buffers by role. One
// sequence of kernel calls, two kernel sets: the fast engine's (fast/model-kernels.ts, Float32Array on the
// CPU, where a call computes at once) and the webgpu engine's (webgpu/model-kernels.ts, arrays on the GPU,
// where a call is recorded and runs when the engine submits the step).
//
// A is an array of f32, I an array of i32 indices. Every output must be a different array from every
// input (the GPU cannot bind one buffer both read-only and writable), except where a method says so.
//
// A pass may run several runs at once (a pack: the same model, each run with its own weights). Then every
// weight and gradient is [runs × its size], run r's at r·size, and every activation [runs × rows × …].
// The kernels that touch a weight take the run count: matmul (runs products side by side), the layer
// norms, biasAdd and columnSum (rows split into `runs` equal blocks). The others work on all rows alike;
// gathers and scatters reach a run's own rows of a table through indices that include the run's offset.

import { OutputKind } from "../../model/config";

/** The kernel contract's methods (see fast/kernels.ts for each one's meaning) over A and I, then the rest. */
export interface ModelKernels<A, I> {
  /** `runs` products C_r = op(A_r)·op(B_r), each operand of run r at r·(its m·k, k·n or m·n). */
  matmul(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    a: A,
    b: A,
    c: A,
    accumulate: boolean,
    runs: number,
  ): void;
  /** Over all `rows`; run r's rows (block r of rows/runs) with its weight and bias. */
  layerNormForward(x: A, weight: A, bias: A, rows: number, width: number, out: A, mean: A, rstd: A, runs: number): void;
  layerNormBackward(
    dout: A,
    x: A,
    weight: A,
    mean: A,
    rstd: A,
    rows: number,
    width: number,
    dx: A,
    dweight: A,
    dbias: A,
    runs: number,
  ): void;
  attentionForward(
    q: A,
    k: A,
    v: A,
    batch: number,
    tq: number,
    tk: number,
    heads: number,
    headDim: number,
    queryOffset: number,
    att: A,
    out: A,
  ): void;
  attentionBackward(
    dout: A,
    q: A,
    k: A,
    v: A,
    att: A,
    batch: number,
    tq: number,
    tk: number,
    heads: number,
    headDim: number,
    queryOffset: number,
    dq: A,
    dk: A,
    dv: A,
  ): void;
  activationForward(kind: "relu" | "gelu", x: A, out: A, n: number): void;
  activationBackward(kind: "relu" | "gelu", dout: A, x: A, dx: A, n: number): void;
  /**
   * The losses, and with dlogits the gradient of each run's mean loss, with softmax or StableMax as `output`
   * says (the kernel contract's softmaxCrossEntropy or stablemaxCrossEntropy). The rows are counts.length
   * equal blocks, one per run; run r's first counts[r] rows are its examples (dlogits scaled by
   * 1/counts[r]), the rest padding, whose dlogits are exact zeros.
   */
  softmaxCrossEntropy(
    logits: A,
    targets: I,
    rows: number,
    classes: number,
    losses: A,
    dlogits: A | null,
    counts: number[],
    output: OutputKind,
  ): void;

  // ---- the sequence's own steps (the fast engine's former inline loops)

  /**
   * out[r] = table[index[r]] (out[r] += … when accumulate), rows of `width` values; with outRows, into
   * out[outRows[r]] (distinct). Embeddings, row selection, rows placed among others.
   */
  gatherRows(table: A, index: I, rows: number, width: number, out: A, outRows: I | null, accumulate: boolean): void;
  /**
   * table[v] += Σ src[r] over rows r with index[r] = v, in ascending r (indexes outside 0 … tableRows−1 add
   * nowhere). The rows and the table rows are `runs` equal blocks, and block r of the rows indexes only
   * block r of the table (a kernel may scan only the run's own rows).
   */
  scatterAddRows(src: A, index: I, rows: number, width: number, tableRows: number, table: A, runs: number): void;
  /** out = x + f32(y ⊙ mask), or x + y without a mask: a residual after dropout. */
  residualAdd(x: A, y: A, mask: A | null, n: number, out: A): void;
  /** out += x. */
  addInto(x: A, n: number, out: A): void;
  /** out = x ⊙ mask. */
  multiply(x: A, mask: A, n: number, out: A): void;
  /** x[r, c] += bias[c], in place (each run's rows its own bias). */
  biasAdd(x: A, bias: A, rows: number, width: number, runs: number): void;
  /** out[c] += x[r, c] for r = 0, 1, … (each sum rounded to f32 as it goes; each run's rows into its own out). */
  columnSum(x: A, rows: number, width: number, out: A, runs: number): void;
  /** dst = src, the first n values. */
  copy(src: A, dst: A, n: number): void;

  // ---- buffers by role (a role's buffer is reused from pass to pass; see fast/workspace.ts)

  /** The buffer of n floats for `role`, contents whatever its last user left. */
  buffer(role: string, n: number): A;
  /** The same, zeroed (for kernels that accumulate). */
  zeros(role: string, n: number): A;
  /** Values computed on the CPU (dropout masks, fixed positions) as an A, under `role`. */
  upload(role: string, data: Float32Array): A;
  /** Indices built on the CPU (tokens, rows) as an I, under `role`. */
  indices(role: string, data: Int32Array): I;
}

/** An engine's weights (or gradients), by parameter name (model/config.paramSpecs). */
export type NamedArrays<A> = Map<string, A>;

/** The tensor called `name` (an Error when there is none). */
export function named<A>(tensors: NamedArrays<A>, name: string): A {
  const t = tensors.get(name);
  if (!t) throw new Error(`model: no tensor ${name}`);
  return t;
}

/** What a forward pass over `size` examples gives, in the engine's arrays; overwritten by the next pass. */
export interface ModelOutput<A> {
  /** [size × numSymbols] */
  logits: A;
  /** [size] per-example cross-entropy. */
  losses: A;
}

/**
 * A model sequence: the forward pass, and with gradient arrays the backward pass accumulating into them,
 * for `runs` runs of `size` examples each (inputs [runs·size·seqLen], targets [runs·size], each dropout
 * mask [runs × the mask of one run]). The logits and losses come back [runs·size × …], run after run.
 *
 * Runs whose batches are smaller are padded to `size`: `counts` (default: `size` for every run) says how
 * many of each run's examples are real. Padding examples come after the real ones, hold any valid tokens
 * and targets, and contribute exact zeros to every gradient, added after the real rows' terms in every sum,
 * so that a run's gradients are bit for bit those of its batch alone.
 */
export interface ModelSequence<A> {
  run(
    weights: NamedArrays<A>,
    inputs: Int32Array,
    targets: Int32Array,
    size: number,
    runs: number,
    masks: Float32Array[],
    grads: NamedArrays<A> | null,
    counts?: number[],
  ): ModelOutput<A>;
}

/** Each run's real examples: `counts`, or all `size` of each of `runs` runs. */
export function exampleCounts(size: number, runs: number, counts?: number[]): number[] {
  if (!counts) return new Array<number>(runs).fill(size);
  if (counts.length !== runs || counts.some((c) => !(Number.isInteger(c) && c >= 1 && c <= size)))
    throw new Error(`example counts [${counts}] do not fit ${runs} runs of ${size} examples`);
  return counts;
}
