import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { byPreset, figure, notebookPreset } from "../src/notebooks/notebook";
import { DisplayBundle, findChromium, setDisplaySink } from "../src/plot/index";
import { tempStore } from "./helpers";

function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars)) if (v === undefined) delete process.env[k];
  else process.env[k] = v;
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
}

test("a notebook's preset: its own setting, overridden by GROK_PRESET; unknown names are errors", () => {
  withEnv({ GROK_PRESET: undefined }, () => {
    assert.equal(notebookPreset(), "quick");
    assert.equal(notebookPreset("paper"), "paper");
  });
  withEnv({ GROK_PRESET: "smoke" }, () => assert.equal(notebookPreset("paper"), "smoke"));
  withEnv({ GROK_PRESET: "huge" }, () => assert.throws(() => notebookPreset(), /unknown preset "huge" \(from GROK_PRESET\)/));
  assert.equal(byPreset("quick", { smoke: 1, quick: 2, paper: 3 }), 2);
});

test("figure() shows the figure with its PNG and, during npm run figures, writes it to the figures folder", async () => {
  const shown: DisplayBundle[] = [];
  setDisplaySink((b) => shown.push(b));
  const dir = tempStore("figures");
  const fig = { data: [{ x: [1, 10, 100], y: [0.1, 0.5, 0.9], type: "scatter" }], layout: { xaxis: { type: "log" } } };
  await withEnv({ GROK_FIGURES_DIR: undefined }, () => figure(fig, "not-saved"));
  assert.equal(shown.length, 1);
  assert.deepEqual(fs.readdirSync(dir), []);
  process.env.GROK_FIGURES_DIR = dir;
  try {
    await figure(fig, "accuracy");
  } finally {
    delete process.env.GROK_FIGURES_DIR;
  }
  assert.equal(shown.length, 2);
  assert.ok(fs.existsSync(path.join(dir, "accuracy.html")));
  const shownPng = shown[1]!.data["image/png"];
  if (findChromium()) {
    // the PNG rendered once: shown in the notebook and written to the folder
    assert.equal(shownPng, fs.readFileSync(path.join(dir, "accuracy.png")).toString("base64"));
    assert.ok((shown[1]!.data["text/html"] as string).includes(`<img src="data:image/png;base64,${shownPng}"`));
  } else {
    assert.equal(shownPng, undefined);
    assert.match(shown[1]!.data["text/html"] as string, /No PNG copy: no Chromium found/);
  }
  setDisplaySink(null);
});
