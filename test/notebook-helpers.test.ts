import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { byPreset, figure, notebookPreset } from "../src/notebooks/notebook";
import { ComparisonRow, comparisonTable, showComparisonTable } from "../src/notebooks/report";
import { DisplayBundle, findChromium, setDisplaySink, showMarkdown } from "../src/plot/index";
import { tempStore } from "./helpers";

function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars))
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
}

test("a notebook's preset: its own setting, overridden by GROK_PRESET; unknown names are errors", () => {
  withEnv({ GROK_PRESET: undefined }, () => {
    assert.equal(notebookPreset(), "quick");
    assert.equal(notebookPreset("paper"), "paper");
  });
  withEnv({ GROK_PRESET: "smoke" }, () => assert.equal(notebookPreset("paper"), "smoke"));
  withEnv({ GROK_PRESET: "huge" }, () =>
    assert.throws(() => notebookPreset(), /unknown preset "huge" \(from GROK_PRESET\)/),
  );
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

const ROWS: ComparisonRow[] = [
  { claim: "x/y mod 97 groks at 50% data", paper: "~10^5 steps", ours: "41,000 steps", verdict: "reproduced" },
  {
    claim: "weight decay helps most",
    paper: "best of 9",
    ours: "2nd of 9",
    verdict: "partly",
    note: "one seed | quick",
  },
  { claim: "S5 groks below 90%", paper: "yes", ours: "no", verdict: "not" },
];

test("the comparison table as markdown and as plain text", () => {
  const { markdown, plain } = comparisonTable(ROWS);
  assert.equal(
    markdown,
    [
      "| claim | paper | ours | verdict | note |",
      "| --- | --- | --- | --- | --- |",
      "| x/y mod 97 groks at 50% data | ~10^5 steps | 41,000 steps | reproduced |  |",
      "| weight decay helps most | best of 9 | 2nd of 9 | partly | one seed \\| quick |",
      "| S5 groks below 90% | yes | no | not |  |",
    ].join("\n"),
  );
  assert.equal(
    plain,
    [
      "claim                         paper        ours          verdict     note",
      "----------------------------  -----------  ------------  ----------  ----------------",
      "x/y mod 97 groks at 50% data  ~10^5 steps  41,000 steps  reproduced",
      "weight decay helps most       best of 9    2nd of 9      partly      one seed | quick",
      "S5 groks below 90%            yes          no            not",
    ].join("\n"),
  );
  // Without notes there is no note column; a line break in a cell becomes a space.
  assert.equal(
    comparisonTable([{ claim: "a\nb", paper: "1", ours: "2", verdict: "not" }]).markdown,
    "| claim | paper | ours | verdict |\n| --- | --- | --- | --- |\n| a b | 1 | 2 | not |",
  );
});

test("a comparison table with a bad verdict, a number or no rows is an error", () => {
  const bad = [ROWS[0]!, { ...ROWS[1]!, verdict: "yes" } as unknown as ComparisonRow];
  assert.throws(
    () => comparisonTable(bad),
    /comparison table row 2: verdict must be one of reproduced, partly, not \(got "yes"\)/,
  );
  const number = [{ ...ROWS[0]!, ours: 0.97 } as unknown as ComparisonRow];
  assert.throws(
    () => comparisonTable(number),
    /row 1: ours must be a string \(format numbers in the cell\), got number/,
  );
  assert.throws(() => comparisonTable([]), /comparison table: no rows/);
});

test("markdown and the comparison table go out through the display sink as text/markdown and text/plain", () => {
  const shown: DisplayBundle[] = [];
  const prev = setDisplaySink((b) => shown.push(b));
  try {
    showMarkdown("Our run groks at step **41,000**.");
    showComparisonTable(ROWS);
  } finally {
    setDisplaySink(prev);
  }
  const { markdown, plain } = comparisonTable(ROWS);
  assert.deepEqual(shown, [
    {
      data: { "text/markdown": "Our run groks at step **41,000**.", "text/plain": "Our run groks at step **41,000**." },
      metadata: {},
      transient: {},
    },
    { data: { "text/markdown": markdown, "text/plain": plain }, metadata: {}, transient: {} },
  ]);
});
