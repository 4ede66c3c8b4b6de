// `grok bench`: milliseconds per training step of the paper's model (x/y mod 97, half the table) on an engine.
// `grok bench --engine webgpu --pack R`: R runs of it trained together, ms per pack step and run-steps per second.
// `grok bench --all`: the fast and tfjs engines and PyTorch (bench/torch_reference.py), at batch 512 and full batch, in one
// table with each engine's ratio to PyTorch; then run-steps per second of the fast engine on every core and of
// webgpu packs. `grok bench --paper-budget`: each notebook's runs and steps at the paper preset, in hours.
// The measuring is in src/bench; here are the flags and the output.

import { benchmarkEngine } from "../bench/engine-timing";
import { FastBaseline, measureFastBaseline } from "../bench/fast-baseline";
import { benchmarkPack, openBenchGpu, PACK_TARGET_RUN_STEPS_PER_SECOND } from "../bench/pack-timing";
import { runSuite, SuiteResult } from "../bench/suite";
import { paperBudget } from "../notebooks/paper-budget";
import { errorLine, UserError } from "../util/errors";
import { formatTable } from "../util/table";
import { ENGINE_FLAG_OPTIONS, engineFlags, intFlag, parseFlags } from "./flags";

function formatSuite(s: SuiteResult): string {
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
  const [head, rule, ...rows] = formatTable(header, body, {
    rightAligned: [false, false, true, true, false],
    rule: true,
  });
  lines.push(head, rule);
  // a blank line between the batch sizes
  rows.forEach((line, i) => {
    if (i > 0 && s.rows[i].batch !== s.rows[i - 1].batch) lines.push("");
    lines.push(line);
  });
  lines.push("");
  for (const n of s.notes) lines.push(`- ${n}`);
  lines.push("");
  lines.push(s.target.text);
  lines.push("");
  lines.push(...formatThroughput(s));
  return lines.join("\n") + "\n";
}

function formatThroughput(s: SuiteResult): string[] {
  const lines = [
    `runs trained at once, batch ${s.throughput[0].batchSize}: run-steps per second against the fast engine on every ` +
      "core (one single-thread worker per core, all at once)",
    "",
  ];
  const header = ["configuration", "runs", "ms/step", "run-steps/s", "vs fast, all cores"];
  const body = s.throughput.map((r) => [
    r.config,
    String(r.runs),
    r.msPerStep === null ? (r.failed ? "failed" : "skipped") : r.msPerStep.toFixed(1),
    r.runStepsPerSecond === null ? "" : r.runStepsPerSecond.toPrecision(3),
    r.kind === "fast-cores" ? "(baseline)" : r.ratio === null ? "–" : `${r.ratio.toPrecision(2)}×`,
  ]);
  return [...lines, ...formatTable(header, body, { rightAligned: [false, true, true, true, false], rule: true })];
}

/** `grok bench --paper-budget`: each notebook's paper-preset runs and steps, and the hours they take. */
async function paperBudgetCommand(seconds: number, json: boolean): Promise<number> {
  const budget = await paperBudget();
  process.stderr.write(`the fast engine on every core, ~${seconds} s …\n`);
  let fast: FastBaseline | null = null;
  let fastLine: string;
  try {
    fast = await measureFastBaseline({ batchSize: 512, steps: "auto", warmup: 2, seconds });
    fastLine =
      `measured here, ${fast.workers} single-thread workers at once, ` +
      `${fast.runStepsPerSecond.toFixed(1)} run-steps/s at batch ${fast.batchSize}`;
  } catch (err) {
    fastLine = `not measured: ${errorLine(err)}`;
  }
  const target = PACK_TARGET_RUN_STEPS_PER_SECOND;
  if (json) {
    process.stdout.write(JSON.stringify({ ...budget, target, fast }, null, 2) + "\n");
    return 0;
  }
  const hours = (runSteps: number, perSecond: number | undefined) =>
    perSecond ? (runSteps / perSecond / 3600).toFixed(1) : "–";
  const row = (name: string, b: { runs: number; runSteps: number }) => [
    name,
    b.runs.toLocaleString("en-US"),
    b.runSteps.toLocaleString("en-US"),
    hours(b.runSteps, target),
    hours(b.runSteps, fast?.runStepsPerSecond),
  ];
  const header = ["notebook", "runs", "run-steps", `h at ${target.toLocaleString("en-US")}/s`, "h, fast engine"];
  const body = [...budget.notebooks.map((n) => row(n.notebook, n)), row("all (shared runs once)", budget.total)];
  const table = formatTable(header, body, { rightAligned: [false, true, true, true, true], rule: true });
  process.stdout.write(
    [
      "paper preset, from the notebooks' own specs; each run's full step budget (early stopping ends some sooner)",
      `h at ${target.toLocaleString("en-US")}/s: the webgpu engine's design target for a 64-run pack on an ` +
        "H100/H200-class GPU (a target, not a measurement); a notebook of fewer runs fills only part of a pack, so " +
        "its hours there are a lower bound",
      `h, fast engine: ${fastLine}`,
      "",
      ...table,
    ].join("\n") + "\n",
  );
  return 0;
}

