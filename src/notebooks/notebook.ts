// What every notebook needs beyond the library: the preset it runs at, and figures that are shown inline
// and, during `npm run figures`, also written to the figures folder.

import * as path from "node:path";
import { Figure, renderFigurePng, saveFigure, showFigure } from "../plot/index";

/**
 * smoke: seconds, for CI; quick: minutes on a 2-core laptop and still the paper's effect; paper: the
 * paper's budgets (a GPU or a long night).
 */
export const NOTEBOOK_PRESETS = ["smoke", "quick", "paper"] as const;
export type Preset = (typeof NOTEBOOK_PRESETS)[number];

/**
 * The preset a notebook runs at: GROK_PRESET when set (npm run figures, CI), else the notebook's own
 * setting. An unknown name is an error rather than a silent default.
 */
export function notebookPreset(setting: Preset = "quick"): Preset {
  const chosen = process.env.GROK_PRESET ?? setting;
  if (!(NOTEBOOK_PRESETS as readonly string[]).includes(chosen)) {
    throw new Error(`unknown preset "${chosen}"${process.env.GROK_PRESET ? " (from GROK_PRESET)" : ""}; choose one of ${NOTEBOOK_PRESETS.join(", ")}`);
  }
  return chosen as Preset;
}

/** The value for a preset, e.g. byPreset(preset, { smoke: 50, quick: 20_000, paper: 1_000_000 }). */
export function byPreset<T>(preset: Preset, values: Record<Preset, T>): T {
  return values[preset];
}

/**
 * Shows a figure in the notebook (with its PNG, see showFigure) and, when GROK_FIGURES_DIR is set (npm run
 * figures), writes it there as `<name>.html` and `<name>.png`. The PNG is rendered once for both.
 */
export async function figure(fig: Figure, name: string): Promise<void> {
  const rendered = await renderFigurePng(fig);
  await showFigure(fig, rendered);
  const dir = process.env.GROK_FIGURES_DIR;
  if (dir) await saveFigure(fig, path.resolve(dir), name, rendered);
}
