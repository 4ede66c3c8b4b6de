// `grok train` flags: one per config field, so any run can be described on the command line.

import * as fs from "node:fs";
import { parseArgs, ParseArgsConfig } from "node:util";
import { ModelConfig } from "../model/config";
import { engineChoices, EngineOptions } from "../engines/index";
import { ConfigSection, mergeConfig, RunConfig, TrainingConfig } from "../config/run-config";
import { PRESETS } from "../training/presets";
import { UserError } from "../util/errors";

type Kind = "int" | "number" | "string" | "batch" | "nullableInt";

interface FieldFlag {
  flag: string;
  section: ConfigSection;
  field: string;
  kind: Kind;
  help: string;
  /** Only for this model kind. */
  modelKind?: ModelConfig["kind"];
}

export const FIELD_FLAGS: FieldFlag[] = [
  {
    flag: "op",
    section: "data",
    field: "op",
    kind: "string",
    help: "operation: id (div), or the paper's notation (x/y, x^2+xy+y^2, x.y)",
  },
  { flag: "modulus", section: "data", field: "modulus", kind: "int", help: "p for modular operations (default 97)" },
  {
    flag: "train-fraction",
    section: "data",
    field: "trainFraction",
    kind: "number",
    help: "fraction of the table used for training, in (0, 1)",
  },
  {
    flag: "split-seed",
    section: "data",
    field: "splitSeed",
    kind: "int",
    help: "seed of the train/validation split and outliers",
  },
  {
    flag: "outliers",
    section: "data",
    field: "outliers",
    kind: "int",
    help: "training answers replaced by random wrong ones",
  },
  {
    flag: "layers",
    section: "model",
    field: "layers",
    kind: "int",
    help: "transformer layers",
    modelKind: "transformer",
  },
  { flag: "width", section: "model", field: "width", kind: "int", help: "model width (MLP: embedding size)" },
  { flag: "heads", section: "model", field: "heads", kind: "int", help: "attention heads", modelKind: "transformer" },
  {
    flag: "ffn-ratio",
    section: "model",
    field: "ffnRatio",
    kind: "number",
    help: "FFN width / model width",
    modelKind: "transformer",
  },
  {
    flag: "norm",
    section: "model",
    field: "norm",
    kind: "string",
    help: "post (openai/grok) or pre layer norm",
    modelKind: "transformer",
  },
  {
    flag: "positions",
    section: "model",
    field: "positions",
    kind: "string",
    help: "sinusoidal or learned",
    modelKind: "transformer",
  },
  { flag: "activation", section: "model", field: "activation", kind: "string", help: "relu or gelu" },
  {
    flag: "dropout",
    section: "model",
    field: "dropout",
    kind: "number",
    help: "residual dropout (MLP: hidden-layer dropout)",
  },
  { flag: "hidden", section: "model", field: "hidden", kind: "int", help: "MLP hidden size", modelKind: "mlp" },
  {
    flag: "init-scale",
    section: "model",
    field: "initScale",
    kind: "number",
    help: "multiplies every initial weight (default 1)",
  },
  {
    flag: "output",
    section: "model",
    field: "output",
    kind: "string",
    help: "softmax or stablemax (the loss's output function, default softmax)",
  },
  { flag: "optimizer", section: "optimizer", field: "kind", kind: "string", help: "adamw, adam or sgd" },
  { flag: "lr", section: "optimizer", field: "lr", kind: "number", help: "learning rate" },
  { flag: "warmup", section: "optimizer", field: "warmupSteps", kind: "int", help: "linear warmup steps" },
  { flag: "beta1", section: "optimizer", field: "beta1", kind: "number", help: "Adam β1" },
  { flag: "beta2", section: "optimizer", field: "beta2", kind: "number", help: "Adam β2" },
  { flag: "eps", section: "optimizer", field: "eps", kind: "number", help: "Adam ε" },
  { flag: "momentum", section: "optimizer", field: "momentum", kind: "number", help: "SGD momentum" },
  {
    flag: "weight-decay",
    section: "optimizer",
    field: "weightDecay",
    kind: "number",
    help: "weight decay (AdamW: decoupled)",
  },
  {
    flag: "decay-toward",
    section: "optimizer",
    field: "decayToward",
    kind: "string",
    help: "zero or init (the initial weights)",
  },
  {
    flag: "update-noise",
    section: "optimizer",
    field: "updateNoise",
    kind: "number",
    help: "σ of Gaussian noise on each update",
  },
  {
    flag: "weight-noise",
    section: "optimizer",
    field: "weightNoise",
    kind: "number",
    help: "σ of Gaussian noise on the weights per step",
  },
  {
    flag: "seed",
    section: "training",
    field: "seed",
    kind: "int",
    help: "model seed (weights, batches, dropout, noise)",
  },
  { flag: "steps", section: "training", field: "steps", kind: "int", help: "budget: optimizer updates" },
  {
    flag: "batch-size",
    section: "training",
    field: "batchSize",
    kind: "batch",
    help: "N, paper (min(512, half the training set)) or full",
  },
  {
    flag: "early-stop",
    section: "training",
    field: "earlyStopHold",
    kind: "nullableInt",
    help: "stop once val acc ≥ 99% has held this many steps (off: none)",
  },
];

