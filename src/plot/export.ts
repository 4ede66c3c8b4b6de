// Figures to files: standalone HTML pages (offline) and PNGs, and a headless check that a page draws.
//
// Each page inlines plotly.js (1.42 MB) rather than sharing a plotly.min.js copied next to the pages: a
// page is then one file that still renders after it is moved, attached to an issue, uploaded as a CI
// artifact or opened from a zip, with nothing to keep in sync; the cost is disk space only.
//
// PNGs and checks drive a locally installed headless Chromium through child_process (nothing is ever
// downloaded): `--screenshot` for PNGs and `--dump-dom` of a probed copy of the page for checks, both
// with --virtual-time-budget so that Chromium waits for the plot to be drawn.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { execFile } from "node:child_process";
import { pathToFileURL } from "node:url";
import { Figure, FigurePng, escapeHtml, figureHtml, figureSize, plotlyLibraryScript } from "./figure";
import { compactPng } from "./png";

const CHROMIUM_TIMEOUT_MS = 60_000;
const VIRTUAL_TIME_BUDGET_MS = 5_000;

/** A standalone HTML page drawing the figure, with plotly.js inlined: it renders offline. The plot is as
 * wide as the window and as high as the layout says (default 540 px). With `image`, the page is for a
 * screenshot instead: exactly that size, static, without the mode bar. */
export function figurePage(fig: Figure, title = "figure", image?: { width: number; height: number }): string {
  let style = `width:100%;height:${figureSize(fig).height}px;`;
  if (image) {
    style = `width:${image.width}px;height:${image.height}px;`;
    fig = {
      ...fig,
      layout: { ...(fig.layout ?? {}), width: image.width, height: image.height },
      config: { ...(fig.config ?? {}), staticPlot: true, displayModeBar: false, responsive: false },
    };
  }
  return (
    `<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n<title>${escapeHtml(title)}</title>\n` +
    `<style>html, body { margin: 0; background: white; }</style>\n` +
    `${plotlyLibraryScript()}\n</head>\n<body>\n` +
    `${figureHtml(fig, { style })}\n</body>\n</html>\n`
  );
}

/** The Chromium to use: $CHROMIUM_PATH, else the first of the usual install paths that exists; null if
 * none is installed. */
export function findChromium(): string | null {
  const env = process.env.CHROMIUM_PATH;
  if (env) return fs.existsSync(env) ? env : null;
  const candidates = [
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
    "/usr/bin/google-chrome-stable",
    "/opt/google/chrome/chrome",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
  ];
  return candidates.find((p) => fs.existsSync(p)) ?? null;
}

