// Nanda et al.'s (2023) progress measures for a network that computes x+y mod p with a few key frequencies:
// how much of its output is the Fourier algorithm, and how much the memorizing remainder.
//
// The algorithm's logit for answer c is a sum over key frequencies k of cos(w_k(x+y−c)) = cos(w_k(x+y))cos(w_k c)
// + sin(w_k(x+y))sin(w_k c), with w_k = 2πk/p: for every class c, the logits over the table's cells (x, y) lie in
// the span of the directions cos(w_k(x+y)) and sin(w_k(x+y)) plus a constant. So, per class, over every cell:
// - the restricted logits keep only that span (the projection onto those directions, plus the class's mean);
// - the excluded logits remove the key directions (and keep the mean).
// The restricted loss is measured on the whole table (the algorithm alone: low once the circuit is there); the
// excluded loss on the training set (what memorization still does alone: it rises as the circuit takes over).
// The Gini coefficient of the per-frequency norms measures how sparse the embedding (or the output rows)
// is in the Fourier basis: 0 when spread evenly, towards 1 when a few frequencies hold everything.

import { fourierSpectrum } from "./embeddings";

/** A table's logits: rows = cells (x, y), numSymbols classes each, row-major. */
export interface TableLogits {
  /** [rows × classes] */
  logits: Float32Array | Float64Array;
  classes: number;
  /** Each row's x and y. */
  x: Int32Array;
  y: Int32Array;
}

/**
 * The logits projected per class onto the directions cos(2πk(x+y)/p), sin(2πk(x+y)/p) over the rows, for the
 * key frequencies k: `restricted` = the class's mean over the rows + the projection, `excluded` = the logits
 * minus the projection. The directions are orthogonal over a whole table (every (x, y) once) for distinct k
 * with 0 < k < p/2, so the projection is a sum of the single projections.
 */
export function projectKeyFrequencies(
  table: TableLogits,
  p: number,
  keys: number[],
): { restricted: Float64Array; excluded: Float64Array } {
  const { logits, classes, x, y } = table;
  const rows = x.length;
  if (logits.length !== rows * classes) throw new Error(`logits: ${logits.length} values for ${rows}×${classes}`);
  for (const k of keys)
    if (!Number.isInteger(k) || k < 1 || 2 * k >= p) throw new Error(`key frequency ${k} is not in 1…${(p - 1) >> 1}`);
  if (new Set(keys).size !== keys.length) throw new Error(`key frequencies repeat: ${keys}`);
  const directions: Float64Array[] = [];
  for (const k of keys)
    for (const wave of [Math.cos, Math.sin]) {
      const d = Float64Array.from({ length: rows }, (_, r) => wave((2 * Math.PI * k * ((x[r] + y[r]) % p)) / p));
      const norm = Math.hypot(...d);
      directions.push(d.map((v) => v / norm));
    }
  const restricted = new Float64Array(rows * classes);
  const excluded = Float64Array.from(logits);
  for (let c = 0; c < classes; c++) {
    let mean = 0;
    for (let r = 0; r < rows; r++) mean += logits[r * classes + c] / rows;
    for (let r = 0; r < rows; r++) restricted[r * classes + c] = mean;
    for (const d of directions) {
      let coef = 0;
      for (let r = 0; r < rows; r++) coef += logits[r * classes + c] * d[r];
      for (let r = 0; r < rows; r++) {
        restricted[r * classes + c] += coef * d[r];
        excluded[r * classes + c] -= coef * d[r];
      }
    }
  }
  return { restricted, excluded };
}

/** Mean cross-entropy (natural log, in double) of the rows `rows` (default all) of [n × classes] logits. */
export function crossEntropyOf(
  logits: ArrayLike<number>,
  classes: number,
  targets: ArrayLike<number>,
  rows?: ArrayLike<number>,
): number {
  const count = rows ? rows.length : targets.length;
  let total = 0;
  for (let i = 0; i < count; i++) {
    const r = rows ? rows[i] : i;
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[r * classes + c]);
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(logits[r * classes + c] - max);
    total += max + Math.log(sum) - logits[r * classes + targets[r]];
  }
  return total / count;
}

