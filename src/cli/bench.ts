// `grok bench`: milliseconds per training step of the paper's model (x/y mod 97, half the table) on an engine.
// `grok bench --all`: the fast and tfjs engines and PyTorch (bench/torch_reference.py), at batch 512 and full batch, in one
// table with each engine's ratio to PyTorch. The measuring is in src/bench; here are the flags and the output.

import { benchmarkEngine } from "../bench/engine-timing";
import { runSuite, SuiteResult } from "../bench/suite";
import { UserError } from "../util/errors";
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
  return lines.join("\n") + "\n";
}

export async function benchCommand(args: string[]): Promise<number> {
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
  if (!(seconds > 0 && Number.isFinite(seconds)))
    throw new UserError(`--seconds needs a positive number (got "${values.seconds}")`);

  if (values.all) {
    const single = (["batch-size", "steps", "warmup", "engine", "backend", "kernels", "threads"] as const).filter(
      (k) => values[k] !== undefined,
    );
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
