// The headless notebook runner: real tslab executor on temp notebooks; outputs as nbconvert records them.

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { before, test } from "node:test";
import { NotebookOutput, parseNotebook, runNotebook, serializeNotebook } from "../src/notebooks/runner";
import { runFigures } from "../src/notebooks/figures";
import { ProgressDisplay } from "../src/training/progress";
import { REPO_ROOT, tempStoreInRepo } from "./helpers";

let root: string; // a temp "repo": notebooks/ and a node_modules link to the real one

function writeNotebook(name: string, cells: string[]): string {
  const nb = {
    cells: cells.map((source) => ({ cell_type: "code", execution_count: null, metadata: {}, outputs: [], source })),
    metadata: { kernelspec: { display_name: "TypeScript (tslab)", language: "typescript", name: "tslab" } },
    nbformat: 4,
    nbformat_minor: 4,
  };
  const file = path.join(root, "notebooks", name);
  fs.writeFileSync(file, JSON.stringify(nb));
  return file;
}

const streams = (outs: NotebookOutput[] | undefined, name: string) =>
  (outs ?? []).filter((o) => o.output_type === "stream" && o.name === name).map((o) => (o as { text: string }).text);

before(() => {
  // Notebooks import the library by name through this link (normally made by scripts/link-self.js).
  const self = path.join(REPO_ROOT, "node_modules", "grokking-workbench");
  if (!fs.existsSync(self)) fs.symlinkSync("..", self, "dir");
  root = fs.mkdtempSync(path.join(os.tmpdir(), "grok-nb-"));
  fs.mkdirSync(path.join(root, "notebooks"));
  fs.symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(root, "node_modules"), "dir");
  process.on("exit", () => fs.rmSync(root, { recursive: true, force: true }));
});

