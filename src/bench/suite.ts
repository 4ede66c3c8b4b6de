// The benchmark suite: every engine configuration and PyTorch, at batch 512 and full batch, with each
// engine's ratio to PyTorch at the same batch and thread count, and whether the fast engine meets its target.

import * as os from "node:os";
import { makeDataset } from "../data/dataset";
import { EngineChoice } from "../engines/index";
import type { KernelChoice } from "../engines/fast/kernels";
import { paperConfig, resolveBatchSize } from "../config/run-config";
import { benchmarkEngine, MsPerStep } from "./engine-timing";
import { measureFastBaseline } from "./fast-baseline";
import { benchmarkPack, openBenchGpu, paperPackCapacity } from "./pack-timing";
import { benchmarkTorch, findTorchPython, TorchPython } from "./torch";
import { errorLine, UserError } from "../util/errors";
import { formatAdapter, WebGpu } from "../engines/webgpu/device";

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

/** Runs trained at once, in run-steps per second: the fast engine on every core, webgpu packs. */
export interface ThroughputRow {
  /** e.g. "fast, native kernels, 2 workers × 1 thread", "webgpu, pack of 16 (…, hardware adapter)". */
  config: string;
  kind: "fast-cores" | "webgpu-pack";
  /** Runs training at once: the workers, or the pack's runs. */
  runs: number;
  batchSize: number;
  /** Median ms per step of a worker, or per pack step. */
  msPerStep: number | null;
  runStepsPerSecond: number | null;
  /** runStepsPerSecond / the fast engine's on every core. */
  ratio: number | null;
  /** Why there is no measurement. */
  skipped: string | null;
  failed: boolean;
}

export interface SuiteResult {
  model: string;
  seconds: number;
  rows: SuiteRow[];
  /** At batch 512: the fast engine on every core, then webgpu packs where an adapter exists. */
  throughput: ThroughputRow[];
  /** Facts about the measurement: the tfjs backend, torch's BLAS, the load average. */
  notes: string[];
  /** Whether fast (native, 2 threads) ≤ 0.5 × PyTorch (2 threads) at both batch sizes; null when unknown. */
  target: { met: boolean | null; ratios: Record<string, number | null>; text: string; fairBaseline: boolean | null };
}

const MODEL_LINE = "paper model (2 layers, width 128, 4 heads, x/y mod 97, 50% = 4,656 training equations)";
const TARGET_RATIO = 0.5;
const BATCHES = ["512", "full"] as const;

/** What the measurements found out about the engines they ran on. */
interface Findings {
  tfjsBackend: string | null;
  torchInfo: { version: string; blas: string } | null;
}

interface EngineRun {
  row: SuiteRow;
  engine: EngineChoice;
  kernels?: KernelChoice;
  threads?: number;
}

function emptyRow(
  batch: SuiteRow["batch"],
  batchSize: number,
  kind: SuiteRow["kind"],
  config: string,
  threads: number,
): SuiteRow {
  return {
    batch,
    batchSize,
    config,
    kind,
    threads,
    msPerStep: null,
    steps: null,
    skipped: null,
    failed: false,
    ratio: null,
    baselineThreads: null,
  };
}

function engineRuns(batch: SuiteRow["batch"], batchSize: number): EngineRun[] {
  const row = (kind: SuiteRow["kind"], config: string, threads: number) =>
    emptyRow(batch, batchSize, kind, config, threads);
  return [
    { row: row("fast-native", "fast, native kernels, 1 thread", 1), engine: "fast", kernels: "native", threads: 1 },
    { row: row("fast-native", "fast, native kernels, 2 threads", 2), engine: "fast", kernels: "native", threads: 2 },
    { row: row("fast-typescript", "fast, TypeScript kernels", 1), engine: "fast", kernels: "typescript" },
    { row: row("tfjs", "tfjs", 1), engine: "tfjs" },
  ];
}

/** Times one engine configuration into its row; missing native kernels skip the row, anything else fails it. */
async function measureEngine(run: EngineRun, seconds: number, findings: Findings): Promise<void> {
  const r = run.row;
  try {
    const res = await benchmarkEngine({
      engine: run.engine,
      kernels: run.kernels,
      threads: run.threads,
      batchSize: r.batch === "full" ? "full" : 512,
      steps: "auto",
      warmup: 2,
      seconds,
    });
    if (run.kernels === "native" && !res.backend.startsWith("native"))
      throw new Error(`asked for native kernels, got ${res.backend}`);
    if (run.engine === "tfjs") {
      findings.tfjsBackend = res.backend;
      r.config = `tfjs on ${res.backend} (auto backend)`;
      // tfjs-node and tfjs-node-gpu use more than one thread; wasm and cpu run one in Node
      if (res.backend === "node" || res.backend === "node-gpu") r.threads = os.cpus().length;
    }
    if (run.kernels === "native") r.config = `fast, native kernels, ${res.backend.replace(/^native, /, "")}`;
    r.msPerStep = res.msPerStep;
    r.steps = res.steps;
  } catch (err) {
    const msg = errorLine(err);
    if (run.kernels === "native" && /native kernels are not available|not found|addon/i.test(msg))
      r.skipped = `skipped: ${msg}`;
    else {
      r.skipped = `failed: ${msg}`;
      r.failed = true;
    }
  }
}

