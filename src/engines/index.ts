// Engine selection. `auto`: the webgpu engine when the `webgpu` package finds a hardware adapter (never a
// software or fallback one such as lavapipe: those run on the CPU, slower than the fast engine), else
// TensorFlow.js when its native GPU package is installed (the GPU beats any CPU engine), else the fast engine
// with native kernels, else TensorFlow.js (wasm beats the fast engine's TypeScript kernels: see
// `npm run bench`). Finding an adapter is asynchronous, so resolveEngineName (synchronous) says what auto
// picks among the others, and createEngine looks for the adapter first.

import { Engine, ENGINE_NAMES, EngineName } from "./engine";
import { FastEngine } from "./fast/engine";
import { KernelChoice } from "./fast/kernels";
import { nativeKernelsAvailable } from "./fast/load-kernels";
import { TFJS_BACKENDS, TfjsBackendChoice } from "./tfjs/backend";
import { TfjsEngine } from "./tfjs/engine";
import { hardwareAdapter } from "./webgpu/device";
import { WebGpuEngine } from "./webgpu/engine";
import { UserError } from "../util/errors";

export type EngineChoice = EngineName | "auto";
export { ENGINE_NAMES, TFJS_BACKENDS };
export const KERNEL_CHOICES: readonly KernelChoice[] = ["auto", "native", "typescript"];

export interface EngineOptions {
  engine?: EngineChoice;
  /** The tfjs backend (auto: node-gpu, node, wasm, cpu); naming one implies the tfjs engine under auto. */
  backend?: TfjsBackendChoice;
  /** The fast engine's kernels (auto: native when built). */
  kernels?: KernelChoice;
  /** Threads of the fast engine's native kernels (default: both cores). */
  threads?: number;
}

export interface CreatedEngine {
  engine: Engine;
  /** One line for the start of a run: which engine, on what, and why. */
  description: string;
}

function installed(pkg: string): boolean {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

/**
 * The engine, backend and kernel names of `choices`, checked against the lists this build offers: the one
 * check for the library and the CLI, so its messages name the flags.
 */
export function engineChoices(choices: {
  engine?: unknown;
  backend?: unknown;
  kernels?: unknown;
}): Pick<EngineOptions, "engine" | "backend" | "kernels"> {
  const { engine, backend, kernels } = choices;
  if (engine !== undefined && engine !== "auto" && !(ENGINE_NAMES as readonly unknown[]).includes(engine)) {
    throw new UserError(`--engine must be one of auto, ${ENGINE_NAMES.join(", ")} (got "${engine}")`);
  }
  if (backend !== undefined && !(TFJS_BACKENDS as readonly unknown[]).includes(backend)) {
    throw new UserError(`--backend must be one of ${TFJS_BACKENDS.join(", ")} (got "${backend}")`);
  }
  if (kernels !== undefined && !(KERNEL_CHOICES as readonly unknown[]).includes(kernels)) {
    throw new UserError(`--kernels must be one of ${KERNEL_CHOICES.join(", ")} (got "${kernels}")`);
  }
  return {
    engine: engine as EngineChoice | undefined,
    backend: backend as TfjsBackendChoice | undefined,
    kernels: kernels as KernelChoice | undefined,
  };
}

/**
 * Which engine `opts` selects (see the top of this file), or throws on an unknown or contradictory choice.
 * For auto, the choice among the CPU engines and tfjs: createEngine takes webgpu before it when a hardware
 * adapter is there.
 */
export function resolveEngineName(opts: EngineOptions = {}): EngineName {
  engineChoices(opts);
  const choice = opts.engine ?? "auto";
  let name: EngineName;
  if (choice !== "auto") name = choice;
  else if (opts.backend !== undefined && opts.backend !== "auto") name = "tfjs";
  else if (opts.kernels !== undefined && opts.kernels !== "auto") name = "fast";
  else if (installed("@tensorflow/tfjs-node-gpu")) name = "tfjs";
  else name = nativeKernelsAvailable() ? "fast" : "tfjs";
  if (name === "fast" && opts.backend !== undefined && opts.backend !== "auto") {
    throw new Error(`--backend ${opts.backend} chooses a tfjs backend, but the engine is fast (it takes --kernels)`);
  }
  if (name !== "fast" && opts.kernels !== undefined && opts.kernels !== "auto") {
    throw new Error(`--kernels ${opts.kernels} chooses the fast engine's kernels, but the engine is ${name}`);
  }
  if (name === "webgpu" && opts.backend !== undefined && opts.backend !== "auto") {
    throw new Error(`--backend ${opts.backend} chooses a tfjs backend, but the engine is webgpu`);
  }
  return name;
}

/** Whether `opts` run on a GPU: webgpu named, or tfjs with tfjs-node-gpu installed on an auto or node-gpu backend. */
export function runsOnGpu(opts: EngineOptions = {}): boolean {
  return (
    resolveEngineName(opts) === "webgpu" ||
    (resolveEngineName(opts) === "tfjs" &&
      (opts.backend ?? "auto") in { auto: 1, "node-gpu": 1 } &&
      installed("@tensorflow/tfjs-node-gpu"))
  );
}

/** Whether auto may take webgpu: nothing named that points to another engine. */
function autoMayTakeWebGpu(opts: EngineOptions): boolean {
  return (
    (opts.engine ?? "auto") === "auto" && (opts.backend ?? "auto") === "auto" && (opts.kernels ?? "auto") === "auto"
  );
}

export async function createEngine(opts: EngineOptions = {}): Promise<CreatedEngine> {
  let name = resolveEngineName(opts);
  let why = "";
  if (autoMayTakeWebGpu(opts)) {
    const adapter = await hardwareAdapter();
    if (adapter) {
      name = "webgpu";
      why = " (auto: a hardware adapter)";
    }
  }
  if (name === "webgpu") {
    const engine = await WebGpuEngine.create();
    return { engine, description: `engine webgpu on ${engine.backend}${why}` };
  }
  if (name === "fast") {
    const engine = FastEngine.create(opts.kernels ?? "auto", opts.threads);
    return { engine, description: `engine fast (${engine.backend}): ${engine.backendNote}` };
  }
  const engine = await TfjsEngine.create(opts.backend ?? "auto");
  return { engine, description: `engine tfjs on ${engine.backend}: ${engine.backendNote}` };
}
