// The train/validation split of an operation table, outlier labels, and the model's input sequences.
//
// A sequence is `x ∘ y = answer`; the model sees the four tokens x, ∘, y, = and is trained and scored on
// the answer alone. Symbols keep their own token ids (0..numSymbols-1); ∘ and = come after them.

import type { ModelDims } from "../model/config";
import { Rng, Stream } from "../util/rng";
import { buildTable, findOperation, OperationTable } from "./operations";

export interface DatasetConfig {
  /** An operation id, notation or alias (see `findOperation`). */
  op: string;
  /** p for modular operations; ignored for S5. */
  modulus: number;
  /** Fraction of the table used for training, in (0, 1). */
  trainFraction: number;
  /** Seeds both the split and the outlier labels, independently of the model's seed. */
  splitSeed: number;
  /** How many training answers are replaced by a wrong one (Appendix A.4). */
  outliers: number;
}

/** A set of equations, each one row of the operation table. */
export interface Examples {
  size: number;
  /** Index into the table. */
  row: Int32Array;
  x: Int32Array;
  y: Int32Array;
  /** The answer the model is trained or scored on (wrong for the training outliers). */
  answer: Int32Array;
}

export const SEQ_LEN = 4;

export interface Dataset {
  config: DatasetConfig;
  table: OperationTable;
  numSymbols: number;
  /** numSymbols + 2: the symbols, then the operation token, then "=". */
  vocabSize: number;
  /** = numSymbols */
  opToken: number;
  /** = numSymbols + 1 */
  eqToken: number;
  seqLen: typeof SEQ_LEN;
  train: Examples;
  val: Examples;
  /** Positions within `train` (ascending) whose answer was replaced by a wrong one. */
  outlierPositions: Int32Array;
}

function examplesOf(table: OperationTable, rows: Int32Array): Examples {
  const size = rows.length;
  const ex: Examples = { size, row: rows, x: new Int32Array(size), y: new Int32Array(size), answer: new Int32Array(size) };
  for (let i = 0; i < size; i++) {
    ex.x[i] = table.x[rows[i]];
    ex.y[i] = table.y[rows[i]];
    ex.answer[i] = table.answer[rows[i]];
  }
  return ex;
}

export function makeDataset(cfg: DatasetConfig): Dataset {
  const table = buildTable(findOperation(cfg.op), cfg.modulus);
  const { size, numSymbols } = table;

  const trainSize = Math.round(size * cfg.trainFraction);
  if (!(cfg.trainFraction > 0 && cfg.trainFraction < 1) || trainSize < 1 || trainSize >= size) {
    throw new Error(
      `trainFraction must be in (0, 1) and leave both sets non-empty; got ${cfg.trainFraction} ` +
        `(${trainSize} of ${size} equations for training)`,
    );
  }
  if (!Number.isInteger(cfg.splitSeed)) throw new Error(`splitSeed must be an integer (got ${cfg.splitSeed})`);

  const shuffled = Rng.for(cfg.splitSeed, Stream.split).permutation(size);
  const train = examplesOf(table, shuffled.slice(0, trainSize).sort());
  const val = examplesOf(table, shuffled.slice(trainSize).sort());

  if (!Number.isInteger(cfg.outliers) || cfg.outliers < 0 || cfg.outliers > trainSize) {
    throw new Error(`outliers must be an integer in [0, ${trainSize}] (the training set size); got ${cfg.outliers}`);
  }
  // a stream of its own, so the split is the same with and without outliers
  const outlierRng = Rng.for(cfg.splitSeed, Stream.outliers);
  const outlierPositions = outlierRng.permutation(trainSize).slice(0, cfg.outliers).sort();
  for (const pos of outlierPositions) {
    // uniform over the numSymbols - 1 wrong answers: skip over the true one
    const truth = train.answer[pos];
    const pick = outlierRng.int(numSymbols - 1);
    train.answer[pos] = pick >= truth ? pick + 1 : pick;
  }

  return {
    config: { ...cfg },
    table,
    numSymbols,
    vocabSize: numSymbols + 2,
    opToken: numSymbols,
    eqToken: numSymbols + 1,
    seqLen: SEQ_LEN,
    train,
    val,
    outlierPositions,
  };
}

/** What the model needs to know about this dataset: its vocabulary, classes and sequence length. */
export function modelDims(ds: Dataset): ModelDims {
  return { vocabSize: ds.vocabSize, numSymbols: ds.numSymbols, seqLen: ds.seqLen };
}

/** Model inputs, row-major [n, 4]: x, opToken, y, eqToken, for the given positions of `ex` (default: all). */
export function encodeInputs(ds: Dataset, ex: Examples, positions?: Int32Array): Int32Array {
  const n = positions ? positions.length : ex.size;
  const out = new Int32Array(n * SEQ_LEN);
  for (let i = 0; i < n; i++) {
    const pos = positions ? positions[i] : i;
    if (pos < 0 || pos >= ex.size) throw new Error(`encodeInputs: position ${pos} is outside 0..${ex.size - 1}`);
    out[i * SEQ_LEN] = ex.x[pos];
    out[i * SEQ_LEN + 1] = ds.opToken;
    out[i * SEQ_LEN + 2] = ex.y[pos];
    out[i * SEQ_LEN + 3] = ds.eqToken;
  }
  return out;
}

/** The paper's minibatch size: min(512, half the training set, rounded up). */
export function defaultBatchSize(trainSize: number): number {
  if (!Number.isInteger(trainSize) || trainSize < 1) throw new Error(`defaultBatchSize: bad training set size ${trainSize}`);
  return Math.min(512, Math.ceil(trainSize / 2));
}
