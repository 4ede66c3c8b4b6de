// The small layer between the WGSL kernels and a GPUDevice: arrays that live on the GPU, compiled pipelines
// (one per kernel, cached), and a recorder that encodes one kernel call after another into a single command
// buffer. Nothing is read back while recording: a training step is recorded and submitted whole, and data
// crosses to the CPU only through GpuContext.read (evaluations, checkpoints, tests).
//
// Device failures become DeviceError (engines/engine.ts): a validation or out-of-memory error of a step
// rejects its submit(), a failed read rejects read(), and once the device is lost every later submit,
// read or write rejects at once, so that no result computed on a lost device is ever returned.

import { DeviceError } from "../../engine";

/** A flat array of f32 or i32 on the GPU (a storage buffer), `length` elements long. */
export class GpuArray {
  constructor(
    readonly buffer: GPUBuffer,
    readonly length: number,
    readonly type: "f32" | "i32",
  ) {}
}

/** One scalar of a kernel's uniform parameter struct: WGSL u32, i32 or f32 (4 bytes each, in order). */
export type Param = ["u32" | "i32" | "f32", number];

/**
 * Bytes between two dispatches' parameters in the uniform arena: WebGPU's largest allowed
 * minUniformBufferOffsetAlignment, so every adapter accepts the offsets.
 */
const UNIFORM_SLOT = 256;

/** Bind groups kept for reuse before the cache starts over (a step's dispatches repeat every step). */
const BIND_GROUP_CACHE = 8192;

/** Workgroups per dimension WebGPU guarantees; more are spread over y (shaders use workgroupIndex()). */
const MAX_GROUPS_PER_DIMENSION = 65535;

/**
 * WGSL for a flat workgroup index from a 2-D grid: kernels that launch one workgroup per row or per chunk
 * use it so that more than 65535 groups still work.
 */
export const WORKGROUP_INDEX_WGSL = /* wgsl */ `
fn workgroupIndex(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
  return wid.x + wid.y * groups.x;
}`;

/** A 2-D grid of at least `groups` workgroups (x ≤ 65535). */
export function gridFor(groups: number): [number, number] {
  if (groups <= MAX_GROUPS_PER_DIMENSION) return [groups, 1];
  const y = Math.ceil(groups / MAX_GROUPS_PER_DIMENSION);
  if (y > MAX_GROUPS_PER_DIMENSION) throw new Error(`dispatch: ${groups} workgroups are more than a 2-D grid holds`);
  return [MAX_GROUPS_PER_DIMENSION, y];
}

/** A device with its compiled kernels: creates arrays, records kernel calls, reads results back. */
export class GpuContext {
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  /** A 1-element array bound where a kernel's optional input is absent (WebGPU binds every slot). */
  private placeholder: GpuArray | null = null;
  private readonly scratchArrays = new Map<string, GpuArray>();
  /** Set once the device is lost (destroyed, driver reset, …): every later use throws it. */
  private lostError: DeviceError | null = null;
  /**
   * The uniform arena: one uniform buffer holding the parameters of every dispatch of a step, a slot
   * each, written once per step just before the step is submitted. Reused by every step: the queue orders
   * a step's write after the steps submitted before it.
   */
  private arena: { buffer: GPUBuffer; slots: number } | null = null;
  /** Bind groups by pipeline, uniform slot and arrays: a step's dispatches bind the same ones every step. */
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly ids = new WeakMap<object, number>();
  private nextId = 0;

  constructor(readonly device: GPUDevice) {
    device.lost.then((info) => {
      const why = info.message ? `: ${info.message}` : "";
      this.lostError = new DeviceError("lost", `WebGPU device lost (${info.reason ?? "unknown"})${why}`);
    });
  }

  /** Throws the DeviceError of a lost device. */
  checkDevice(): void {
    if (this.lostError) throw this.lostError;
  }

  /**
   * The DeviceError for a failure seen at `what`: "lost" when the device is (or turns out to be, a moment
   * later: the lost promise settles after the failure that reveals it) lost, else `kind`.
   */
  async failure(kind: DeviceError["kind"], what: string, message: string): Promise<DeviceError> {
    await Promise.race([this.device.lost, new Promise((resolve) => setTimeout(resolve, 50))]);
    return this.lostError ?? new DeviceError(kind, `WebGPU ${what}: ${message}`);
  }

