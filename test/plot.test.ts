import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { pathToFileURL } from "node:url";
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
  renderFigurePng,
  figurePage,
  checkFigurePage,
  dumpDom,
  findChromium,
  compactPng,
  pngPixels,
} from "../src/plot";

const lineFig = (): Figure => ({
  data: [
    { type: "scatter", mode: "lines", name: "train", x: [1, 10, 100, 1000], y: [1, 0.5, 0.05, 0.01] },
    { type: "scatter", mode: "lines", name: "val", x: [1, 10, 100, 1000], y: [1, 0.9, 0.8, 0.02] },
  ],
  layout: { xaxis: { type: "log", title: { text: "step" } }, yaxis: { type: "log" }, width: 640, height: 400 },
});

/** The texts the notebook HTML carries gzip'd and base64'd, in order (plotly.js, then the figures). */
function gzippedTexts(html: string): string[] {
  return [...html.matchAll(/"([A-Za-z0-9+/]{40,}={0,2})"/g)].map((m) =>
    zlib.gunzipSync(Buffer.from(m[1]!, "base64")).toString(),
  );
}

/** A PNG from its IHDR fields and its rows, each a filter byte and the filtered bytes (PNG spec, section 9). */
function makePng(width: number, height: number, colorType: number, rows: number[][]): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8;
  header[9] = colorType;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", zlib.deflateSync(Buffer.from(rows.flat()))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** The chunk types of a PNG, each checked against its CRC. */
function pngChunkTypes(png: Buffer): string[] {
  const types: string[] = [];
  for (let at = 8; at < png.length;) {
    const length = png.readUInt32BE(at);
    const body = png.subarray(at + 4, at + 8 + length);
    assert.equal(png.readUInt32BE(at + 8 + length), zlib.crc32(body), "chunk CRC");
    types.push(body.toString("latin1", 0, 4));
    at += 12 + length;
  }
  return types;
}

