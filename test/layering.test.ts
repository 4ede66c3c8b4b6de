import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import * as ts from "typescript";

/**
 * The layers of src/, lowest first, by top-level entry. A file may import from its own layer or a lower
 * one, never from a higher one: so the engines and the store never reach into training, and a new engine
 * reuses them without it.
 */
const LAYERS: string[][] = [
  ["util"],
  ["data", "model", "optim", "plot"],
  ["config"],
  ["engines", "store"],
  ["training"],
  ["analysis", "bench", "sweeps", "notebooks"],
  ["cli"],
  // src/index.ts, the package's entry
  ["index"],
];

/** The repository: this file runs as dist/test/layering.test.js. */
const REPO = path.resolve(__dirname, "..", "..");

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith(".ts") ? [full] : [];
  });
}

/** The files a source file imports by relative path (import, export … from, import(), require()), resolved. */
function relativeImports(file: string): string[] {
  const { importedFiles } = ts.preProcessFile(fs.readFileSync(file, "utf8"), true, true);
  return importedFiles
    .map((m) => m.fileName)
    .filter((name) => name.startsWith("."))
    .map((name) => path.resolve(path.dirname(file), name));
}

/** A path's top-level entry under `srcRoot` (a directory, or a file without ".ts") and its layer (−1: none). */
function layerOf(srcRoot: string, file: string): { entry: string; layer: number } {
  const entry = path.relative(srcRoot, file).split(path.sep)[0].replace(/\.ts$/, "");
  return { entry, layer: LAYERS.findIndex((layer) => layer.includes(entry)) };
}

/** Every import under `srcRoot` that points up the layers, or leaves them, as one line each. */
function layeringViolations(srcRoot: string): string[] {
  const show = (file: string) => path.relative(path.dirname(srcRoot), file);
  const violations: string[] = [];
  for (const file of sourceFiles(srcRoot)) {
    const from = layerOf(srcRoot, file);
    if (from.layer < 0) {
      violations.push(`${show(file)}: ${from.entry} is in no layer (add it to LAYERS)`);
      continue;
    }
    for (const target of relativeImports(file)) {
      if (path.relative(srcRoot, target).startsWith("..")) {
        violations.push(`${show(file)} imports ${show(target)}, outside src/`);
        continue;
      }
      const to = layerOf(srcRoot, target);
      if (to.layer < 0) violations.push(`${show(file)} imports ${show(target)}: ${to.entry} is in no layer`);
      else if (to.layer > from.layer)
        violations.push(`${show(file)} imports ${show(target)}: ${from.entry} is below ${to.entry}`);
    }
  }
  return violations;
}

test("src/ imports only point down its layers", () => {
  assert.deepEqual(layeringViolations(path.join(REPO, "src")), []);
});

test("the layering check catches engines or the store importing training", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "layering-"));
  try {
    const write = (file: string, text: string) => {
      fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
      fs.writeFileSync(path.join(dir, file), text);
    };
    write("src/training/trainer.ts", 'import { Engine } from "../engines/engine";\nexport const train = 1;\n');
    write("src/engines/engine.ts", "export interface Engine {}\n");
    write(
      "src/engines/fast/kernels.ts",
      '// from "../../training/trainer" in a comment is no import\nimport { train } from "../../training/trainer";\n',
    );
    write(
      "src/store/run-store.ts",
      'import type { RunConfig } from "../training/config";\nconst t = require("../training/trainer");\n',
    );
    write("src/extra/x.ts", "export {};\n");
    assert.deepEqual(layeringViolations(path.join(dir, "src")).sort(), [
      "src/engines/fast/kernels.ts imports src/training/trainer: engines is below training",
      "src/extra/x.ts: extra is in no layer (add it to LAYERS)",
      "src/store/run-store.ts imports src/training/config: store is below training",
      "src/store/run-store.ts imports src/training/trainer: store is below training",
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
