// Engine selection. `auto` picks the best engine this build offers.

import { Engine, ENGINE_NAMES, EngineName } from "./engine";
import { TFJS_BACKENDS, TfjsBackendChoice } from "./tfjs/backend";
import { TfjsEngine } from "./tfjs/engine";

export type EngineChoice = EngineName | "auto";
export { ENGINE_NAMES, TFJS_BACKENDS };

export interface EngineOptions {
  engine?: EngineChoice;
  /** The tfjs backend (auto: node-gpu, node, wasm, cpu). */
  backend?: TfjsBackendChoice;
}

export interface CreatedEngine {
  engine: Engine;
  /** One line for the start of a run: which engine, on what, and why. */
  description: string;
}

export async function createEngine(opts: EngineOptions = {}): Promise<CreatedEngine> {
  const choice = opts.engine ?? "auto";
  if (choice !== "auto" && !(ENGINE_NAMES as readonly string[]).includes(choice)) {
    throw new Error(`unknown engine "${choice}"; choose one of auto, ${ENGINE_NAMES.join(", ")}`);
  }
  const engine = await TfjsEngine.create(opts.backend ?? "auto");
  return { engine, description: `engine tfjs on ${engine.backend}: ${engine.backendNote}` };
}
