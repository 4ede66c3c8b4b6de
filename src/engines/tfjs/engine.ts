// The TensorFlow.js engine: forward and gradients in tfjs, the update by the shared optimizer.

import type * as TF from "@tensorflow/tfjs";
import { BaseEngine, countCorrect, ForwardPass } from "../base";
import { Batch, EngineSetup, GradientResult, dropoutMasks, noisyWeights } from "../engine";
import { ModelConfig } from "../../model/config";
import { OptimizerConfig } from "../../optim/optimizer";
import { UserError } from "../../util/errors";
import { NamedTensors } from "../../util/tensors";
import { LoadedTfjs, TfjsBackendChoice, loadTfjs } from "./backend";
import { Params, TfjsModel } from "./model";

export class TfjsEngine extends BaseEngine {
  readonly name = "tfjs";
  private model: TfjsModel | null = null;

  private constructor(private readonly loaded: LoadedTfjs) {
    super();
  }

  static async create(backend: TfjsBackendChoice = "auto"): Promise<TfjsEngine> {
    return new TfjsEngine(await loadTfjs(backend));
  }

  get backend(): string {
    return this.loaded.backend;
  }

  get backendNote(): string {
    return this.loaded.note;
  }

  /** The tfjs model computes its loss with tfjs's softmax only, and its parity with ⊥Grad is not tested. */
  unsupported(model: ModelConfig, optimizer: OptimizerConfig): string | null {
    if (model.output === "stablemax")
      return "the tfjs engine has no StableMax output (model.output): use --engine fast or webgpu";
    if (optimizer.orthogonalGrad)
      return "the tfjs engine has no ⊥Grad (optimizer.orthogonalGrad): use --engine fast or webgpu";
    return null;
  }

  protected prepare(setup: EngineSetup): void {
    const why = this.unsupported(setup.model, setup.optimizer);
    if (why) throw new UserError(why);
    this.model?.dispose();
    this.model = new TfjsModel(this.loaded.tf, setup.model, setup.dims);
  }

  private paramTensors(weights: NamedTensors): TF.Tensor[] {
    const tf = this.loaded.tf;
    return this.names.map((n) => tf.tensor(weights.get(n)!.data, weights.get(n)!.shape));
  }

  private inputsTensor(set: Batch, start = 0, size = set.size): TF.Tensor2D {
    const seqLen = this.ready().setup.dims.seqLen;
    return this.loaded.tf.tensor2d(
      set.inputs.subarray(start * seqLen, (start + size) * seqLen),
      [size, seqLen],
      "int32",
    );
  }

  protected lossAndGradients(batch: Batch, step: number): GradientResult {
    const { setup } = this.ready();
    const model = this.model!;
    const tf = this.loaded.tf;
    const cfg = setup.optimizer;
    const forwardWeights =
      cfg.weightNoise > 0 ? noisyWeights(this.weights, cfg.weightNoise, setup.seed, step) : this.weights;
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
    const accuracy =
      countCorrect(logitsKept!.dataSync() as Float32Array, batch.targets, setup.dims.numSymbols) / batch.size;
    tf.dispose([loss, ...grads, logitsKept!]);
    return { loss: lossValue, accuracy, grads: gradArrays };
  }

  protected forward(set: Batch, start: number, size: number): ForwardPass {
    const { setup } = this.ready();
    const tf = this.loaded.tf;
    const [logits, losses] = tf.tidy(() => {
      const params: Params = {};
      const tensors = this.paramTensors(this.weights);
      this.names.forEach((n, i) => (params[n] = tensors[i]));
      const l = this.model!.logits(params, { inputs: this.inputsTensor(set, start, size), masks: [] });
      const targets = tf.tensor1d(set.targets.subarray(start, start + size), "int32");
      return [l, perExampleCrossEntropy(tf, l, targets, setup.dims.numSymbols)];
    });
    const out = { logits: logits.dataSync() as Float32Array, losses: losses.dataSync() as Float32Array };
    tf.dispose([logits, losses]);
    return out;
  }

  dispose(): void {
    this.model?.dispose();
    this.model = null;
  }
}

/** −log softmax(logits)[target] per example, via logSoftmax (stable for any logit scale). */
function perExampleCrossEntropy(
  tf: LoadedTfjs["tf"],
  logits: TF.Tensor2D,
  targets: TF.Tensor1D,
  classes: number,
): TF.Tensor1D {
  const logp = tf.logSoftmax(logits);
  return tf.neg(tf.sum(tf.mul(logp, tf.oneHot(targets, classes)), 1)) as TF.Tensor1D;
}
