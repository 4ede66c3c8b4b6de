// The engine interface: everything the trainer and the notebooks need from the code that runs the model.
// An engine owns the current weights and the optimizer state; all randomness comes from the run's seed and
// the step (see util/rng), so two engines given the same weights and batch compute the same step.

import { ModelConfig, ModelDims } from "../model/config";
import { OptimizerConfig } from "../optim/optimizer";
import { Rng, Stream } from "../util/rng";
import { NamedTensors } from "../util/tensors";

export interface EngineSetup {
  model: ModelConfig;
  dims: ModelDims;
  optimizer: OptimizerConfig;
  /** The model seed: also seeds dropout masks and noise, per step. */
  seed: number;
}

/** A set of equations: inputs row-major [size, seqLen] (x, op, y, =), targets [size]. */
export interface Batch {
  size: number;
  inputs: Int32Array;
  targets: Int32Array;
}

export interface StepResult {
  /** Mean cross-entropy on the batch before the update. */
  loss: number;
  accuracy: number;
}

export interface GradientResult extends StepResult {
  /** d(mean loss)/d(weight), by weight name; with the step's dropout masks and weight noise applied. */
  grads: Map<string, Float32Array>;
}

export interface EvalResult {
  count: number;
  /** Mean cross-entropy (natural log). */
  loss: number;
  accuracy: number;
  /** Fraction of examples whose float32 loss is exactly 0: the softmax saturated, they give no gradient. */
  saturated: number;
}

/**
 * What data comes back is a Promise: a GPU engine reads its arrays back asynchronously (WebGPU has no
 * synchronous readback), and a training step reads nothing back at all.
 */
export interface Engine {
  /** "fast", "tfjs", "webgpu" */
  readonly name: string;
  /** What it runs on, e.g. "wasm" or "node-gpu". */
  readonly backend: string;
  /**
   * Why this engine cannot train a run of this model and optimizer, or null when it can (absent: it can
   * train every valid configuration). Asked before anything is created on disk; initialize() throws it.
   */
  unsupported?(model: ModelConfig, optimizer: OptimizerConfig): string | null;
  /** Sets up the model and a fresh optimizer for `weights` (the initial weights when training from scratch). */
  initialize(setup: EngineSetup, weights: NamedTensors): void;
  /**
   * One forward/backward pass and one optimizer update; `step` is the 0-based index of this update.
   * Resolves when the step is done or, on a GPU, queued (it rejects on a device error).
   */
  trainStep(batch: Batch, step: number): Promise<void>;
  /** The loss and gradients of step `step` without updating anything (for parity tests and analysis). */
  gradients(batch: Batch, step: number): Promise<GradientResult>;
  /** Loss and accuracy on a whole set, without dropout or noise. */
  evaluate(set: Batch): Promise<EvalResult>;
  /** Logits [size, numSymbols] for a set, row-major. */
  logits(set: Batch): Promise<Float32Array>;
  readWeights(): Promise<NamedTensors>;
  writeWeights(weights: NamedTensors): void;
  readOptimizerState(): Promise<NamedTensors>;
  writeOptimizerState(state: NamedTensors): void;
  /** Resolves when every step so far has run (a GPU's queued work done; at once on the CPU): for timing. */
  flush(): Promise<void>;
  dispose(): void;
}

/**
 * Inverted-dropout masks (0 or 1/(1−p)) for one training step, one per dropout site, in the order the model
 * applies them: transformer, per layer, attention output then FFN output, each [size·seqLen, width];
 * MLP, the hidden layer [size, hidden]. Empty when dropout is off.
 */
export function dropoutMasks(
  model: ModelConfig,
  dims: ModelDims,
  size: number,
  seed: number,
  step: number,
): Float32Array[] {
  if (model.dropout <= 0) return [];
  const rng = Rng.for(seed, Stream.dropout, step);
  const keep = 1 - model.dropout;
  const mask = (n: number) => {
    const m = new Float32Array(n);
    for (let i = 0; i < n; i++) m[i] = rng.uniform() < keep ? 1 / keep : 0;
    return m;
  };
  if (model.kind === "mlp") return [mask(size * model.hidden)];
  const masks: Float32Array[] = [];
  for (let l = 0; l < model.layers; l++)
    masks.push(mask(size * dims.seqLen * model.width), mask(size * dims.seqLen * model.width));
  return masks;
}

/** Weights plus Gaussian noise for one forward/backward pass (the paper's "Gaussian weight noise"). */
export function noisyWeights(weights: NamedTensors, sigma: number, seed: number, step: number): NamedTensors {
  const out: NamedTensors = new Map();
  let index = 0;
  for (const [name, t] of weights) {
    const rng = Rng.for(seed, Stream.weightNoise, step, index++);
    const data = new Float32Array(t.data.length);
    for (let i = 0; i < data.length; i++) data[i] = t.data[i] + sigma * rng.normal();
    out.set(name, { shape: t.shape, data });
  }
  return out;
}

