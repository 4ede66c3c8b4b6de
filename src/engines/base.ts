// What every engine shares: the master weights in JS memory, the optimizer (optim/optimizer.ts), weight
// checks, evaluation in chunks and state I/O. An engine adds its forward pass and its gradients.

import { paramSpecs } from "../model/config";
import { Optimizer } from "../optim/optimizer";
import { cloneTensors, NamedTensors } from "../util/tensors";
import { Batch, Engine, EngineSetup, EvalResult, GradientResult } from "./engine";

/** Examples per forward pass when evaluating a whole set. */
const EVAL_CHUNK = 2048;

/** What a forward pass over `size` examples gives. An engine may reuse these buffers on its next pass. */
export interface ForwardPass {
  /** [size × numSymbols] */
  logits: Float32Array;
  /** [size] per-example cross-entropy. */
  losses: Float32Array;
}

/** The forward pass of examples start … start+size−1 of a set, without dropout or noise. */
export type ChunkForward = (start: number, size: number) => ForwardPass | Promise<ForwardPass>;

/** Loss, accuracy and saturation over a whole set, one forward pass per EVAL_CHUNK examples. */
export async function evaluateInChunks(set: Batch, classes: number, forward: ChunkForward): Promise<EvalResult> {
  let lossSum = 0;
  let correct = 0;
  let saturated = 0;
  for (let start = 0; start < set.size; start += EVAL_CHUNK) {
    const size = Math.min(EVAL_CHUNK, set.size - start);
    const { logits, losses } = await forward(start, size);
    for (let i = 0; i < size; i++) {
      lossSum += losses[i];
      if (losses[i] === 0) saturated++;
    }
    correct += countCorrect(logits, set.targets.subarray(start, start + size), classes);
  }
  return { count: set.size, loss: lossSum / set.size, accuracy: correct / set.size, saturated: saturated / set.size };
}

/** The logits of a whole set, [size × classes], one forward pass per EVAL_CHUNK examples. */
export async function logitsInChunks(set: Batch, classes: number, forward: ChunkForward): Promise<Float32Array> {
  const out = new Float32Array(set.size * classes);
  for (let start = 0; start < set.size; start += EVAL_CHUNK) {
    const size = Math.min(EVAL_CHUNK, set.size - start);
    out.set((await forward(start, size)).logits.subarray(0, size * classes), start * classes);
  }
  return out;
}

export abstract class BaseEngine implements Engine {
  abstract readonly name: string;
  abstract readonly backend: string;
  protected setup: EngineSetup | null = null;
  protected weights: NamedTensors = new Map();
  protected optimizer: Optimizer | null = null;
  /** Weight names in the order of model/config.paramSpecs. */
  protected names: string[] = [];

  initialize(setup: EngineSetup, weights: NamedTensors): void {
    const specs = paramSpecs(setup.model, setup.dims);
    for (const spec of specs) {
      const w = weights.get(spec.name);
      if (!w) throw new Error(`weights are missing ${spec.name}`);
      if (w.shape.join(",") !== spec.shape.join(",")) {
        throw new Error(`weight ${spec.name} has shape [${w.shape}], the model needs [${spec.shape}]`);
      }
    }
    this.setup = setup;
    this.names = specs.map((s) => s.name);
    this.weights = new Map(
      specs.map((s) => [s.name, { shape: [...s.shape], data: new Float32Array(weights.get(s.name)!.data) }]),
    );
    this.optimizer = this.createOptimizer(setup);
    this.prepare(setup);
  }

  protected createOptimizer(setup: EngineSetup): Optimizer {
    return new Optimizer(setup.optimizer, setup.seed, this.weights);
  }

  /** Builds the engine's model for a new setup. */
  protected abstract prepare(setup: EngineSetup): void;

  /** Logits and losses of examples start … start+size−1 of a set, without dropout or noise. */
  protected abstract forward(set: Batch, start: number, size: number): ForwardPass;

  /** The loss and gradients of a step, computed at once (the CPU engines' gradients()). */
  protected abstract lossAndGradients(batch: Batch, step: number): GradientResult;

  protected ready(): { setup: EngineSetup; optimizer: Optimizer } {
    if (!this.setup || !this.optimizer) throw new Error("engine used before initialize()");
    return { setup: this.setup, optimizer: this.optimizer };
  }

  async trainStep(batch: Batch, step: number): Promise<void> {
    const { grads } = this.lossAndGradients(batch, step);
    this.ready().optimizer.update(this.weights, grads, step);
  }

  async gradients(batch: Batch, step: number): Promise<GradientResult> {
    return this.lossAndGradients(batch, step);
  }

  async evaluate(set: Batch): Promise<EvalResult> {
    return evaluateInChunks(set, this.ready().setup.dims.numSymbols, (start, size) => this.forward(set, start, size));
  }

  async logits(set: Batch): Promise<Float32Array> {
    return logitsInChunks(set, this.ready().setup.dims.numSymbols, (start, size) => this.forward(set, start, size));
  }

  async readWeights(): Promise<NamedTensors> {
    return cloneTensors(this.weights);
  }

  writeWeights(weights: NamedTensors): void {
    for (const [name, t] of this.weights) {
      const w = weights.get(name);
      if (!w) throw new Error(`weights are missing ${name}`);
      if (w.data.length !== t.data.length)
        throw new Error(`weight ${name} has ${w.data.length} values, expected ${t.data.length}`);
      t.data.set(w.data);
    }
  }

  async readOptimizerState(): Promise<NamedTensors> {
    return this.ready().optimizer.state(this.weights);
  }

  writeOptimizerState(state: NamedTensors): void {
    this.ready().optimizer.loadState(state);
  }

  async flush(): Promise<void> {}

  dispose(): void {}
}

/** How many rows of logits [rows × classes] have their largest value at the target (first maximum wins). */
export function countCorrect(logits: Float32Array, targets: Int32Array, classes: number): number {
  let correct = 0;
  for (let r = 0; r < targets.length; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[r * classes + c] > logits[r * classes + best]) best = c;
    if (best === targets[r]) correct++;
  }
  return correct;
}