/** Times PyTorch into its row, or skips it when no Python has torch. */
function measureTorch(r: SuiteRow, torch: TorchPython, seconds: number, findings: Findings): void {
  if (torch.python === null) {
    r.skipped = `skipped: ${torch.reason}`;
    return;
  }
  try {
    const res = benchmarkTorch({
      batchSize: r.batch === "full" ? "full" : 512,
      threads: r.threads,
      steps: "auto",
      warmup: 2,
      seconds,
    });
    r.msPerStep = res.msPerStep;
    r.steps = res.steps;
    findings.torchInfo = { version: res.torch, blas: res.blas };
  } catch (err) {
    r.skipped = `failed: ${errorLine(err)}`;
    r.failed = true;
  }
}

/** Each engine against PyTorch at the same thread count and batch (1-thread engines against 1 thread). */
function addRatios(rows: SuiteRow[]): void {
  for (const r of rows) {
    if (r.kind === "torch" || !r.msPerStep) continue;
    const threads = Math.min(r.threads, 2);
    const base = rows.find((b) => b.kind === "torch" && b.batch === r.batch && b.threads === threads && b.msPerStep);
    r.baselineThreads = threads;
    if (base?.msPerStep) r.ratio = r.msPerStep.median / base.msPerStep.median;
  }
}

const onReferenceBlas = (findings: Findings) =>
  Boolean(findings.torchInfo && /reference|netlib/i.test(findings.torchInfo.blas));

function suiteNotes(rows: SuiteRow[], findings: Findings, torch: TorchPython, load0: number): string[] {
  const notes: string[] = [];
  const { tfjsBackend, torchInfo } = findings;
  if (tfjsBackend)
    notes.push(
      `tfjs chose the ${tfjsBackend} backend${tfjsBackend === "wasm" || tfjsBackend === "cpu" ? " (one thread in Node)" : ""}.`,
    );
  if (torchInfo) {
    notes.push(`PyTorch ${torchInfo.version} (${torch.python}) runs its matrix products on ${torchInfo.blas}.`);
    if (onReferenceBlas(findings)) {
      notes.push(
        "WARNING: the reference BLAS is about 10× slower than OpenBLAS, so these PyTorch times are not a fair baseline; " +
          "install Debian's libopenblas0-pthread (or point LD_LIBRARY_PATH at its openblas-pthread directory) and run again.",
      );
    }
  }
  const load1 = os.loadavg()[0];
  notes.push(
    `load average (1 min) ${load0.toFixed(2)} before, ${load1.toFixed(2)} after, on ${os.cpus().length} CPUs: other work on the machine slows every row.`,
  );
  for (const r of rows) if (r.skipped) notes.push(`batch ${r.batch}, ${r.config}: ${r.skipped}`);
  return notes;
}

/** Whether fast (native, 2 threads) ≤ TARGET_RATIO × PyTorch (2 threads) at both batch sizes, and why. */
function targetVerdict(rows: SuiteRow[], findings: Findings): SuiteResult["target"] {
  const fairBaseline = !onReferenceBlas(findings);
  const ratios: Record<string, number | null> = {};
  const missing: string[] = [];
  for (const batch of BATCHES) {
    const fast = rows.find((r) => r.batch === batch && r.kind === "fast-native" && r.threads === 2);
    const base = rows.find((r) => r.batch === batch && r.kind === "torch" && r.threads === 2);
    ratios[batch] = fast?.msPerStep && base?.msPerStep ? fast.msPerStep.median / base.msPerStep.median : null;
    if (ratios[batch] === null)
      missing.push(
        !fast?.msPerStep ? `fast native 2 threads at batch ${batch}` : `PyTorch 2 threads at batch ${batch}`,
      );
  }
  const fairness = findings.torchInfo ? fairBaseline : null;
  if (missing.length) {
    const text = `target fast (native, 2 threads) ≤ ${TARGET_RATIO} × PyTorch (2 threads): cannot tell, no measurement of ${missing.join(" and ")}.`;
    return { met: null, ratios, text, fairBaseline: fairness };
  }
  const fmt = (b: string) => `${b === "full" ? "full batch" : `batch ${b}`} ${ratios[b]!.toFixed(2)}×`;
  const met = Object.values(ratios).every((v) => v !== null && v <= TARGET_RATIO);
  const over = Object.entries(ratios)
    .filter(([, v]) => v! > TARGET_RATIO)
    .map(([b]) => (b === "full" ? "full batch" : `batch ${b}`));
  let text =
    `target fast (native, 2 threads) ≤ ${TARGET_RATIO} × PyTorch (2 threads) at both batch sizes: ` +
    (met
      ? `MET (${fmt("512")}, ${fmt("full")}).`
      : `NOT MET (${fmt("512")}, ${fmt("full")}): ${over.join(" and ")} over ${TARGET_RATIO}×.`);
  if (!fairBaseline) text += " BUT PyTorch ran on the reference BLAS, not a fair baseline: see the warning above.";
  return { met, ratios, text, fairBaseline: fairness };
}