  /** The compute pipeline for `wgsl` (entry point `main`), compiled once per name. */
  pipeline(name: string, wgsl: string): GPUComputePipeline {
    let pipeline = this.pipelines.get(name);
    if (!pipeline) {
      const module = this.device.createShaderModule({ label: name, code: wgsl });
      pipeline = this.device.createComputePipeline({
        label: name,
        layout: "auto",
        compute: { module, entryPoint: "main" },
      });
      this.pipelines.set(name, pipeline);
    }
    return pipeline;
  }

  /** A new array of `length` zeros, or holding a copy of `data`. */
  array(type: "f32" | "i32", lengthOrData: number | Float32Array | Int32Array): GpuArray {
    const length = typeof lengthOrData === "number" ? lengthOrData : lengthOrData.length;
    if (!Number.isInteger(length) || length < 0) throw new Error(`GpuContext.array: bad length ${length}`);
    // storage bindings must be non-empty and sized in multiples of 4 bytes
    const buffer = this.device.createBuffer({
      size: Math.max(4, 4 * length),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      mappedAtCreation: typeof lengthOrData !== "number",
    });
    if (typeof lengthOrData !== "number") {
      const mapped =
        type === "f32" ? new Float32Array(buffer.getMappedRange()) : new Int32Array(buffer.getMappedRange());
      mapped.set(lengthOrData);
      buffer.unmap();
    }
    return new GpuArray(buffer, length, type);
  }

  /**
   * Overwrites the elements of `target` from `start` on with `data` (queued before the next submitted
   * step). Throws DeviceError once the device is lost.
   */
  write(target: GpuArray, data: Float32Array | Int32Array, start = 0): void {
    this.checkDevice();
    if (start + data.length > target.length)
      throw new Error(`GpuContext.write: ${data.length} values at ${start} into ${target.length}`);
    this.device.queue.writeBuffer(target.buffer, 4 * start, data.buffer, data.byteOffset, data.byteLength);
  }

  /**
   * The array's contents (or `length` elements from `start`), after all work submitted so far. Rejects
   * with DeviceError when the device fails or is lost.
   */
  async read(source: GpuArray, start = 0, length = source.length - start): Promise<Float32Array | Int32Array> {
    this.checkDevice();
    if (start < 0 || length < 0 || start + length > source.length)
      throw new Error(`GpuContext.read: elements ${start}…${start + length} of ${source.length}`);
    const bytes = 4 * length;
    if (bytes === 0) return source.type === "f32" ? new Float32Array(0) : new Int32Array(0);
    const device = this.device;
    device.pushErrorScope("validation");
    const staging = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(source.buffer, 4 * start, staging, 0, bytes);
    device.queue.submit([encoder.finish()]);
    const error = await device.popErrorScope();
    if (error) throw await this.failure("validation", "read", error.message);
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (err) {
      throw await this.failure("internal", "read", (err as Error).message);
    }
    // a device lost while the copy ran may still map the staging buffer, with zeros in it
    this.checkDevice();
    const copy = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    return source.type === "f32" ? new Float32Array(copy) : new Int32Array(copy);
  }

  /** read() for an f32 array. */
  async readFloats(source: GpuArray, start = 0, length = source.length - start): Promise<Float32Array> {
    if (source.type !== "f32") throw new Error("GpuContext.readFloats: an i32 array");
    return (await this.read(source, start, length)) as Float32Array;
  }

  /**
   * A kernel's working array, by name, with at least `length` elements (contents undefined). Grown by
   * replacing it; a replaced array stays alive for dispatches already recorded with it.
   */
  scratch(name: string, length: number): GpuArray {
    let array = this.scratchArrays.get(name);
    if (!array || array.length < length) {
      array = this.array("f32", Math.max(length, 2 * (array?.length ?? 0)));
      this.scratchArrays.set(name, array);
    }
    return array;
  }

