// The webgpu pack engine: R runs of one model trained together by the same kernels. Every weight, gradient
// and optimizer slot is one GPU array [R × size] per tensor (run r's values at r·size), and every
// activation [R × rows × …]: the shared sequence (../shared/transformer.ts, mlp.ts) runs once over all
// runs, the kernels that touch a weight taking the run count (model-kernels.ts). The optimizer mirrors
// optim/optimizer.ts step for step (Grokfast filter, ⊥Grad, then AdamW/Adam or SGD), each run reading its own
// hyperparameters at its own step from a small array written each step (kernels/hyperparameters.ts).
//
// A pack step is recorded into one command buffer and submitted; nothing is read back. What the CPU
// draws for a step (dropout masks, weight and update noise) comes from each run's seeded streams exactly as
// the fast engine draws them, and is written to the GPU through the queue ahead of it; a run without
// noise gets zeros, or is skipped by its flags.
//
// A run's results do not depend on the other runs of its pack, bit for bit: every sum a run's values take
// part in is over that run's rows alone, in the order a run alone sums them (test/webgpu-pack.test.ts).
// Runs' batches may differ in size (an epoch's last batch, other training sets or batch sizes): each is
// padded to the step's largest with examples after its own, whose loss has scale 0 (../shared/
// model-kernels.ts, ModelSequence), so their gradients are exact zeros added after the real rows'.
// Evaluation copies run r's weights into single-run arrays and runs the one-run sequence on a kernel set of
// its own (so its buffers never displace the pack's). Results agree with the fast engine to f32 rounding.

import { ModelConfig, ModelDims, paramSpecs } from "../../model/config";
import { learningRate, OptimizerConfig, optimizerSlots, OptimizerSlot as Slot } from "../../optim/optimizer";
import { UserError } from "../../util/errors";
import { Rng, Stream } from "../../util/rng";
import { NamedTensors } from "../../util/tensors";
import { countCorrect, evaluateInChunks, ForwardPass, logitsInChunks } from "../base";
import {
  Batch,
  dropoutMasks,
  Engine,
  EngineSetup,
  EvalResult,
  GradientResult,
  packConflict,
  PackEngine,
} from "../engine";
import { Mlp } from "../shared/mlp";
import { ModelOutput, ModelSequence, NamedArrays } from "../shared/model-kernels";
import { Transformer } from "../shared/transformer";
import { PACK_BUDGET_BYTES, PackCapacity, packCapacity } from "./capacity";
import { formatAdapter, openWebGpu, WebGpu } from "./device";
import {
  adamUpdate,
  grokfastFilter,
  hyperparameterRecords,
  orthogonalGrad,
  residualAdd,
  sgdUpdate,
  StepHyperparameters,
} from "./kernels";
import { GpuArray, GpuContext, Recorder } from "./kernels/dispatch";
import { GpuModelKernels } from "./model-kernels";

/** One run's optimizer hyperparameters at its step `step`, as optim/optimizer.ts's update() derives them. */
function stepHyperparameters(cfg: OptimizerConfig, step: number): StepHyperparameters {
  const t = step + 1;
  return {
    lr: learningRate(cfg, step),
    beta1: cfg.beta1,
    beta2: cfg.beta2,
    eps: cfg.eps,
    bc1: 1 - Math.pow(cfg.beta1, t),
    bc2: 1 - Math.pow(cfg.beta2, t),
    weightDecay: cfg.weightDecay,
    decoupled: cfg.kind === "adamw",
    towardInit: cfg.weightDecay > 0 && cfg.decayToward === "init",
    withNoise: cfg.updateNoise > 0,
    momentum: cfg.kind === "sgd" ? cfg.momentum : 0,
    grokfast: cfg.grokfast ?? null,
    orthogonalGrad: cfg.orthogonalGrad ?? false,
  };
}

/** A tensor of the model: its name, shape and size (values per run). */
interface Tensor {
  name: string;
  shape: number[];
  size: number;
}

