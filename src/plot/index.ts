// Plotly figures: notebook display (figures with PNGs, markdown), standalone pages, PNGs, headless checks.
export type { Figure, FigureBundle, FigurePng, PlotlyMimeData } from "./figure";
export {
  PLOTLY_MIME,
  PLOTLY_PACKAGE,
  figureBundle,
  figureHtml,
  figureJson,
  resetPlotlyInline,
  isPlotlyInlined,
  plotlyJsSource,
  plotlyJsVersion,
} from "./figure";
export type { DisplayBundle, DisplaySink } from "./display";
export { showFigure, showMarkdown, setDisplaySink } from "./display";
export type { SavedFigure, PageCheck } from "./export";
export { saveFigure, renderFigurePng, figurePage, checkFigurePage, dumpDom, findChromium } from "./export";
export type { PngPixels } from "./png";
export { compactPng, pngPixels } from "./png";
