// Notebook display: figures and markdown go out as Jupyter display_data messages, through the tslab
// kernel's lastWriteDisplayData inside a notebook, or to a sink set by setDisplaySink (tests, headless
// runs). Outside both, showing something does nothing.
import { Figure, FigurePng, figureBundle } from "./figure";
import { renderFigurePng } from "./export";

/** A Jupyter display_data content: MIME bundle, metadata, transient (display_id). */
export interface DisplayBundle {
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  transient: Record<string, unknown>;
}

export type DisplaySink = (bundle: DisplayBundle) => void;

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

/** Routes displayed bundles to fn instead of the tslab kernel (null restores the default). Returns the
 * previous sink. */
export function setDisplaySink(fn: DisplaySink | null): DisplaySink | null {
  const prev = sink;
  sink = fn;
  return prev;
}

/** Where a bundle goes now: the sink, else the tslab kernel, else nowhere (null). */
function displayTarget(): DisplaySink | null {
  if (sink) return sink;
  const write = tslabWriteDisplayData();
  return write ? (bundle) => write(bundle, false) : null;
}

/** Shows a figure in a notebook cell: one display_data with the Plotly JSON, a PNG (rendered by headless
 * Chromium where one is installed, unless `rendered` is given) and an HTML fallback that shows the PNG
 * until scripts draw the live plot. Outside a notebook, without a sink, it does nothing. */
export async function showFigure(fig: Figure, rendered?: FigurePng): Promise<void> {
  const target = displayTarget();
  if (target) target(figureBundle(fig, { png: rendered ?? (await renderFigurePng(fig)) }));
}

/** Shows markdown in a notebook cell (text/markdown), with a text/plain copy for frontends that do not
 * render markdown (an untrusted classic notebook shows the plain text): `plain`, else the markdown itself. */
export function showMarkdown(markdown: string, plain: string = markdown): void {
  displayTarget()?.({ data: { "text/markdown": markdown, "text/plain": plain }, metadata: {}, transient: {} });
}
