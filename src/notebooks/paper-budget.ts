// The paper preset's budget, notebook by notebook: the runs each notebook trains at `paper` and their steps,
// read from the notebooks themselves. Their cells run here with preset "paper", statement by statement, in a
// sandbox where runSweep and train record what they are given instead of training, the config and spec
// builders are the library's, and every other library function throws (so nothing trains, reads the store or
// replays a run; a statement that fails is passed over). The runs are counted once per notebook, and once in
// the total where notebooks share them (a run is its config). The steps are each run's budget: runs that
// stop early (training.earlyStopHold) take fewer.

import * as fs from "node:fs";
import * as path from "node:path";
import * as vm from "node:vm";
import type * as TS from "typescript";
import { normalizeConfig, paperConfig, RunConfig, setConfigField, withChanges } from "../config/run-config";
import { findOperation, OPERATIONS } from "../data/operations";
import { PAPER_TRANSFORMER } from "../model/config";
import { PAPER_OPTIMIZER } from "../optim/optimizer";
import { RunStore } from "../store/run-store";
import { expandSweep, SweepSpec } from "../sweeps/spec";
import { demoConfig, fig1Config, FIG2_OPTIMIZER_VARIANTS, PRESETS } from "../training/presets";
import { byPreset, Preset } from "./notebook";

export interface NotebookBudget {
  /** The notebook's file name without .ipynb. */
  notebook: string;
  runs: number;
  /** Σ over its runs of training.steps. */
  runSteps: number;
}

export interface PaperBudget {
  notebooks: NotebookBudget[];
  /** Every notebook's runs, each counted once. */
  total: { runs: number; runSteps: number };
}

/** The notebooks of this checkout (this file runs as dist/src/notebooks/paper-budget.js). */
export const NOTEBOOKS_DIR = path.resolve(__dirname, "../../../notebooks");

/** The library names a notebook's spec cells may use as they are: they build configs and specs. */
const BUILDERS: Record<string, unknown> = {
  OPERATIONS,
  FIG2_OPTIMIZER_VARIANTS,
  PRESETS,
  PAPER_TRANSFORMER,
  PAPER_OPTIMIZER,
  paperConfig,
  fig1Config,
  demoConfig,
  withChanges,
  setConfigField,
  normalizeConfig,
  findOperation,
  expandSweep,
  byPreset,
  notebookPreset: (): Preset => "paper",
};

/** tslab's TypeScript: the compiler the notebooks' cells are written for (tslab is a dependency). */
function tslabTypeScript(): typeof TS {
  const tslab = path.dirname(require.resolve("tslab/package.json"));
  return require(require.resolve("@tslab/typescript-for-tslab", { paths: [tslab] })) as typeof TS;
}

/** Whether a statement awaits at its top level (not inside a function it defines). */
function awaitsAtTop(ts: typeof TS, node: TS.Node): boolean {
  if (ts.isAwaitExpression(node) || (ts.isForOfStatement(node) && node.awaitModifier)) return true;
  if (ts.isFunctionLike(node)) return false;
  return ts.forEachChild(node, (child) => awaitsAtTop(ts, child) || undefined) ?? false;
}

/** The configs a notebook trains at preset "paper": its cells run in a sandbox (see the top of this file). */
async function notebookConfigs(ts: typeof TS, file: string): Promise<RunConfig[]> {
  const configs: RunConfig[] = [];
  const refused = (name: string) => () => {
    throw new Error(`${name} is not run for a budget`);
  };
  const recorders: Record<string, unknown> = {
    runSweep: async (spec: SweepSpec) => {
      configs.push(...expandSweep(spec).map((r) => r.config));
      return { name: spec.name, runs: [] };
    },
    train: async (cfg: RunConfig) => {
      configs.push(normalizeConfig(cfg));
      throw new Error("train is not run for a budget");
    },
  };
  const quiet = { log() {}, error() {}, warn() {}, info() {} };
  const context = vm.createContext({ console: quiet });
  const cells = (JSON.parse(fs.readFileSync(file, "utf8")) as { cells: { cell_type: string; source: string[] }[] })
    .cells;
  for (const cell of cells.filter((c) => c.cell_type === "code")) {
    const sf = ts.createSourceFile("cell.ts", cell.source.join(""), ts.ScriptTarget.ES2022, true);
    for (const stmt of sf.statements) {
      if (ts.isImportDeclaration(stmt)) {
        const bindings = stmt.importClause?.namedBindings;
        if (bindings && ts.isNamedImports(bindings))
          for (const el of bindings.elements) {
            const name = el.name.text;
            context[name] = recorders[name] ?? BUILDERS[name] ?? refused(name);
          }
        continue;
      }
      const js = ts.transpileModule(stmt.getText(sf), {
        compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.None },
      }).outputText;
      try {
        if (awaitsAtTop(ts, stmt)) await vm.runInContext(`(async () => {\n${js}\n})()`, context, { timeout: 10_000 });
        else vm.runInContext(js, context, { timeout: 10_000 });
      } catch {
        // a statement that needs a trained run: passed over
      }
    }
  }
  return configs;
}

const budgetOf = (configs: Map<string, RunConfig>) => ({
  runs: configs.size,
  runSteps: [...configs.values()].reduce((sum, c) => sum + c.training.steps, 0),
});

/** Runs and run-steps of every notebook in `dir` at the paper preset, in file order, and the total. */
export async function paperBudget(dir = NOTEBOOKS_DIR): Promise<PaperBudget> {
  const ts = tslabTypeScript();
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".ipynb"))
    .sort();
  const notebooks: NotebookBudget[] = [];
  const all = new Map<string, RunConfig>();
  for (const file of files) {
    const mine = new Map<string, RunConfig>();
    for (const cfg of await notebookConfigs(ts, path.join(dir, file))) mine.set(RunStore.idFor(cfg), cfg);
    for (const [id, cfg] of mine) all.set(id, cfg);
    notebooks.push({ notebook: file.replace(/\.ipynb$/, ""), ...budgetOf(mine) });
  }
  return { notebooks, total: budgetOf(all) };
}
