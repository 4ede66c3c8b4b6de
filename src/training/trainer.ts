// The training loop: a step budget, evaluations of the whole training and validation sets (dense early,
// log-spaced later), checkpoints, resume, early stop. A run is a pure function of its config: stopped at any
// moment, it resumes from its last checkpoint and ends with the metrics of an uninterrupted run.

import { Dataset, encodeInputs, Examples, makeDataset } from "../data/dataset";
import { Batch, Engine } from "../engines/engine";
import { createEngine, CreatedEngine, EngineOptions } from "../engines/index";
import { initParams, ModelDims } from "../model/config";
import { displayPath, Metrics, MetricsRow, RunInfo, RunState, RunStore } from "../store/run-store";
import { UserError } from "../util/errors";
import { l2norm, NamedTensors } from "../util/tensors";
import { BatchSampler } from "./batches";
import { isEvalStep, normalizeConfig, resolveBatchSize, RunConfig } from "./config";
import { learningRate, Optimizer } from "./optimizer";
import { formatDuration, formatProgress, ProgressDisplay, progressDisplayFor } from "./progress";

export interface TrainOptions extends EngineOptions {
  /** The run store or its directory (default data/runs of the project, or $GROK_STORE). */
  store?: RunStore | string;
  /** Write a checkpoint every this many steps (default 1000)… */
  checkpointEvery?: number;
  /** …or when this many seconds have passed since the last one (default 60). */
  checkpointSeconds?: number;
  /** Periodic checkpoints kept (default 2; 0 keeps all). The final checkpoint is always kept. */
  keepCheckpoints?: number;
  /** Also write the weights alone after these steps (snapshots: kept for analysis, never pruned). */
  snapshotSteps?: number[];
  /** Called after each evaluation with its metrics row (awaited). */
  onEval?: (row: MetricsRow, run: { id: string; steps: number }) => void | Promise<void>;
  /** Called after every step with the steps done (keep it cheap). */
  onStep?: (step: number) => void;
  /**
   * Show a progress line (default: on a terminal or in a notebook): redrawn on a terminal, one output
   * updated in place in a notebook cell that ends as the run's summary, a line every 10 s elsewhere. Or a
   * display to draw on, which the caller ends.
   */
  progress?: boolean | ProgressDisplay;
  /** Where messages go (default: stderr). */
  log?: (message: string) => void;
  /** Aborting stops the run after the current step, with a checkpoint, as Ctrl-C does. */
  signal?: AbortSignal;
  /** Stop gracefully on SIGINT/SIGTERM (the CLI sets this). */
  handleSignals?: boolean;
  /** Stop (with a checkpoint, as if interrupted) after this many updates in this session. */
  stopAfter?: number;
}

export interface TrainResult extends RunInfo {
  metrics: Metrics;
  /** True when the run stopped before its budget (interrupted, aborted, or stopAfter). */
  interrupted: boolean;
}

const ACC_99 = 0.99;

/** Trains a run to its budget, resuming it if the store has it, or returns it at once if finished. */
export async function train(config: RunConfig, options: TrainOptions = {}): Promise<TrainResult> {
  const cfg = normalizeConfig(config);
  const store = options.store instanceof RunStore ? options.store : new RunStore(options.store);
  const log = options.log ?? ((m: string) => process.stderr.write(m + "\n"));
  const id = RunStore.idFor(cfg);
  if (store.has(id) && store.readState(id).status === "finished") {
    log(`run ${id} is already finished (${displayPath(store.dir(id))})`);
    return { ...store.info(id), metrics: store.readMetrics(id), interrupted: false };
  }
  // everything that can fail on bad input fails here, before the run directory exists
  let dataset: Dataset;
  try {
    dataset = makeDataset(cfg.data);
  } catch (err) {
    throw new UserError(`invalid config: data: ${(err as Error).message}`);
  }
  const dims: ModelDims = { vocabSize: dataset.vocabSize, numSymbols: dataset.numSymbols, seqLen: dataset.seqLen };
  let created: CreatedEngine;
  try {
    created = await createEngine(options);
  } catch (err) {
    throw new UserError(`engine: ${(err as Error).message}`);
  }
  const { engine, description } = created;
  try {
    const { lock, state } = store.openForTraining(cfg);
    try {
      return await runLoop({ cfg, store, id, state, dataset, dims, engine, description, options, log });
    } finally {
      lock.release();
    }
  } finally {
    engine.dispose();
  }
}

interface LoopContext {
  cfg: RunConfig;
  store: RunStore;
  id: string;
  state: RunState;
  dataset: Dataset;
  dims: ModelDims;
  engine: Engine;
  description: string;
  options: TrainOptions;
  log: (message: string) => void;
}