/** The pack's arrays. Each NamedArrays holds one [R × size] array per tensor. */
interface Pack {
  setups: EngineSetup[];
  model: ModelConfig;
  dims: ModelDims;
  /** In paramSpecs order (the order noise streams are drawn in). */
  tensors: Tensor[];
  /** The sequence on the pack's kernel set, and on the single-run kernel set (evaluation). */
  sequence: ModelSequence<GpuArray>;
  single: ModelSequence<GpuArray>;
  weights: NamedArrays<GpuArray>;
  grads: NamedArrays<GpuArray>;
  /** The weights plus weight noise, for one pass (when any run has weight noise). */
  noisy: NamedArrays<GpuArray> | null;
  /** Every slot any run keeps; a run reads and writes only its own configuration's. */
  slots: Map<Slot, NamedArrays<GpuArray>>;
  /** One run's weights [1 × size], copied from the pack for evaluation. */
  evalWeights: NamedArrays<GpuArray>;
  /** The per-run hyperparameter records of the step being recorded. */
  hyperparameters: GpuArray;
  /** Padded batch sizes (a step's largest) checked against the adapter's capacity. */
  checkedBatchSizes: Set<number>;
}

export class WebGpuPackEngine implements PackEngine {
  readonly name = "webgpu";
  readonly backend: string;
  readonly gpu: GpuContext;
  /** Kernel sets: the pack's (arrays [R × …]) and one run's (evaluation, in chunks). */
  private readonly packKernels: GpuModelKernels;
  private readonly singleKernels: GpuModelKernels;
  private pack: Pack | null = null;

  /**
   * An engine on an open device; `ownsDevice`: dispose() destroys the device too (create() opens one for
   * the engine alone; tests share one among engines). `budgetBytes`: the memory a pack may take (see
   * capacity.ts; WebGPU does not tell an adapter's memory).
   */
  constructor(
    readonly webgpu: WebGpu,
    private readonly ownsDevice = false,
    readonly budgetBytes = PACK_BUDGET_BYTES,
  ) {
    this.backend = formatAdapter(webgpu.adapter);
    this.gpu = new GpuContext(webgpu.device);
    this.packKernels = new GpuModelKernels(this.gpu);
    this.singleKernels = new GpuModelKernels(this.gpu);
  }

  /** A pack engine on its own device of the best adapter of `gpu`; a UserError saying why when there is none. */
  static async create(gpu?: GPU, budgetBytes = PACK_BUDGET_BYTES): Promise<WebGpuPackEngine> {
    const opened = await openWebGpu(gpu);
    if (!opened.ok) throw new UserError(`engine webgpu cannot start: ${opened.reason}`);
    return new WebGpuPackEngine(opened.gpu, true, budgetBytes);
  }

  get size(): number {
    return this.pack?.setups.length ?? 0;
  }

  async initialize(setups: EngineSetup[], weights: NamedTensors[]): Promise<void> {
    await this.allocate(setups, weights);
  }

  /**
   * Checks the setups and allocates the pack (synchronously, so that the single-run engine can initialize
   * synchronously); the promise settles once the device has accepted the allocations, rejecting with the
   * capacity error when it ran out of memory.
   */
  allocate(setups: EngineSetup[], weights: NamedTensors[]): Promise<void> {
    this.gpu.checkDevice();
    const tensors = checkPack(setups, weights);
    const first = setups[0];
    const capacity = packCapacity(this.webgpu, first, undefined, this.budgetBytes);
    if (setups.length > capacity.runs) throw capacityError(this.webgpu, capacity, setups.length);
    this.free();
    const device = this.webgpu.device;
    device.pushErrorScope("out-of-memory");
    try {
      this.pack = this.createPack(setups, weights, tensors);
    } catch (err) {
      // a buffer mapped at creation that could not be allocated throws here rather than in the scope
      void device.popErrorScope();
      this.free();
      throw capacityError(this.webgpu, capacity, setups.length, (err as Error).message);
    }
    return device.popErrorScope().then((error) => {
      if (!error) return;
      this.free();
      throw capacityError(this.webgpu, capacity, setups.length, error.message);
    });
  }

