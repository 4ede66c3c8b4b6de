// `grok figures`: re-executes every notebook headless and saves its outputs and figures (runFigures, in
// src/notebooks/figures.ts). Exit code 0 when every notebook ran, 1 when one failed, 2 on bad flags.

import { runFigures, FiguresOptions } from "../notebooks/figures";
import { NOTEBOOK_PRESETS, Preset } from "../notebooks/notebook";
import { UserError } from "../util/errors";
import { parseFlags } from "./flags";

const FIGURES_USAGE =
  "usage: grok figures [--preset smoke|quick|paper] [--only NAME] [--no-write] [--timeout SECONDS] [--no-progress]\n" +
  "  Re-executes notebooks/*.ipynb headless with tslab, saves their outputs, exports figures to figures/;\n" +
  "  shows the running notebook, cell and the cell's progress on stderr (--no-progress: not).";

function figuresOptions(values: Record<string, string | boolean | undefined>): FiguresOptions {
  const opts: FiguresOptions = {};
  if (typeof values.preset === "string") {
    if (!(NOTEBOOK_PRESETS as readonly string[]).includes(values.preset)) {
      throw new UserError(
        `--preset must be one of ${NOTEBOOK_PRESETS.join(", ")} (got ${values.preset})\n${FIGURES_USAGE}`,
      );
    }
    opts.preset = values.preset as Preset;
  }
  if (typeof values.only === "string") opts.only = values.only;
  if (values["no-write"]) opts.write = false;
  if (values["no-progress"]) opts.progress = false;
  if (typeof values.timeout === "string") {
    const s = Number(values.timeout);
    if (!(s > 0)) throw new UserError(`--timeout takes a positive number of seconds\n${FIGURES_USAGE}`);
    opts.timeoutMs = s * 1000;
  }
  return opts;
}

export async function figuresCommand(args: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseFlags(
      args,
      {
        preset: { type: "string" },
        only: { type: "string" },
        "no-write": { type: "boolean" },
        timeout: { type: "string" },
        "no-progress": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      0,
    ));
  } catch (err) {
    // a bad flag is shown with the usage
    throw new UserError(`${(err as Error).message}\n${FIGURES_USAGE}`);
  }
  if (values.help) {
    process.stdout.write(FIGURES_USAGE + "\n");
    return 0;
  }
  return runFigures(figuresOptions(values));
}