/** The names of the engines this build offers, best first (a faster engine registers itself ahead). */
export const ENGINE_NAMES = ["fast", "tfjs", "webgpu"] as const;
export type EngineName = (typeof ENGINE_NAMES)[number];

/**
 * Many runs trained together: a pack. Its runs share the operation, modulus and model shape (packConflict),
 * and each keeps its own seed, data, batches, step, hyperparameters and state. A pack
 * step trains every run one step, each at its own step index; a run's results do not depend on the other
 * runs of its pack (bit for bit: the same as in a pack of one on the same engine and adapter).
 */
export interface PackEngine {
  /** "webgpu" */
  readonly name: string;
  readonly backend: string;
  /** The runs in the pack now, in order. */
  readonly size: number;
  /**
   * Sets up a pack of setups.length runs, run r from weights[r] with a fresh optimizer. Rejects with a
   * UserError when two setups cannot share a pack (packConflict) or the pack is too big for the device
   * (the message names the pack size that fits).
   */
  initialize(setups: EngineSetup[], weights: NamedTensors[]): Promise<void>;
  /**
   * One optimizer update for every run: run r on batches[r] at its step steps[r]. The batches may differ in
   * size. Resolves when the step is queued; rejects with DeviceError on a device failure.
   */
  trainStep(batches: Batch[], steps: number[]): Promise<void>;
  /** Every run's loss and gradients at its step (loss and accuracy over its own batch), updating nothing. */
  gradients(batches: Batch[], steps: number[]): Promise<GradientResult[]>;
  /**
   * Run r's view: its evaluations, logits, weights and optimizer state (only the slots optim/optimizer.ts
   * keeps for run r's configuration). A view is valid until the next keep().
   */
  run(r: number): Omit<Engine, "trainStep" | "gradients" | "initialize" | "dispose" | "flush">;
  /**
   * Keeps only the runs at these indexes, in this order (the finished ones leave the pack): run i is then
   * the run that was runs[i], its weights and state unchanged.
   */
  keep(runs: number[]): Promise<void>;
  flush(): Promise<void>;
  dispose(): void;
}

/**
 * The device failed (lost, out of memory, a shader or validation error): nothing computed since the last
 * good read can be trusted, and the device's arrays may be gone. The trainer stops the run(s) with the last
 * checkpoint on disk, without reading from the engine again.
 */
export class DeviceError extends Error {
  constructor(
    readonly kind: "lost" | "out-of-memory" | "validation" | "internal",
    message: string,
  ) {
    super(message);
    this.name = "DeviceError";
  }
}

/**
 * Why runs of these two setups cannot share a pack, or null when they can. A pack's runs run the same
 * kernels: the same model (but any dropout rate) and output, the same vocabulary, and the same optimizer
 * kind (⊥Grad is a per-run flag, like Grokfast); dropout
 * on in all or in none (with dropout each example keeps its own prefix, another summation order than the
 * shared prefixes of a run without). Seeds, data, steps, batch sizes (a pack step pads the smaller batches
 * with examples that add nothing) and every other hyperparameter may differ.
 */
export function packConflict(a: EngineSetup, b: EngineSetup): string | null {
  for (const key of ["vocabSize", "numSymbols", "seqLen"] as const)
    if (a.dims[key] !== b.dims[key]) return `the data differ in ${key} (${a.dims[key]} vs ${b.dims[key]})`;
  // one cross-entropy kernel per pack (an absent output is softmax)
  const [outputA, outputB] = [a.model.output ?? "softmax", b.model.output ?? "softmax"];
  if (outputA !== outputB) return `the outputs differ (${outputA} vs ${outputB})`;
  const modelA = a.model as unknown as Record<string, unknown>;
  const modelB = b.model as unknown as Record<string, unknown>;
  for (const key of new Set([...Object.keys(modelA), ...Object.keys(modelB)]))
    if (key !== "dropout" && key !== "output" && modelA[key] !== modelB[key])
      return `the models differ in ${key} (${modelA[key]} vs ${modelB[key]})`;
  if (a.model.dropout > 0 !== b.model.dropout > 0)
    return `dropout is on in one run (${Math.max(a.model.dropout, b.model.dropout)}) and off in the other`;
  if (a.optimizer.kind !== b.optimizer.kind)
    return `the optimizers differ (${a.optimizer.kind} vs ${b.optimizer.kind})`;
  return null;
}
