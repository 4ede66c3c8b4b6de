// `grok bench`: milliseconds per training step of the paper's model (x/y mod 97, half the table) on an engine.
// `grok bench --all`: every engine and PyTorch (bench/torch_reference.py), at batch 512 and full batch, in one
// table with each engine's ratio to PyTorch.

import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { encodeInputs, makeDataset, modelDims } from "../data/dataset";
import { createEngine, EngineChoice } from "../engines/index";
import { TfjsBackendChoice } from "../engines/tfjs/backend";
import { initParams } from "../model/config";
import { ConfigError, paperConfig, resolveBatchSize } from "../config/run-config";
import { BatchSampler } from "../training/batches";
import { errorLine } from "../util/errors";

import type { KernelChoice } from "../engines/fast/kernels";
import { ENGINE_FLAG_OPTIONS, engineFlags, intFlag, parseFlags } from "./flags";

export interface MsPerStep {
  mean: number;
  median: number;
  min: number;
}

export interface BenchResult {
  engine: string;
  backend: string;
  batchSize: number;
  steps: number;
  warmup: number;
  msPerStep: MsPerStep;
}

/**
 * Whether to time another step when timing for about `seconds`: until the budget is spent, and at least 3
 * steps, or 2 when the first one took over half the budget.
 */
export function wantAnotherStep(timesMs: readonly number[], seconds: number): boolean {
  const budgetMs = seconds * 1000;
  const spent = timesMs.reduce((a, b) => a + b, 0);
  const minSteps = timesMs.length > 0 && timesMs[0] > budgetMs / 2 ? 2 : 3;
  return timesMs.length < minSteps || (spent < budgetMs && timesMs.length < 10000);
}

function summarize(times: number[]): MsPerStep {
  const sorted = [...times].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { mean: sorted.reduce((a, b) => a + b, 0) / sorted.length, median, min: sorted[0] };
}

/**
 * Times training steps of the paper's model after untimed warmup steps. `steps: "auto"` times steps for about
 * `seconds` (default 8; see wantAnotherStep); then `warmup` is at most 2 and at least 1, and a first step that
 * takes over half the budget is the only warmup step.
 */
export async function benchmarkEngine(opts: {
  engine?: EngineChoice;
  backend?: TfjsBackendChoice;
  kernels?: KernelChoice;
  threads?: number;
  batchSize: number | "paper" | "full";
  steps: number | "auto";
  warmup: number;
  seconds?: number;
}): Promise<BenchResult> {
  const cfg = paperConfig();
  const ds = makeDataset(cfg.data);
  const dims = modelDims(ds);
  const { engine } = await createEngine({ engine: opts.engine, backend: opts.backend, kernels: opts.kernels, threads: opts.threads });
  try {
    engine.initialize({ model: cfg.model, dims, optimizer: cfg.optimizer, seed: 0 }, initParams(cfg.model, dims, 0));
    const train = { size: ds.train.size, inputs: encodeInputs(ds, ds.train), targets: ds.train.answer };
    const batchSize = resolveBatchSize(opts.batchSize, train.size);
    const sampler = new BatchSampler(train, batchSize, 0, dims.seqLen);
    const seconds = opts.seconds ?? 8;
    let step = 0;
    const timeStep = (): number => {
      const batch = sampler.at(step);
      const t0 = process.hrtime.bigint();
      engine.trainStep(batch, step);
      step++;
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };

    let warmup = 0;
    const times: number[] = [];
    if (opts.steps === "auto") {
      const first = timeStep();
      warmup = 1;
      if (opts.warmup >= 2 && first <= (seconds * 1000) / 2) {
        timeStep();
        warmup = 2;
      }
      while (wantAnotherStep(times, seconds)) times.push(timeStep());
    } else {
      for (; warmup < opts.warmup; warmup++) timeStep();
      for (let i = 0; i < opts.steps; i++) times.push(timeStep());
    }
    const steps = times.length;
    return { engine: engine.name, backend: engine.backend, batchSize, steps, warmup, msPerStep: summarize(times) };
  } finally {
    engine.dispose();
  }
}

// ------------------------------------------------------------------------------------------- PyTorch

/** The PyTorch version of the paper's model and step, from this file's compiled place (dist/src/cli/). */
export const TORCH_REFERENCE_SCRIPT = path.resolve(__dirname, "../../../bench/torch_reference.py");

export type TorchPython = { python: string; torch: string } | { python: null; reason: string };

let torchPython: TorchPython | null = null;

/**
 * A Python that imports torch: $GROK_PYTHON, else `python3` on the PATH, else /usr/bin/python3 (Debian's
 * python3-torch installs there, which a pyenv or venv `python3` on the PATH does not see).
 */
