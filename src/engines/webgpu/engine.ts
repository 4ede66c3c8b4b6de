// The webgpu engine: one run trained with its weights, gradients and optimizer state on the GPU. The model
// is the shared sequence (../shared/transformer.ts, mlp.ts) on the WGSL kernel set (model-kernels.ts); the
// optimizer mirrors optim/optimizer.ts step for step (Grokfast filter, then AdamW/Adam or SGD) with the
// WGSL updates (kernels/adam.ts, kernels/sgd.ts).
//
// A training step is recorded into one command buffer and submitted; nothing is read back. What the CPU
// draws for a step (dropout masks, weight and update noise, from the run's seeded streams exactly as the
// fast engine draws them) is written to the GPU through the queue ahead of it. Data comes back only for
// gradients(), evaluations, logits, and weights or optimizer state (checkpoints, snapshots, metrics).
//
// Results agree with the fast engine to f32 rounding, not bit for bit: the WGSL kernels sum in f32 in
// their own order, where the TypeScript kernels sum in double.

import { paramSpecs } from "../../model/config";
import { learningRate, OptimizerConfig } from "../../optim/optimizer";
import { Rng, Stream } from "../../util/rng";
import { NamedTensors } from "../../util/tensors";
import { countCorrect, evaluateInChunks, ForwardPass, logitsInChunks } from "../base";
import { Batch, dropoutMasks, Engine, EngineSetup, EvalResult, GradientResult } from "../engine";
import { Mlp } from "../shared/mlp";
import { ModelOutput, ModelSequence, NamedArrays } from "../shared/model-kernels";
import { Transformer } from "../shared/transformer";
import { UserError } from "../../util/errors";
import { formatAdapter, openWebGpu, WebGpu } from "./device";
import { adamUpdate, grokfastFilter, residualAdd, sgdUpdate } from "./kernels";
import { GpuArray, GpuContext, Recorder } from "./kernels/dispatch";
import { GpuModelKernels } from "./model-kernels";

/** Optimizer state slots, named as optim/optimizer.ts names them in checkpoints ("optim.<slot>.<param>"). */
type Slot = "m" | "v" | "buf" | "init" | "ema";

interface Run {
  setup: EngineSetup;
  model: ModelSequence<GpuArray>;
  /** Parameter names and shapes in paramSpecs order (the order noise streams are drawn in). */
  shapes: Map<string, number[]>;
  weights: NamedArrays<GpuArray>;
  grads: NamedArrays<GpuArray>;
  /** The weights plus weight noise, for one pass (when the optimizer has weight noise). */
  noisy: NamedArrays<GpuArray> | null;
  slots: Map<Slot, NamedArrays<GpuArray>>;
}

export class WebGpuEngine implements Engine {
  readonly name = "webgpu";
  readonly backend: string;
  private readonly gpu: GpuContext;
  private readonly kernels: GpuModelKernels;
  private run: Run | null = null;

  /**
   * An engine on an open device; `ownsDevice`: dispose() destroys the device too (create() opens one for
   * the engine alone; tests share one among engines).
   */
  constructor(
    private readonly webgpu: WebGpu,
    private readonly ownsDevice = false,
  ) {
    this.backend = formatAdapter(webgpu.adapter);
    this.gpu = new GpuContext(webgpu.device);
    this.kernels = new GpuModelKernels(this.gpu);
  }

  /**
   * An engine on its own device of the best adapter of `gpu` (default: the `webgpu` package's); a UserError
   * saying why when there is none.
   */
  static async create(gpu?: GPU): Promise<WebGpuEngine> {
    const opened = await openWebGpu(gpu);
    if (!opened.ok) throw new UserError(`engine webgpu cannot start: ${opened.reason}`);
    return new WebGpuEngine(opened.gpu, true);
  }

