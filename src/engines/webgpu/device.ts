// Finding a WebGPU device and saying what it is.
//
// The webgpu engine is written against the standard WebGPU API (the `GPU` object a browser exposes as
// navigator.gpu), so that a browser page could run it later. The Node-specific code is here alone:
// loadNodeGpu(), which gets that object from Dawn's Node bindings (the optional `webgpu` package), and the
// look for a GPU device node before auto asks Dawn for a hardware adapter (hardwareAdapter).

/** What an adapter is, from GPUAdapterInfo: enough to say on a run's start line which GPU runs it. */
export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /**
   * A software or fallback adapter (lavapipe/llvmpipe, SwiftShader, WARP): the WebGPU API runs on the CPU.
   * Fine for tests, never worth choosing for speed.
   */
  software: boolean;
}

/** An open device and the adapter it came from. */
export interface WebGpu {
  /**
   * The GPU object the device came from. Held for as long as the device is used: with Dawn, garbage
   * collecting it destroys the instance under a live device, and the next mapAsync crashes the process.
   */
  gpu: GPU;
  device: GPUDevice;
  adapter: AdapterDescription;
  /** Adapter limits the device was opened with (the largest the adapter allows, for the sizes we use). */
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number; maxComputeWorkgroupsPerDimension: number };
}

/** Either an open device, or the reason there is none (for skips, and for `--engine webgpu` errors). */
export type WebGpuOpening = { ok: true; gpu: WebGpu } | { ok: false; reason: string };

/**
 * The GPU object from the `webgpu` package (Dawn), or why it could not be had. Node-only: this is the one
 * function of the engine that uses require(). `webgpu` is an ES module; Node loads ES modules with
 * require() by default from 20.19.
 */
export function loadNodeGpu(): { ok: true; gpu: GPU } | { ok: false; reason: string } {
  if (nodeGpu) return { ok: true, gpu: nodeGpu };
  let dawn: { create(options: string[]): GPU; globals: object };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    dawn = require("webgpu");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "MODULE_NOT_FOUND")
      return { ok: false, reason: "the optional package `webgpu` is not installed (npm install webgpu)" };
    if (e.code === "ERR_REQUIRE_ESM")
      return {
        ok: false,
        reason: `\`webgpu\` is an ES module; Node ${process.version} cannot require() it (needs ≥ 20.19)`,
      };
    return { ok: false, reason: `the \`webgpu\` package did not load: ${e.message}` };
  }
  // The browser has GPUBufferUsage, GPUMapMode, … as globals; Dawn hands them over in `globals`.
  for (const [name, value] of Object.entries(dawn.globals))
    if (!(name in globalThis)) Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  nodeGpu = dawn.create([]);
  return { ok: true, gpu: nodeGpu };
}

/** The process's one Dawn instance, created on first use and never collected (see WebGpu.gpu). */
let nodeGpu: GPU | null = null;

/** Names that mark a software rasterizer/compute device when the adapter does not flag itself. */
const SOFTWARE_DEVICE = /llvmpipe|lavapipe|swiftshader|microsoft basic render|\bwarp\b/i;

/** Describes an adapter. `isFallbackAdapter` moved from GPUAdapter to GPUAdapterInfo; both are read. */
export function describeAdapter(adapter: GPUAdapter): AdapterDescription {
  const info = adapter.info;
  const flagged =
    (info as { isFallbackAdapter?: boolean }).isFallbackAdapter === true ||
    (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    software: flagged || info.architecture === "software" || SOFTWARE_DEVICE.test(`${info.device} ${info.description}`),
  };
}

/** One line for a start line or a test log, e.g. "mesa software (llvmpipe: Mesa 25.0.7 …), software adapter". */
export function formatAdapter(a: AdapterDescription): string {
  const what = [a.vendor || "unknown vendor", a.architecture].filter(Boolean).join(" ");
  const detail = a.description || a.device;
  return `${what}${detail ? ` (${detail})` : ""}, ${a.software ? "software adapter" : "hardware adapter"}`;
}

/**
 * Requests an adapter from `gpu` (default: the `webgpu` package's) and opens a device on it with the
 * adapter's largest buffer limits (the default 128 MiB binding limit is too small for big packs later).
 */
export async function openWebGpu(gpu?: GPU): Promise<WebGpuOpening> {
  if (!gpu) {
    const loaded = loadNodeGpu();
    if (!loaded.ok) return loaded;
    gpu = loaded.gpu;
  }
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter)
    return {
      ok: false,
      reason: "no WebGPU adapter (Linux needs a Vulkan driver: a GPU's, or lavapipe, see environment.md)",
    };
  const limits = {
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
    maxComputeWorkgroupsPerDimension: adapter.limits.maxComputeWorkgroupsPerDimension,
  };
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
        maxBufferSize: limits.maxBufferSize,
      },
    });
  } catch (err) {
    return { ok: false, reason: `the adapter refused a device: ${(err as Error).message}` };
  }
  return { ok: true, gpu: { gpu, device, adapter: describeAdapter(adapter), limits } };
}

/**
 * A hardware adapter, if the `webgpu` package finds one: what `--engine auto` takes before the CPU engines.
 * Null without the package, without an adapter, or for a software/fallback one (slower than the fast engine).
 * On Linux it looks only where a GPU device node exists (/dev/dri/renderD*, /dev/nvidiactl): elsewhere the
 * only adapter could be lavapipe, and asking Dawn costs a native load and prints its lavapipe warnings on
 * stderr in every run that chose no engine. (Node-only, like loadNodeGpu.)
 */
export async function hardwareAdapter(gpu?: GPU): Promise<AdapterDescription | null> {
  if (!gpu) {
    if (!mayHaveGpuDevice()) return null;
    const loaded = loadNodeGpu();
    if (!loaded.ok) return null;
    gpu = loaded.gpu;
  }
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return null;
  const description = describeAdapter(adapter);
  return description.software ? null : description;
}

/** False on Linux without a GPU's device node (DRM render node, or NVIDIA's control device). */
function mayHaveGpuDevice(): boolean {
  if (process.platform !== "linux") return true;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require("node:fs") as typeof import("node:fs");
  if (fs.existsSync("/dev/nvidiactl")) return true;
  try {
    return fs.readdirSync("/dev/dri").some((name) => name.startsWith("renderD"));
  } catch {
    return false;
  }
}
