// Picks the TensorFlow.js backend: tfjs-node-gpu, then tfjs-node, then wasm, then cpu. The native
// packages are optional peer dependencies: installing never needs them, and where one is present it is used.

import type * as TF from "@tensorflow/tfjs";
import { errorLine } from "../../util/errors";

export type Tf = typeof TF;

export const TFJS_BACKENDS = ["auto", "node-gpu", "node", "wasm", "cpu"] as const;
export type TfjsBackendChoice = (typeof TFJS_BACKENDS)[number];

export interface LoadedTfjs {
  tf: Tf;
  /** The backend in use: "node-gpu", "node", "wasm" or "cpu". */
  backend: Exclude<TfjsBackendChoice, "auto">;
  /** Why this one, for the line printed when a run starts. */
  note: string;
}

let loaded: LoadedTfjs | null = null;

/**
 * Loads TensorFlow.js once per process on the chosen backend. A process holds one backend: asking for a
 * different one later is an error rather than a silent switch. The name is checked by engineChoices
 * (engines/index.ts).
 */
export async function loadTfjs(choice: TfjsBackendChoice = "auto"): Promise<LoadedTfjs> {
  if (loaded) {
    if (choice !== "auto" && choice !== loaded.backend) {
      throw new Error(`this process already runs tfjs on ${loaded.backend}; cannot switch to ${choice}`);
    }
    return loaded;
  }
  const failures: string[] = [];
  const order: Exclude<TfjsBackendChoice, "auto">[] =
    choice === "auto" ? ["node-gpu", "node", "wasm", "cpu"] : [choice];
  for (const backend of order) {
    try {
      loaded = await tryBackend(backend);
      if (failures.length) loaded.note += ` (not available: ${failures.join("; ")})`;
      return loaded;
    } catch (err) {
      failures.push(
        `${backend}: ${(err as { code?: string }).code === "MODULE_NOT_FOUND" ? "not installed" : errorLine(err)}`,
      );
    }
  }
  throw new Error(`no tfjs backend could start: ${failures.join("; ")}`);
}

async function tryBackend(backend: Exclude<TfjsBackendChoice, "auto">): Promise<LoadedTfjs> {
  if (backend === "node-gpu" || backend === "node") {
    const pkg = backend === "node-gpu" ? "@tensorflow/tfjs-node-gpu" : "@tensorflow/tfjs-node";
    const tf = require(pkg) as Tf;
    // danfojs-node's npm override installs the pure-JS tfjs under the name @tensorflow/tfjs-node, so a
    // successful require is not proof: the native package registers the "tensorflow" backend.
    if (!tf.findBackendFactory || !tf.findBackendFactory("tensorflow")) {
      throw new Error(`${pkg} is not the native package (no "tensorflow" backend registered)`);
    }
    if (!(await tf.setBackend("tensorflow"))) throw new Error(`${pkg}: the tensorflow backend failed to start`);
    await tf.ready();
    return { tf, backend, note: `${pkg} (libtensorflow)` };
  }
  const tf = require("@tensorflow/tfjs") as Tf;
  if (backend === "wasm") {
    require("@tensorflow/tfjs-backend-wasm");
    if (!(await tf.setBackend("wasm"))) throw new Error("the wasm backend failed to start");
    await tf.ready();
    const simd = tf.env().getBool("WASM_HAS_SIMD_SUPPORT");
    return { tf, backend, note: `@tensorflow/tfjs-backend-wasm (${simd ? "SIMD" : "no SIMD"}, one thread)` };
  }
  if (!(await tf.setBackend("cpu"))) throw new Error("the cpu backend failed to start");
  await tf.ready();
  return { tf, backend, note: "pure JavaScript cpu backend (slow)" };
}
