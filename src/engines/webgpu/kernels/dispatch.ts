// The small layer between the WGSL kernels and a GPUDevice: arrays that live on the GPU, compiled pipelines
// (one per kernel, cached), and a recorder that encodes one kernel call after another into a single command
// buffer. Nothing is read back while recording: a training step is recorded and submitted whole, and data
// crosses to the CPU only through GpuContext.read (evaluations, checkpoints, tests).

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

  constructor(readonly device: GPUDevice) {}

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

  /** Overwrites the leading elements of `target` with `data` (queued before the next submitted step). */
  write(target: GpuArray, data: Float32Array | Int32Array): void {
    if (data.length > target.length) throw new Error(`GpuContext.write: ${data.length} values into ${target.length}`);
    this.device.queue.writeBuffer(target.buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  }

  /** The array's contents, after all work submitted so far. */
  async read(source: GpuArray): Promise<Float32Array | Int32Array> {
    const bytes = 4 * source.length;
    if (bytes === 0) return source.type === "f32" ? new Float32Array(0) : new Int32Array(0);
    const staging = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = this.device.createCommandEncoder();
    encoder.copyBufferToBuffer(source.buffer, 0, staging, 0, bytes);
    this.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const copy = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    return source.type === "f32" ? new Float32Array(copy) : new Int32Array(copy);
  }

  /** read() for an f32 array. */
  async readFloats(source: GpuArray): Promise<Float32Array> {
    if (source.type !== "f32") throw new Error("GpuContext.readFloats: an i32 array");
    return (await this.read(source)) as Float32Array;
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
   * bindings 1, 2, … in order, over a grid of workgroups.
   */
  dispatch(pipeline: GPUComputePipeline, params: Param[], arrays: GpuArray[], grid: [number, number]): void {
    if (grid[0] === 0 || grid[1] === 0) return;
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
    pass.dispatchWorkgroups(grid[0], grid[1]);
    pass.end();
  }

  /** Records a copy of the first n elements of src into dst (in order with the kernel calls). */
  copy(src: GpuArray, dst: GpuArray, n: number): void {
    checkSizes("copy", { n });
    checkArray("copy", "src", src, n, src.type);
    checkArray("copy", "dst", dst, n, src.type);
    if (n > 0) this.encoder.copyBufferToBuffer(src.buffer, 0, dst.buffer, 0, 4 * n);
  }

  /** Records zeroing the whole array (in order with the kernel calls). */
  clear(array: GpuArray): void {
    if (array.length > 0) this.encoder.clearBuffer(array.buffer, 0, 4 * array.length);
  }

  /** Submits everything recorded; rejects with the first validation or out-of-memory error. */
  async submit(): Promise<void> {
    const device = this.gpu.device;
    device.queue.submit([this.encoder.finish()]);
    // destroy() waits for the submitted work that uses the buffers
    for (const u of this.uniforms) u.destroy();
    const validation = await device.popErrorScope();
    const outOfMemory = await device.popErrorScope();
    const error = validation ?? outOfMemory;
    if (error) throw new Error(`WebGPU: ${error.message}`);
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