/** Flags that shape the config but are not one field each. */
export const SPECIAL_FLAGS = {
  preset: "starting config: " + Object.keys(PRESETS).join(", ") + " (default paper)",
  config: "a JSON file with a (partial) RunConfig, applied over the preset",
  model: "transformer or mlp (switching kind starts from that kind's defaults)",
  "grokfast-alpha": "Grokfast EMA decay α",
  "grokfast-lambda": "Grokfast amplification λ",
  "eval-dense": "evaluate after each of the first N steps",
  "eval-per-decade": "then about N log-spaced evaluations per decade of steps",
  "eval-every": "and every N steps (0: off)",
} as const;

function parseValue(flag: string, kind: Kind, raw: string): unknown {
  const bad = (what: string): never => {
    throw new UserError(`--${flag} needs ${what} (got "${raw}")`);
  };
  switch (kind) {
    case "string":
      return raw;
    case "int": {
      const v = Number(raw);
      if (raw.trim() === "" || !Number.isInteger(v)) bad("an integer");
      return v;
    }
    case "number": {
      const v = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(v)) bad("a number");
      return v;
    }
    case "batch":
      if (raw === "paper" || raw === "full") return raw;
      return parseValue(flag, "int", raw);
    case "nullableInt":
      if (raw === "off" || raw === "none") return null;
      return parseValue(flag, "int", raw);
  }
}

/** Builds the RunConfig from parsed `grok train` options (values as strings, booleans for switches). */
export function configFromFlags(values: Record<string, string | boolean | undefined>): RunConfig {
  const presetName = (values.preset as string | undefined) ?? "paper";
  const preset = PRESETS[presetName];
  if (!preset) throw new UserError(`--preset must be one of ${Object.keys(PRESETS).join(", ")} (got "${presetName}")`);
  let cfg = preset();
  if (typeof values.config === "string") {
    let text: string;
    try {
      text = fs.readFileSync(values.config, "utf8");
    } catch (err) {
      throw new UserError(`--config: cannot read ${values.config}: ${(err as Error).message}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new UserError(`--config: ${values.config} is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new UserError(`--config: ${values.config} must hold a JSON object`);
    cfg = mergeConfig(cfg, parsed as Record<string, unknown>, values.config);
  }
  if (typeof values.model === "string") cfg = mergeConfig(cfg, { model: { kind: values.model } }, "--model");
  const target = cfg as unknown as Record<string, Record<string, unknown>>;
  for (const f of FIELD_FLAGS) {
    const raw = values[f.flag];
    if (typeof raw !== "string") continue;
    if (f.modelKind && cfg.model.kind !== f.modelKind) {
      throw new UserError(
        `--${f.flag} applies to the ${f.modelKind} model, but this run uses the ${cfg.model.kind} model`,
      );
    }
    target[f.section][f.field] = parseValue(f.flag, f.kind, raw);
  }
  const evalFlags: [string, keyof TrainingConfig["eval"]][] = [
    ["eval-dense", "denseUntil"],
    ["eval-per-decade", "perDecade"],
    ["eval-every", "every"],
  ];
  for (const [flag, field] of evalFlags) {
    const raw = values[flag];
    if (typeof raw === "string") cfg.training.eval[field] = parseValue(flag, "int", raw) as number;
  }
  const alpha = values["grokfast-alpha"];
  const lambda = values["grokfast-lambda"];
  if (values.grokfast === true || typeof alpha === "string" || typeof lambda === "string") {
    cfg.optimizer.grokfast = {
      alpha:
        typeof alpha === "string"
          ? (parseValue("grokfast-alpha", "number", alpha) as number)
          : (cfg.optimizer.grokfast?.alpha ?? 0.98),
      lambda:
        typeof lambda === "string"
          ? (parseValue("grokfast-lambda", "number", lambda) as number)
          : (cfg.optimizer.grokfast?.lambda ?? 2),
    };
  }
  if (values["orthogonal-grad"] === true) cfg.optimizer.orthogonalGrad = true;
  return cfg;
}

/** An integer flag ≥ min, or undefined when absent. */
export function intFlag(values: Record<string, unknown>, name: string, min: number): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) throw new UserError(`--${name} needs an integer ≥ ${min} (got "${raw}")`);
  return v;
}

/** The parseFlags options for choosing an engine: --engine, --backend, --kernels, --threads. */
export const ENGINE_FLAG_OPTIONS = {
  engine: { type: "string" },
  backend: { type: "string" },
  kernels: { type: "string" },
  threads: { type: "string" },
} as const;

/** --engine, --backend and --kernels, checked by the engines' own check; a bad name is a UserError. */
export function engineFlags(values: Record<string, unknown>): Pick<EngineOptions, "engine" | "backend" | "kernels"> {
  return engineChoices(values);
}

/** Parses a command's flags strictly; an unknown flag or a surplus argument is a UserError. */
export function parseFlags(
  args: string[],
  options: ParseArgsConfig["options"],
  positionals: number,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const parsed = parseArgs({ args, options, allowPositionals: positionals > 0, strict: true });
    if (parsed.positionals.length > positionals)
      throw new Error(`unexpected argument "${parsed.positionals[positionals]}"`);
    return { values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals };
  } catch (err) {
    throw new UserError((err as Error).message.split("\n")[0]);
  }
}