/** Pack sizes timed by bench --all: a software adapter (the CPU) gets small packs, as it is slow. */
const PACK_SIZES = { hardware: [1, 16, 32, 64], software: [1, 4] };

function throughputRow(kind: ThroughputRow["kind"], config: string, runs: number, batchSize: number): ThroughputRow {
  const row = { config, kind, runs, batchSize, msPerStep: null, runStepsPerSecond: null, ratio: null };
  return { ...row, skipped: null, failed: false };
}

/**
 * The throughput rows at batch 512: the fast engine with one single-thread worker per core at once (the
 * baseline), then webgpu packs of the paper's model, each against that baseline. Without the `webgpu` package
 * or an adapter there are no webgpu rows, and `notes` says why in one line.
 */
export async function measureThroughput(
  seconds: number,
  log: (line: string) => void,
  notes: string[],
): Promise<ThroughputRow[]> {
  const batchSize = resolveBatchSize(512, makeDataset(paperConfig().data).train.size);
  const timing = { batchSize, steps: "auto" as const, warmup: 2, seconds };
  const cores = os.cpus().length;
  const fast = throughputRow("fast-cores", `fast, native kernels, ${cores} workers × 1 thread`, cores, batchSize);
  log(`throughput: ${fast.config} …`);
  try {
    const base = await measureFastBaseline(timing);
    fast.runStepsPerSecond = base.runStepsPerSecond;
    fast.msPerStep = base.perWorker.reduce((sum, r) => sum + r.msPerStep.median, 0) / base.workers;
    fast.ratio = 1;
  } catch (err) {
    fast.skipped = `failed: ${errorLine(err)}`;
    fast.failed = !/native kernels are not available/i.test(fast.skipped);
  }
  const rows = [fast];
  let webgpu: WebGpu;
  try {
    webgpu = await openBenchGpu();
  } catch (err) {
    notes.push(`webgpu: no throughput rows: ${errorLine(err)}`);
    return rows;
  }
  try {
    const software = webgpu.adapter.software;
    const adapter = formatAdapter(webgpu.adapter);
    const capacity = paperPackCapacity(webgpu, batchSize).runs;
    const sizes = PACK_SIZES[software ? "software" : "hardware"].filter((r) => r <= capacity);
    if (software) notes.push(`webgpu runs on a software adapter (the CPU): packs of ${sizes.join(" and ")} only.`);
    for (const runs of sizes) {
      const row = throughputRow(
        "webgpu-pack",
        `webgpu, pack of ${runs}${software ? " (software adapter)" : ""}`,
        runs,
        batchSize,
      );
      log(`throughput: ${row.config} …`);
      try {
        const res = await benchmarkPack(webgpu, { ...timing, runs });
        row.msPerStep = res.msPerPackStep.median;
        row.runStepsPerSecond = res.runStepsPerSecond;
        if (fast.runStepsPerSecond) row.ratio = res.runStepsPerSecond / fast.runStepsPerSecond;
      } catch (err) {
        // a pack the device has no memory for is a finding, not a failure
        row.failed = !(err instanceof UserError);
        row.skipped = `${row.failed ? "failed" : "skipped"}: ${errorLine(err)}`;
      }
      rows.push(row);
    }
    notes.push(
      `webgpu adapter: ${adapter}; its buffer limits allow ${capacity} runs of the paper model at batch ${batchSize}.`,
    );
  } finally {
    webgpu.device.destroy();
  }
  return rows;
}

/** Measures every configuration at batch 512 and full batch, in this process (engines) and in Python (PyTorch). */
export async function runSuite(opts: { seconds: number; log?: (line: string) => void }): Promise<SuiteResult> {
  const log = opts.log ?? (() => {});
  const seconds = opts.seconds;
  const rows: SuiteRow[] = [];
  const trainSize = makeDataset(paperConfig().data).train.size;
  const load0 = os.loadavg()[0];
  const findings: Findings = { tfjsBackend: null, torchInfo: null };
  const torch = findTorchPython();

  for (const batch of BATCHES) {
    const batchSize = batch === "full" ? trainSize : resolveBatchSize(512, trainSize);
    for (const run of engineRuns(batch, batchSize)) {
      log(`batch ${batch}: ${run.row.config} …`);
      await measureEngine(run, seconds, findings);
      rows.push(run.row);
    }
    for (const threads of [1, 2]) {
      const r = emptyRow(
        batch,
        batchSize,
        "torch",
        `PyTorch${torch.python ? " " + torch.torch : ""}, ${threads} thread${threads > 1 ? "s" : ""}`,
        threads,
      );
      log(`batch ${batch}: ${r.config} …`);
      measureTorch(r, torch, seconds, findings);
      rows.push(r);
    }
  }
  addRatios(rows);
  const notes = suiteNotes(rows, findings, torch, load0);
  const throughput = await measureThroughput(seconds, log, notes);
  for (const r of throughput) if (r.skipped) notes.push(`throughput, ${r.config}: ${r.skipped}`);
  return { model: MODEL_LINE, seconds, rows, throughput, notes, target: targetVerdict(rows, findings) };
}