export function findTorchPython(): TorchPython {
  if (torchPython) return torchPython;
  const candidates = [...new Set([process.env.GROK_PYTHON, "python3", "/usr/bin/python3"].filter((c): c is string => !!c))];
  const tried: string[] = [];
  for (const python of candidates) {
    const r = spawnSync(python, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8", timeout: 120_000 });
    if (r.status === 0) return (torchPython = { python, torch: r.stdout.trim() });
    const why = r.error ? (r.error as NodeJS.ErrnoException).code ?? r.error.message : (r.stderr.trim().split("\n").pop() ?? `exit ${r.status}`);
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
    "--batch-size", String(opts.batchSize),
    "--threads", String(opts.threads),
    "--steps", String(opts.steps),
    "--warmup", String(opts.warmup),
    "--seconds", String(opts.seconds ?? 8),
  ];
  const r = spawnSync(found.python, args, { encoding: "utf8", timeout: 30 * 60_000, maxBuffer: 16 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`torch_reference.py time failed (exit ${r.status}): ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  const line = r.stdout.trim().split("\n").pop() ?? "";
  return JSON.parse(line) as TorchBenchResult;
}

// ------------------------------------------------------------------------------------------ the suite

export interface SuiteRow {
  /** "512" or "full" as asked; batchSize is the resolved size. */
  batch: "512" | "full";
  batchSize: number;
  /** e.g. "fast, native kernels, 2 threads", "PyTorch 1.13, 1 thread". */
  config: string;
  kind: "fast-native" | "fast-typescript" | "tfjs" | "torch";
  /** Threads of the computation (tfjs on wasm, TypeScript kernels: 1). */
  threads: number;
  msPerStep: MsPerStep | null;
  steps: number | null;
  /** Why there is no measurement (not built, not installed, failed). */
  skipped: string | null;
  failed: boolean;
  /** msPerStep.median / the PyTorch median at `baselineThreads` threads, same batch. */
  ratio: number | null;
  baselineThreads: number | null;
}

export interface SuiteResult {
  model: string;
  seconds: number;
  rows: SuiteRow[];
  /** Facts about the measurement: the tfjs backend, torch's BLAS, the load average. */
  notes: string[];
  /** Whether fast (native, 2 threads) ≤ 0.5 × PyTorch (2 threads) at both batch sizes; null when unknown. */
  target: { met: boolean | null; ratios: Record<string, number | null>; text: string; fairBaseline: boolean | null };
}

const MODEL_LINE = "paper model (2 layers, width 128, 4 heads, x/y mod 97, 50% = 4,656 training equations)";
const TARGET_RATIO = 0.5;

/** Measures every configuration at batch 512 and full batch, in this process (engines) and in Python (PyTorch). */
export async function runSuite(opts: { seconds: number; log?: (line: string) => void }): Promise<SuiteResult> {
  const log = opts.log ?? (() => {});
  const seconds = opts.seconds;
  const rows: SuiteRow[] = [];
  const notes: string[] = [];
  const trainSize = makeDataset(paperConfig().data).train.size;
  const load0 = os.loadavg()[0];
  let tfjsBackend: string | null = null;
  let torchInfo: { version: string; blas: string } | null = null;
  const torch = findTorchPython();

  for (const batch of ["512", "full"] as const) {
    const batchSize = batch === "full" ? trainSize : resolveBatchSize(512, trainSize);
    const row = (kind: SuiteRow["kind"], config: string, threads: number): SuiteRow => ({
      batch, batchSize, config, kind, threads, msPerStep: null, steps: null, skipped: null, failed: false, ratio: null, baselineThreads: null,
    });
    const engineRuns: Array<{ r: SuiteRow; kernels?: KernelChoice; engine: EngineChoice; threads?: number }> = [
      { r: row("fast-native", "fast, native kernels, 1 thread", 1), engine: "fast", kernels: "native", threads: 1 },
      { r: row("fast-native", "fast, native kernels, 2 threads", 2), engine: "fast", kernels: "native", threads: 2 },
      { r: row("fast-typescript", "fast, TypeScript kernels", 1), engine: "fast", kernels: "typescript" },
      { r: row("tfjs", "tfjs", 1), engine: "tfjs" },
    ];
    for (const run of engineRuns) {
      log(`batch ${batch}: ${run.r.config} …`);
      try {
        const res = await benchmarkEngine({
          engine: run.engine, kernels: run.kernels, threads: run.threads, batchSize: batch === "full" ? "full" : 512, steps: "auto", warmup: 2, seconds,
        });
        if (run.kernels === "native" && !res.backend.startsWith("native")) throw new Error(`asked for native kernels, got ${res.backend}`);
        if (run.engine === "tfjs") {
          tfjsBackend = res.backend;
          run.r.config = `tfjs on ${res.backend} (auto backend)`;
          // tfjs-node and tfjs-node-gpu use more than one thread; wasm and cpu run one in Node
          if (res.backend === "node" || res.backend === "node-gpu") run.r.threads = os.cpus().length;
        }
        if (run.kernels === "native") run.r.config = `fast, native kernels, ${res.backend.replace(/^native, /, "")}`;
        run.r.msPerStep = res.msPerStep;
        run.r.steps = res.steps;
      } catch (err) {
        const msg = errorLine(err);
        if (run.kernels === "native" && /native kernels are not available|not found|addon/i.test(msg)) run.r.skipped = `skipped: ${msg}`;
        else {
          run.r.skipped = `failed: ${msg}`;
          run.r.failed = true;
        }
      }
      rows.push(run.r);
    }
    for (const threads of [1, 2]) {
      const r = row("torch", `PyTorch${torch.python ? " " + torch.torch : ""}, ${threads} thread${threads > 1 ? "s" : ""}`, threads);
      log(`batch ${batch}: ${r.config} …`);
      if (torch.python === null) r.skipped = `skipped: ${torch.reason}`;
      else {
        try {
          const res = benchmarkTorch({ batchSize: batch === "full" ? "full" : 512, threads, steps: "auto", warmup: 2, seconds });
          r.msPerStep = res.msPerStep;
          r.steps = res.steps;
          torchInfo = { version: res.torch, blas: res.blas };
        } catch (err) {
          r.skipped = `failed: ${errorLine(err)}`;
          r.failed = true;
        }
      }
      rows.push(r);
    }
  }

  // ratios: each engine against PyTorch at the same thread count and batch (1-thread engines against 1 thread)
  for (const r of rows) {
    if (r.kind === "torch" || !r.msPerStep) continue;
    const threads = Math.min(r.threads, 2);
    const base = rows.find((b) => b.kind === "torch" && b.batch === r.batch && b.threads === threads && b.msPerStep);
    r.baselineThreads = threads;
    if (base?.msPerStep) r.ratio = r.msPerStep.median / base.msPerStep.median;
  }

  if (tfjsBackend) notes.push(`tfjs chose the ${tfjsBackend} backend${tfjsBackend === "wasm" || tfjsBackend === "cpu" ? " (one thread in Node)" : ""}.`);
  if (torchInfo) {
    notes.push(`PyTorch ${torchInfo.version} (${torch.python}) runs its matrix products on ${torchInfo.blas}.`);
    if (/reference|netlib/i.test(torchInfo.blas)) {
      notes.push(
        "WARNING: the reference BLAS is about 10× slower than OpenBLAS, so these PyTorch times are not a fair baseline; " +
          "install Debian's libopenblas0-pthread (or point LD_LIBRARY_PATH at its openblas-pthread directory) and run again.",
      );
    }
  }
  const load1 = os.loadavg()[0];
  notes.push(`load average (1 min) ${load0.toFixed(2)} before, ${load1.toFixed(2)} after, on ${os.cpus().length} CPUs: other work on the machine slows every row.`);
  for (const r of rows) if (r.skipped) notes.push(`batch ${r.batch}, ${r.config}: ${r.skipped}`);

  const fairBaseline = !(torchInfo && /reference|netlib/i.test(torchInfo.blas));
  const ratios: Record<string, number | null> = {};
  const missing: string[] = [];
  for (const batch of ["512", "full"] as const) {
    const fast = rows.find((r) => r.batch === batch && r.kind === "fast-native" && r.threads === 2);
    const base = rows.find((r) => r.batch === batch && r.kind === "torch" && r.threads === 2);
    ratios[batch] = fast?.msPerStep && base?.msPerStep ? fast.msPerStep.median / base.msPerStep.median : null;
    if (ratios[batch] === null) missing.push(!fast?.msPerStep ? `fast native 2 threads at batch ${batch}` : `PyTorch 2 threads at batch ${batch}`);
  }
  const fmt = (b: string) => `${b === "full" ? "full batch" : `batch ${b}`} ${ratios[b]!.toFixed(2)}×`;
  let met: boolean | null;
  let text: string;
  if (missing.length) {
    met = null;
    text = `target fast (native, 2 threads) ≤ ${TARGET_RATIO} × PyTorch (2 threads): cannot tell, no measurement of ${missing.join(" and ")}.`;
  } else {
    met = Object.values(ratios).every((v) => v !== null && v <= TARGET_RATIO);
    const over = Object.entries(ratios).filter(([, v]) => v! > TARGET_RATIO).map(([b]) => (b === "full" ? "full batch" : `batch ${b}`));
    text =
      `target fast (native, 2 threads) ≤ ${TARGET_RATIO} × PyTorch (2 threads) at both batch sizes: ` +
      (met ? `MET (${fmt("512")}, ${fmt("full")}).` : `NOT MET (${fmt("512")}, ${fmt("full")}): ${over.join(" and ")} over ${TARGET_RATIO}×.`);
    if (!fairBaseline) text += " BUT PyTorch ran on the reference BLAS, not a fair baseline: see the warning above.";
  }
  return { model: MODEL_LINE, seconds, rows, notes, target: { met, ratios, text, fairBaseline: torchInfo ? fairBaseline : null } };
}

export function formatSuite(s: SuiteResult): string {
  const lines: string[] = [];
  lines.push(`${s.model}: one training step (forward, backward, AdamW), median ms over ~${s.seconds} s per row`);
  lines.push("ratio: ms / PyTorch's ms at the same batch and thread count (1-thread engines against PyTorch 1 thread)");
  lines.push("");
  const header = ["batch", "configuration", "ms/step", "steps", "vs PyTorch"];
  const body = s.rows.map((r) => [
    r.batch === "full" ? `full (${r.batchSize})` : r.batch,
    r.config,
    r.msPerStep ? r.msPerStep.median.toFixed(1) : r.failed ? "failed" : "skipped",
    r.steps === null ? "" : String(r.steps),
    r.kind === "torch" ? "(baseline)" : r.ratio === null ? "–" : `${r.ratio.toFixed(2)}× (${r.baselineThreads} thr)`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const right = [false, false, true, true, false];
  const fmt = (cells: string[]) => cells.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ").trimEnd();
  lines.push(fmt(header));
  lines.push(widths.map((w) => "-".repeat(w)).join("  "));
  let prev = "";
  for (let i = 0; i < body.length; i++) {
    if (prev && s.rows[i].batch !== prev) lines.push("");
    prev = s.rows[i].batch;
    lines.push(fmt(body[i]));
  }
  lines.push("");
  for (const n of s.notes) lines.push(`- ${n}`);
  lines.push("");
  lines.push(s.target.text);
  return lines.join("\n") + "\n";
}

// -------------------------------------------------------------------------------------------- the CLI

export async function runBenchmark(args: string[]): Promise<number> {
  const { values } = parseFlags(
    args,
    {
      all: { type: "boolean" },
      seconds: { type: "string" },
      "batch-size": { type: "string" },
      steps: { type: "string" },
      warmup: { type: "string" },
      ...ENGINE_FLAG_OPTIONS,
      json: { type: "boolean" },
    },
    0,
  );
  const int = (name: string, fallback: number, min: number) => intFlag(values, name, min) ?? fallback;
  const seconds = values.seconds === undefined ? 8 : Number(values.seconds);
  if (!(seconds > 0 && Number.isFinite(seconds))) throw new ConfigError(`--seconds needs a positive number (got "${values.seconds}")`);

  if (values.all) {
    const single = (["batch-size", "steps", "warmup", "engine", "backend", "kernels", "threads"] as const).filter((k) => values[k] !== undefined);
    if (single.length) throw new ConfigError(`--all measures a fixed set of configurations; drop ${single.map((k) => `--${k}`).join(", ")}`);
    const suite = await runSuite({ seconds, log: (line) => process.stderr.write(`${line}\n`) });
    process.stdout.write(values.json ? JSON.stringify(suite, null, 2) + "\n" : formatSuite(suite));
    return suite.rows.some((r) => r.failed) ? 1 : 0;
  }

  const rawBatch = values["batch-size"] ?? "512";
  const batchSize = rawBatch === "full" || rawBatch === "paper" ? rawBatch : int("batch-size", 512, 1);
  const { engine, backend, kernels } = engineFlags(values);
  const steps = values.steps === "auto" ? "auto" : int("steps", 10, 1);
  const result = await benchmarkEngine({
    engine,
    backend,
    kernels,
    threads: intFlag(values, "threads", 1),
    batchSize,
    steps,
    warmup: int("warmup", 2, 0),
    seconds,
  });
  if (values.json) process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  else {
    const m = result.msPerStep;
    process.stdout.write(
      `paper model (2 layers, width 128, x/y mod 97, 50%), batch ${result.batchSize}, engine ${result.engine} on ${result.backend}: ` +
        `${m.mean.toFixed(1)} ms/step mean, ${m.median.toFixed(1)} median, ${m.min.toFixed(1)} min over ${result.steps} steps\n`,
    );
  }
  return 0;
}
