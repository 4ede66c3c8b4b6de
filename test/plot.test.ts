import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import Module from "node:module";
import {
  Figure,
  DisplayBundle,
  PLOTLY_MIME,
  figureBundle,
  showFigure,
  setDisplaySink,
  resetPlotlyInline,
  isPlotlyInlined,
  plotlyJsSource,
  saveFigure,
  figurePage,
  checkFigurePage,
  findChromium,
} from "../src/plot";

const lineFig = (): Figure => ({
  data: [
    { type: "scatter", mode: "lines", name: "train", x: [1, 10, 100, 1000], y: [1, 0.5, 0.05, 0.01] },
    { type: "scatter", mode: "lines", name: "val", x: [1, 10, 100, 1000], y: [1, 0.9, 0.8, 0.02] },
  ],
  layout: { xaxis: { type: "log", title: { text: "step" } }, yaxis: { type: "log" }, width: 640, height: 400 },
});

describe("notebook display", () => {
  before(() => resetPlotlyInline());

  test("one bundle carries the Plotly JSON and the HTML fallback; the JSON round-trips", () => {
    const sent: DisplayBundle[] = [];
    const prev = setDisplaySink((b) => sent.push(b));
    try {
      const fig: Figure = {
        data: [{ type: "heatmap", z: [new Float32Array([0.1, 0.2]), new Float32Array([0.3, NaN])] }],
        layout: { title: { text: "a <b>title</b> & </script>" } },
        config: { displaylogo: false },
      };
      showFigure(fig);
      assert.equal(sent.length, 1);
      const b = sent[0]!;
      assert.deepEqual(Object.keys(b.data).sort(), [PLOTLY_MIME, "text/html"].sort());
      assert.deepEqual(b.metadata, {});
      // Typed arrays become arrays (float32 printed shortest), NaN becomes null; the rest is unchanged.
      const expected = {
        data: [{ type: "heatmap", z: [[0.1, 0.2], [0.3, null]] }],
        layout: { title: { text: "a <b>title</b> & </script>" } },
        config: { displaylogo: false },
      };
      assert.deepEqual(b.data[PLOTLY_MIME], expected);
      assert.deepEqual(JSON.parse(JSON.stringify(b.data[PLOTLY_MIME])), expected);
      const html = b.data["text/html"];
      assert.match(html, /Plotly\.newPlot/);
      // The title's "</script>" must not end the script element early.
      assert.equal(html.slice(html.lastIndexOf("<script")).match(/<\/script>/gi)?.length, 1);
    } finally {
      setDisplaySink(prev);
    }
  });

  test("plotly.js is inlined in the first figure's HTML only", () => {
    resetPlotlyInline();
    const lib = plotlyJsSource();
    assert.ok(lib.length > 1e6 && lib.length < 1.6e6, `bundle size ${lib.length}`);
    const marker = lib.slice(1000, 1200);
    const first = figureBundle(lineFig()).data["text/html"];
    const second = figureBundle(lineFig()).data["text/html"];
    assert.ok(isPlotlyInlined());
    assert.ok(first.includes(marker), "first figure carries plotly.js");
    assert.match(first, /typeof window\.Plotly === "undefined"/);
    assert.ok(!second.includes(marker), "second figure does not");
    assert.ok(second.length < 5000, `second figure's HTML is small (${second.length})`);
    for (const h of [first, second]) assert.doesNotMatch(h, /<script[^>]+src=/i);
    // A notebook holding one figure stays far under 2 MB.
    const ipynbSize = Buffer.byteLength(JSON.stringify(figureBundle(lineFig(), { inlinePlotly: true })));
    assert.ok(ipynbSize < 1.6e6, `bundle ${ipynbSize} bytes`);
  });

  test("inside the tslab kernel the bundle goes out through lastWriteDisplayData", () => {
    // Fake an already-loaded tslab/dist/jupyter.js, as the kernel process has it.
    const file = path.join(os.tmpdir(), "fake", "node_modules", "tslab", "dist", "jupyter.js");
    const sent: [DisplayBundle, boolean][] = [];
    const cache = require.cache as Record<string, NodeJS.Module>;
    const m = new Module(file) as NodeJS.Module;
    m.exports = { lastWriteDisplayData: (d: DisplayBundle, u: boolean) => sent.push([d, u]) };
    m.loaded = true;
    cache[file] = m;
    try {
      showFigure(lineFig());
      assert.equal(sent.length, 1);
      assert.equal(sent[0]![1], false);
      assert.ok(sent[0]![0].data[PLOTLY_MIME] && sent[0]![0].data["text/html"]);
    } finally {
      delete cache[file];
    }
    // Outside the kernel, without a sink: nothing happens, nothing throws.
    showFigure(lineFig());
    assert.equal(sent.length, 1);
  });
});

