// The webgpu engine: one run trained with its weights, gradients and optimizer state on the GPU, as a pack
// of one (pack-engine.ts): a run alone and a run in a pack go through the same kernels and the same code.
//
// A training step is recorded into one command buffer and submitted; nothing is read back. Data comes back
// only for gradients(), evaluations, logits, and weights or optimizer state (checkpoints, snapshots,
// metrics). A device failure rejects the call that meets it with DeviceError (engines/engine.ts).
//
// Results agree with the fast engine to f32 rounding, not bit for bit: the WGSL kernels sum in f32 in
// their own order, where the TypeScript kernels sum in double.

import { UserError } from "../../util/errors";
import { NamedTensors } from "../../util/tensors";
import { Batch, Engine, EngineSetup, EvalResult, GradientResult } from "../engine";
import { openWebGpu, WebGpu } from "./device";
import { WebGpuPackEngine } from "./pack-engine";

export class WebGpuEngine implements Engine {
  readonly name = "webgpu";
  readonly backend: string;
  private readonly pack: WebGpuPackEngine;
  /** The last initialize()'s allocation: its out-of-memory error, if any, rejects the next call. */
  private allocated: Promise<void> = Promise.resolve();

  /**
   * An engine on an open device; `ownsDevice`: dispose() destroys the device too (create() opens one for
   * the engine alone; tests share one among engines).
   */
  constructor(webgpu: WebGpu, ownsDevice = false) {
    // a run alone is bounded by the adapter's buffer limits and its memory (an out-of-memory error), not
    // by the budget that sizes packs
    this.pack = new WebGpuPackEngine(webgpu, ownsDevice, Infinity);
    this.backend = this.pack.backend;
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
    this.allocated = this.pack.allocate([setup], [weights]);
    this.allocated.catch(() => {}); // reported by the next call, not as an unhandled rejection
  }

  async trainStep(batch: Batch, step: number): Promise<void> {
    await this.allocated;
    await this.pack.trainStep([batch], [step]);
  }

  async gradients(batch: Batch, step: number): Promise<GradientResult> {
    await this.allocated;
    return (await this.pack.gradients([batch], [step]))[0];
  }

  async evaluate(set: Batch): Promise<EvalResult> {
    await this.allocated;
    return this.pack.run(0).evaluate(set);
  }

  async logits(set: Batch): Promise<Float32Array> {
    await this.allocated;
    return this.pack.run(0).logits(set);
  }

  async readWeights(): Promise<NamedTensors> {
    await this.allocated;
    return this.pack.run(0).readWeights();
  }

  writeWeights(weights: NamedTensors): void {
    this.pack.run(0).writeWeights(weights);
  }

  async readOptimizerState(): Promise<NamedTensors> {
    await this.allocated;
    return this.pack.run(0).readOptimizerState();
  }

  writeOptimizerState(state: NamedTensors): void {
    this.pack.run(0).writeOptimizerState(state);
  }

  async flush(): Promise<void> {
    await this.allocated;
    await this.pack.flush();
  }

  dispose(): void {
    this.pack.dispose();
  }
}
