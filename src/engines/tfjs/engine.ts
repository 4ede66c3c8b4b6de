// The TensorFlow.js engine: forward and gradients in tfjs, the update by the shared optimizer.

import type * as TF from "@tensorflow/tfjs";
import { Batch, Engine, EngineSetup, EvalResult, GradientResult, StepResult, dropoutMasks } from "../engine";
import { paramSpecs } from "../../model/config";
import { Optimizer, noisyWeights } from "../../training/optimizer";
import { NamedTensors, cloneTensors } from "../../util/tensors";
import { LoadedTfjs, TfjsBackendChoice, loadTfjs } from "./backend";
import { Params, TfjsModel } from "./model";

/** Examples per forward pass when evaluating a whole set. */
const EVAL_CHUNK = 2048;

export class TfjsEngine implements Engine {
  readonly name = "tfjs";
  private setup: EngineSetup | null = null;
  private model: TfjsModel | null = null;
  /** The master weights live in JS memory; each step uploads them (cheap next to the step itself). */
  private weights: NamedTensors = new Map();
  private optimizer: Optimizer | null = null;
  private names: string[] = [];

  private constructor(private readonly loaded: LoadedTfjs) {}

  static async create(backend: TfjsBackendChoice = "auto"): Promise<TfjsEngine> {
    return new TfjsEngine(await loadTfjs(backend));
  }

  get backend(): string {
    return this.loaded.backend;
  }

  get backendNote(): string {
    return this.loaded.note;
  }

  initialize(setup: EngineSetup, weights: NamedTensors): void {
    this.model?.dispose();
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
    this.weights = new Map(specs.map((s) => [s.name, { shape: [...s.shape], data: new Float32Array(weights.get(s.name)!.data) }]));
    this.model = new TfjsModel(this.loaded.tf, setup.model, setup.dims);
    this.optimizer = new Optimizer(setup.optimizer, setup.seed, this.weights);
  }

  private ready(): { setup: EngineSetup; model: TfjsModel; optimizer: Optimizer } {
    if (!this.setup || !this.model || !this.optimizer) throw new Error("engine used before initialize()");
    return { setup: this.setup, model: this.model, optimizer: this.optimizer };
  }

  private paramTensors(weights: NamedTensors): TF.Tensor[] {
    const tf = this.loaded.tf;
    return this.names.map((n) => tf.tensor(weights.get(n)!.data, weights.get(n)!.shape));
  }

  private inputsTensor(set: Batch, start = 0, size = set.size): TF.Tensor2D {
    const seqLen = this.ready().setup.dims.seqLen;
    return this.loaded.tf.tensor2d(set.inputs.subarray(start * seqLen, (start + size) * seqLen), [size, seqLen], "int32");
  }

  trainStep(batch: Batch, step: number): StepResult {
    const { loss, accuracy, grads } = this.gradients(batch, step);
    this.ready().optimizer.update(this.weights, grads, step);
    return { loss, accuracy };
  }

  gradients(batch: Batch, step: number): GradientResult {
    const { setup, model } = this.ready();
    const tf = this.loaded.tf;
    const cfg = setup.optimizer;
    const forwardWeights = cfg.weightNoise > 0 ? noisyWeights(this.weights, cfg.weightNoise, setup.seed, step) : this.weights;
    const maskData = dropoutMasks(setup.model, setup.dims, batch.size, setup.seed, step);
    const width = setup.model.kind === "mlp" ? setup.model.hidden : setup.model.width;
    let logitsKept: TF.Tensor2D | null = null;
    const { loss, grads } = tf.tidy(() => {
      const inputs = this.inputsTensor(batch);
      const masks = maskData.map((m) => tf.tensor2d(m, [m.length / width, width]));
      const targets = tf.tensor1d(batch.targets, "int32");
      const lossOf = (...ps: TF.Tensor[]): TF.Scalar => {
        const params: Params = {};
        this.names.forEach((n, i) => (params[n] = ps[i]));
        const logits = model.logits(params, { inputs, masks });
        logitsKept = tf.keep(logits);
        return tf.mean(perExampleCrossEntropy(tf, logits, targets, setup.dims.numSymbols)) as TF.Scalar;
      };
      const { value, grads } = tf.valueAndGrads(lossOf)(this.paramTensors(forwardWeights));
      return { loss: value, grads };
    });
    const gradArrays = new Map<string, Float32Array>();
    this.names.forEach((n, i) => gradArrays.set(n, grads[i].dataSync() as Float32Array));
    const lossValue = loss.dataSync()[0];
    const accuracy = accuracyOf(tf, logitsKept!, batch.targets);
    tf.dispose([loss, ...grads, logitsKept!]);
    return { loss: lossValue, accuracy, grads: gradArrays };
  }

