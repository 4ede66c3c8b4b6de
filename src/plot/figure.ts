// Plotly figures in notebook cells (tslab) and in plain Node.
//
// A figure goes out as ONE Jupyter display_data carrying three MIME types:
//   application/vnd.plotly.v1+json  the figure JSON, rendered natively by JupyterLab (with the plotly
//                                   renderer) and VS Code;
//   image/png                       the figure drawn by headless Chromium (src/plot/export.ts), where one
//                                   is installed: what a renderer without scripts shows;
//   text/html                       what the classic notebook and nbconvert'd HTML (nbviewer, GitHub) show:
//                                   the same PNG as an <img>, in a div that a script fills with the live
//                                   plot when scripts run. Untrusted notebooks and GitHub strip the script
//                                   and keep the <img> (the classic notebook prefers text/html to image/png,
//                                   so the PNG must be in the HTML too). Without a PNG the div holds a line
//                                   saying so. The first figure of a kernel session also carries plotly.js.
//
// Size: committed notebooks stay under 2 MB. The HTML carries plotly.js and the figure JSON gzip'd and
// base64'd, unpacked in the browser with DecompressionStream: plotly.js is then 0.63 MB instead of 1.46 MB
// per notebook, and a heatmap's hover text (100+ kB) costs a tenth of that in its second copy. The PNGs
// are palette PNGs (src/plot/png.ts) at the layout's size, typically 10-40 kB each.
//
// The plotly.js bundle is `plotly.js-cartesian-dist-min` (3.7.0: 1.42 MB minified, 0.47 MB gzipped). It
// is the smallest official bundle with every trace type the notebooks draw: scatter (lines, markers, log
// axes), heatmap and bar (it also has box, contour, histogram(2d), image, pie, violin).
// `plotly.js-basic-dist-min` (1.12 MB) lacks heatmap; the full `plotly.js-dist-min` (4.85 MB) would not
// fit.
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { randomUUID } from "node:crypto";

/** A Plotly figure, as Plotly.newPlot and the application/vnd.plotly.v1+json MIME type take it. */
export interface Figure {
  data: object[];
  layout?: object;
  config?: object;
}

/** A figure's display_data content: MIME bundle, metadata, transient (display_id). */
export interface FigureBundle {
  data: FigureMimeData;
  metadata: Record<string, unknown>;
  transient: Record<string, unknown>;
}

export type FigureMimeData = {
  "application/vnd.plotly.v1+json": PlotlyMimeData;
  "text/html": string;
  /** base64, where a PNG was rendered */
  "image/png"?: string;
};

/** A figure's PNG as rendered by headless Chromium, or null with the reason (no Chromium, a failure). */
export interface FigurePng {
  png: Buffer | null;
  note?: string;
}

export interface PlotlyMimeData {
  data: object[];
  layout: object;
  config?: object;
}

export const PLOTLY_PACKAGE = "plotly.js-cartesian-dist-min";
export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

let plotlySource: string | null = null;

/** The minified plotly.js bundle's source text (read once from node_modules). */
export function plotlyJsSource(): string {
  if (plotlySource === null) {
    const pkgDir = path.dirname(require.resolve(`${PLOTLY_PACKAGE}/package.json`));
    const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8")) as { main?: string };
    plotlySource = fs.readFileSync(path.join(pkgDir, pkg.main ?? "plotly-cartesian.min.js"), "utf8");
  }
  return plotlySource;
}

/** The plotly.js version inlined in pages and notebooks. */
export function plotlyJsVersion(): string {
  return (require(`${PLOTLY_PACKAGE}/package.json`) as { version: string }).version;
}

// ---- JSON ----------------------------------------------------------------------------------------------

/** The shortest decimal that reads back as the same float32 (Float32Array weights would otherwise print
 * with 17 digits, doubling a heatmap's size in the notebook). */