  initialize(setup: EngineSetup, weights: NamedTensors): void {
    const specs = paramSpecs(setup.model, setup.dims);
    for (const spec of specs) {
      const w = weights.get(spec.name);
      if (!w) throw new Error(`weights are missing ${spec.name}`);
      if (w.shape.join(",") !== spec.shape.join(","))
        throw new Error(`weight ${spec.name} has shape [${w.shape}], the model needs [${spec.shape}]`);
    }
    const cfg = setup.optimizer;
    if (!["adamw", "adam", "sgd"].includes(cfg.kind))
      throw new Error(`webgpu engine: no update for optimizer ${JSON.stringify(cfg.kind)}`);
    this.freeRun();
    const arrays = (data?: (name: string) => Float32Array) =>
      new Map(specs.map((s) => [s.name, this.gpu.array("f32", data ? data(s.name) : size(s.shape))]));
    const initial = (name: string) => weights.get(name)!.data;
    // the slots optim/optimizer.ts keeps for this configuration, and no others
    const slots = new Map<Slot, NamedArrays<GpuArray>>();
    if (cfg.kind === "sgd") {
      if (cfg.momentum > 0) slots.set("buf", arrays());
    } else {
      slots.set("m", arrays());
      slots.set("v", arrays());
    }
    if (cfg.weightDecay > 0 && cfg.decayToward === "init") slots.set("init", arrays(initial));
    if (cfg.grokfast) slots.set("ema", arrays());
    this.run = {
      setup,
      model:
        setup.model.kind === "mlp"
          ? new Mlp(this.kernels, setup.model, setup.dims)
          : new Transformer(this.kernels, setup.model, setup.dims),
      shapes: new Map(specs.map((s) => [s.name, [...s.shape]])),
      weights: arrays(initial),
      grads: arrays(),
      noisy: cfg.weightNoise > 0 ? arrays() : null,
      slots,
    };
  }

  private ready(): Run {
    if (!this.run) throw new Error("engine used before initialize()");
    return this.run;
  }

  /** Records the forward and backward pass of step `step` into rec: the gradients end up in run.grads. */
  private recordGradients(rec: Recorder, batch: Batch, step: number): ModelOutput<GpuArray> {
    const run = this.ready();
    const { setup } = run;
    const cfg = setup.optimizer;
    for (const g of run.grads.values()) rec.clear(g);
    let forwardWeights = run.weights;
    if (run.noisy) {
      // engine.noisyWeights' streams: one per tensor, in paramSpecs order
      let index = 0;
      for (const [name, w] of run.weights) {
        const rng = Rng.for(setup.seed, Stream.weightNoise, step, index++);
        const noise = Float32Array.from({ length: w.length }, () => cfg.weightNoise * rng.normal());
        residualAdd(rec, w, this.kernels.upload(`weightNoise.${name}`, noise), null, w.length, run.noisy.get(name)!);
      }
      forwardWeights = run.noisy;
    }
    const masks = dropoutMasks(setup.model, setup.dims, batch.size, setup.seed, step);
    this.kernels.begin(rec);
    return run.model.run(forwardWeights, batch.inputs, batch.targets, batch.size, masks, run.grads);
  }

  /** Records one optimizer update from run.grads, as optim/optimizer.ts's update() computes it. */
  private recordUpdate(rec: Recorder, step: number): void {
    const run = this.ready();
    const cfg: OptimizerConfig = run.setup.optimizer;
    const lr = learningRate(cfg, step);
    const t = step + 1;
    const bc1 = 1 - Math.pow(cfg.beta1, t);
    const bc2 = 1 - Math.pow(cfg.beta2, t);
    // the optimizer draws update noise from one stream per step, parameter after parameter
    const noiseRng = cfg.updateNoise > 0 ? Rng.for(run.setup.seed, Stream.updateNoise, step) : null;
    for (const [name, p] of run.weights) {
      const n = p.length;
      const g = run.grads.get(name)!;
      const slot = (s: Slot) => run.slots.get(s)?.get(name) ?? null;
      const ema = slot("ema");
      if (ema && cfg.grokfast) grokfastFilter(rec, g, ema, n, cfg.grokfast.alpha, cfg.grokfast.lambda);
      let noise: GpuArray | null = null;
      if (noiseRng) {
        const values = Float32Array.from({ length: n }, () => cfg.updateNoise * noiseRng.normal());
        noise = this.kernels.upload(`updateNoise.${name}`, values);
      }
      if (cfg.kind === "sgd") {
        sgdUpdate(rec, p, g, slot("buf"), slot("init"), noise, n, lr, cfg.momentum, cfg.weightDecay);
      } else {
        const decoupled = cfg.kind === "adamw";
        const [m, v] = [slot("m")!, slot("v")!];
        adamUpdate(
          rec,
          p,
          g,
          m,
          v,
          slot("init"),
          noise,
          n,
          lr,
          cfg.beta1,
          cfg.beta2,
          cfg.eps,
          bc1,
          bc2,
          cfg.weightDecay,
          decoupled,
        );
      }
    }
  }