  /** The pack's arrays, from each run's initial weights, and its sequences. */
  private createPack(setups: EngineSetup[], weights: NamedTensors[], tensors: Tensor[]): Pack {
    const first = setups[0];
    const runs = setups.length;
    const arrays = (fill?: (t: Tensor) => Float32Array) =>
      new Map(tensors.map((t) => [t.name, this.gpu.array("f32", fill ? fill(t) : runs * t.size)]));
    const initial = (t: Tensor) => {
      const all = new Float32Array(runs * t.size);
      weights.forEach((w, r) => all.set(w.get(t.name)!.data, r * t.size));
      return all;
    };
    const slots = new Map<Slot, NamedArrays<GpuArray>>();
    for (const setup of setups)
      for (const slot of optimizerSlots(setup.optimizer))
        if (!slots.has(slot)) slots.set(slot, slot === "init" ? arrays(initial) : arrays());
    const sequence = (kernels: GpuModelKernels) =>
      first.model.kind === "mlp"
        ? new Mlp(kernels, first.model, first.dims)
        : new Transformer(kernels, first.model, first.dims);
    return {
      setups: [...setups],
      model: first.model,
      dims: first.dims,
      tensors,
      sequence: sequence(this.packKernels),
      single: sequence(this.singleKernels),
      weights: arrays(initial),
      grads: arrays(),
      noisy: setups.some((s) => s.optimizer.weightNoise > 0) ? arrays() : null,
      slots,
      evalWeights: new Map(tensors.map((t) => [t.name, this.gpu.array("f32", t.size)])),
      hyperparameters: this.gpu.array(
        "f32",
        hyperparameterRecords(setups.map((s) => stepHyperparameters(s.optimizer, 0))),
      ),
      checkedBatchSizes: new Set(),
    };
  }

  private ready(): Pack {
    this.gpu.checkDevice();
    if (!this.pack) throw new Error("engine used before initialize()");
    return this.pack;
  }

  /**
   * Checks a step's batches and steps against the pack (one per run, the largest batch fitting the adapter);
   * returns the size every batch is padded to, the largest.
   */
  private checkStep(pack: Pack, batches: Batch[], steps: number[]): number {
    const runs = pack.setups.length;
    if (batches.length !== runs || steps.length !== runs)
      throw new Error(`pack of ${runs} runs: got ${batches.length} batches and ${steps.length} steps`);
    const empty = batches.findIndex((b) => b.size < 1);
    if (empty >= 0) throw new Error(`run ${empty} of the pack got an empty batch`);
    const size = Math.max(...batches.map((b) => b.size));
    if (!pack.checkedBatchSizes.has(size)) {
      const capacity = packCapacity(this.webgpu, pack.setups[0], size, this.budgetBytes);
      if (runs > capacity.runs) throw capacityError(this.webgpu, capacity, runs);
      pack.checkedBatchSizes.add(size);
    }
    return size;
  }

  /** Records the forward and backward pass of every run at its step: the gradients end up in pack.grads. */
  private recordGradients(rec: Recorder, pack: Pack, batches: Batch[], steps: number[]): ModelOutput<GpuArray> {
    const size = this.checkStep(pack, batches, steps);
    const runs = pack.setups.length;
    this.packKernels.begin(rec);
    for (const g of pack.grads.values()) rec.clear(g);
    let forwardWeights = pack.weights;
    if (pack.noisy) {
      // engine.noisyWeights' streams: one per tensor and run, in paramSpecs order; zeros for a run without
      pack.tensors.forEach((t, index) => {
        const noise = new Float32Array(runs * t.size);
        pack.setups.forEach(({ optimizer, seed }, r) => {
          if (optimizer.weightNoise <= 0) return;
          const rng = Rng.for(seed, Stream.weightNoise, steps[r], index);
          for (let i = 0; i < t.size; i++) noise[r * t.size + i] = optimizer.weightNoise * rng.normal();
        });
        const upload = this.packKernels.upload(`weightNoise.${t.name}`, noise);
        residualAdd(rec, pack.weights.get(t.name)!, upload, null, noise.length, pack.noisy!.get(t.name)!);
      });
      forwardWeights = pack.noisy;
    }
    // each run's masks as it draws them alone, for its own examples; the padding examples' masks are zeros
    const perRun = pack.setups.map((s, r) => dropoutMasks(s.model, s.dims, batches[r].size, s.seed, steps[r]));
    const masks = perRun[0].map((first, site) => {
      const perExample = first.length / batches[0].size;
      return padded(
        perRun.map((m) => m[site]),
        size * perExample,
      );
    });
    const seqLen = pack.dims.seqLen;
    const inputs = padded(
      batches.map((b) => b.inputs),
      size * seqLen,
    );
    const targets = padded(
      batches.map((b) => b.targets),
      size,
    );
    const counts = batches.map((b) => b.size);
    return pack.sequence.run(forwardWeights, inputs, targets, size, runs, masks, pack.grads, counts);
  }