  /** The uniform arena with at least `slots` slots (a new, larger one replaces it when needed). */
  uniformArena(slots: number): GPUBuffer {
    if (!this.arena || this.arena.slots < slots) {
      const grown = Math.max(slots, 2 * (this.arena?.slots ?? 0), 512);
      const buffer = this.device.createBuffer({
        size: grown * UNIFORM_SLOT,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      this.arena = { buffer, slots: grown };
    }
    return this.arena.buffer;
  }

  /** The bind group of `pipeline` with uniform slot `slot` of `arena` (of `bytes` bytes) and `arrays`. */
  bindGroup(pipeline: GPUComputePipeline, arena: GPUBuffer, slot: number, bytes: number, arrays: GpuArray[]) {
    const key = [pipeline, arena, ...arrays.map((a) => a.buffer)].map((o) => this.id(o)).join(",") + `@${slot}`;
    let group = this.bindGroups.get(key);
    if (!group) {
      if (this.bindGroups.size >= BIND_GROUP_CACHE) this.bindGroups.clear();
      group = this.device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: arena, offset: slot * UNIFORM_SLOT, size: bytes } },
          ...arrays.map((a, i) => ({ binding: i + 1, resource: { buffer: a.buffer } })),
        ],
      });
      this.bindGroups.set(key, group);
    }
    return group;
  }

  /** A number for a GPU object, the same for as long as it lives. */
  private id(object: object): number {
    let id = this.ids.get(object);
    if (id === undefined) this.ids.set(object, (id = this.nextId++));
    return id;
  }

  /** The array bound for an absent optional input. */
  absent(): GpuArray {
    if (!this.placeholder) this.placeholder = this.array("f32", 1);
    return this.placeholder;
  }

  /** Starts recording kernel calls. */
  record(): Recorder {
    return new Recorder(this);
  }

  /**
   * Records what `record` records and submits it, returning what `record` returned; a throw while
   * recording abandons the recording (nothing is submitted, and its error scopes are closed).
   */
  async recordAndSubmit<T>(record: (rec: Recorder) => T): Promise<T> {
    const rec = this.record();
    let out: T;
    try {
      out = record(rec);
    } catch (err) {
      await rec.abandon();
      throw err;
    }
    await rec.submit();
    return out;
  }
}

/**
 * Kernel calls recorded into one command encoder, in order (each compute pass sees the writes of the ones
 * before it). Validation and out-of-memory errors raised while recording are caught by error scopes and
 * reported by submit(), so a bad kernel call is an Error, never a silently wrong result.
 */
export class Recorder {
  private readonly encoder: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | null = null;
  /** The parameters of this recorder's dispatches, slot after slot, and the arenas they are bound in. */
  private uniforms = new ArrayBuffer(64 * UNIFORM_SLOT);
  private slots = 0;
  private readonly arenas: { buffer: GPUBuffer; first: number }[] = [];
  /** Arrays replaced while recording: destroyed once the work that uses them is submitted. */
  private readonly retired: GpuArray[] = [];
  private done = false;

  constructor(readonly gpu: GpuContext) {
    gpu.device.pushErrorScope("out-of-memory");
    gpu.device.pushErrorScope("validation");
    this.encoder = gpu.device.createCommandEncoder();
  }

  /**
   * Records one dispatch of `pipeline` with `params` as the uniform struct at binding 0 and `arrays` at
   * bindings 1, 2, … in order, over a grid of workgroups (x, y, and z when given).
   */
  dispatch(
    pipeline: GPUComputePipeline,
    params: Param[],
    arrays: GpuArray[],
    grid: [number, number] | [number, number, number],
  ): void {
    if (grid.some((g) => g === 0)) return;
    // a slot of the uniform arena per call: several calls of one kernel in a step need different parameters
    const slot = this.slots++;
    if (this.uniforms.byteLength < this.slots * UNIFORM_SLOT) {
      const grown = new ArrayBuffer(2 * this.uniforms.byteLength);
      new Uint8Array(grown).set(new Uint8Array(this.uniforms));
      this.uniforms = grown;
    }
    const view = new DataView(this.uniforms, slot * UNIFORM_SLOT, UNIFORM_SLOT);
    params.forEach(([type, value], i) => {
      if (type === "f32") view.setFloat32(4 * i, value, true);
      else if (type === "i32") view.setInt32(4 * i, value, true);
      else view.setUint32(4 * i, value, true);
    });
    const arena = this.gpu.uniformArena(this.slots);
    if (this.arenas.at(-1)?.buffer !== arena) this.arenas.push({ buffer: arena, first: slot });
    const bytes = Math.max(16, Math.ceil((4 * params.length) / 16) * 16);
    const bindGroup = this.gpu.bindGroup(pipeline, arena, slot, bytes, arrays);
    // consecutive dispatches share one compute pass (WebGPU orders each after the writes of the one before)
    this.pass ??= this.encoder.beginComputePass();
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(grid[0], grid[1], grid[2] ?? 1);
  }