/** Runs headless Chromium on a page with a fresh profile; resolves with its stdout. */
async function runChromium(
  chromium: string,
  url: string,
  extra: string[],
  size: { width: number; height: number },
): Promise<string> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "grok-chromium-"));
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--mute-audio",
    `--user-data-dir=${profile}`,
    `--window-size=${size.width},${size.height}`,
    `--virtual-time-budget=${VIRTUAL_TIME_BUDGET_MS}`,
    ...extra,
    url,
  ];
  try {
    return await new Promise<string>((resolve, reject) => {
      execFile(
        chromium,
        args,
        { timeout: CHROMIUM_TIMEOUT_MS, killSignal: "SIGKILL", maxBuffer: 256 * 1024 * 1024, encoding: "utf8" },
        (err, stdout, stderr) => {
          if (err) {
            const tail = String(stderr).split("\n").slice(-15).join("\n");
            reject(new Error(`chromium failed (${err.killed ? "timed out" : `exit ${err.code}`}): ${tail}`));
          } else resolve(String(stdout));
        },
      );
    });
  } finally {
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

/** The figure as a compact PNG (src/plot/png.ts) at the layout's width and height (default 900×540),
 * drawn by headless Chromium; { png: null, note } when no Chromium is installed or it failed. */
export async function renderFigurePng(fig: Figure): Promise<FigurePng> {
  const chromium = findChromium();
  if (!chromium) {
    return {
      png: null,
      note: "No PNG copy: no Chromium found (set CHROMIUM_PATH, or install one, e.g. apt-get install chromium).",
    };
  }
  const size = figureSize(fig);
  // The screenshot is taken of a fixed-size, static copy of the page (no mode bar) in a temporary directory.
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "grok-png-"));
  try {
    const page = path.join(work, "page.html");
    const shot = path.join(work, "shot.png");
    fs.writeFileSync(page, figurePage(fig, "figure", size));
    await runChromium(chromium, pathToFileURL(page).href, [`--screenshot=${shot}`], size);
    if (!fs.existsSync(shot) || fs.statSync(shot).size === 0) throw new Error("chromium wrote no screenshot");
    return { png: compactPng(fs.readFileSync(shot)) };
  } catch (err) {
    return { png: null, note: `No PNG copy: ${(err as Error).message}` };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

export interface SavedFigure {
  /** The standalone HTML page. */
  html: string;
  /** The PNG, or null when no Chromium is installed (or it failed: see note). */
  png: string | null;
  /** Why there is no PNG. */
  note?: string;
}

/** Writes a file through a temporary name, so that no reader sees it half-written. */
function writeAtomically(file: string, data: string | Buffer): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

/** Writes <dir>/<name>.html (standalone, offline) and, with a Chromium installed, <dir>/<name>.png (see
 * renderFigurePng). Pass the PNG when it is rendered already (figure() shows it too). */
export async function saveFigure(fig: Figure, dir: string, name: string, rendered?: FigurePng): Promise<SavedFigure> {
  if (!name || /[\\/]/.test(name)) throw new Error(`saveFigure: bad name ${JSON.stringify(name)}`);
  fs.mkdirSync(dir, { recursive: true });
  const html = path.resolve(dir, `${name}.html`);
  writeAtomically(html, figurePage(fig, name));
  const { png, note } = rendered ?? (await renderFigurePng(fig));
  if (!png) return { html, png: null, note };
  const file = path.resolve(dir, `${name}.png`);
  writeAtomically(file, png);
  return { html, png: file };
}

// ---- Checking a page ------------------------------------------------------------------------------------

const CHECK_ID = "__grok_figure_check__";

// Runs first in the page: records errors (uncaught, failed resource loads, unhandled rejections,
// console.error, which plotly.js uses for its own errors), then after load writes what was drawn into the
// DOM for --dump-dom. A trace counts as drawn when its group in the plot holds a non-empty path, an image
// or a text: scatter lines/markers, bars, heatmap images, ...
const PROBE = `<script>(function () {
  var errors = [];
  function push(s) { errors.push(String(s)); }
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) push("failed to load " + (t.src || t.href));
    else push((e.message || "error") + (e.filename ? " (" + e.filename + ":" + e.lineno + ")" : ""));
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    var r = e.reason; push("unhandled rejection: " + (r && r.message ? r.message : r));
  });
  var ce = console.error;
  console.error = function () {
    push(Array.prototype.map.call(arguments, String).join(" "));
    return ce.apply(console, arguments);
  };
  // Notebook figures draw once plotly.js and their data are unpacked: wait for every drawing (figure.ts).
  window.addEventListener("load", function () {
    var drawn = (window.grokDrawn || []).map(function (p) { return p.catch(function () {}); });
    Promise.all(drawn).then(function () { setTimeout(probe, 1000); });
  });
  function probe() {
    var plots = document.querySelectorAll(".js-plotly-plot");
    var traces = 0, declared = 0;
    for (var i = 0; i < plots.length; i++) {
      var gd = plots[i];
      declared += (gd.data || []).length;
      var groups = gd.querySelectorAll("g.trace, g.hm, g.im, g.contour");
      for (var j = 0; j < groups.length; j++) {
        var g = groups[j], drawn = g.querySelector("image, text");
        var paths = g.querySelectorAll("path");
        for (var k = 0; !drawn && k < paths.length; k++) {
          var d = paths[k].getAttribute("d");
          if (d && d !== "M0,0Z" && d.length > 2) drawn = paths[k];
        }
        if (drawn) traces++;
      }
    }
    var pre = document.createElement("pre");
    pre.id = "${CHECK_ID}";
    pre.textContent = JSON.stringify({ plots: plots.length, declared: declared, traces: traces, errors: errors });
    document.body.appendChild(pre);
  }
})();</script>`;

export interface PageCheck {
  /** Traces drawn with something visible (a non-empty path, an image, a text), over all plots. */
  traces: number;
  /** Uncaught errors, failed loads, unhandled rejections and console.error messages. */
  errors: string[];
  /** Plotly plots on the page. */
  plots: number;
  /** Traces the plots were given (gd.data), drawn or not. */
  declared: number;
}

/** The DOM of a page (a URL) as headless Chromium has it after loading it, with a fresh profile and a
 * virtual time budget for its scripts. Throws when no Chromium is installed or Chromium fails. */
export async function dumpDom(url: string): Promise<string> {
  const chromium = findChromium();
  if (!chromium) throw new Error("no Chromium found (set CHROMIUM_PATH or install chromium)");
  return runChromium(chromium, url, ["--dump-dom"], figureSize({}));
}

/** Loads an HTML page in headless Chromium and reports how many traces it drew and any errors it logged.
 * Throws when no Chromium is installed or Chromium fails. */
export async function checkFigurePage(htmlPath: string): Promise<PageCheck> {
  const page = path.resolve(htmlPath);
  const source = fs.readFileSync(page, "utf8");
  // A probed copy in a temporary directory; <base> keeps the page's relative URLs pointing next to it.
  const inject = `<base href="${escapeHtml(pathToFileURL(path.dirname(page) + path.sep).href)}">\n${PROBE}\n`;
  const head = /<head[^>]*>/i.exec(source);
  const probed = head
    ? source.slice(0, head.index + head[0].length) + "\n" + inject + source.slice(head.index + head[0].length)
    : inject + source;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "grok-check-"));
  try {
    const file = path.join(dir, "page.html");
    fs.writeFileSync(file, probed);
    const dom = await dumpDom(pathToFileURL(file).href);
    const m = new RegExp(`<pre id="${CHECK_ID}">([^<]*)</pre>`).exec(dom);
    if (!m) throw new Error("checkFigurePage: the page never finished loading (no probe result in the DOM)");
    const text = m[1]!
      .replace(/&quot;/g, '"')
      .replace(/&lt;/g, "<")
      .replace(/&gt;/g, ">")
      .replace(/&nbsp;/g, "\u00a0")
      .replace(/&amp;/g, "&");
    const r = JSON.parse(text) as PageCheck;
    return { traces: r.traces, errors: r.errors, plots: r.plots, declared: r.declared };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