  async trainStep(batch: Batch, step: number): Promise<void> {
    const rec = this.gpu.record();
    this.recordGradients(rec, batch, step);
    this.recordUpdate(rec, step);
    await rec.submit();
  }

  async gradients(batch: Batch, step: number): Promise<GradientResult> {
    const run = this.ready();
    const rec = this.gpu.record();
    const out = this.recordGradients(rec, batch, step);
    await rec.submit();
    const { logits, losses } = await this.readPass(out);
    let loss = 0;
    for (let i = 0; i < batch.size; i++) loss += losses[i];
    const correct = countCorrect(logits, batch.targets, run.setup.dims.numSymbols);
    const grads = new Map<string, Float32Array>();
    for (const [name, g] of run.grads) grads.set(name, await this.gpu.readFloats(g));
    return { loss: loss / batch.size, accuracy: correct / batch.size, grads };
  }

  /** A pass's logits and per-example losses, read back. */
  private async readPass(out: ModelOutput<GpuArray>): Promise<ForwardPass> {
    return { losses: await this.gpu.readFloats(out.losses), logits: await this.gpu.readFloats(out.logits) };
  }

  /** The forward pass of examples start … start+size−1 of a set, without dropout or noise, read back. */
  private async forward(set: Batch, start: number, size: number): Promise<ForwardPass> {
    const run = this.ready();
    const seqLen = run.setup.dims.seqLen;
    const rec = this.gpu.record();
    this.kernels.begin(rec);
    const out = run.model.run(
      run.weights,
      set.inputs.subarray(start * seqLen, (start + size) * seqLen),
      set.targets.subarray(start, start + size),
      size,
      [],
      null,
    );
    await rec.submit();
    return this.readPass(out);
  }

  async evaluate(set: Batch): Promise<EvalResult> {
    return evaluateInChunks(set, this.ready().setup.dims.numSymbols, (start, size) => this.forward(set, start, size));
  }

  async logits(set: Batch): Promise<Float32Array> {
    return logitsInChunks(set, this.ready().setup.dims.numSymbols, (start, size) => this.forward(set, start, size));
  }

  async readWeights(): Promise<NamedTensors> {
    const run = this.ready();
    const out: NamedTensors = new Map();
    for (const [name, w] of run.weights)
      out.set(name, { shape: [...run.shapes.get(name)!], data: await this.gpu.readFloats(w) });
    return out;
  }

  writeWeights(weights: NamedTensors): void {
    for (const [name, w] of this.ready().weights) {
      const t = weights.get(name);
      if (!t) throw new Error(`weights are missing ${name}`);
      if (t.data.length !== w.length)
        throw new Error(`weight ${name} has ${t.data.length} values, expected ${w.length}`);
      this.gpu.write(w, t.data);
    }
  }

  async readOptimizerState(): Promise<NamedTensors> {
    const run = this.ready();
    const out: NamedTensors = new Map();
    for (const [slot, perParam] of run.slots)
      for (const [name, a] of perParam)
        out.set(`optim.${slot}.${name}`, { shape: [...run.shapes.get(name)!], data: await this.gpu.readFloats(a) });
    return out;
  }

  writeOptimizerState(state: NamedTensors): void {
    // every slot this configuration uses must be present, as Optimizer.loadState requires
    for (const [slot, perParam] of this.ready().slots)
      for (const [name, a] of perParam) {
        const key = `optim.${slot}.${name}`;
        const saved = state.get(key);
        if (!saved) throw new Error(`optimizer state is missing ${key}`);
        if (saved.data.length !== a.length)
          throw new Error(`optimizer state ${key} has ${saved.data.length} values, expected ${a.length}`);
        this.gpu.write(a, saved.data);
      }
  }

  async flush(): Promise<void> {
    await this.webgpu.device.queue.onSubmittedWorkDone();
  }

  dispose(): void {
    this.freeRun();
    if (this.ownsDevice) this.webgpu.device.destroy();
  }

  /** Frees the run's arrays (the device stays open for the next initialize). */
  private freeRun(): void {
    if (!this.run) return;
    const { weights, grads, noisy, slots } = this.run;
    for (const arrays of [weights, grads, noisy ?? new Map(), ...slots.values()])
      for (const a of arrays.values()) a.buffer.destroy();
    this.run = null;
  }
}

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
