// The PyTorch baseline: the paper's model and step in bench/torch_reference.py, timed in a child process.

import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { MsPerStep } from "./engine-timing";

/** The PyTorch version of the paper's model and step, from this file's compiled place (dist/src/bench/). */
export const TORCH_REFERENCE_SCRIPT = path.resolve(__dirname, "../../../bench/torch_reference.py");

export type TorchPython = { python: string; torch: string } | { python: null; reason: string };

let torchPython: TorchPython | null = null;

/**
 * A Python that imports torch: $GROK_PYTHON, else `python3` on the PATH, else /usr/bin/python3 (Debian's
 * python3-torch installs there, which a pyenv or venv `python3` on the PATH does not see).
 */
export function findTorchPython(): TorchPython {
  if (torchPython) return torchPython;
  const candidates = [
    ...new Set([process.env.GROK_PYTHON, "python3", "/usr/bin/python3"].filter((c): c is string => !!c)),
  ];
  const tried: string[] = [];
  for (const python of candidates) {
    const r = spawnSync(python, ["-c", "import torch; print(torch.__version__)"], {
      encoding: "utf8",
      timeout: 120_000,
    });
    if (r.status === 0) return (torchPython = { python, torch: r.stdout.trim() });
    const why = r.error
      ? ((r.error as NodeJS.ErrnoException).code ?? r.error.message)
      : (r.stderr.trim().split("\n").pop() ?? `exit ${r.status}`);
    tried.push(`${python}: ${why}`);
  }
  return (torchPython = { python: null, reason: `no Python with torch (${tried.join("; ")})` });
}

export interface TorchBenchResult {
  msPerStep: MsPerStep;
  threads: number;
  torch: string;
  /** The BLAS torch runs on ("OpenBLAS", "reference BLAS (netlib)", …): the matrix products are most of a step. */
  blas: string;
  batchSize: number;
  steps: number;
}

/** Times the PyTorch step in a child process (bench/torch_reference.py time). */
export function benchmarkTorch(opts: {
  batchSize: number | "full";
  threads: number;
  steps: number | "auto";
  warmup: number;
  seconds?: number;
}): TorchBenchResult {
  const found = findTorchPython();
  if (found.python === null) throw new Error(found.reason);
  if (!fs.existsSync(TORCH_REFERENCE_SCRIPT)) throw new Error(`${TORCH_REFERENCE_SCRIPT} is missing`);
  const args = [
    TORCH_REFERENCE_SCRIPT,
    "time",
    "--batch-size",
    String(opts.batchSize),
    "--threads",
    String(opts.threads),
    "--steps",
    String(opts.steps),
    "--warmup",
    String(opts.warmup),
    "--seconds",
    String(opts.seconds ?? 8),
  ];
  const r = spawnSync(found.python, args, { encoding: "utf8", timeout: 30 * 60_000, maxBuffer: 16 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0)
    throw new Error(
      `torch_reference.py time failed (exit ${r.status}): ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`,
    );
  const line = r.stdout.trim().split("\n").pop() ?? "";
  return JSON.parse(line) as TorchBenchResult;
}
