// Engine selection. `auto`: TensorFlow.js when its native GPU package is installed (the GPU beats any CPU
// engine), else the fast engine with native kernels, else TensorFlow.js (wasm beats the fast engine's
// TypeScript kernels: see `npm run bench`).

import { Engine, ENGINE_NAMES, EngineName } from "./engine";
import { FastEngine } from "./fast/engine";
import { KernelChoice } from "./fast/kernels";
import { nativeKernelsAvailable } from "./fast/load-kernels";
import { TFJS_BACKENDS, TfjsBackendChoice } from "./tfjs/backend";
import { TfjsEngine } from "./tfjs/engine";
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

/** Which engine `opts` selects (see the top of this file), or throws on an unknown or contradictory choice. */
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
  if (name === "tfjs" && opts.kernels !== undefined && opts.kernels !== "auto") {
    throw new Error(`--kernels ${opts.kernels} chooses the fast engine's kernels, but the engine is tfjs`);
  }
  return name;
}

/** Whether `opts` run on a GPU (tfjs with tfjs-node-gpu installed, on an auto or node-gpu backend). */
export function runsOnGpu(opts: EngineOptions = {}): boolean {
  return (
    resolveEngineName(opts) === "tfjs" &&
    (opts.backend ?? "auto") in { auto: 1, "node-gpu": 1 } &&
    installed("@tensorflow/tfjs-node-gpu")
  );
}

export async function createEngine(opts: EngineOptions = {}): Promise<CreatedEngine> {
  const name = resolveEngineName(opts);
  if (name === "fast") {
    const engine = FastEngine.create(opts.kernels ?? "auto", opts.threads);
    return { engine, description: `engine fast (${engine.backend}): ${engine.backendNote}` };
  }
  const engine = await TfjsEngine.create(opts.backend ?? "auto");
  return { engine, description: `engine tfjs on ${engine.backend}: ${engine.backendNote}` };
}