  evaluate(set: Batch): EvalResult {
    const { setup, model } = this.ready();
    const tf = this.loaded.tf;
    let lossSum = 0;
    let correct = 0;
    let saturated = 0;
    const params = this.paramTensors(this.weights);
    const named: Params = {};
    this.names.forEach((n, i) => (named[n] = params[i]));
    for (let start = 0; start < set.size; start += EVAL_CHUNK) {
      const size = Math.min(EVAL_CHUNK, set.size - start);
      const [losses, predicted] = tf.tidy(() => {
        const logits = model.logits(named, { inputs: this.inputsTensor(set, start, size), masks: [] });
        const targets = tf.tensor1d(set.targets.subarray(start, start + size), "int32");
        return [perExampleCrossEntropy(tf, logits, targets, setup.dims.numSymbols), tf.argMax(logits, 1)];
      });
      const l = losses.dataSync();
      const pr = predicted.dataSync();
      for (let i = 0; i < size; i++) {
        lossSum += l[i];
        if (l[i] === 0) saturated++;
        if (pr[i] === set.targets[start + i]) correct++;
      }
      tf.dispose([losses, predicted]);
    }
    tf.dispose(params);
    return { count: set.size, loss: lossSum / set.size, accuracy: correct / set.size, saturated: saturated / set.size };
  }

  logits(set: Batch): Float32Array {
    const { setup, model } = this.ready();
    const tf = this.loaded.tf;
    const out = new Float32Array(set.size * setup.dims.numSymbols);
    const params = this.paramTensors(this.weights);
    const named: Params = {};
    this.names.forEach((n, i) => (named[n] = params[i]));
    for (let start = 0; start < set.size; start += EVAL_CHUNK) {
      const size = Math.min(EVAL_CHUNK, set.size - start);
      const logits = tf.tidy(() => model.logits(named, { inputs: this.inputsTensor(set, start, size), masks: [] }));
      out.set(logits.dataSync() as Float32Array, start * setup.dims.numSymbols);
      logits.dispose();
    }
    tf.dispose(params);
    return out;
  }

  readWeights(): NamedTensors {
    return cloneTensors(this.weights);
  }

  writeWeights(weights: NamedTensors): void {
    for (const [name, t] of this.weights) {
      const w = weights.get(name);
      if (!w) throw new Error(`weights are missing ${name}`);
      if (w.data.length !== t.data.length) throw new Error(`weight ${name} has ${w.data.length} values, expected ${t.data.length}`);
      t.data.set(w.data);
    }
  }

  readOptimizerState(): NamedTensors {
    return this.ready().optimizer.state(this.weights);
  }

  writeOptimizerState(state: NamedTensors): void {
    this.ready().optimizer.loadState(state);
  }

  dispose(): void {
    this.model?.dispose();
    this.model = null;
  }
}

/** −log softmax(logits)[target] per example, via logSoftmax (stable for any logit scale). */
function perExampleCrossEntropy(tf: LoadedTfjs["tf"], logits: TF.Tensor2D, targets: TF.Tensor1D, classes: number): TF.Tensor1D {
  const logp = tf.logSoftmax(logits);
  return tf.neg(tf.sum(tf.mul(logp, tf.oneHot(targets, classes)), 1)) as TF.Tensor1D;
}

function accuracyOf(tf: LoadedTfjs["tf"], logits: TF.Tensor2D, targets: Int32Array): number {
  const predicted = tf.tidy(() => tf.argMax(logits, 1));
  const pr = predicted.dataSync();
  predicted.dispose();
  let correct = 0;
  for (let i = 0; i < targets.length; i++) if (pr[i] === targets[i]) correct++;
  return correct / targets.length;
}
