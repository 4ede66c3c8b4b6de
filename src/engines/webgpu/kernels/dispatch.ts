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

  /** The array bound for an absent optional input. */
  absent(): GpuArray {
    if (!this.placeholder) this.placeholder = this.array("f32", 1);
    return this.placeholder;
  }

  /** Starts recording kernel calls. */
  record(): Recorder {
    return new Recorder(this);
  }
}

/**
 * Kernel calls recorded into one command encoder, in order (each compute pass sees the writes of the ones
 * before it). Validation and out-of-memory errors raised while recording are caught by error scopes and
 * reported by submit(), so a bad kernel call is an Error, never a silently wrong result.
 */
export class Recorder {
  private readonly encoder: GPUCommandEncoder;
  private readonly uniforms: GPUBuffer[] = [];

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
    const device = this.gpu.device;
    // one small uniform buffer per call: several calls of one kernel in a step need different parameters
    const uniform = device.createBuffer({
      size: Math.max(16, Math.ceil((4 * params.length) / 16) * 16),
      usage: GPUBufferUsage.UNIFORM,
      mappedAtCreation: true,
    });
    const view = new DataView(uniform.getMappedRange());
    params.forEach(([type, value], i) => {
      if (type === "f32") view.setFloat32(4 * i, value, true);
      else if (type === "i32") view.setInt32(4 * i, value, true);
      else view.setUint32(4 * i, value, true);
    });
    uniform.unmap();
    this.uniforms.push(uniform);
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: uniform } },
        ...arrays.map((a, i) => ({ binding: i + 1, resource: { buffer: a.buffer } })),
      ],
    });
    const pass = this.encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2] ?? 1);
    pass.end();
  }

  /**
   * Records a copy of n elements of src into dst (in order with the kernel calls): the first n, or from
   * srcStart into dst from dstStart (a run's slice of a pack's array).
   */
  copy(src: GpuArray, dst: GpuArray, n: number, srcStart = 0, dstStart = 0): void {
    checkSizes("copy", { n, srcStart, dstStart });
    checkArray("copy", "src", src, srcStart + n, src.type);
    checkArray("copy", "dst", dst, dstStart + n, src.type);
    if (n > 0) this.encoder.copyBufferToBuffer(src.buffer, 4 * srcStart, dst.buffer, 4 * dstStart, 4 * n);
  }

  /** Records zeroing the whole array (in order with the kernel calls). */
  clear(array: GpuArray): void {
    if (array.length > 0) this.encoder.clearBuffer(array.buffer, 0, 4 * array.length);
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
      device.queue.submit([this.encoder.finish()]);
    } catch (err) {
      lost = err;
    }
    // destroy() waits for the submitted work that uses the buffers
    for (const u of this.uniforms) u.destroy();
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