function float32Shortest(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  for (let p = 1; p < 9; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === x) return y;
  }
  return Number(x.toPrecision(9));
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    if (value instanceof Float32Array) return Array.from(value, float32Shortest);
    if (value instanceof BigInt64Array || value instanceof BigUint64Array) return Array.from(value, Number);
    return Array.from(value as unknown as ArrayLike<number>);
  }
  if (typeof value === "bigint") return Number(value);
  return value;
}

/** The figure as plain JSON data: typed arrays become arrays, NaN/±Infinity become null (gaps). */
export function figureJson(fig: Figure): PlotlyMimeData {
  const plain = JSON.parse(JSON.stringify(fig, jsonReplacer)) as Figure;
  if (!Array.isArray(plain.data)) throw new TypeError("Figure.data must be an array of traces");
  const out: PlotlyMimeData = { data: plain.data, layout: plain.layout ?? {} };
  if (plain.config !== undefined) out.config = plain.config;
  return out;
}

/** JSON safe to place inside an HTML <script> element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value, jsonReplacer)
    .replace(/</g, "\\u003c")
    .replace(/>/g, "\\u003e")
    .replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

/** A <script> element that defines window.Plotly from the inlined bundle unless it is already defined. (The
 * plotly.js 3 bundles set window.Plotly themselves, also under the classic notebook's require.js or where a
 * CommonJS `module` is defined, so no AMD shim is needed.) */
export function plotlyLibraryScript(): string {
  const src = plotlyJsSource().replace(/<\/(script)/gi, "<\\/$1");
  return (
    `<script type="text/javascript">/* ${PLOTLY_PACKAGE} ${plotlyJsVersion()}, inlined */\n` +
    `if (typeof window.Plotly === "undefined") {\n${src}\n}\n</script>`
  );
}

/** A div and the script drawing the figure into it with window.Plotly (for pages that load plotly.js
 * first: figurePage). */
export function figureHtml(fig: Figure, opts: { id?: string; style?: string } = {}): string {
  const json = figureJson(fig);
  const id = opts.id ?? `grok-plot-${randomUUID()}`;
  const config = { responsive: true, ...(json.config ?? {}) };
  const style = opts.style ?? "width:100%;";
  return (
    `<div id="${id}" class="grok-plot" style="${style}"></div>\n` +
    `<script type="text/javascript">window.Plotly.newPlot(${scriptJson(id)}, ${scriptJson(json.data)}, ` +
    `${scriptJson(json.layout)}, ${scriptJson(config)});</script>`
  );
}

/** A figure's size in pixels (its PNG's): the layout's width and height, else 900×540. */
export function figureSize(fig: { layout?: object }): { width: number; height: number } {
  const layout = (fig.layout ?? {}) as { width?: unknown; height?: unknown };
  const dim = (v: unknown, dflt: number) => (typeof v === "number" && v > 0 ? Math.round(v) : dflt);
  return { width: dim(layout.width, 900), height: dim(layout.height, 540) };
}

/** Text escaped for HTML content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

// ---- Notebook display -----------------------------------------------------------------------------------

/** gzip'd and base64'd: how the notebook HTML carries plotly.js and the figure JSON (see the top). */
function gzipBase64(text: string): string {
  return zlib.gzipSync(text, { level: 9 }).toString("base64");
}

// In the browser: a promise of the text that gzipBase64 packed.
const GUNZIP_JS =
  `function (b64) {\n` +
  `    var bytes = Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); });\n` +
  `    var text = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));\n` +
  `    return new Response(text).text();\n  }`;

/** A <script> that sets window.grokPlotly, a promise of window.Plotly, unpacking the inlined plotly.js
 * unless Plotly or the promise is there already. */
function notebookPlotlyScript(): string {
  return (
    `<script type="text/javascript">/* ${PLOTLY_PACKAGE} ${plotlyJsVersion()}, inlined gzip'd and base64'd */\n` +
    `if (!window.grokPlotly) window.grokPlotly = window.Plotly ? Promise.resolve(window.Plotly) : (${GUNZIP_JS})(\n` +
    `  "${gzipBase64(plotlyJsSource())}"\n` +
    `).then(function (source) {\n` +
    `  var s = document.createElement("script");\n  s.text = source;\n  document.head.appendChild(s);\n` +
    `  return window.Plotly;\n});\n</script>`
  );
}

