// A run's full configuration. Everything here can change the result and so is part of the run's id (a hash
// of this object); how a run is executed (engine, backend, store, checkpoint cadence) is not.

import { DatasetConfig, defaultBatchSize } from "../data/dataset";
import { findOperation } from "../data/operations";
import { DEFAULT_MLP, ModelConfig, PAPER_TRANSFORMER, validateModelConfig } from "../model/config";
import { UserError } from "../util/errors";
import { OptimizerConfig, PAPER_OPTIMIZER, validateOptimizerConfig } from "../optim/optimizer";

export interface EvalSchedule {
  /** Evaluate after every one of the first `denseUntil` steps. */
  denseUntil: number;
  /** Then at about this many log-spaced steps per decade. */
  perDecade: number;
  /** And every `every` steps (0: off). */
  every: number;
}

export interface TrainingConfig {
  /** Seeds the initial weights, batch order, dropout and noise (the split has its own seed). */
  seed: number;
  /** The budget: number of optimizer updates. */
  steps: number;
  /** Examples per update: a number, "paper" (min(512, half the training set)) or "full" (the whole set). */
  batchSize: number | "paper" | "full";
  eval: EvalSchedule;
  /** Stop once validation accuracy has stayed ≥ 99% at every evaluation for this many steps (null: never). */
  earlyStopHold: number | null;
}

export interface RunConfig {
  data: DatasetConfig;
  model: ModelConfig;
  optimizer: OptimizerConfig;
  training: TrainingConfig;
}

const DEFAULT_EVAL: EvalSchedule = { denseUntil: 10, perDecade: 40, every: 0 };

/** The paper's default experiment (Appendix A.1.2) on x/y mod 97 with half the table for training. */
export function paperConfig(): RunConfig {
  return {
    data: { op: "div", modulus: 97, trainFraction: 0.5, splitSeed: 0, outliers: 0 },
    model: { ...PAPER_TRANSFORMER },
    optimizer: { ...PAPER_OPTIMIZER },
    training: { seed: 0, steps: 100_000, batchSize: "paper", eval: { ...DEFAULT_EVAL }, earlyStopHold: null },
  };
}

/** The defaults of a model kind, so `--model mlp` gives a complete MLP configuration. */
function defaultModel(kind: ModelConfig["kind"]): ModelConfig {
  if (kind === "mlp") return { ...DEFAULT_MLP };
  if (kind === "transformer") return { ...PAPER_TRANSFORMER };
  throw new Error(`model: kind must be transformer or mlp (got ${kind})`);
}

/** A value in a config field (sweep specs and variants set fields by path). */
export type FieldValue = string | number | boolean | null | Record<string, unknown>;

/** The sections of a RunConfig, in the order messages list them. */
const SECTIONS = ["data", "model", "optimizer", "training"] as const;
export type ConfigSection = (typeof SECTIONS)[number];

function isSection(name: string): name is ConfigSection {
  return (SECTIONS as readonly string[]).includes(name);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * A copy of a config with "section.field" (or "training.eval.every") set to value; an error names a path
 * that is not a config field. Setting model.kind starts from that kind's defaults.
 */
export function setConfigField(cfg: RunConfig, fieldPath: string, value: unknown, where: string): RunConfig {
  const parts = fieldPath.split(".");
  if (parts.length < 2 || !isSection(parts[0])) {
    throw new UserError(
      `${where}: "${fieldPath}" is not a config field (write section.field, sections: ${SECTIONS.join(", ")})`,
    );
  }
  const [section, field, ...rest] = parts;
  if (section === "model" && field === "kind") return mergeConfig(cfg, { model: { kind: value } }, where);
  const out = structuredClone(cfg);
  let target = (out as unknown as Record<string, Record<string, unknown>>)[section];
  const keys = [field, ...rest];
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    if (!(key in target) && !isOptionalField(section, key)) {
      throw new UserError(
        `${where}: "${fieldPath}" is not a config field (${keys.slice(0, i).length ? keys.slice(0, i).join(".") : section} has ${Object.keys(target).join(", ")})`,
      );
    }
    if (i === keys.length - 1) target[key] = structuredClone(value);
    else {
      if (!isObject(target[key])) throw new UserError(`${where}: "${fieldPath}": ${key} has no fields`);
      target = target[key] as Record<string, unknown>;
    }
  }
  return out;
}

/**
 * Fields a config may leave out: optimizer.grokfast (null when off), optimizer.orthogonalGrad (false when
 * absent), model.initScale (1 when absent) and model.output (softmax when absent); the last three are left
 * out at their defaults, so that a config's run id does not change with a field it does not use.
 */
function isOptionalField(section: string, key: string): boolean {
  if (section === "optimizer") return key === "grokfast" || key === "orthogonalGrad";
  return section === "model" && (key === "initScale" || key === "output");
}

/** A copy of a config with every field path of `changes` set, e.g. { "optimizer.kind": "adam" }. */
export function withChanges(cfg: RunConfig, changes: Record<string, FieldValue>, where = "changes"): RunConfig {
  let out = cfg;
  for (const [field, value] of Object.entries(changes)) out = setConfigField(out, field, value, where);
  return out;
}

