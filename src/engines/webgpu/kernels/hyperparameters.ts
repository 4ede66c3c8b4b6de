// Each run's optimizer hyperparameters for one step, for the optimizer kernels (adam.ts, sgd.ts): a small
// f32 array [runs × 16] written each step, one record per run. A tensor of a pack is stored [runs × size],
// so element i belongs to run ⌊i / size⌋ and reads that run's record: one dispatch updates every run with
// its own learning rate, betas, bias corrections of its own step, weight decay and noise.

/** One run's optimizer settings at one step (numbers as optim/optimizer.ts derives them, in double). */
export interface StepHyperparameters {
  /** The learning rate after warmup. */
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Adam's bias corrections 1 − β^t at this run's step t. */
  bc1: number;
  bc2: number;
  weightDecay: number;
  /** AdamW (decay applied to the weights) or Adam/SGD (decay added to the gradient, L2). */
  decoupled: boolean;
  /** Decay toward the initial weights (the "init" slot) instead of 0. */
  towardInit: boolean;
  /** Update noise is added (read from the step's noise array). */
  withNoise: boolean;
  /** SGD momentum; 0: none. */
  momentum: number;
  /** The Grokfast-EMA filter's α and λ; null: no filter for this run. */
  grokfast: { alpha: number; lambda: number } | null;
  /** ⊥Grad: the gradient loses its component along the weights before the update. */
  orthogonalGrad: boolean;
}

/** f32 values per run record (a multiple of 4, for the struct's alignment). */
const RECORD = 16;

/** WGSL: the record of one run (flags are 0.0 or 1.0), read by the optimizer kernels from binding `binding`. */
export function hyperparametersWgsl(binding: number): string {
  return /* wgsl */ `
struct RunHyperparameters {
  lr: f32, beta1: f32, beta2: f32, eps: f32, stepSize: f32, sqrtBc2: f32, weightDecay: f32, decoupled: f32,
  towardInit: f32, withNoise: f32, momentum: f32, withMomentum: f32, alpha: f32, lambda: f32, grokfast: f32,
  orthogonalGrad: f32,
}
@group(0) @binding(${binding}) var<storage, read> H: array<RunHyperparameters>;`;
}

/** The records of `runs` in order, as the array the kernels bind. */
export function hyperparameterRecords(runs: StepHyperparameters[]): Float32Array {
  const out = new Float32Array(runs.length * RECORD);
  runs.forEach((h, r) => {
    const flag = (b: boolean) => (b ? 1 : 0);
    out.set(
      [
        h.lr,
        h.beta1,
        h.beta2,
        h.eps,
        // derived once in double on the CPU, as the TypeScript kernel does
        h.lr / h.bc1,
        Math.sqrt(h.bc2),
        h.weightDecay,
        flag(h.decoupled),
        flag(h.towardInit),
        flag(h.withNoise),
        h.momentum,
        flag(h.momentum > 0),
        h.grokfast?.alpha ?? 0,
        h.grokfast?.lambda ?? 0,
        flag(h.grokfast !== null),
        flag(h.orthogonalGrad),
      ],
      r * RECORD,
    );
  });
  return out;
}

/** The number of run records in an array made by hyperparameterRecords. */
export function recordCount(records: { length: number }): number {
  return Math.floor(records.length / RECORD);
}