/** The Gini coefficient of non-negative values: 0 when all are equal, (n−1)/n when one holds everything. */
export function gini(values: ArrayLike<number>): number {
  const sorted = Array.from(values).sort((a, b) => a - b);
  const n = sorted.length;
  if (n === 0 || sorted[0] < 0) throw new Error("gini needs at least one value, none negative");
  const total = sorted.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  let weighted = 0;
  sorted.forEach((v, i) => (weighted += (2 * (i + 1) - n - 1) * v));
  return weighted / (n * total);
}

/** The Gini coefficient of p vectors' norms per frequency 1 … ⌊p/2⌋ (fourierSpectrum's power, square-rooted). */
export function fourierGini(vectors: Float32Array[]): number {
  return gini(fourierSpectrum(vectors).power.slice(1).map(Math.sqrt));
}

/** The progress measures of one network, from its logits on the whole table of x+y mod p. */
export interface ProgressMeasures {
  /** Cross-entropy of the restricted logits over the whole table. */
  restrictedLoss: number;
  /** Cross-entropy of the excluded logits over the training rows. */
  excludedLoss: number;
  /** Cross-entropy of the logits themselves over the training rows and the other rows. */
  trainLoss: number;
  valLoss: number;
}

/**
 * The progress measures from the table's logits, its answers, the training rows (indices into the table) and
 * the key frequencies.
 */
export function progressMeasures(
  table: TableLogits,
  answers: Int32Array,
  trainRows: Int32Array,
  p: number,
  keys: number[],
): ProgressMeasures {
  const { restricted, excluded } = projectKeyFrequencies(table, p, keys);
  const inTrain = new Uint8Array(answers.length);
  for (const r of trainRows) inTrain[r] = 1;
  const valRows = Int32Array.from({ length: answers.length }, (_, r) => r).filter((r) => !inTrain[r]);
  return {
    restrictedLoss: crossEntropyOf(restricted, table.classes, answers),
    excludedLoss: crossEntropyOf(excluded, table.classes, answers, trainRows),
    trainLoss: crossEntropyOf(table.logits, table.classes, answers, trainRows),
    valLoss: crossEntropyOf(table.logits, table.classes, answers, valRows),
  };
}

/**
 * Where a curve's fall (or rise) begins, as a rule in code: the first of `steps` from `from` on at which
 * `values` has made `fraction` of its move from its value at `from` to its lowest (highest) value after it.
 * Null when it never moves that way. On a log scale by default (losses span decades), or a linear one
 * (accuracies). Measured from a fixed step rather than from the curve's extremes, so that a loss spike later in
 * the run (accuracy collapsing and recovering) does not move the onset.
 */
export function changeOnset(
  steps: number[],
  values: number[],
  from: number,
  direction: "rise" | "fall",
  fraction = 0.1,
  scale: "log" | "linear" = "log",
): number | null {
  if (steps.length !== values.length) throw new Error(`changeOnset: ${steps.length} steps, ${values.length} values`);
  const start = steps.findIndex((s) => s >= from);
  if (start < 0) return null;
  // a rise is the fall of the negated curve
  const sign = direction === "fall" ? 1 : -1;
  const curve = values.map((v) => sign * (scale === "log" ? Math.log(Math.max(v, 1e-12)) : v));
  const span = curve[start] - Math.min(...curve.slice(start));
  if (!(span > 0)) return null;
  for (let i = start; i < steps.length; i++) if (curve[start] - curve[i] >= fraction * span) return steps[i];
  return null;
}

/** Nanda et al.'s three phases, as steps where each begins and ends. */
export interface ProgressPhases {
  /** Memorization: from step 0 until training accuracy first reaches 99%. */
  memorizationEnd: number;
  /** Circuit formation: from memorizationEnd until the validation loss has made 10% of its fall after it. */
  cleanupStart: number | null;
  /** Cleanup: from cleanupStart until the validation loss has made 90% of its fall. */
  cleanupEnd: number | null;
}

/**
 * The phase boundaries from a run's curves: the first step with training accuracy ≥ 99% and the validation
 * loss at the snapshots (see ProgressPhases for the rules).
 */
export function progressPhases(steps: number[], valLoss: number[], firstTrain99: number): ProgressPhases {
  return {
    memorizationEnd: firstTrain99,
    cleanupStart: changeOnset(steps, valLoss, firstTrain99, "fall", 0.1),
    cleanupEnd: changeOnset(steps, valLoss, firstTrain99, "fall", 0.9),
  };
}