describe("files", () => {
  let dir = "";
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "grok-plot-test-"));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const chromium = findChromium();
  const required = process.env.GROK_REQUIRE_CHROMIUM === "1";
  const skip = chromium || required ? false : "no Chromium found (set CHROMIUM_PATH or apt-get install chromium)";
  if (!chromium && required) {
    test("Chromium is installed (GROK_REQUIRE_CHROMIUM=1)", () => assert.fail("no Chromium found"));
  }

  test("a saved page is standalone; with Chromium a line plot renders to a PNG and draws its traces", async () => {
    const saved = await saveFigure(lineFig(), dir, "loss");
    assert.equal(saved.html, path.join(dir, "loss.html"));
    const page = fs.readFileSync(saved.html, "utf8");
    assert.doesNotMatch(page, /<script[^>]*\bsrc\s*=\s*["']?(https?:)?\/\//i, "no remote scripts");
    assert.doesNotMatch(page, /<link[^>]*href\s*=\s*["']?(https?:)?\/\//i, "no remote stylesheets");
    assert.ok(page.includes(plotlyJsSource().slice(1000, 1200)), "plotly.js inlined");
    if (!chromium) {
      assert.equal(saved.png, null);
      assert.match(saved.note ?? "", /Chromium/);
      if (required) assert.fail("GROK_REQUIRE_CHROMIUM=1 but no Chromium found");
      return;
    }
    assert.equal(saved.png, path.join(dir, "loss.png"), saved.note);
    const png = fs.readFileSync(saved.png!);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [640, 400], "PNG at the layout's size");
    assert.ok(png.length > 5000, `PNG has content (${png.length} bytes)`);
    const check = await checkFigurePage(saved.html);
    assert.deepEqual(check.errors, []);
    assert.equal(check.traces, 2);
  });

  test("an empty figure is 0 traces", { skip }, async () => {
    const file = path.join(dir, "empty.html");
    fs.writeFileSync(file, figurePage({ data: [] }));
    const check = await checkFigurePage(file);
    assert.deepEqual(check, { traces: 0, errors: [], plots: 1, declared: 0 });
  });

  test("notebook HTML: the first figure defines Plotly (also under require.js), the second reuses it; errors are reported", { skip }, async () => {
    resetPlotlyInline();
    const heat: Figure = { data: [{ type: "heatmap", z: [[1, 2], [3, 4]] }] };
    const bar: Figure = { data: [{ type: "bar", x: ["a", "b"], y: [1, 2] }] };
    const file = path.join(dir, "notebook.html");
    fs.writeFileSync(
      file,
      "<!DOCTYPE html><html><head><meta charset='utf-8'>" +
        // The classic notebook's require.js: a UMD bundle would register an AMD module, not window.Plotly.
        "<script>window.define = function () {}; window.define.amd = {};</script></head><body>" +
        figureBundle(heat).data["text/html"] +
        figureBundle(bar).data["text/html"] +
        "<script>console.error('boom')</script></body></html>",
    );
    const check = await checkFigurePage(file);
    assert.equal(check.plots, 2);
    assert.equal(check.traces, 2);
    assert.deepEqual(check.errors, ["boom"]);
  });
});