  /**
   * Records one optimizer update of every run from pack.grads, as optim/optimizer.ts's update() computes it
   * (after recordGradients, whose recording the pack's kernel set is on).
   */
  private recordUpdate(rec: Recorder, pack: Pack, steps: number[]): void {
    const { setups } = pack;
    this.gpu.write(
      pack.hyperparameters,
      hyperparameterRecords(setups.map((s, r) => stepHyperparameters(s.optimizer, steps[r]))),
    );
    // the optimizer draws update noise from one stream per run and step, parameter after parameter
    const noiseRngs = setups.map((s, r) =>
      s.optimizer.updateNoise > 0 ? Rng.for(s.seed, Stream.updateNoise, steps[r]) : null,
    );
    const slot = (s: Slot, name: string) => pack.slots.get(s)?.get(name) ?? null;
    for (const t of pack.tensors) {
      const p = pack.weights.get(t.name)!;
      const g = pack.grads.get(t.name)!;
      const ema = slot("ema", t.name);
      if (ema) grokfastFilter(rec, g, ema, t.size, pack.hyperparameters);
      if (setups.some((s) => s.optimizer.orthogonalGrad)) orthogonalGrad(rec, g, p, t.size, pack.hyperparameters);
      let noise: GpuArray | null = null;
      if (noiseRngs.some((rng) => rng)) {
        const values = new Float32Array(setups.length * t.size);
        noiseRngs.forEach((rng, r) => {
          const sigma = setups[r].optimizer.updateNoise;
          if (rng) for (let i = 0; i < t.size; i++) values[r * t.size + i] = sigma * rng.normal();
        });
        noise = this.packKernels.upload(`updateNoise.${t.name}`, values);
      }
      const init = slot("init", t.name);
      if (setups[0].optimizer.kind === "sgd")
        sgdUpdate(rec, p, g, slot("buf", t.name), init, noise, t.size, pack.hyperparameters);
      else adamUpdate(rec, p, g, slot("m", t.name)!, slot("v", t.name)!, init, noise, t.size, pack.hyperparameters);
    }
  }

  async trainStep(batches: Batch[], steps: number[]): Promise<void> {
    const pack = this.ready();
    await this.gpu.recordAndSubmit((rec) => {
      this.recordGradients(rec, pack, batches, steps);
      this.recordUpdate(rec, pack, steps);
    });
  }

  async gradients(batches: Batch[], steps: number[]): Promise<GradientResult[]> {
    const pack = this.ready();
    const out = await this.gpu.recordAndSubmit((rec) => this.recordGradients(rec, pack, batches, steps));
    const losses = await this.gpu.readFloats(out.losses);
    const logits = await this.gpu.readFloats(out.logits);
    const grads = new Map<string, Float32Array>();
    for (const t of pack.tensors) grads.set(t.name, await this.gpu.readFloats(pack.grads.get(t.name)!));
    const n = pack.dims.numSymbols;
    // run r's rows start at r·rowsPerRun (the largest batch); its loss and accuracy are its own examples'
    const rowsPerRun = Math.max(...batches.map((b) => b.size));
    return batches.map((batch, r) => {
      const { size } = batch;
      const first = r * rowsPerRun;
      let loss = 0;
      for (let i = 0; i < size; i++) loss += losses[first + i];
      const correct = countCorrect(logits.subarray(first * n, (first + size) * n), batch.targets, n);
      const runGrads = new Map<string, Float32Array>();
      for (const t of pack.tensors) runGrads.set(t.name, grads.get(t.name)!.slice(r * t.size, (r + 1) * t.size));
      return { loss: loss / size, accuracy: correct / size, grads: runGrads };
    });
  }

  run(r: number): Omit<Engine, "trainStep" | "gradients" | "initialize" | "dispose" | "flush"> {
    // the view's calls check the device (a view taken before a device loss must not read from it)
    if (!this.pack) throw new Error("engine used before initialize()");
    this.checkRun(r);
    return {
      name: this.name,
      backend: this.backend,
      evaluate: (set) => this.evaluateRun(r, set),
      logits: (set) => this.logitsOfRun(r, set),
      readWeights: () => this.readWeights(r),
      writeWeights: (weights) => this.writeWeights(r, weights),
      readOptimizerState: () => this.readOptimizerState(r),
      writeOptimizerState: (state) => this.writeOptimizerState(r, state),
    };
  }

  private checkRun(r: number): void {
    if (!Number.isInteger(r) || r < 0 || r >= this.size) throw new Error(`pack of ${this.size} runs has no run ${r}`);
  }

