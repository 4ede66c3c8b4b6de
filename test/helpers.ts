// Small real configurations and temp stores shared by the tests.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Batch } from "../src/engines/engine";
import { ModelConfig, ModelDims, PAPER_TRANSFORMER, TransformerConfig } from "../src/model/config";
import { Rng } from "../src/util/rng";
import { paperConfig, RunConfig } from "../src/config/run-config";
import { MetricsRow } from "../src/store/run-store";

export const REPO_ROOT = path.resolve(__dirname, "..", "..");
export const GROK_BIN = path.join(REPO_ROOT, "bin", "grok.js");

const tempDirs: string[] = [];
process.on("exit", () => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory for a run store, removed when the test process exits. */
export function tempStore(label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `grok-${label}-`));
  tempDirs.push(dir);
  return dir;
}

/** tempStore inside the repository (under dist/, which git ignores): messages print its paths relative. */
export function tempStoreInRepo(label: string): string {
  const dir = fs.mkdtempSync(path.join(REPO_ROOT, "dist", `grok-${label}-`));
  tempDirs.push(dir);
  return dir;
}

/** A real table (x+y mod 11), a 1-layer width-16 transformer, a few dozen steps: seconds to train. */
export function tinyConfig(over: { steps?: number; batchSize?: RunConfig["training"]["batchSize"] } = {}): RunConfig {
  const cfg = paperConfig();
  cfg.data = { op: "add", modulus: 11, trainFraction: 0.5, splitSeed: 1, outliers: 0 };
  cfg.model = { ...PAPER_TRANSFORMER, layers: 1, width: 16, heads: 2 };
  cfg.training = { ...cfg.training, seed: 3, steps: over.steps ?? 30, batchSize: over.batchSize ?? "full" };
  return cfg;
}

/** Metrics rows without the wall-clock column, which differs between any two runs. */
export function withoutTime(rows: MetricsRow[]): MetricsRow[] {
  return rows.map(({ wall_seconds: _unused, ...rest }) => rest);
}

/**
 * Rewrites a run's lock as another host's (process 4242 on another-host), whole as a renewal writes it: what
 * a takeover after this process's lease expired leaves.
 */
export function takeOverLock(runDir: string): void {
  const lockPath = path.join(runDir, "lock");
  const now = new Date().toISOString();
  const other = { pid: 4242, host: "another-host", startedAt: now, heartbeatAt: now, leaseSeconds: 60 };
  fs.writeFileSync(lockPath + ".tmp", JSON.stringify(other));
  fs.renameSync(lockPath + ".tmp", lockPath);
}

/** Every file under a directory with its bytes (base64), to check that nothing more was written there. */
export function filesUnder(dir: string): Map<string, string> {
  const files = fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
  return new Map(files.sort().map((f) => [path.relative(dir, f), fs.readFileSync(f).toString("base64")]));
}

export const SMALL_DIMS: ModelDims = { vocabSize: 13, numSymbols: 11, seqLen: 4 };

const small = (over: Partial<TransformerConfig>): ModelConfig => ({
  ...PAPER_TRANSFORMER,
  layers: 2,
  width: 16,
  heads: 4,
  ...over,
});

/** Model configurations that together cover every option, for the engine checks. */
export const CONFIGS: [string, ModelConfig][] = [
  ["post-LN, sinusoidal, relu (openai/grok)", small({})],
  ["pre-LN, learned positions, gelu", small({ norm: "pre", positions: "learned", activation: "gelu" })],
  ["post-LN, learned positions, 1 layer, ffn ratio 2", small({ layers: 1, positions: "learned", ffnRatio: 2 })],
  ["pre-LN, sinusoidal, 3 layers, 2 heads", small({ norm: "pre", layers: 3, heads: 2 })],
  ["mlp relu", { kind: "mlp", width: 8, hidden: 24, activation: "relu", dropout: 0 }],
  ["mlp gelu", { kind: "mlp", width: 8, hidden: 24, activation: "gelu", dropout: 0 }],
];

/** Random equations x ∘ y = with random answers; with few symbols, many examples share their x. */
export function randomBatch(dims: ModelDims, size: number, seed: number): Batch {
  const rng = new Rng(seed);
  const inputs = new Int32Array(size * dims.seqLen);
  const targets = new Int32Array(size);
  for (let b = 0; b < size; b++) {
    inputs.set(
      [rng.int(dims.numSymbols), dims.numSymbols, rng.int(dims.numSymbols), dims.numSymbols + 1],
      b * dims.seqLen,
    );
    targets[b] = rng.int(dims.numSymbols);
  }
  return { size, inputs, targets };
}
