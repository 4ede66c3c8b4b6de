// A sweep: a grid of runs over config fields and seeds, written as JSON or YAML.
//
//   name: fraction-scaling          # shown in the progress line
//   base: demo                      # a preset (paper, fig1, demo) or a (partial) config object over paper
//   set:                            # changes to the base, by dotted field path
//     data.op: div
//     training.steps: 5000
//   grid:                           # every combination of these values
//     data.trainFraction: [0.3, 0.4, 0.5]
//     training.seed: [0, 1, 2]
//   variants:                       # optional: named sets of changes, each crossed with the grid
//     adamw: { optimizer.kind: adamw }
//     adam: { optimizer.kind: adam, optimizer.weightDecay: 0 }
//
// A run's identity is its config (the run store names it by the config's hash), so a sweep keeps no state of
// its own: its finished runs are the finished runs in the store.

import * as fs from "node:fs";
import * as path from "node:path";
import {
  FieldValue,
  isObject,
  mergeConfig,
  normalizeConfig,
  paperConfig,
  RunConfig,
  setConfigField,
} from "../config/run-config";

export type { FieldValue };
import { PRESETS } from "../training/presets";
import { RunStore } from "../store/run-store";
import { UserError } from "../util/errors";

export interface SweepSpec {
  name?: string;
  /** A preset name or a partial RunConfig over the paper's config (default: "paper"). */
  base?: string | Record<string, unknown>;
  /** Field path → value, applied to the base. */
  set?: Record<string, FieldValue>;
  /** Field path → values; the sweep runs every combination. */
  grid?: Record<string, FieldValue[]>;
  /** Variant name → field changes; every variant is crossed with the grid. */
  variants?: Record<string, Record<string, FieldValue>>;
}

/** One run of a sweep. */
export interface SweepRun {
  /** Position in the sweep (the order runs start in). */
  index: number;
  /** The variant's name ("" when the sweep has none). */
  variant: string;
  /** The grid values of this run, by field path. */
  params: Record<string, FieldValue>;
  /** The normalized config, and the run id it has in any store. */
  config: RunConfig;
  id: string;
}

/** Reads a sweep spec from a .json, .yaml or .yml file. */
export function loadSweepSpec(file: string): SweepSpec {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new UserError(`cannot read the sweep spec ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  const ext = path.extname(file).toLowerCase();
  try {
    if (ext === ".yaml" || ext === ".yml") {
      const YAML = require("yaml") as typeof import("yaml");
      parsed = YAML.parse(text);
    } else if (ext === ".json") parsed = JSON.parse(text);
    else throw new Error(`unknown extension "${ext}" (use .json, .yaml or .yml)`);
  } catch (err) {
    throw new UserError(`${file}: ${(err as Error).message.split("\n")[0]}`);
  }
  return checkSpecShape(parsed, file);
}

function checkSpecShape(spec: unknown, source: string): SweepSpec {
  if (!isObject(spec)) throw new UserError(`${source}: a sweep spec is an object with base, set, grid and variants`);
  for (const key of Object.keys(spec)) {
    if (!["name", "base", "set", "grid", "variants"].includes(key)) {
      throw new UserError(`${source}: unknown key "${key}" (known: name, base, set, grid, variants)`);
    }
  }
  if (spec.name !== undefined && typeof spec.name !== "string") throw new UserError(`${source}: name must be a string`);
  if (spec.base !== undefined && typeof spec.base !== "string" && !isObject(spec.base)) {
    throw new UserError(
      `${source}: base must be a preset name (${Object.keys(PRESETS).join(", ")}) or a config object`,
    );
  }
  if (spec.set !== undefined && !isObject(spec.set))
    throw new UserError(`${source}: set must map field paths to values`);
  if (spec.grid !== undefined) {
    if (!isObject(spec.grid)) throw new UserError(`${source}: grid must map field paths to lists of values`);
    for (const [field, values] of Object.entries(spec.grid)) {
      if (!Array.isArray(values) || values.length === 0)
        throw new UserError(`${source}: grid.${field} must be a non-empty list of values`);
    }
  }
  if (spec.variants !== undefined) {
    if (!isObject(spec.variants) || Object.keys(spec.variants).length === 0) {
      throw new UserError(`${source}: variants must map names to field changes`);
    }
    for (const [name, changes] of Object.entries(spec.variants)) {
      if (!isObject(changes)) throw new UserError(`${source}: variant "${name}" must map field paths to values`);
    }
  }
  return spec as SweepSpec;
}

function baseConfig(base: SweepSpec["base"]): RunConfig {
  if (base === undefined) return paperConfig();
  if (typeof base === "string") {
    const preset = PRESETS[base];
    if (!preset) throw new UserError(`base: unknown preset "${base}" (known: ${Object.keys(PRESETS).join(", ")})`);
    return preset();
  }
  return mergeConfig(paperConfig(), base, "base");
}

function cartesian(grid: Record<string, FieldValue[]>): Record<string, FieldValue>[] {
  let combos: Record<string, FieldValue>[] = [{}];
  for (const [field, values] of Object.entries(grid))
    combos = combos.flatMap((c) => values.map((v) => ({ ...c, [field]: v })));
  return combos;
}

/**
 * Every run of a sweep, in order: variants outermost, then the grid with its last field varying fastest.
 * Each config is normalized; a bad field or value throws naming it. Within a variant, identical configs
 * appear once; two variants may share a run (e.g. a variant that restates the base), trained once.
 */
export function expandSweep(specIn: SweepSpec): SweepRun[] {
  const spec = checkSpecShape(specIn, "sweep spec");
  let base = baseConfig(spec.base);
  for (const [field, value] of Object.entries(spec.set ?? {})) base = setConfigField(base, field, value, "set");
  const variants: [string, Record<string, FieldValue>][] = spec.variants ? Object.entries(spec.variants) : [["", {}]];
  const runs: SweepRun[] = [];
  for (const [variant, changes] of variants) {
    const seen = new Set<string>();
    let vcfg = base;
    for (const [field, value] of Object.entries(changes))
      vcfg = setConfigField(vcfg, field, value, `variant "${variant}"`);
    for (const params of cartesian(spec.grid ?? {})) {
      let cfg = vcfg;
      for (const [field, value] of Object.entries(params)) cfg = setConfigField(cfg, field, value, "grid");
      const label = describeRun(variant, params);
      let config: RunConfig;
      try {
        config = normalizeConfig(cfg);
      } catch (err) {
        throw new UserError(`sweep run ${label || "(base)"}: ${(err as Error).message}`);
      }
      const id = RunStore.idFor(config);
      if (seen.has(id)) continue;
      seen.add(id);
      runs.push({ index: runs.length, variant, params, config, id });
    }
  }
  return runs;
}

/** "variant · data.trainFraction=0.3 · training.seed=1" */
export function describeRun(variant: string, params: Record<string, FieldValue>): string {
  const parts = Object.entries(params).map(
    ([k, v]) => `${k}=${typeof v === "object" && v !== null ? JSON.stringify(v) : v}`,
  );
  return [variant, ...parts].filter(Boolean).join(" · ");
}