  /** Copies run r's weights into pack.evalWeights, for single-run passes. */
  private selectRun(pack: Pack, r: number): Promise<void> {
    return this.gpu.recordAndSubmit((rec) => {
      for (const t of pack.tensors)
        rec.copy(pack.weights.get(t.name)!, pack.evalWeights.get(t.name)!, t.size, r * t.size);
    });
  }

  /** The forward pass of examples start … start+size−1 of a set on pack.evalWeights, read back. */
  private async forward(pack: Pack, set: Batch, start: number, size: number): Promise<ForwardPass> {
    const seqLen = pack.dims.seqLen;
    const inputs = set.inputs.subarray(start * seqLen, (start + size) * seqLen);
    const targets = set.targets.subarray(start, start + size);
    const out = await this.gpu.recordAndSubmit((rec) => {
      this.singleKernels.begin(rec);
      return pack.single.run(pack.evalWeights, inputs, targets, size, 1, [], null);
    });
    return { losses: await this.gpu.readFloats(out.losses), logits: await this.gpu.readFloats(out.logits) };
  }

  private async evaluateRun(r: number, set: Batch): Promise<EvalResult> {
    const pack = this.ready();
    this.checkRun(r);
    await this.selectRun(pack, r);
    return evaluateInChunks(set, pack.dims.numSymbols, (start, size) => this.forward(pack, set, start, size));
  }

  private async logitsOfRun(r: number, set: Batch): Promise<Float32Array> {
    const pack = this.ready();
    this.checkRun(r);
    await this.selectRun(pack, r);
    return logitsInChunks(set, pack.dims.numSymbols, (start, size) => this.forward(pack, set, start, size));
  }

  private async readWeights(r: number): Promise<NamedTensors> {
    const pack = this.ready();
    this.checkRun(r);
    const out: NamedTensors = new Map();
    for (const t of pack.tensors)
      out.set(t.name, {
        shape: [...t.shape],
        data: await this.gpu.readFloats(pack.weights.get(t.name)!, r * t.size, t.size),
      });
    return out;
  }

  private writeWeights(r: number, weights: NamedTensors): void {
    const pack = this.ready();
    this.checkRun(r);
    for (const t of pack.tensors) {
      const w = weights.get(t.name);
      if (!w) throw new Error(`weights are missing ${t.name}`);
      if (w.data.length !== t.size) throw new Error(`weight ${t.name} has ${w.data.length} values, expected ${t.size}`);
    }
    for (const t of pack.tensors) this.gpu.write(pack.weights.get(t.name)!, weights.get(t.name)!.data, r * t.size);
  }

  private async readOptimizerState(r: number): Promise<NamedTensors> {
    const pack = this.ready();
    this.checkRun(r);
    const out: NamedTensors = new Map();
    for (const slot of optimizerSlots(pack.setups[r].optimizer))
      for (const t of pack.tensors) {
        const data = await this.gpu.readFloats(pack.slots.get(slot)!.get(t.name)!, r * t.size, t.size);
        out.set(`optim.${slot}.${t.name}`, { shape: [...t.shape], data });
      }
    return out;
  }

  private writeOptimizerState(r: number, state: NamedTensors): void {
    const pack = this.ready();
    this.checkRun(r);
    // every slot this run's configuration uses must be present, as Optimizer.loadState requires
    const slots = optimizerSlots(pack.setups[r].optimizer);
    for (const slot of slots)
      for (const t of pack.tensors) {
        const key = `optim.${slot}.${t.name}`;
        const saved = state.get(key);
        if (!saved) throw new Error(`optimizer state is missing ${key}`);
        if (saved.data.length !== t.size)
          throw new Error(`optimizer state ${key} has ${saved.data.length} values, expected ${t.size}`);
      }
    for (const slot of slots)
      for (const t of pack.tensors)
        this.gpu.write(pack.slots.get(slot)!.get(t.name)!, state.get(`optim.${slot}.${t.name}`)!.data, r * t.size);
  }