async function runLoop(ctx: LoopContext): Promise<TrainResult> {
  const { cfg, store, id, state, dataset, dims, engine, options, log } = ctx;
  const steps = cfg.training.steps;
  const seed = cfg.training.seed;
  engine.initialize({ model: cfg.model, dims, optimizer: cfg.optimizer, seed }, initParams(cfg.model, dims, seed));

  // resume from the newest checkpoint; metrics after it are recomputed identically
  let step = 0;
  let trainSeconds = 0;
  let metrics = store.readMetrics(id);
  const checkpoints = store.checkpoints(id);
  if (checkpoints.length > 0) {
    const ckpt = store.readCheckpoint(id, "latest");
    const weights: NamedTensors = new Map();
    const optimizerState: NamedTensors = new Map();
    for (const [name, t] of ckpt.tensors) (Optimizer.isStateName(name) ? optimizerState : weights).set(name, t);
    engine.writeWeights(weights);
    engine.writeOptimizerState(optimizerState);
    step = ckpt.step;
    trainSeconds = Number(ckpt.metadata.trainSeconds ?? 0);
    metrics = { columns: metrics.columns, rows: metrics.rows.filter((r) => r.step <= step) };
    log(`run ${id}: resuming from the checkpoint at step ${step} of ${steps}`);
  } else {
    metrics = { columns: [], rows: [] };
  }

  const train = asBatch(dataset, dataset.train);
  const val = asBatch(dataset, dataset.val);
  const batchSize = resolveBatchSize(cfg.training.batchSize, train.size);
  const sampler = new BatchSampler(train, batchSize, seed, dims.seqLen);
  state.status = "running";
  state.engine = engine.name;
  state.backend = engine.backend;
  log(
    `run ${id}: ${dataset.table.op.notation}${dataset.table.modulus ? ` mod ${dataset.table.modulus}` : ""}, ` +
      `${train.size} train / ${val.size} val, batch ${batchSize}, ${steps} steps; ${ctx.description}`,
  );
  log(`run ${id}: store ${displayPath(store.dir(id))}`);

  const { display: progress, owned: ownsProgress } = progressDisplayFor(options.progress, { label: `run ${id}`, out: log });
  const say = (m: string) => (progress ? progress.log(m, log) : log(m));
  let stopRequested = false;
  const requestStop = () => {
    if (stopRequested) {
      say("second interrupt: exiting without a checkpoint");
      process.exit(130);
    }
    stopRequested = true;
    say(`run ${id}: stopping after this step (checkpoint, then exit); interrupt again to exit at once`);
  };
  if (options.handleSignals) {
    process.on("SIGINT", requestStop);
    process.on("SIGTERM", requestStop);
  }
  options.signal?.addEventListener("abort", requestStop);

  const sessionStart = Date.now();
  const sessionStep0 = step;
  let lastCheckpointTime = Date.now();
  let saturationReported = false;
  const checkpointEvery = options.checkpointEvery ?? 1000;
  const checkpointSeconds = options.checkpointSeconds ?? 60;
  const keep = options.keepCheckpoints ?? 2;
  const elapsed = () => trainSeconds + (Date.now() - sessionStart) / 1000;
  const snapshotAt = new Set(options.snapshotSteps ?? []);

  const checkpoint = (final: boolean) => {
    const tensors: NamedTensors = new Map([...engine.readWeights(), ...engine.readOptimizerState()]);
    store.writeCheckpoint(id, step, tensors, { trainSeconds: String(elapsed()), engine: engine.name, backend: engine.backend }, { final, keep });
    lastCheckpointTime = Date.now();
  };
  const saveState = () => {
    state.stepsDone = step;
    state.trainSeconds = elapsed();
    state.firstTrain99 = firstStepAtLeast(metrics.rows, "train_acc", ACC_99);
    state.firstVal99 = firstStepAtLeast(metrics.rows, "val_acc", ACC_99);
    store.writeState(state);
  };
  const evaluate = async () => {
    const row = metricsRow(engine, train, val, step, learningRate(cfg.optimizer, step), elapsed());
    metrics.rows.push(row);
    if (metrics.columns.length === 0) metrics.columns = Object.keys(row);
    store.writeMetrics(id, metrics);
    saveState();
    if (row.train_saturated > 0 && !saturationReported) {
      saturationReported = true;
      say(
        `run ${id}: softmax saturated at step ${step}: ${(100 * row.train_saturated).toFixed(1)}% of training ` +
          `examples have float32 loss exactly 0 and give no gradient`,
      );
    }
    await options.onEval?.(row, { id, steps });
    return row;
  };
  // a session that stops early (stopAfter) shows its own end as the target, so its ETA is right
  const target = options.stopAfter === undefined ? steps : Math.min(steps, sessionStep0 + Math.max(1, options.stopAfter));
  const draw = (force = false) => {
    if (!progress) return;
    const last = metrics.rows[metrics.rows.length - 1];
    const done = step - sessionStep0;
    const state = {
      step,
      steps: target,
      trainLoss: last?.train_loss ?? NaN,
      trainAcc: last?.train_acc ?? NaN,
      valLoss: last?.val_loss ?? NaN,
      valAcc: last?.val_acc ?? NaN,
      secondsPerStep: done > 0 ? (Date.now() - sessionStart) / 1000 / done : NaN,
    };
    progress.draw(formatProgress(state, progress.mode === "tty" ? 24 : 0), force);
  };

  let stopReason: RunState["stopReason"] = null;
  let summary: string | undefined;
  try {
    draw(true);
    if (step === 0 && snapshotAt.has(0)) store.writeSnapshot(id, 0, engine.readWeights());
    if (isEvalStep(cfg.training.eval, step, steps) && metrics.rows[metrics.rows.length - 1]?.step !== step) await evaluate();
    if (earlyStopReached(metrics.rows, step, cfg.training.earlyStopHold)) stopReason = "early-stop";
    while (step < steps && stopReason === null) {
      engine.trainStep(sampler.at(step), step);
      step++;
      options.onStep?.(step);
      if (snapshotAt.has(step)) store.writeSnapshot(id, step, engine.readWeights());
      if (isEvalStep(cfg.training.eval, step, steps)) {
        await evaluate();
        if (earlyStopReached(metrics.rows, step, cfg.training.earlyStopHold)) stopReason = "early-stop";
      }
      draw();
      if (stopReason === null && step < steps) {
        const sessionSteps = step - sessionStep0;
        if (options.stopAfter !== undefined && sessionSteps >= options.stopAfter) stopRequested = true;
        if (stopRequested) break;
        if (step % checkpointEvery === 0 || Date.now() - lastCheckpointTime > checkpointSeconds * 1000) {
          checkpoint(false);
          saveState();
        }
        // let signals, timers and the notebook's event loop run
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    if (stopReason === null && step >= steps) stopReason = "budget";
    if (stopReason !== null) {
      // the last row must describe the final network even when the schedule skipped this step
      if (metrics.rows[metrics.rows.length - 1]?.step !== step) await evaluate();
      checkpoint(true);
      state.status = "finished";
      state.stopReason = stopReason;
    } else {
      checkpoint(false);
      state.status = "stopped";
    }
    saveState();
    draw(true);
    const end =
      state.status === "finished"
        ? `finished (${stopReason}) at step ${step}`
        : `stopped at step ${step} of ${steps}; run the same command again to resume`;
    summary =
      `run ${id}: ${end}; first step with train acc ≥ 99%: ${state.firstTrain99 ?? "not reached"}, ` +
      `val acc ≥ 99%: ${state.firstVal99 ?? "not reached"} (${formatDuration(state.trainSeconds)} of training)`;
  } finally {
    // in a notebook cell the progress line becomes the summary; elsewhere the summary follows it
    if (ownsProgress) progress?.done(summary);
    if (options.handleSignals) {
      process.off("SIGINT", requestStop);
      process.off("SIGTERM", requestStop);
    }
    options.signal?.removeEventListener("abort", requestStop);
  }
  if (!(ownsProgress && progress)) log(summary);
  return { ...store.info(id), metrics, interrupted: state.status !== "finished" };
}

function asBatch(dataset: Dataset, ex: Examples): Batch {
  return { size: ex.size, inputs: encodeInputs(dataset, ex), targets: ex.answer };
}

/** One row of metrics.csv. */
function metricsRow(engine: Engine, train: Batch, val: Batch, step: number, lr: number, wallSeconds: number): MetricsRow {
  const tr = engine.evaluate(train);
  const va = engine.evaluate(val);
  const norms: Record<string, number> = {};
  let sq = 0;
  for (const [name, t] of engine.readWeights()) {
    const n = l2norm(t.data);
    norms[`norm.${name}`] = n;
    sq += n * n;
  }
  return {
    step,
    train_loss: tr.loss,
    train_acc: tr.accuracy,
    val_loss: va.loss,
    val_acc: va.accuracy,
    train_saturated: tr.saturated,
    lr,
    weight_norm: Math.sqrt(sq),
    wall_seconds: wallSeconds,
    ...norms,
  };
}

export function firstStepAtLeast(rows: MetricsRow[], column: string, threshold: number): number | null {
  for (const r of rows) if (r[column] >= threshold) return r.step;
  return null;
}

/** Validation accuracy has stayed ≥ 99% at every evaluation of the last `hold` steps. */
export function earlyStopReached(rows: MetricsRow[], step: number, hold: number | null): boolean {
  if (hold === null || rows.length === 0) return false;
  let since: number | null = null;
  for (let i = rows.length - 1; i >= 0 && rows[i].val_acc >= ACC_99; i--) since = rows[i].step;
  return since !== null && rows[rows.length - 1].step === step && step - since >= hold;
}
