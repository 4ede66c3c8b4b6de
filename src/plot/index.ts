// Plotly figures: notebook display (tslab), standalone pages, PNGs and headless checks.
export type { Figure, DisplayBundle, DisplaySink, PlotlyMimeData } from "./figure";
export {
  PLOTLY_MIME,
  PLOTLY_PACKAGE,
  showFigure,
  figureBundle,
  figureHtml,
  figureJson,
  setDisplaySink,
  resetPlotlyInline,
  isPlotlyInlined,
  plotlyJsSource,
  plotlyJsVersion,
} from "./figure";
export type { SavedFigure, PageCheck } from "./export";
export { saveFigure, figurePage, checkFigurePage, findChromium } from "./export";
