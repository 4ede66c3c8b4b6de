// How many runs of a model fit one adapter as a pack. Every pack array is [R × a run's array], so R is
// bounded by the adapter's limits on one buffer (maxStorageBufferBindingSize, maxBufferSize) for the
// largest array, and by a memory budget for all of them together: WebGPU does not say how much memory an
// adapter has, so the budget is a number the caller may give, by default PACK_BUDGET_BYTES.
//
// The bytes of a run are counted, not guessed: the parameter arrays from the model's tensors, and the
// activations by running the model sequence once on a kernel set that only records the size of every
// buffer it is asked for (SizingKernels), over a batch whose prefixes are all distinct (the most rows).

import { ModelDims, paramSpecs } from "../../model/config";
import { EngineSetup } from "../engine";
import { Mlp } from "../shared/mlp";
import { ModelKernels, ModelSequence } from "../shared/model-kernels";
import { Transformer } from "../shared/transformer";
import { WebGpu } from "./device";

/**
 * The default memory budget of a pack: 4 GiB, what a GPU with 6 GB or more holds beside its other work.
 * A larger GPU takes a larger budget (packCapacity's `budgetBytes`); an out-of-memory error while the pack
 * is allocated is reported as a capacity error too.
 */
export const PACK_BUDGET_BYTES = 4 * 2 ** 30;

export interface PackCapacity {
  /** Runs that fit (0: not even one). */
  runs: number;
  /** What bounds it, in words. */
  limit: string;
  /** Bytes of one run: parameters, gradients, optimizer state and noise, plus activations. */
  bytesPerRun: number;
  /** Bytes of one run's share of the largest array. */
  largestArrayPerRun: number;
}

/**
 * How many runs of `setup`'s model fit the adapter as one pack, training at batch size `batchSize` (without
 * it: the parameter arrays alone, what initialize can check before the first batch). Counts every optimizer
 * slot the setup's kind can keep and both noise arrays, so that any runs of the pack fit.
 */
export function packCapacity(
  webgpu: Pick<WebGpu, "limits">,
  setup: EngineSetup,
  batchSize?: number,
  budgetBytes = PACK_BUDGET_BYTES,
): PackCapacity {
  const specs = paramSpecs(setup.model, setup.dims);
  const sizes = specs.map((s) => s.shape.reduce((a, b) => a * b, 1));
  const params = sizes.reduce((a, b) => a + b, 0);
  // weights, gradients, noisy weights, weight and update noise, and the slots: m, v (or buf), init, ema
  const parameterArrays = 5 + (setup.optimizer.kind === "sgd" ? 3 : 4);
  let bytesPerRun = 4 * params * parameterArrays;
  let largest = 4 * Math.max(...sizes);
  if (batchSize !== undefined) {
    const activations = activationSizes(setup, batchSize);
    for (const n of activations.values()) {
      bytesPerRun += 4 * n;
      largest = Math.max(largest, 4 * n);
    }
  }
  const { maxStorageBufferBindingSize, maxBufferSize } = webgpu.limits;
  const bounds: [number, string][] = [
    [Math.floor(maxStorageBufferBindingSize / largest), `maxStorageBufferBindingSize ${maxStorageBufferBindingSize}`],
    [Math.floor(maxBufferSize / largest), `maxBufferSize ${maxBufferSize}`],
    [Math.floor(budgetBytes / bytesPerRun), `a memory budget of ${budgetBytes} bytes`],
  ];
  const [runs, limit] = bounds.reduce((a, b) => (b[0] < a[0] ? b : a));
  return {
    runs,
    limit: `${bytesPerRun} bytes a run, the largest array ${largest} bytes a run; bounded by ${limit}`,
    bytesPerRun,
    largestArrayPerRun: largest,
  };
}

/** The elements of every activation buffer of one run's training step at `batchSize`, by role. */
export function activationSizes(setup: EngineSetup, batchSize: number): Map<string, number> {
  const kernels = new SizingKernels();
  const { model, dims } = setup;
  const sequence: ModelSequence<number> =
    model.kind === "mlp" ? new Mlp(kernels, model, dims) : new Transformer(kernels, model, dims);
  const { inputs, targets } = distinctPrefixes(dims, batchSize);
  const masks = model.dropout > 0 ? maskSizes(setup, batchSize) : [];
  const specs = paramSpecs(model, dims);
  const grads = new Map(specs.map((s) => [s.name, s.shape.reduce((a, b) => a * b, 1)]));
  sequence.run(grads, inputs, targets, batchSize, 1, masks, grads);
  return kernels.sizes;
}

/** A batch whose examples' prefixes (x, op) are as many distinct ones as the vocabulary allows. */
function distinctPrefixes(dims: ModelDims, size: number): { inputs: Int32Array; targets: Int32Array } {
  const inputs = new Int32Array(size * dims.seqLen);
  for (let e = 0; e < size; e++) {
    inputs[e * dims.seqLen] = e % dims.vocabSize;
    inputs[e * dims.seqLen + 1] = Math.floor(e / dims.vocabSize) % dims.vocabSize;
  }
  return { inputs, targets: new Int32Array(size) };
}

/** Dropout masks of the right sizes (their values do not matter here). */
function maskSizes(setup: EngineSetup, size: number): Float32Array[] {
  const { model, dims } = setup;
  if (model.kind === "mlp") return [new Float32Array(size * model.hidden)];
  return Array.from({ length: 2 * model.layers }, () => new Float32Array(size * dims.seqLen * model.width));
}

/** A kernel set whose arrays are their lengths: it computes nothing and records each role's size. */
class SizingKernels implements ModelKernels<number, number> {
  readonly sizes = new Map<string, number>();

  private record(role: string, n: number): number {
    this.sizes.set(role, Math.max(n, this.sizes.get(role) ?? 0));
    return n;
  }

  buffer(role: string, n: number): number {
    return this.record(role, n);
  }
  zeros(role: string, n: number): number {
    return this.record(role, n);
  }
  upload(role: string, data: Float32Array): number {
    return this.record(role, data.length);
  }
  indices(role: string, data: Int32Array): number {
    return this.record(`${role}#i32`, data.length);
  }
  attentionBackward(
    _dout: number,
    _q: number,
    _k: number,
    _v: number,
    _att: number,
    batch: number,
    tq: number,
    tk: number,
    heads: number,
  ): void {
    // the kernel's scratch array of score gradients
    this.record("attention.dScores", batch * heads * tq * tk);
  }
  matmul(): void {}
  layerNormForward(): void {}
  layerNormBackward(): void {}
  attentionForward(): void {}
  activationForward(): void {}
  activationBackward(): void {}
  softmaxCrossEntropy(_logits: number, _targets: number, rows: number): void {
    // the webgpu kernel set's array of each row's loss scale
    this.record("softmaxCrossEntropy.scales", rows);
  }
  gatherRows(): void {}
  scatterAddRows(): void {}
  residualAdd(): void {}
  addInto(): void {}
  multiply(): void {}
  biasAdd(): void {}
  columnSum(): void {}
  copy(): void {}
}
