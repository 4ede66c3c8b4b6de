// What a trained network answers: its prediction for every cell of the operation table, from any stored
// weights (final, a checkpoint, a snapshot), with which cells it was trained on.

import { Dataset, encodeInputs, Examples, makeDataset, modelDims } from "../data/dataset";
import { createEngine, EngineOptions } from "../engines/index";
import { RunStore } from "../store/run-store";
import { RunConfig } from "../config/run-config";
import { NamedTensors } from "../util/tensors";
import { loadWeights } from "./runs";

export interface TableAnswers {
  /** The run's dataset (its table, split and outliers). */
  dataset: Dataset;
  /** The steps the weights were taken after. */
  step: number;
  /** For each table row: the network's answer (argmax of its logits). */
  predicted: Int32Array;
  /** For each table row: 1 when the row is in the training set, 0 when in the validation set. */
  inTrain: Uint8Array;
}

/**
 * The network's logits [n × numSymbols] for each of `inputs` ([n, 4] row-major) under each of `weights` (one
 * network, or e.g. a run's snapshots), all on one engine.
 */
export async function predictLogits(
  dataset: Dataset,
  config: Pick<RunConfig, "model" | "optimizer">,
  weights: NamedTensors[],
  inputs: Int32Array,
  engineOptions: EngineOptions = {},
): Promise<Float32Array[]> {
  const { engine } = await createEngine(engineOptions);
  try {
    const dims = modelDims(dataset);
    const n = inputs.length / dataset.seqLen;
    const out: Float32Array[] = [];
    for (const w of weights) {
      engine.initialize({ model: config.model, dims, optimizer: config.optimizer, seed: 0 }, w);
      out.push(await engine.logits({ size: n, inputs, targets: new Int32Array(n) }));
    }
    return out;
  } finally {
    engine.dispose();
  }
}

/** The network's answer (the argmax of its logits) for each of `inputs` ([n, 4] row-major) under `weights`. */
export async function predictAnswers(
  dataset: Dataset,
  config: Pick<RunConfig, "model" | "optimizer">,
  weights: NamedTensors,
  inputs: Int32Array,
  engineOptions: EngineOptions = {},
): Promise<Int32Array> {
  const [logits] = await predictLogits(dataset, config, [weights], inputs, engineOptions);
  const k = dataset.numSymbols;
  const out = new Int32Array(logits.length / k);
  for (let i = 0; i < out.length; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (logits[i * k + j] > logits[i * k + best]) best = j;
    out[i] = best;
  }
  return out;
}

/** Every row of the dataset's table (as Examples), in table order: for the whole-table analyses. */
export function wholeTable(dataset: Dataset): Examples {
  const table = dataset.table;
  return {
    size: table.size,
    row: Int32Array.from({ length: table.size }, (_, i) => i),
    x: table.x,
    y: table.y,
    answer: table.answer,
  };
}

/** A run's answers on its whole table after `which` ("final", "latest", or the step of a checkpoint or snapshot). */
export async function tableAnswers(
  ref: string,
  which: "final" | "latest" | number = "final",
  opts: EngineOptions & { store?: RunStore | string } = {},
): Promise<TableAnswers> {
  const store = RunStore.of(opts.store);
  const id = store.resolve(ref);
  const config = store.readConfig(id);
  const dataset = makeDataset(config.data);
  const { step, weights } = loadWeights(id, which, store);
  const predicted = await predictAnswers(dataset, config, weights, encodeInputs(dataset, wholeTable(dataset)), opts);
  const inTrain = new Uint8Array(dataset.table.size);
  for (const row of dataset.train.row) inTrain[row] = 1;
  return { dataset, step, predicted, inTrain };
}