  /** Ends the open compute pass, for a copy, a clear or the end of the recording. */
  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  /**
   * Records a copy of n elements of src into dst (in order with the kernel calls): the first n, or from
   * srcStart into dst from dstStart (a run's slice of a pack's array).
   */
  copy(src: GpuArray, dst: GpuArray, n: number, srcStart = 0, dstStart = 0): void {
    checkSizes("copy", { n, srcStart, dstStart });
    checkArray("copy", "src", src, srcStart + n, src.type);
    checkArray("copy", "dst", dst, dstStart + n, src.type);
    if (n === 0) return;
    this.endPass();
    this.encoder.copyBufferToBuffer(src.buffer, 4 * srcStart, dst.buffer, 4 * dstStart, 4 * n);
  }

  /** Records zeroing the whole array (in order with the kernel calls). */
  clear(array: GpuArray): void {
    if (array.length === 0) return;
    this.endPass();
    this.encoder.clearBuffer(array.buffer, 0, 4 * array.length);
  }

  /**
   * Destroys `array` once this recording is submitted (at once if it was): an array replaced while
   * recording may be bound by the calls recorded before.
   */
  retire(array: GpuArray): void {
    if (this.done) array.buffer.destroy();
    else this.retired.push(array);
  }

  /** Drops what was recorded without submitting it, closing the error scopes the constructor opened. */
  async abandon(): Promise<void> {
    this.finish();
    await this.gpu.device.popErrorScope();
    await this.gpu.device.popErrorScope();
  }

  /** Marks the recording done and destroys the retired arrays (destroy() waits for submitted work). */
  private finish(): void {
    this.done = true;
    for (const a of this.retired) a.buffer.destroy();
  }

  /**
   * Submits everything recorded; rejects with a DeviceError for the first validation or out-of-memory
   * error, or at once when the device is lost (then nothing is submitted).
   */
  async submit(): Promise<void> {
    const device = this.gpu.device;
    let lost: unknown = null;
    try {
      this.gpu.checkDevice();
      // the dispatches' parameters, into the arena slots they are bound at (ahead of them in the queue)
      this.arenas.forEach(({ buffer, first }, i) => {
        const end = i + 1 < this.arenas.length ? this.arenas[i + 1].first : this.slots;
        device.queue.writeBuffer(
          buffer,
          first * UNIFORM_SLOT,
          this.uniforms,
          first * UNIFORM_SLOT,
          (end - first) * UNIFORM_SLOT,
        );
      });
      this.endPass();
      device.queue.submit([this.encoder.finish()]);
    } catch (err) {
      lost = err;
    }
    this.finish();
    const validation = await device.popErrorScope();
    const outOfMemory = await device.popErrorScope();
    if (lost) throw lost;
    if (validation) throw await this.gpu.failure("validation", "validation error", validation.message);
    if (outOfMemory) throw await this.gpu.failure("out-of-memory", "out of memory", outOfMemory.message);
    // a device lost under the step leaves no error in the scopes: the step never ran
    this.gpu.checkDevice();
  }
}

/** Throws "<kernel>: <problem>" unless every size is a non-negative integer. */
export function checkSizes(kernel: string, sizes: Record<string, number>): void {
  for (const name in sizes) {
    const v = sizes[name];
    if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff)
      throw new Error(`${kernel}: ${name} must be a non-negative integer (got ${v})`);
  }
}

/** Throws "<kernel>: <problem>" unless `array` is an f32 (or i32) array of at least `need` elements. */
export function checkArray(
  kernel: string,
  name: string,
  array: GpuArray,
  need: number,
  type: "f32" | "i32" = "f32",
): void {
  if (array.type !== type) throw new Error(`${kernel}: ${name} must be an ${type} array`);
  if (array.length < need) throw new Error(`${kernel}: ${name} has ${array.length} elements, needs at least ${need}`);
}

/**
 * Rows per run of a kernel whose `rows` are `runs` equal blocks (a pack's runs), after checking the sizes
 * (at least 1, so that a kernel can divide by it).
 */
export function perRun(kernel: string, rows: number, runs: number, width: number): number {
  checkSizes(kernel, { rows, width, runs });
  if (runs < 1 || rows % runs !== 0) throw new Error(`${kernel}: ${rows} rows do not split into ${runs} runs`);
  return Math.max(1, rows / runs);
}