test("cells run in one executor; streams, displays, imports, await, env and the last expression are recorded", async () => {
  const file = writeNotebook("ok.ipynb", [
    'console.log("hello"); console.log("world"); console.error("warn")',
    'import * as tslab from "tslab";\ntslab.display.html("<b>x</b>")',
    'require("tslab/dist/jupyter").lastWriteDisplayData({data: {"text/plain": "a", "text/html": "<i>a</i>"}, metadata: {}, transient: {}}, false)',
    'import { OPERATIONS } from "grokking-workbench";\nconsole.log(OPERATIONS.length)',
    "const v = await new Promise<number>((resolve) => setTimeout(() => resolve(42), 10));\nconsole.log(v)",
    "console.log(process.env.GROK_NB_TEST, process.cwd())",
    "",
    "6 * 7",
  ]);
  const cwd = process.cwd();
  const cellsSeen: number[] = [];
  const r = await runNotebook(file, {
    env: { GROK_NB_TEST: "visible" },
    write: true,
    onCell: (i) => cellsSeen.push(i),
  });
  assert.deepEqual(r.failedCell, undefined);
  assert.equal(r.ok, true);
  assert.equal(r.cellsRun, 7);
  assert.deepEqual(cellsSeen, [0, 1, 2, 3, 4, 5, 7]);
  assert.equal(r.displays, 2);
  assert.equal(process.cwd(), cwd, "cwd restored");
  assert.equal(process.env.GROK_NB_TEST, undefined, "env restored");

  const text = fs.readFileSync(file, "utf8");
  assert.equal(serializeNotebook(parseNotebook(text)), text, "written as nbformat writes it");
  assert.match(text, /^\{\n "cells": \[/);
  const nb = parseNotebook(text);
  const c = nb.cells;
  assert.equal(nb.nbformat_minor, 5);
  assert.ok(c.every((cell) => typeof cell.id === "string" && cell.id.length > 0));
  assert.deepEqual(
    c.map((cell) => cell.execution_count),
    [1, 2, 3, 4, 5, 6, null, 7],
  );
  assert.deepEqual(c[0].outputs, [
    { output_type: "stream", name: "stdout", text: "hello\nworld\n" },
    { output_type: "stream", name: "stderr", text: "warn\n" },
  ]);
  assert.deepEqual(c[1].outputs, [{ output_type: "display_data", data: { "text/html": "<b>x</b>" }, metadata: {} }]);
  assert.deepEqual(c[2].outputs, [
    { output_type: "display_data", data: { "text/plain": "a", "text/html": "<i>a</i>" }, metadata: {} },
  ]);
  assert.deepEqual(streams(c[3].outputs, "stdout"), ["13\n"]);
  assert.deepEqual(streams(c[4].outputs, "stdout"), ["42\n"]);
  assert.deepEqual(streams(c[5].outputs, "stdout"), [`visible ${path.join(root, "notebooks")}\n`]);
  // tslab sends no execute_result: it console.logs the last expression, so Jupyter records a stream.
  assert.deepEqual(c[7].outputs, [{ output_type: "stream", name: "stdout", text: "42\n" }]);
  assert.equal((nb.metadata.language_info as { name: string }).name, "typescript");
});

test("a failing cell gives an error output and stops the notebook; in a child process too", async () => {
  const cells = [
    'console.log("before")',
    'const x: number = 1;\nthrow new RangeError("boom " + x)',
    'console.log("never")',
  ];
  const file = writeNotebook("fail.ipynb", cells);
  const r = await runNotebook(file, { write: true });
  assert.equal(r.ok, false);
  assert.equal(r.cellsRun, 2);
  assert.deepEqual(r.failedCell, { index: 1, source: cells[1], ename: "RangeError", evalue: "boom 1" });
  const nb = parseNotebook(fs.readFileSync(file, "utf8"));
  assert.deepEqual(streams(nb.cells[0].outputs, "stdout"), ["before\n"]);
  const err = nb.cells[1].outputs?.[0];
  assert.equal(err?.output_type, "error");
  if (err?.output_type === "error") {
    assert.equal(err.ename, "RangeError");
    assert.ok(err.traceback.some((l) => l.includes("RangeError: boom 1")));
    assert.ok(!err.traceback.some((l) => l.includes("tslab/dist")), "tslab frames dropped");
  }
  assert.deepEqual(nb.cells[2].outputs, []);
  assert.equal(nb.cells[2].execution_count, null);

  // runFigures: a process per notebook, env for the preset and the figures folder, exit code, report.
  writeNotebook("a-export.ipynb", [
    'import * as fs from "fs";\nimport * as path from "path";\n' +
      'fs.writeFileSync(path.join(process.env.GROK_FIGURES_DIR!, process.env.GROK_PRESET + ".txt"), "x");\n' +
      'require("tslab").display.svg("<svg></svg>")',
    "const s: string = 1;", // a type error fails the cell like a runtime error
  ]);
  fs.rmSync(file);
  const lines: string[] = [];
  const code = await runFigures({ root, preset: "smoke", only: "a-exp", out: (l) => lines.push(l) }); // a unique prefix names the notebook
  assert.equal(code, 1, lines.join("\n"));
  assert.ok(fs.existsSync(path.join(root, "figures", "smoke.txt")));
  assert.match(
    lines.join("\n"),
    /a-export\.ipynb\s+FAILED \(cell 2\)\s+[\d.]+ s\s+1 figure displayed, 1 file exported/,
  );
  assert.match(lines.join("\n"), /0 of 1 notebooks ok/);
  assert.match(lines.join("\n"), /cell 2 failed: CompileError: .*not assignable/);
  const exported = parseNotebook(fs.readFileSync(path.join(root, "notebooks", "a-export.ipynb"), "utf8"));
  assert.deepEqual(exported.cells[0].outputs, [
    { output_type: "display_data", data: { "image/svg+xml": "<svg></svg>" }, metadata: {} },
  ]);
  assert.equal(exported.cells[1].outputs?.[0].output_type, "error");
});

test("a training, a replay, a sweep and a counter each leave one progress line in their cell, its summary; grok figures shows them", async () => {
  const store = tempStoreInRepo("nb-progress");
  const shownStore = path.relative(REPO_ROOT, store);
  writeNotebook("progress.ipynb", [
    'import { train, paperConfig, PAPER_TRANSFORMER, ensureSnapshots, runSweep, ProgressCounter, SweepSpec } from "grokking-workbench";\n' +
      "const cfg = paperConfig();\n" +
      'cfg.data = { op: "add", modulus: 11, trainFraction: 0.5, splitSeed: 1, outliers: 0 };\n' +
      "cfg.model = { ...PAPER_TRANSFORMER, layers: 1, width: 16, heads: 2 };\n" +
      'cfg.training = { ...cfg.training, seed: 3, steps: 30, batchSize: "full" };\n' +
      `const store = ${JSON.stringify(store)};`,
    "const run = await train(cfg, { store: store });",
    "await ensureSnapshots(run.id, [7, 25], { store: store });",
    'const set = { "data.op": "add", "data.modulus": 11, "model.layers": 1, "model.width": 16, "model.heads": 2, "training.steps": 30, "training.batchSize": "full" };\n' +
      'const spec: SweepSpec = { name: "tiny", base: "paper", set: set, grid: { "training.seed": [5, 6] } };\n' +
      "await runSweep(spec, { store: store, workers: 2 });",
    'const counter = new ProgressCounter("items", 3, { everyMs: 0 });\n' +
      'for (const item of ["a", "b", "c"]) counter.tick(item);\n' +
      "counter.done();",
  ]);
  const status: string[] = [];
  const display = new ProgressDisplay({
    mode: "lines",
    everyMs: 0,
    stream: { write: (text: string) => status.push(text) },
  });
  const report: string[] = [];
  const code = await runFigures({ root, only: "progress", progress: display, out: (l) => report.push(l) });
  assert.equal(code, 0, report.join("\n"));
  assert.match(
    report.join("\n"),
    /progress\.ipynb\s+ok\s+[\d.]+ s\s+0 figures displayed/,
    "progress lines are no figures",
  );

  const nb = parseNotebook(fs.readFileSync(path.join(root, "notebooks", "progress.ipynb"), "utf8"));
  const displays = (i: number) =>
    (nb.cells[i].outputs ?? []).flatMap((o) =>
      o.output_type === "display_data" ? [o.data["text/plain"] as string] : [],
    );
  const id = /run ([0-9a-f]{12}): store/.exec(streams(nb.cells[1].outputs, "stderr").join(""))?.[1];
  assert.ok(id, "the trainer's start lines");
  assert.deepEqual(streams(nb.cells[1].outputs, "stderr").join("").split("\n").slice(1), [
    `run ${id}: store ${shownStore}/${id}`,
    "",
  ]);
  assert.equal(displays(1).length, 1);
  assert.match(displays(1)[0], new RegExp(`^run ${id}: finished \\(budget\\) at step 30; first step with train acc`));
  assert.equal(displays(2).length, 1);
  assert.match(displays(2)[0], new RegExp(`^run ${id}: 2 snapshots written \\(replayed 25 steps in \\S+\\)$`));
  assert.deepEqual(streams(nb.cells[3].outputs, "stderr"), [
    `sweep tiny: 2 runs, 0 finished, 2 to train on 2 workers; store ${shownStore}\n`,
  ]);
  assert.equal(displays(3).length, 1);
  assert.match(displays(3)[0], /^sweep tiny: 2\/2 runs finished \(2 trained now, 0 already done\) in \S+$/);
  assert.equal(displays(4).length, 1);
  assert.match(displays(4)[0], /^items: 3\/3 done in \d+s$/);
  assert.ok(!JSON.stringify(nb.cells.map((c) => c.outputs)).includes(REPO_ROOT), "no machine path in the outputs");

  // the status line names the notebook and cell, with the cell's progress line as it changes
  const lines = status.join("");
  assert.match(lines, /^progress: cell 2\/5 \(\S+\) · run [0-9a-f]{12}: step 0\/30 /m);
  assert.match(lines, /^progress: cell 2\/5 \(\S+\) · run [0-9a-f]{12}: finished \(budget\) at step 30;/m);
  assert.match(lines, /^progress: cell 3\/5 \(\S+\) · run [0-9a-f]{12}: replaying for 2 snapshots: step 25\/25 /m);
  assert.match(lines, /^progress: cell 4\/5 \(\S+\) · sweep tiny: 0\/2 runs done · /m);
  assert.match(lines, /^progress: cell 5\/5 \(\S+\) · items: 2\/3 done \(last: b\) · /m);
});
