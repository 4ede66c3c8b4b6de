// The fast CPU engine: the models' forward and backward passes (the shared sequences of ../shared, on this
// engine's kernel set, model-kernels.ts), their hot kernels native (node-gyp addon) or TypeScript where the
// addon did not build.

import { BaseEngine, countCorrect, ForwardPass } from "../base";
import { Batch, EngineSetup, GradientResult, dropoutMasks, noisyWeights } from "../engine";
import { Optimizer } from "../../optim/optimizer";
import { NamedTensors } from "../../util/tensors";
import { Mlp } from "../shared/mlp";
import { ModelSequence, NamedArrays } from "../shared/model-kernels";
import { Transformer } from "../shared/transformer";
import { KernelChoice, Kernels } from "./kernels";
import { loadKernels } from "./load-kernels";
import { CpuModelKernels } from "./model-kernels";

export class FastEngine extends BaseEngine {
  readonly name = "fast";
  private model: ModelSequence<Float32Array> | null = null;
  private gradBuffers: NamedArrays<Float32Array> = new Map();

  private constructor(
    private readonly kernels: Kernels,
    /** Why these kernels, for the line printed when a run starts. */
    readonly backendNote: string,
  ) {
    super();
  }

  static create(choice: KernelChoice = "auto", threads?: number): FastEngine {
    const { kernels, note } = loadKernels(choice, threads);
    return new FastEngine(kernels, note);
  }

  get backend(): string {
    return this.kernels.kind === "native"
      ? `native, ${this.kernels.threads()} thread${this.kernels.threads() > 1 ? "s" : ""}`
      : "typescript";
  }

  /** The optimizer's Adam loop runs as a kernel: native when the addon is loaded (bitwise the same result). */
  protected createOptimizer(setup: EngineSetup): Optimizer {
    return new Optimizer(setup.optimizer, setup.seed, this.weights, this.kernels.adamUpdate);
  }

  protected prepare(setup: EngineSetup): void {
    const kernels = new CpuModelKernels(this.kernels);
    this.model =
      setup.model.kind === "mlp"
        ? new Mlp(kernels, setup.model, setup.dims)
        : new Transformer(kernels, setup.model, setup.dims);
    this.gradBuffers = new Map([...this.weights].map(([name, t]) => [name, new Float32Array(t.data.length)]));
  }

  private static data(weights: NamedTensors): NamedArrays<Float32Array> {
    return new Map([...weights].map(([name, t]) => [name, t.data]));
  }

  protected lossAndGradients(batch: Batch, step: number): GradientResult {
    const { setup } = this.ready();
    const cfg = setup.optimizer;
    const forwardWeights =
      cfg.weightNoise > 0 ? noisyWeights(this.weights, cfg.weightNoise, setup.seed, step) : this.weights;
    const masks = dropoutMasks(setup.model, setup.dims, batch.size, setup.seed, step);
    for (const g of this.gradBuffers.values()) g.fill(0);
    const { logits, losses } = this.model!.run(
      FastEngine.data(forwardWeights),
      batch.inputs,
      batch.targets,
      batch.size,
      1,
      masks,
      this.gradBuffers,
    );
    let loss = 0;
    for (let i = 0; i < batch.size; i++) loss += losses[i];
    return {
      loss: loss / batch.size,
      accuracy: countCorrect(logits, batch.targets, setup.dims.numSymbols) / batch.size,
      grads: this.gradBuffers,
    };
  }

  protected forward(set: Batch, start: number, size: number): ForwardPass {
    const seqLen = this.ready().setup.dims.seqLen;
    return this.model!.run(
      FastEngine.data(this.weights),
      set.inputs.subarray(start * seqLen, (start + size) * seqLen),
      set.targets.subarray(start, start + size),
      size,
      1,
      [],
      null,
    );
  }
}
