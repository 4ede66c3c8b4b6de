// Plotly figures in notebook cells (tslab) and in plain Node.
//
// showFigure(fig) sends ONE Jupyter display_data message carrying two MIME types:
//   application/vnd.plotly.v1+json  the figure JSON, rendered natively by JupyterLab (with the plotly
//                                   renderer), VS Code and nbconvert'd HTML;
//   text/html                       an offline fallback for the classic notebook: a div and a script
//                                   calling Plotly.newPlot. The first figure of a kernel session also
//                                   carries plotly.js itself (inlined, never a CDN), which defines
//                                   window.Plotly if it is not defined yet; later figures only call it.
//
// The plotly.js bundle is `plotly.js-cartesian-dist-min` (3.7.0: 1.42 MB minified, 1.46 MB once
// JSON-escaped into an .ipynb, 0.47 MB gzipped). It is the smallest official bundle with every trace type
// the notebooks draw: scatter (lines, markers, log axes), heatmap and bar (it also has box, contour,
// histogram(2d), image, pie, violin). `plotly.js-basic-dist-min` (1.12 MB) lacks heatmap, and the full
// `plotly.js-dist-min` (4.85 MB) or `plotly.js-dist` (11 MB, unminified) alone would break the 2 MB limit
// on committed notebooks.
import * as fs from "node:fs";
import * as path from "node:path";
import { randomUUID } from "node:crypto";

/** A Plotly figure, as Plotly.newPlot and the application/vnd.plotly.v1+json MIME type take it. */
export interface Figure {
  data: object[];
  layout?: object;
  config?: object;
}

/** A Jupyter display_data content: MIME bundle, metadata, transient (display_id). */
export interface DisplayBundle {
  data: { "application/vnd.plotly.v1+json": PlotlyMimeData; "text/html": string };
  metadata: Record<string, unknown>;
  transient: Record<string, unknown>;
}

export interface PlotlyMimeData {
  data: object[];
  layout: object;
  config?: object;
}

export type DisplaySink = (bundle: DisplayBundle) => void;

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
export function scriptJson(value: unknown): string {
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

/** A div and the script drawing the figure into it with window.Plotly. */
export function figureHtml(fig: Figure, opts: { id?: string; style?: string } = {}): string {
  const json = figureJson(fig);
  const id = opts.id ?? `grok-plot-${randomUUID()}`;
  const config = { responsive: true, ...(json.config ?? {}) };
  const style = opts.style ?? "width:100%;";
  return (
    `<div id="${id}" class="grok-plot" style="${style}"></div>\n` +
    `<script type="text/javascript">(function () {\n` +
    `  var gd = document.getElementById(${scriptJson(id)});\n` +
    `  if (typeof window.Plotly === "undefined") {\n` +
    `    gd.textContent = "plotly.js is not loaded: it is inlined in the first figure of a kernel session; ` +
    `re-run that cell, or call resetPlotlyInline() and show this figure again.";\n` +
    `    return;\n  }\n` +
    `  window.Plotly.newPlot(gd, ${scriptJson(json.data)}, ${scriptJson(json.layout)}, ${scriptJson(config)});\n` +
    `})();</script>`
  );
}

// ---- Notebook display -----------------------------------------------------------------------------------

let plotlyInlined = false;

/** Makes the next figure's HTML carry plotly.js again (e.g. after clearing the cell that carried it). */
export function resetPlotlyInline(): void {
  plotlyInlined = false;
}

/** Whether plotly.js has already gone out with a figure's HTML in this process (kernel session). */
export function isPlotlyInlined(): boolean {
  return plotlyInlined;
}

/** The display_data content for a figure. The first call in a process inlines plotly.js in the HTML;
 * later calls do not (pass { inlinePlotly: true/false } to force either). */
export function figureBundle(fig: Figure, opts: { inlinePlotly?: boolean } = {}): DisplayBundle {
  const json = figureJson(fig);
  const inline = opts.inlinePlotly ?? !plotlyInlined;
  let html = figureHtml(fig);
  if (inline) {
    html = plotlyLibraryScript() + "\n" + html;
    plotlyInlined = true;
  }
  return { data: { [PLOTLY_MIME]: json, "text/html": html } as DisplayBundle["data"], metadata: {}, transient: {} };
}

type WriteDisplayData = (data: DisplayBundle, update: boolean) => void;

/** The tslab kernel's writeDisplayData, or null outside the kernel. Looks only at modules already loaded
 * (any copy of tslab/dist/jupyter.js the kernel runs from): it never loads tslab (and zeromq) itself. */
export function tslabWriteDisplayData(): WriteDisplayData | null {
  for (const [file, mod] of Object.entries(require.cache)) {
    if (!mod || !/[\\/]tslab[\\/]dist[\\/]jupyter\.js$/.test(file)) continue;
    const fn = (mod.exports as { lastWriteDisplayData?: unknown }).lastWriteDisplayData;
    if (typeof fn === "function") return fn as WriteDisplayData;
  }
  return null;
}

let sink: DisplaySink | null = null;

/** Routes showFigure's bundles to fn instead of the tslab kernel (null restores the default). Returns the
 * previous sink. */
export function setDisplaySink(fn: DisplaySink | null): DisplaySink | null {
  const prev = sink;
  sink = fn;
  return prev;
}

/** Shows a figure in a notebook cell: one display_data with the Plotly JSON and an offline HTML fallback.
 * Outside tslab (plain Node, tests), without a sink set by setDisplaySink, it does nothing. */
export function showFigure(fig: Figure): void {
  if (sink) {
    sink(figureBundle(fig));
    return;
  }
  const write = tslabWriteDisplayData();
  if (write) write(figureBundle(fig), false);
}