export async function benchCommand(args: string[]): Promise<number> {
  const { values } = parseFlags(
    args,
    {
      all: { type: "boolean" },
      pack: { type: "string" },
      "paper-budget": { type: "boolean" },
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
  if (!(seconds > 0 && Number.isFinite(seconds)))
    throw new UserError(`--seconds needs a positive number (got "${values.seconds}")`);

  if (values["paper-budget"]) {
    const others = (
      ["all", "pack", "batch-size", "steps", "warmup", "engine", "backend", "kernels", "threads"] as const
    )
      .filter((k) => values[k] !== undefined)
      .map((k) => `--${k}`);
    if (others.length) throw new UserError(`--paper-budget takes only --seconds and --json; drop ${others.join(", ")}`);
    return paperBudgetCommand(seconds, values.json === true);
  }

  if (values.all) {
    const single = (
      ["batch-size", "steps", "warmup", "engine", "backend", "kernels", "threads", "pack"] as const
    ).filter((k) => values[k] !== undefined);
    if (single.length)
      throw new UserError(
        `--all measures a fixed set of configurations; drop ${single.map((k) => `--${k}`).join(", ")}`,
      );
    const suite = await runSuite({ seconds, log: (line) => process.stderr.write(`${line}\n`) });
    process.stdout.write(values.json ? JSON.stringify(suite, null, 2) + "\n" : formatSuite(suite));
    return suite.rows.some((r) => r.failed) ? 1 : 0;
  }

  const rawBatch = values["batch-size"] ?? "512";
  const batchSize = rawBatch === "full" || rawBatch === "paper" ? rawBatch : int("batch-size", 512, 1);
  const { engine, backend, kernels } = engineFlags(values);
  const steps = values.steps === "auto" ? "auto" : int("steps", 10, 1);
  if (values.pack !== undefined) return packCommand(values, { batchSize, steps, warmup: int("warmup", 2, 0), seconds });
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

/** `grok bench --engine webgpu --pack R`: R runs of the paper's model trained together on the GPU. */
async function packCommand(
  values: Record<string, string | boolean | undefined>,
  timing: { batchSize: number | "paper" | "full"; steps: number | "auto"; warmup: number; seconds: number },
): Promise<number> {
  const runs = intFlag(values, "pack", 1)!;
  if (values.engine !== "webgpu")
    throw new UserError(
      `--pack times packs of runs on the webgpu engine: give --engine webgpu (got ${values.engine ?? "none"})`,
    );
  const other = (["backend", "kernels", "threads"] as const).filter((k) => values[k] !== undefined);
  if (other.length) throw new UserError(`--pack runs on webgpu; drop ${other.map((k) => `--${k}`).join(", ")}`);
  const webgpu = await openBenchGpu();
  let result;
  try {
    result = await benchmarkPack(webgpu, { runs, ...timing });
  } finally {
    webgpu.device.destroy();
  }
  if (values.json) process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  else {
    const m = result.msPerPackStep;
    process.stdout.write(
      `paper model (2 layers, width 128, x/y mod 97, 50%), ` +
        `pack of ${result.runs} run${result.runs === 1 ? "" : "s"}, batch ${result.batchSize} each, ` +
        `engine webgpu on ${result.backend}: ${m.median.toFixed(1)} ms per pack step median ` +
        `(${m.mean.toFixed(1)} mean, ${m.min.toFixed(1)} min) over ${result.steps} steps, ` +
        `${result.runStepsPerSecond.toFixed(1)} run-steps/s\n`,
    );
  }
  return 0;
}
