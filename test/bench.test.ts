// grok bench beyond one engine's step: webgpu packs (--pack), the fast engine's all-core baseline of
// bench --all, and the paper preset's budget read from the notebooks (--paper-budget). Reports are checked
// for their shape and arithmetic, never for speed.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { measureFastBaseline } from "../src/bench/fast-baseline";
import { nativeKernelsAvailable } from "../src/engines/fast/load-kernels";
import { NOTEBOOKS_DIR, paperBudget } from "../src/notebooks/paper-budget";
import { GROK_BIN, REPO_ROOT, tempStore } from "./helpers";
import { webGpuForTests } from "./webgpu-device";

const deviceFor = webGpuForTests();

function grok(args: string[]) {
  const r = spawnSync(process.execPath, [GROK_BIN, ...args], { encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("bench --engine webgpu --pack R: ms per pack step and run-steps/s of R paper-model runs", async (t) => {
  const webgpu = await deviceFor(t);
  if (!webgpu) return;
  const r = grok(["bench", "--engine", "webgpu", "--pack", "2", "--batch-size", "8", "--steps", "2", "--warmup", "1"]);
  assert.equal(r.code, 0, r.stderr);
  const json = grok(["bench", "--engine", "webgpu", "--pack", "3", "--batch-size", "8", "--steps", "2", "--json"]);
  assert.equal(json.code, 0, json.stderr);
  const result = JSON.parse(json.stdout);
  assert.equal(result.engine, "webgpu");
  assert.match(result.backend, /(software|hardware) adapter$/);
  assert.deepEqual([result.runs, result.batchSize, result.steps, result.warmup], [3, 8, 2, 2]);
  const m = result.msPerPackStep;
  assert.ok(m.min > 0 && m.min <= m.median && m.min <= m.mean, JSON.stringify(m));
  assert.ok(Math.abs(result.runStepsPerSecond - 3000 / m.median) < 1e-9 * result.runStepsPerSecond);
  assert.match(
    r.stdout,
    new RegExp(
      "^paper model .*, pack of 2 runs, batch 8 each, engine webgpu on .* adapter: " +
        "[\\d.]+ ms per pack step median .* over 2 steps, [\\d.]+ run-steps/s\n$",
    ),
  );
  // more runs than the adapter holds: refused before anything is allocated
  const tooMany = grok(["bench", "--engine", "webgpu", "--pack", "1000000", "--batch-size", "8", "--steps", "1"]);
  assert.equal(tooMany.code, 2, tooMany.stderr);
  assert.match(
    tooMany.stderr,
    /a pack of 1000000: the adapter.s buffers hold at most \d+ runs of the paper model at batch 8/,
  );
});

test("bad --pack values and combinations exit 2 with a clear message", () => {
  const cases: [string[], RegExp][] = [
    [["--engine", "webgpu", "--pack", "0"], /--pack needs an integer ≥ 1 \(got "0"\)/],
    [["--engine", "webgpu", "--pack", "two"], /--pack needs an integer ≥ 1 \(got "two"\)/],
    [["--engine", "webgpu", "--pack", "1.5"], /--pack needs an integer ≥ 1/],
    [["--pack", "4"], /give --engine webgpu \(got none\)/],
    [["--engine", "fast", "--pack", "4"], /give --engine webgpu \(got fast\)/],
    [["--engine", "webgpu", "--pack", "4", "--kernels", "native"], /drop --kernels/],
    [["--all", "--pack", "4"], /--all measures a fixed set of configurations; drop --pack/],
    [["--paper-budget", "--engine", "webgpu"], /--paper-budget takes only --seconds and --json; drop --engine/],
  ];
  for (const [args, message] of cases) {
    const r = grok(["bench", ...args]);
    assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}, stderr ${r.stderr}`);
    assert.match(r.stderr, message, args.join(" "));
  }
});

test("the fast engine's all-core baseline: single-thread workers at once, run-steps/s summed", async (t) => {
  if (!nativeKernelsAvailable()) return t.skip("the native kernels are not built");
  const base = await measureFastBaseline({ workers: 2, batchSize: 8, steps: 2, warmup: 1 });
  assert.equal(base.workers, 2);
  assert.equal(base.batchSize, 8);
  assert.equal(base.perWorker.length, 2);
  for (const w of base.perWorker) {
    assert.equal(w.engine, "fast");
    assert.match(w.backend, /^native, 1 thread/);
    assert.deepEqual([w.steps, w.warmup], [2, 1]);
  }
  const sum = base.perWorker.reduce((s, w) => s + 1000 / w.msPerStep.median, 0);
  assert.ok(Math.abs(base.runStepsPerSecond - sum) < 1e-9 * sum);
});

test("bench --all's throughput rows without an adapter: the fast baseline, and one line saying why no webgpu", (t) => {
  if (!nativeKernelsAvailable()) return t.skip("the native kernels are not built");
  // a Vulkan loader pointed at no driver: Dawn finds no adapter (as on a machine without a GPU or lavapipe)
  const script =
    'const notes = []; require("./dist/src/bench/suite").measureThroughput(0.2, () => {}, notes)' +
    ".then((rows) => console.log(JSON.stringify({ rows, notes })));";
  const r = spawnSync(process.execPath, ["-e", script], {
    cwd: REPO_ROOT,
    encoding: "utf8",
    env: { ...process.env, VK_DRIVER_FILES: "/nonexistent.json", VK_ICD_FILENAMES: "/nonexistent.json" },
  });
  assert.equal(r.status, 0, r.stderr);
  const { rows, notes } = JSON.parse(r.stdout);
  assert.deepEqual(
    rows.map((row: { kind: string }) => row.kind),
    ["fast-cores"],
  );
  assert.ok(rows[0].runStepsPerSecond > 0 && rows[0].ratio === 1, JSON.stringify(rows[0]));
  // one line (no adapter here; without the webgpu package, that instead)
  assert.equal(notes.length, 1, JSON.stringify(notes));
  assert.match(
    notes[0],
    /^webgpu: no throughput rows: engine webgpu cannot start: (no WebGPU adapter|the optional package)/,
  );
});

/** A notebook of the given code cells, as nbformat stores them. */
function writeNotebook(dir: string, name: string, cells: string[]): void {
  const nb = {
    cells: cells.map((source) => ({ cell_type: "code", metadata: {}, source: [source], outputs: [] })),
    metadata: {},
    nbformat: 4,
    nbformat_minor: 5,
  };
  fs.writeFileSync(path.join(dir, `${name}.ipynb`), JSON.stringify(nb));
}

test("the paper budget counts what a notebook's cells would train at the paper preset, without training", async () => {
  const dir = tempStore("budget");
  const head =
    'import { runSweep, train, paperConfig, loadRun, notebookPreset, SweepSpec } from "grokking-workbench";\n';
  writeNotebook(dir, "a", [
    head + 'const preset = notebookPreset("quick");',
    "function specFor(p: typeof preset): SweepSpec {\n" +
      '  if (p === "paper")\n' +
      '    return { base: "paper", set: { "training.steps": 1000 }, grid: { "training.seed": [0, 1, 2] } };\n' +
      '  return { base: "paper", set: { "training.steps": 10 } };\n}\n' +
      "const result = await runSweep(specFor(preset));\nconst first = loadRun(result.runs[0].id);",
    'const cfg = paperConfig();\ncfg.training.steps = preset === "paper" ? 500 : 5;\n' +
      "const run = await train(cfg);\nconsole.log(run.id);",
  ]);
  // b shares a's seed-0 run, and trains one of its own after a statement that fails
  writeNotebook(dir, "b", [
    head + 'const preset = notebookPreset();\nconst missing = loadRun("nope").metrics;',
    'await runSweep({ base: "paper", set: { "training.steps": 1000 }, grid: { "training.seed": [0] } });\n' +
      'await runSweep({ base: "paper", set: { "training.steps": preset === "paper" ? 2000 : 1 } });',
  ]);
  const budget = await paperBudget(dir);
  assert.deepEqual(budget.notebooks, [
    { notebook: "a", runs: 4, runSteps: 3 * 1000 + 500 },
    { notebook: "b", runs: 2, runSteps: 1000 + 2000 },
  ]);
  assert.deepEqual(budget.total, { runs: 5, runSteps: 3 * 1000 + 500 + 2000 });
});

test("every notebook of the project has a paper budget", async () => {
  const budget = await paperBudget(NOTEBOOKS_DIR);
  const notebooks = fs.readdirSync(NOTEBOOKS_DIR).filter((f) => f.endsWith(".ipynb"));
  assert.equal(budget.notebooks.length, notebooks.length);
  for (const n of budget.notebooks) assert.ok(n.runs > 0 && n.runSteps >= n.runs, JSON.stringify(n));
  const sum = budget.notebooks.reduce((s, n) => s + n.runSteps, 0);
  assert.ok(budget.total.runSteps > 0 && budget.total.runSteps <= sum);
});