describe("notebook display", () => {
  before(() => resetPlotlyInline());

  test("without a PNG: the Plotly JSON and an HTML fallback that says why; the JSON round-trips", async () => {
    const sent: DisplayBundle[] = [];
    const prev = setDisplaySink((b) => sent.push(b));
    try {
      const fig: Figure = {
        data: [{ type: "heatmap", z: [new Float32Array([0.1, 0.2]), new Float32Array([0.3, NaN])] }],
        layout: { title: { text: "a <b>title</b> & </script>" } },
        config: { displaylogo: false },
      };
      await showFigure(fig, { png: null, note: "No PNG copy: none for this test." });
      assert.equal(sent.length, 1);
      const b = sent[0]!;
      assert.deepEqual(Object.keys(b.data).sort(), [PLOTLY_MIME, "text/html"].sort());
      assert.deepEqual(b.metadata, {});
      // Typed arrays become arrays (float32 printed shortest), NaN becomes null; the rest is unchanged.
      const expected = {
        data: [
          {
            type: "heatmap",
            z: [
              [0.1, 0.2],
              [0.3, null],
            ],
          },
        ],
        layout: { title: { text: "a <b>title</b> & </script>" } },
        config: { displaylogo: false },
      };
      assert.deepEqual(b.data[PLOTLY_MIME], expected);
      assert.deepEqual(JSON.parse(JSON.stringify(b.data[PLOTLY_MIME])), expected);
      const html = b.data["text/html"] as string;
      assert.match(
        html,
        /class="grok-plot"[^>]*>Plotly figure: it draws where scripts run \(a trusted notebook\)\. No PNG copy: none for this test\.<\/div>/,
      );
      assert.match(html, /\.newPlot\(/);
      // The HTML carries the figure gzip'd: the same JSON, drawn responsive.
      assert.deepEqual(JSON.parse(gzippedTexts(html).at(-1)!), {
        ...expected,
        config: { responsive: true, displaylogo: false },
      });
      // The title's "</script>" must not end the script element early.
      assert.equal(html.slice(html.lastIndexOf("<script")).match(/<\/script>/gi)?.length, 1);
    } finally {
      setDisplaySink(prev);
    }
  });

  test("with a PNG: image/png, and the same PNG as the HTML fallback's <img> at the layout's size", () => {
    const png = makePng(1, 1, 2, [[0, 255, 0, 0]]);
    const b = figureBundle(
      { ...lineFig(), layout: { title: "loss <i>&</i> accuracy", width: 640, height: 400 } },
      { png: { png } },
    );
    assert.deepEqual(Object.keys(b.data).sort(), [PLOTLY_MIME, "image/png", "text/html"].sort());
    assert.equal(b.data["image/png"], png.toString("base64"));
    assert.ok(
      b.data["text/html"].includes(
        `<img src="data:image/png;base64,${png.toString("base64")}" width="640" height="400" alt="loss &amp; accuracy"`,
      ),
    );
  });

  test("plotly.js goes out gzip'd with the first figure's HTML only", () => {
    resetPlotlyInline();
    const first = figureBundle(lineFig()).data["text/html"];
    const second = figureBundle(lineFig()).data["text/html"];
    assert.ok(isPlotlyInlined());
    const [library, ...figures] = gzippedTexts(first);
    assert.equal(library, plotlyJsSource(), "first figure carries plotly.js");
    assert.equal(figures.length, 1);
    assert.equal(gzippedTexts(second).length, 1, "second figure carries only itself");
    assert.ok(second.length < 5000, `second figure's HTML is small (${second.length})`);
    for (const h of [first, second]) assert.doesNotMatch(h, /<script[^>]+src=/i);
    // A notebook holding one figure: plotly.js gzip'd is 0.63 MB instead of 1.46 MB.
    const ipynbSize = Buffer.byteLength(JSON.stringify(figureBundle(lineFig(), { inlinePlotly: true })));
    assert.ok(ipynbSize < 0.7e6, `bundle ${ipynbSize} bytes`);
  });

  test("inside the tslab kernel the bundle goes out through lastWriteDisplayData", async () => {
    // Fake an already-loaded tslab/dist/jupyter.js, as the kernel process has it.
    const file = path.join(os.tmpdir(), "fake", "node_modules", "tslab", "dist", "jupyter.js");
    const sent: [DisplayBundle, boolean][] = [];
    const cache = require.cache as Record<string, NodeJS.Module>;
    const m = new Module(file) as NodeJS.Module;
    m.exports = { lastWriteDisplayData: (d: DisplayBundle, u: boolean) => sent.push([d, u]) };
    m.loaded = true;
    cache[file] = m;
    try {
      await showFigure(lineFig(), { png: null, note: "No PNG copy." });
      assert.equal(sent.length, 1);
      assert.equal(sent[0]![1], false);
      assert.ok(sent[0]![0].data[PLOTLY_MIME] && sent[0]![0].data["text/html"]);
    } finally {
      delete cache[file];
    }
    // Outside the kernel, without a sink: nothing happens, nothing throws.
    await showFigure(lineFig());
    assert.equal(sent.length, 1);
  });
});

describe("compact PNGs", () => {
  // 2×5 RGB pixels, one row per filter type; the filtered bytes are worked out by hand from the pixels.
  const pixels = [
    [0x0a141e, 0x28323c],
    [0x0b1621, 0x0f1923],
    [0x0c1824, 0xc86432],
    [0x141e28, 0xfa0a00],
    [0x050505, 0xffffff],
  ];
  const rows = [
    [0, 10, 20, 30, 40, 50, 60], // none
    [1, 11, 22, 33, 4, 3, 2], // sub: minus the pixel on the left
    [2, 1, 2, 3, 185, 75, 15], // up: minus the pixel above
    [3, 14, 18, 22, 140, 201, 211], // average of left and above
    [4, 241, 231, 221, 5, 250, 255], // Paeth
  ];

  test("a truecolour PNG of every filter type becomes a palette PNG of the same pixels", () => {
    const png = makePng(2, 5, 2, rows);
    assert.deepEqual([...pngPixels(png)!.pixels], pixels.flat());
    const compact = compactPng(png);
    assert.equal(compact[25], 3, "colour type 3: palette");
    assert.deepEqual(pngChunkTypes(compact), ["IHDR", "PLTE", "IDAT", "IEND"]);
    assert.deepEqual(pngPixels(compact), { width: 2, height: 5, pixels: new Uint32Array(pixels.flat()), opaque: true });
  });

  test("above 256 colours the most frequent are kept and the others become their nearest", () => {
    // 256 greys twice each, then 20 colours once each that are one step off grey g: (g, g, g + 1).
    const greys = Array.from({ length: 512 }, (_, i) => i >> 1);
    const off = Array.from({ length: 20 }, (_, i) => 10 * i);
    const colours = [...greys.map((g) => [g, g, g]), ...off.map((g) => [g, g, g + 1])];
    const png = makePng(
      28,
      19,
      2,
      Array.from({ length: 19 }, (_, y) => [0, ...colours.slice(y * 28, y * 28 + 28).flat()]),
    );
    const { pixels: out } = pngPixels(compactPng(png))!;
    assert.deepEqual(
      [...out],
      [...greys, ...off].map((g) => g * 0x010101),
    );
  });

  test("a PNG with transparent pixels comes back unchanged; what is not a PNG is an error", () => {
    const rgba = makePng(2, 1, 6, [[0, 1, 2, 3, 255, 4, 5, 6, 0]]);
    assert.equal(pngPixels(rgba)!.opaque, false);
    assert.equal(compactPng(rgba), rgba);
    assert.throws(() => compactPng(Buffer.from("GIF89a")), /not a PNG \(bad signature\)/);
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
    const image = pngPixels(png)!;
    assert.equal(png[25], 3, "a palette PNG");
    assert.deepEqual([image.width, image.height], [640, 400], "PNG at the layout's size");
    assert.ok(new Set(image.pixels).size > 10, "PNG has content: lines, axes, text");
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

  test(
    "notebook HTML: the first figure defines Plotly (also under require.js), the second reuses it; errors are reported",
    { skip },
    async () => {
      resetPlotlyInline();
      const heat: Figure = {
        data: [
          {
            type: "heatmap",
            z: [
              [1, 2],
              [3, 4],
            ],
          },
        ],
      };
      const bar: Figure = { data: [{ type: "bar", x: ["a", "b"], y: [1, 2] }] };
      const file = path.join(dir, "notebook.html");
      fs.writeFileSync(
        file,
        "<!DOCTYPE html><html><head><meta charset='utf-8'>" +
          // The classic notebook's require.js: a UMD bundle would register an AMD module, not window.Plotly.
          "<script>window.define = function () {}; window.define.amd = {};</script></head><body>" +
          figureBundle(heat, { png: await renderFigurePng(heat) }).data["text/html"] +
          figureBundle(bar).data["text/html"] +
          "<script>console.error('boom')</script></body></html>",
      );
      const check = await checkFigurePage(file);
      assert.equal(check.plots, 2);
      assert.equal(check.traces, 2);
      assert.deepEqual(check.errors, ["boom"]);
    },
  );

  test(
    "notebook HTML without plotly.js (its cell cleared): the figure keeps its PNG, without errors",
    { skip },
    async () => {
      const rendered = await renderFigurePng(lineFig());
      assert.ok(rendered.png, rendered.note);
      const file = path.join(dir, "no-plotly.html");
      const html = figureBundle(lineFig(), { png: rendered, inlinePlotly: false }).data["text/html"];
      fs.writeFileSync(file, `<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>${html}</body></html>`);
      assert.deepEqual(await checkFigurePage(file), { traces: 0, errors: [], plots: 0, declared: 0 });
      const dom = await dumpDom(pathToFileURL(file).href);
      const still = `class="grok-plot" style="width:100%;"><img src="data:image/png;base64,${rendered.png.toString("base64")}"`;
      assert.ok(dom.includes(still), "the div still holds the PNG");
    },
  );
});
