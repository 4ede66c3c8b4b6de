import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "./helpers";

const JUPYTER_SCRIPT = path.join(REPO_ROOT, "scripts", "jupyter.js");
const hasNbconvert = spawnSync("jupyter", ["nbconvert", "--version"]).status === 0;
const skip =
  hasNbconvert || process.env.GROK_REQUIRE_JUPYTER === "1"
    ? false
    : "jupyter nbconvert is not installed (see environment.md)";

function notebook(cells: string[]): string {
  return JSON.stringify({
    cells: cells.map((source, i) => ({
      cell_type: "code",
      execution_count: null,
      id: `c${i}`,
      metadata: {},
      outputs: [],
      source,
    })),
    metadata: { kernelspec: { display_name: "TypeScript (tslab)", language: "typescript", name: "tslab" } },
    nbformat: 4,
    nbformat_minor: 5,
  });
}

test("real Jupyter runs a TypeScript notebook on the tslab kernel, importing the library by name", { skip }, () => {
  // inside the repo, as notebooks/ is, so the package resolves by name
  const dir = fs.mkdtempSync(path.join(REPO_ROOT, "dist", "nbtest-"));
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  const good = path.join(dir, "good.ipynb");
  fs.writeFileSync(
    good,
    notebook([
      'import { OPERATIONS, findOperation } from "grokking-workbench";\nconsole.log(OPERATIONS.length, findOperation("x/y").id);',
      'const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));\nawait wait(10);\nconsole.log("after await");',
    ]),
  );
  const bad = path.join(dir, "bad.ipynb");
  fs.writeFileSync(
    bad,
    notebook(['const n: number = 2;\nthrow new Error("cell failed on purpose " + n);', 'console.log("never runs");']),
  );
  const ok = spawnSync(process.execPath, [JUPYTER_SCRIPT, "execute", good], { encoding: "utf8" });
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /^ok\s+.*good\.ipynb/m);
  const failed = spawnSync(process.execPath, [JUPYTER_SCRIPT, "execute", good, bad], { encoding: "utf8" });
  assert.equal(failed.status, 1);
  assert.match(failed.stdout, /FAILED\s+.*bad\.ipynb/);
  // the failing cell and its error are printed
  assert.match(failed.stdout, /throw new Error\("cell failed on purpose " \+ n\)/);
  assert.match(failed.stdout, /Error: cell failed on purpose 2/);
  assert.match(failed.stdout, /1 passed, 1 failed/);
});