/** The figure's title as plain text (for the PNG's alt text), or "figure". */
function figureTitle(json: PlotlyMimeData): string {
  const title = (json.layout as { title?: string | { text?: string } }).title;
  const text = typeof title === "string" ? title : title?.text;
  return text
    ? text
        .replace(/<[^>]*>/g, " ")
        .replace(/\s+/g, " ")
        .trim()
    : "figure";
}

/** The notebook's HTML for a figure: the PNG (or a line saying why there is none) in a div that the script
 * replaces by the live plot once plotly.js is loaded. Each drawing is pushed onto window.grokDrawn, which
 * checkFigurePage waits for. */
function notebookFigureHtml(json: PlotlyMimeData, rendered: FigurePng): string {
  const id = `grok-plot-${randomUUID()}`;
  const { width, height } = figureSize(json);
  const still = rendered.png
    ? `<img src="data:image/png;base64,${rendered.png.toString("base64")}" width="${width}" height="${height}" ` +
      `alt="${escapeHtml(figureTitle(json))}" style="max-width:100%;height:auto;">`
    : escapeHtml(`Plotly figure: it draws where scripts run (a trusted notebook). ${rendered.note ?? "No PNG copy."}`);
  const fig = { data: json.data, layout: json.layout, config: { responsive: true, ...(json.config ?? {}) } };
  return (
    `<div id="${id}" class="grok-plot" style="width:100%;">${still}</div>\n` +
    `<script type="text/javascript">(function () {\n` +
    `  var gd = document.getElementById(${scriptJson(id)});\n` +
    `  var plotly = window.Plotly ? Promise.resolve(window.Plotly) : window.grokPlotly;\n` +
    `  if (!plotly) {\n` +
    `    if (!gd.querySelector("img")) gd.textContent = "plotly.js is not loaded: it is inlined in the first figure ` +
    `of a kernel session; re-run that cell, or call resetPlotlyInline() and show this figure again.";\n` +
    `    return;\n  }\n` +
    `  var gunzip = ${GUNZIP_JS};\n` +
    `  var drawn = Promise.all([plotly, gunzip("${gzipBase64(JSON.stringify(fig))}")]).then(function (r) {\n` +
    `    var fig = JSON.parse(r[1]);\n` +
    `    gd.textContent = "";\n` +
    `    return r[0].newPlot(gd, fig.data, fig.layout, fig.config);\n` +
    `  });\n` +
    `  (window.grokDrawn = window.grokDrawn || []).push(drawn);\n` +
    `})();</script>`
  );
}

let plotlyInlined = false;

/** Makes the next figure's HTML carry plotly.js again (e.g. after clearing the cell that carried it). */
export function resetPlotlyInline(): void {
  plotlyInlined = false;
}

/** Whether plotly.js has already gone out with a figure's HTML in this process (kernel session). */
export function isPlotlyInlined(): boolean {
  return plotlyInlined;
}

/** The display_data content for a figure, with its PNG where one was rendered (see the top of this file).
 * The first call in a process inlines plotly.js in the HTML; later calls do not (pass { inlinePlotly:
 * true/false } to force either). */
export function figureBundle(fig: Figure, opts: { png?: FigurePng; inlinePlotly?: boolean } = {}): FigureBundle {
  const json = figureJson(fig);
  const rendered = opts.png ?? { png: null, note: "No PNG copy was rendered." };
  const inline = opts.inlinePlotly ?? !plotlyInlined;
  let html = notebookFigureHtml(json, rendered);
  if (inline) {
    html = notebookPlotlyScript() + "\n" + html;
    plotlyInlined = true;
  }
  const data: FigureMimeData = { [PLOTLY_MIME]: json, "text/html": html };
  if (rendered.png) data["image/png"] = rendered.png.toString("base64");
  return { data, metadata: {}, transient: {} };
}