  async keep(runs: number[]): Promise<void> {
    const pack = this.ready();
    for (const r of runs) this.checkRun(r);
    if (new Set(runs).size !== runs.length) throw new Error(`keep: runs listed twice (${runs.join(", ")})`);
    if (runs.length === 0) throw new Error("keep: a pack keeps at least one run (dispose() ends it)");
    const old = [pack.weights, pack.grads, pack.noisy ?? new Map(), ...pack.slots.values()].flatMap((a) => [
      ...a.values(),
    ]);
    old.push(pack.hyperparameters);
    // the kept runs' slices, copied on the GPU into arrays for the smaller pack, in the order given
    await this.gpu.recordAndSubmit((rec) => {
      const compact = (arrays: NamedArrays<GpuArray>, copy: boolean) =>
        new Map(
          pack.tensors.map((t) => {
            const kept = this.gpu.array("f32", runs.length * t.size);
            if (copy) runs.forEach((r, i) => rec.copy(arrays.get(t.name)!, kept, t.size, r * t.size, i * t.size));
            return [t.name, kept];
          }),
        );
      pack.weights = compact(pack.weights, true);
      pack.grads = compact(pack.grads, false);
      pack.noisy = pack.noisy && compact(pack.noisy, false);
      for (const [slot, arrays] of pack.slots) pack.slots.set(slot, compact(arrays, true));
      pack.setups = runs.map((r) => pack.setups[r]);
      const records = hyperparameterRecords(pack.setups.map((s) => stepHyperparameters(s.optimizer, 0)));
      pack.hyperparameters = this.gpu.array("f32", records);
    });
    // destroy() waits for the submitted copies
    for (const a of old) a.buffer.destroy();
  }

  async flush(): Promise<void> {
    this.gpu.checkDevice();
    await this.webgpu.device.queue.onSubmittedWorkDone();
    this.gpu.checkDevice();
  }

  dispose(): void {
    this.free();
    if (this.ownsDevice) this.webgpu.device.destroy();
  }

  /** Every array the pack holds ([R × …] and the evaluation weights). */
  private arrays(): GpuArray[] {
    if (!this.pack) return [];
    const { weights, grads, noisy, slots, evalWeights, hyperparameters } = this.pack;
    const named = [weights, grads, noisy ?? new Map(), evalWeights, ...slots.values()];
    return [...named.flatMap((arrays) => [...arrays.values()]), hyperparameters];
  }

  /** Frees the pack's arrays (the device stays open for the next initialize). */
  private free(): void {
    for (const a of this.arrays()) a.buffer.destroy();
    this.pack = null;
  }
}

/** Checks that the setups can form one pack and that each run's weights fit the model; the model's tensors. */
function checkPack(setups: EngineSetup[], weights: NamedTensors[]): Tensor[] {
  if (setups.length === 0) throw new UserError("a pack needs at least one run");
  if (weights.length !== setups.length)
    throw new Error(`a pack of ${setups.length} runs got weights for ${weights.length}`);
  setups.forEach((setup, r) => {
    const conflict = packConflict(setups[0], setup);
    if (conflict) throw new UserError(`runs 0 and ${r} cannot share a pack: ${conflict}`);
  });
  const cfg = setups[0].optimizer;
  if (!["adamw", "adam", "sgd"].includes(cfg.kind))
    throw new Error(`webgpu engine: no update for optimizer ${JSON.stringify(cfg.kind)}`);
  const specs = paramSpecs(setups[0].model, setups[0].dims);
  for (const [r, w] of weights.entries())
    for (const spec of specs) {
      const t = w.get(spec.name);
      const run = setups.length > 1 ? ` (run ${r})` : "";
      if (!t) throw new Error(`weights are missing ${spec.name}${run}`);
      if (t.shape.join(",") !== spec.shape.join(","))
        throw new Error(`weight ${spec.name} has shape [${t.shape}], the model needs [${spec.shape}]${run}`);
    }
  return specs.map((s) => ({ name: s.name, shape: [...s.shape], size: s.shape.reduce((a, b) => a * b, 1) }));
}

/** The UserError for a pack of `runs` runs that the adapter cannot hold. */
function capacityError(webgpu: WebGpu, capacity: PackCapacity, runs: number, detail?: string): UserError {
  const fits = capacity.runs === 0 ? "no run" : `at most ${capacity.runs} run${capacity.runs === 1 ? "" : "s"}`;
  const why = detail ? `out of memory: ${detail}` : capacity.limit;
  const adapter = formatAdapter(webgpu.adapter);
  return new UserError(`adapter ${adapter} holds ${fits} of this model, not ${runs} (${why})`);
}

/** The arrays one after another, each at the start of a block of `length` values, zeros after it. */
function padded<T extends Float32Array | Int32Array>(arrays: T[], length: number): T {
  const out = new (arrays[0].constructor as { new (n: number): T })(arrays.length * length);
  arrays.forEach((a, r) => out.set(a, r * length));
  return out;
}
