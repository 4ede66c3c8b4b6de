// Small real configurations and temp stores shared by the tests.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PAPER_TRANSFORMER } from "../src/model/config";
import { paperConfig, RunConfig } from "../src/training/config";
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
