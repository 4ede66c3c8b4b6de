import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { checkFigurePage, findChromium } from "../src/plot/index";
import { GROK_BIN, REPO_ROOT, tempStore } from "./helpers";

// The project's own notebooks, run for real at the smoke preset: under Jupyter (nbconvert + tslab), and
// headless without Python (grok figures), whose exported figures must render in Chromium.

const NB_DIR = path.join(REPO_ROOT, "notebooks");
const notebooks = fs.existsSync(NB_DIR)
  ? fs
      .readdirSync(NB_DIR)
      .filter((f) => f.endsWith(".ipynb"))
      .sort()
  : [];
const hasNbconvert = spawnSync("jupyter", ["nbconvert", "--version"]).status === 0;
const jupyterSkip =
  hasNbconvert || process.env.GROK_REQUIRE_JUPYTER === "1" ? false : "jupyter nbconvert is not installed";
const chromiumSkip =
  findChromium() || process.env.GROK_REQUIRE_CHROMIUM === "1" ? false : "no Chromium to check the figures";
const smokeEnv = () => ({ ...process.env, GROK_PRESET: "smoke", GROK_STORE: tempStore("notebooks") });

test("there are notebooks, each under 2 MB as committed", () => {
  assert.ok(notebooks.length > 0);
  for (const nb of notebooks) {
    const size = fs.statSync(path.join(NB_DIR, nb)).size;
    assert.ok(size <= 2 * 1024 * 1024, `${nb} is ${(size / 1024 / 1024).toFixed(2)} MB`);
  }
});

test("every notebook runs at the smoke preset under real Jupyter with the tslab kernel", { skip: jupyterSkip }, () => {
  const r = spawnSync(
    process.execPath,
    [path.join(REPO_ROOT, "scripts", "jupyter.js"), "execute", ...notebooks.map((n) => path.join(NB_DIR, n))],
    {
      encoding: "utf8",
      env: smokeEnv(),
    },
  );
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`${notebooks.length} passed, 0 failed`));
});

test(
  "grok figures runs every notebook without Python, and every exported figure renders in Chromium",
  { skip: chromiumSkip },
  async () => {
    const started = Date.now();
    const r = spawnSync(process.execPath, [GROK_BIN, "figures", "--preset", "smoke", "--no-write"], {
      encoding: "utf8",
      env: smokeEnv(),
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const dir = path.join(REPO_ROOT, "figures");
    const pages = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(".html") && fs.statSync(path.join(dir, f)).mtimeMs >= started - 1000);
    assert.ok(pages.length >= notebooks.length, `only ${pages.length} figures exported`);
    for (const page of pages) {
      const check = await checkFigurePage(path.join(dir, page));
      assert.ok(check.traces > 0, `${page} drew no trace`);
      assert.deepEqual(check.errors, [], `${page} logged errors`);
      assert.ok(fs.statSync(path.join(dir, page.replace(/\.html$/, ".png"))).size > 1000, `${page}: no PNG`);
    }
  },
);