/** Deep-merges a partial config over a full one; a different model kind starts from that kind's defaults. */
export function mergeConfig(base: RunConfig, partial: Record<string, unknown>, source: string): RunConfig {
  const out = structuredClone(base);
  for (const [section, value] of Object.entries(partial)) {
    if (!isSection(section)) {
      throw new UserError(`${source}: unknown section "${section}" (known: ${SECTIONS.join(", ")})`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value))
      throw new UserError(`${source}: ${section} must be an object`);
    const target = out as unknown as Record<string, Record<string, unknown>>;
    const v = value as Record<string, unknown>;
    if (section === "model" && typeof v.kind === "string" && v.kind !== out.model.kind) {
      target.model = defaultModel(v.kind as ModelConfig["kind"]) as unknown as Record<string, unknown>;
    }
    for (const [field, fieldValue] of Object.entries(v)) {
      const existing = target[section][field];
      if (field === "eval" && typeof fieldValue === "object" && fieldValue !== null) {
        target[section][field] = { ...(existing as object), ...(fieldValue as object) };
      } else target[section][field] = fieldValue;
    }
  }
  return out;
}

/**
 * Checks every field and returns a normalized copy (the operation by its id), or throws a UserError
 * naming the field. Nothing is created on disk before this passes.
 */
export function normalizeConfig(cfg: RunConfig): RunConfig {
  try {
    const out: RunConfig = structuredClone(cfg);
    for (const section of SECTIONS) {
      if (typeof out[section] !== "object" || out[section] === null) throw new Error(`${section}: missing section`);
    }
    for (const key of Object.keys(out)) {
      if (!isSection(key)) throw new Error(`unknown section "${key}"`);
    }
    // a misspelled field would otherwise be ignored silently and change nothing
    const reference = paperConfig();
    const known: Record<string, object> = {
      data: reference.data,
      model: defaultModel(out.model.kind),
      optimizer: reference.optimizer,
      training: reference.training,
    };
    for (const [section, fields] of Object.entries(known)) {
      const keys = Object.keys(fields);
      for (const key of Object.keys((out as unknown as Record<string, object>)[section])) {
        if (!keys.includes(key) && !isOptionalField(section, key))
          throw new Error(`${section}: unknown field "${key}" (known: ${keys.join(", ")})`);
      }
      for (const key of keys) {
        if (!(key in (out as unknown as Record<string, object>)[section]))
          throw new Error(`${section}: missing field "${key}"`);
      }
    }
    const op = findOperation(String(out.data.op));
    out.data.op = op.id;
    if (op.domain === "s5") out.data.modulus = 0;
    else if (!Number.isInteger(out.data.modulus) || out.data.modulus < 2) {
      throw new Error(`data: modulus must be an integer ≥ 2 (got ${out.data.modulus})`);
    }
    if (!(out.data.trainFraction > 0 && out.data.trainFraction < 1)) {
      throw new Error(`data: trainFraction must be in (0, 1) (got ${out.data.trainFraction})`);
    }
    for (const [name, v] of [
      ["splitSeed", out.data.splitSeed],
      ["outliers", out.data.outliers],
    ] as const) {
      if (!Number.isInteger(v) || v < 0) throw new Error(`data: ${name} must be an integer ≥ 0 (got ${v})`);
    }
    validateModelConfig(out.model);
    // the default scale is left out, so that configs written before the field existed keep their run ids
    if (out.model.initScale === 1) delete out.model.initScale;
    if (out.model.output === "softmax") delete out.model.output;
    validateOptimizerConfig(out.optimizer);
    if (out.optimizer.orthogonalGrad === false) delete out.optimizer.orthogonalGrad;
    const t = out.training;
    if (!Number.isInteger(t.seed) || t.seed < 0)
      throw new Error(`training: seed must be an integer ≥ 0 (got ${t.seed})`);
    if (!Number.isInteger(t.steps) || t.steps < 1)
      throw new Error(`training: steps must be a positive integer (got ${t.steps})`);
    if (!(t.batchSize === "paper" || t.batchSize === "full" || (Number.isInteger(t.batchSize) && t.batchSize > 0))) {
      throw new Error(`training: batchSize must be a positive integer, "paper" or "full" (got ${t.batchSize})`);
    }
    const e = t.eval;
    if (!e || !Number.isInteger(e.denseUntil) || e.denseUntil < 0)
      throw new Error(`training: eval.denseUntil must be an integer ≥ 0`);
    if (!Number.isInteger(e.perDecade) || e.perDecade < 0)
      throw new Error(`training: eval.perDecade must be an integer ≥ 0`);
    if (!Number.isInteger(e.every) || e.every < 0) throw new Error(`training: eval.every must be an integer ≥ 0`);
    if (t.earlyStopHold !== null && !(Number.isInteger(t.earlyStopHold) && t.earlyStopHold >= 0)) {
      throw new Error(`training: earlyStopHold must be an integer ≥ 0 or null (got ${t.earlyStopHold})`);
    }
    return out;
  } catch (err) {
    throw new UserError(`invalid config: ${(err as Error).message}`);
  }
}

/** The examples per update for a training set of `trainSize`. */
export function resolveBatchSize(batchSize: TrainingConfig["batchSize"], trainSize: number): number {
  if (batchSize === "full") return trainSize;
  if (batchSize === "paper") return defaultBatchSize(trainSize);
  return Math.min(batchSize, trainSize);
}

/** Whether to evaluate after `step` updates (step 0: the initial network). */
export function isEvalStep(schedule: EvalSchedule, step: number, lastStep: number): boolean {
  if (step === 0 || step === lastStep || step <= schedule.denseUntil) return true;
  if (schedule.every > 0 && step % schedule.every === 0) return true;
  if (schedule.perDecade > 0) {
    // step is on the grid if it is the rounded value of 10^(k/perDecade) for some k
    const k = Math.round(Math.log10(step) * schedule.perDecade);
    for (const kk of [k - 1, k, k + 1]) if (Math.round(Math.pow(10, kk / schedule.perDecade)) === step) return true;
  }
  return false;
}
