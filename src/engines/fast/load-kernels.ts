// Chooses the fast engine's kernels: the native addon (built by `npm install` / `npm run build:native`
// into build/Release/grok_kernels.node) when it loads, else the TypeScript kernels.

import * as path from "node:path";
import { errorLine } from "../../util/errors";
import { Kernels } from "./kernels";
import { tsKernels } from "./ts-kernels";

/** Where node-gyp puts the addon, from this file's compiled location (dist/src/engines/fast/). */
export const NATIVE_ADDON_PATH = path.resolve(__dirname, "../../../../build/Release/grok_kernels.node");

/** What the addon exports (binding.cc): the kernels plus a little build information. */
interface NativeAddon extends Omit<Kernels, "kind"> {
  /** Which SGEMM micro-kernel the build uses: "avx2+fma" or "generic". */
  readonly isa: string;
  readonly hardwareThreads: number;
}

let cached: { kernels: Kernels; isa: string } | null = null;
let loadError: string | null = null;

/** The native kernels, loaded once; null (with the reason remembered) when the addon does not load. */
function loadNative(): { kernels: Kernels; isa: string } | null {
  if (cached) return cached;
  if (loadError !== null) return null;
  try {
    const addon = require(NATIVE_ADDON_PATH) as NativeAddon;
    const names = [
      "threads",
      "setThreads",
      "matmul",
      "layerNormForward",
      "layerNormBackward",
      "attentionForward",
      "attentionBackward",
      "softmaxCrossEntropy",
      "stablemaxCrossEntropy",
      "activationForward",
      "activationBackward",
      "adamUpdate",
    ] as const;
    for (const name of names)
      if (typeof addon[name] !== "function") throw new Error(`the addon has no ${name}() (stale build?)`);
    const kernels: Kernels = {
      kind: "native",
      threads: addon.threads,
      setThreads: addon.setThreads,
      matmul: addon.matmul,
      layerNormForward: addon.layerNormForward,
      layerNormBackward: addon.layerNormBackward,
      attentionForward: addon.attentionForward,
      attentionBackward: addon.attentionBackward,
      softmaxCrossEntropy: addon.softmaxCrossEntropy,
      stablemaxCrossEntropy: addon.stablemaxCrossEntropy,
      activationForward: addon.activationForward,
      activationBackward: addon.activationBackward,
      adamUpdate: addon.adamUpdate,
    };
    cached = { kernels, isa: String(addon.isa) };
    return cached;
  } catch (err) {
    const code = (err as { code?: string }).code;
    loadError =
      code === "MODULE_NOT_FOUND"
        ? `${path.relative(process.cwd(), NATIVE_ADDON_PATH) || NATIVE_ADDON_PATH} not found`
        : errorLine(err);
    return null;
  }
}

/** Whether the native addon is built and loads (it is loaded, and cached, on the first call). */
export function nativeKernelsAvailable(): boolean {
  return loadNative() !== null;
}

/**
 * The kernels to use, and a one-line note saying which and why. "auto": native when the addon loads, else
 * TypeScript; "native": the addon or an Error saying how to build it; "typescript": always TypeScript. The
 * name is checked by engineChoices (engines/index.ts).
 */
export function loadKernels(
  choice: "auto" | "native" | "typescript" = "auto",
  threads?: number,
): { kernels: Kernels; note: string } {
  if (choice === "typescript") return { kernels: tsKernels, note: "TypeScript kernels (requested)" };
  const native = loadNative();
  if (native) {
    if (threads !== undefined) native.kernels.setThreads(threads);
    const n = native.kernels.threads();
    return { kernels: native.kernels, note: `native kernels (${native.isa}, ${n} thread${n === 1 ? "" : "s"})` };
  }
  if (choice === "native")
    throw new Error(
      `native kernels are not available (${loadError}); build them with \`npm run build:native\` (needs a C++17 compiler, make and python3)`,
    );
  return { kernels: tsKernels, note: `native kernels not built (${loadError}); using TypeScript kernels` };
}
