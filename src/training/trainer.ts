// The training loop: a step budget, evaluations of the whole training and validation sets (dense early,
// log-spaced later), checkpoints, resume, early stop. A run is a pure function of its config: stopped at any
// moment, it resumes from its last checkpoint and ends with the metrics of an uninterrupted run.

import { Dataset, encodeInputs, Examples, makeDataset, modelDims } from "../data/dataset";
import { Batch, DeviceError, Engine } from "../engines/engine";
import { createEngine, CreatedEngine, EngineOptions } from "../engines/index";
import { initParams, ModelDims } from "../model/config";
import { LockLostError, RunLock } from "../store/lock";
import { displayPath, Metrics, MetricsRow, RunInfo, RunState, RunStore } from "../store/run-store";
import { Interrupted, UserError } from "../util/errors";
import { l2norm, NamedTensors } from "../util/tensors";
import { BatchSampler } from "./batches";
import { isEvalStep, normalizeConfig, resolveBatchSize, RunConfig } from "../config/run-config";
import { learningRate, Optimizer } from "../optim/optimizer";
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
  /** Called when the run resumes from a checkpoint, with the checkpoint's step. */
  onResume?: (step: number, run: { id: string }) => void;
  /** Called after every step with the steps done (keep it cheap). */
  onStep?: (step: number, run: { id: string }) => void;
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
  /** Stop gracefully on SIGINT/SIGTERM; a second one throws Interrupted (the CLI sets this). */
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

/** How often a run checks, between writes, that its lock is still its own (it also checks before each write). */
const LEASE_CHECK_MS = 1000;

/** Trains a run to its budget, resuming it if the store has it, or returns it at once if finished. */
export async function train(config: RunConfig, options: TrainOptions = {}): Promise<TrainResult> {
  const cfg = normalizeConfig(config);
  const store = RunStore.of(options.store);
  const log = options.log ?? ((m: string) => process.stderr.write(m + "\n"));
  const id = RunStore.idFor(cfg);
  if (store.has(id) && store.readState(id).status === "finished") {
    log(`run ${id} is already finished (${displayPath(store.dir(id))})`);
    return { ...store.info(id), metrics: store.readMetrics(id), interrupted: false };
  }
  // everything that can fail on bad input fails here, before the run directory exists
  const { dataset, dims } = prepareRun(cfg);
  let created: CreatedEngine;
  try {
    created = await createEngine(options);
  } catch (err) {
    throw new UserError(`engine: ${(err as Error).message}`);
  }
  const { engine, description } = created;
  try {
    const unsupported = engine.unsupported?.(cfg.model, cfg.optimizer);
    if (unsupported) throw new UserError(unsupported);
    const { lock, state } = store.openForTraining(cfg, { onLost: (m) => log(`run ${id}: ${m}`) });
    try {
      const ctx = { cfg, store, id, lock, state, dataset, dims, engine, options, log };
      return await runLoop(ctx, engine, description);
    } finally {
      lock.release();
    }
  } finally {
    engine.dispose();
  }
}

/** The dataset and model dimensions of a normalized config; a UserError on a bad data config. */
export function prepareRun(cfg: RunConfig): { dataset: Dataset; dims: ModelDims } {
  try {
    const dataset = makeDataset(cfg.data);
    return { dataset, dims: modelDims(dataset) };
  } catch (err) {
    throw new UserError(`invalid config: data: ${(err as Error).message}`);
  }
}

/**
 * What a training session reads and writes of its run's model: an Engine, or one run's view of a
 * PackEngine (training steps are the caller's: one run's loop, or a pack's).
 */
export type RunEngine = Pick<
  Engine,
  "name" | "backend" | "evaluate" | "readWeights" | "writeWeights" | "readOptimizerState" | "writeOptimizerState"
>;

/** One run being trained: its config, store entry (locked), data and engine. */
export interface RunContext {
  cfg: RunConfig;
  store: RunStore;
  id: string;
  /** The run's lock: the session writes to the run only while it is still ours. */
  lock: RunLock;
  state: RunState;
  dataset: Dataset;
  dims: ModelDims;
  engine: RunEngine;
  options: TrainOptions;
  log: (message: string) => void;
}

/** Where a session starts: step 0, or the run's newest checkpoint. */
export interface StartPoint {
  step: number;
  /** Training time of the earlier sessions. */
  trainSeconds: number;
  /** The metrics rows up to `step`. */
  metrics: Metrics;
}

/** The log line of a resumed run (a sweep prints it too, for its workers' runs). */
export function resumeMessage(id: string, step: number, steps: number): string {
  return `run ${id}: resuming from the checkpoint at step ${step} of ${steps}`;
}

/**
 * Loads the run's newest checkpoint that reads and verifies (weights and optimizer state) into the engine,
 * setting newer bad ones aside, and keeps the metrics up to its step: the rows after it are recomputed
 * identically. Without a checkpoint the run starts at step 0.
 */
export function resumeFromCheckpoint(ctx: RunContext): StartPoint {
  const { store, id, engine, options, log } = ctx;
  const metrics = store.readMetrics(id);
  const ckpt = store.readNewestValidCheckpoint(id);
  if (!ckpt) return { step: 0, trainSeconds: 0, metrics: { columns: [], rows: [] } };
  for (const problem of ckpt.setAside) log(`run ${id}: ${problem}`);
  const weights: NamedTensors = new Map();
  const optimizerState: NamedTensors = new Map();
  for (const [name, t] of ckpt.tensors) (Optimizer.isStateName(name) ? optimizerState : weights).set(name, t);
  engine.writeWeights(weights);
  engine.writeOptimizerState(optimizerState);
  const step = ckpt.step;
  log(resumeMessage(id, step, ctx.cfg.training.steps) + (ckpt.setAside.length ? ` (${displayPath(ckpt.file)})` : ""));
  options.onResume?.(step, { id });
  return {
    step,
    trainSeconds: Number(ckpt.metadata.trainSeconds ?? 0),
    metrics: { columns: metrics.columns, rows: metrics.rows.filter((r) => r.step <= step) },
  };
}

/**
 * Stops a run (or a pack of runs) after its current step: on abort, on SIGINT/SIGTERM when the caller asks
 * (handleSignals), or when a session has done its stopAfter steps. A second interrupt stops it at the next
 * chance, without a checkpoint, by throwing Interrupted.
 */
export class StopController {
  /** End after this step, with a checkpoint. */
  requested = false;
  private atOnce = false;

  private readonly interrupt = () => {
    if (this.requested) {
      this.say("second interrupt: exiting without a checkpoint");
      this.atOnce = true;
      return;
    }
    this.requested = true;
    this.say(`${this.label}: stopping after this step (checkpoint, then exit); interrupt again to exit at once`);
  };

  /** `label` names what stops in messages: "run 1a2b3c4d5e6f", "pack of 4 runs". */
  constructor(
    private readonly label: string,
    private readonly options: Pick<TrainOptions, "signal" | "handleSignals">,
    private readonly say: (message: string) => void,
  ) {
    if (options.handleSignals) {
      process.on("SIGINT", this.interrupt);
      process.on("SIGTERM", this.interrupt);
    }
    options.signal?.addEventListener("abort", this.interrupt);
  }

  /** Called after each wait, where a signal can arrive. */
  throwIfInterruptedTwice(): void {
    if (this.atOnce) throw new Interrupted("second interrupt: exiting without a checkpoint");
  }

  dispose(): void {
    if (this.options.handleSignals) {
      process.off("SIGINT", this.interrupt);
      process.off("SIGTERM", this.interrupt);
    }
    this.options.signal?.removeEventListener("abort", this.interrupt);
  }
}

/** Why a run ended: its budget, an early stop, or null when it was stopped (resumable). */
export type EndReason = RunState["stopReason"];

/** The line a run's start prints: its table, sizes, batch and budget. */
export function startMessage(ctx: RunContext, session: TrainingSession): string {
  const { id, dataset, cfg } = ctx;
  const { train, val, sampler } = session.data;
  return (
    `run ${id}: ${dataset.table.op.notation}${dataset.table.modulus ? ` mod ${dataset.table.modulus}` : ""}, ` +
    `${train.size} train / ${val.size} val, batch ${sampler.batchSize}, ${cfg.training.steps} steps`
  );
}

/** The examples of a run's session and its batches (each run draws its own, from its seed). */
export function sessionData(ctx: RunContext): SessionData {
  const { cfg, dataset, dims } = ctx;
  const train = asBatch(dataset, dataset.train);
  const val = asBatch(dataset, dataset.val);
  const batchSize = resolveBatchSize(cfg.training.batchSize, train.size);
  return { train, val, sampler: new BatchSampler(train, batchSize, cfg.training.seed, dims.seqLen) };
}

/** Marks the run as running on its engine, in its state. */
export function markRunning(ctx: RunContext): void {
  ctx.state.status = "running";
  ctx.state.engine = ctx.engine.name;
  ctx.state.backend = ctx.engine.backend;
}

async function runLoop(ctx: RunContext, engine: Engine, description: string): Promise<TrainResult> {
  const { cfg, store, id, dims, options, log } = ctx;
  const seed = cfg.training.seed;
  engine.initialize({ model: cfg.model, dims, optimizer: cfg.optimizer, seed }, initParams(cfg.model, dims, seed));
  const start = resumeFromCheckpoint(ctx);
  markRunning(ctx);
  const { display: progress, owned: ownsProgress } = progressDisplayFor(options.progress, {
    label: `run ${id}`,
    out: log,
  });
  const say = (m: string) => (progress ? progress.log(m, log) : log(m));
  const stop = new StopController(`run ${id}`, options, say);
  const session = new TrainingSession(ctx, start, sessionData(ctx), progress, say, stop);
  log(`${startMessage(ctx, session)}; ${description}`);
  log(`run ${id}: store ${displayPath(store.dir(id))}`);
  let stopReason: EndReason = null;
  let summary: string | undefined;
  try {
    stopReason = await trainSteps(engine, session, stop);
    summary = await session.finish(stopReason);
  } catch (err) {
    if (!(err instanceof DeviceError)) throw err;
    // nothing the engine holds can be trusted: the run stops at its checkpoint on disk, read no further
    session.abandon();
    throw new DeviceError(err.kind, `${deviceFailure(err)}; ${session.summary()}`);
  } finally {
    // in a notebook cell the progress line becomes the summary; elsewhere the summary follows it
    if (ownsProgress) progress?.done(summary);
    stop.dispose();
  }
  if (!(ownsProgress && progress)) log(summary);
  return { ...store.info(id), metrics: session.metrics, interrupted: stopReason === null };
}

/** One run's loop: trains until the budget, an early stop or a stop request; returns why it ended. */
async function trainSteps(engine: Engine, session: TrainingSession, stop: StopController): Promise<EndReason> {
  const begun = await session.begin();
  if (begun !== undefined) return begun;
  for (;;) {
    await engine.trainStep(session.batch(), session.step);
    const end = await session.afterStep();
    if (end !== undefined) return end;
    if (stop.requested) return null;
    await session.checkpointIfDue();
    await yieldToEventLoop();
    stop.throwIfInterruptedTwice();
  }
}

/** The first words of a device error's message: what failed. */
export function deviceFailure(err: DeviceError): string {
  return `the device failed (${err.kind}: ${err.message})`;
}

/** Lets signals, timers and the notebook's event loop run between steps. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The examples a session trains on and evaluates on, and its batches. */
export interface SessionData {
  train: Batch;
  val: Batch;
  sampler: BatchSampler;
}

/**
 * One session of training a run, from its start point to its budget, an early stop or a stop: everything
 * around the training steps, which its caller drives (one run's loop, or a pack's). After each step:
 * snapshots, the evaluation schedule, early stop, the budget, stopAfter and the progress line; between
 * steps, checkpoints by steps or seconds; at the end, the last checkpoint and the run's state.
 */
export class TrainingSession {
  step: number;
  metrics: Metrics;
  /** The step of the newest checkpoint on disk: where the run resumes from if the engine fails. */
  checkpointStep: number;
  private readonly sessionStart = Date.now();
  private readonly sessionStep0: number;
  private lastCheckpointTime = Date.now();
  private lastLeaseCheck = Date.now();
  private saturationReported = false;
  private readonly snapshotAt: Set<number>;
  /** The step this session means to end at: a session that stops early (stopAfter) shows it, so its ETA is right. */
  readonly target: number;

  constructor(
    private readonly ctx: RunContext,
    private readonly start: StartPoint,
    readonly data: SessionData,
    private readonly progress: ProgressDisplay | null,
    private readonly say: (message: string) => void,
    private readonly stop: StopController,
  ) {
    this.step = start.step;
    this.checkpointStep = start.step;
    this.metrics = start.metrics;
    this.sessionStep0 = start.step;
    this.snapshotAt = new Set(ctx.options.snapshotSteps ?? []);
    const { stopAfter } = ctx.options;
    const steps = ctx.cfg.training.steps;
    this.target = stopAfter === undefined ? steps : Math.min(steps, start.step + Math.max(1, stopAfter));
  }

  get id(): string {
    return this.ctx.id;
  }

  /** The engine the session reads the run's model from (a pack's runs move when others leave it). */
  set engine(engine: RunEngine) {
    this.ctx.engine = engine;
  }

  /** The batch of the next step. */
  batch(): Batch {
    return this.data.sampler.at(this.step);
  }

  /** Before the first step: the start's snapshot and evaluation; why the run ends at once, if it does. */
  async begin(): Promise<EndReason | undefined> {
    const { cfg, engine } = this.ctx;
    const steps = cfg.training.steps;
    this.draw(true);
    if (this.step === 0 && this.snapshotAt.has(0)) this.writeSnapshot(await engine.readWeights());
    if (isEvalStep(cfg.training.eval, this.step, steps) && this.lastRow()?.step !== this.step) await this.evaluate();
    if (earlyStopReached(this.metrics.rows, this.step, cfg.training.earlyStopHold)) return "early-stop";
    return this.step >= steps ? "budget" : undefined;
  }

  /**
   * After the engine has done step `this.step`: counts it, then snapshots, evaluates and draws; returns why
   * the run ends here (budget, early stop), if it does. A session that has done its stopAfter steps asks
   * to stop.
   */
  async afterStep(): Promise<EndReason | undefined> {
    const { cfg, id, engine, lock, options } = this.ctx;
    const steps = cfg.training.steps;
    this.step++;
    // a run another host took over stops at once, even between writes
    if (!lock.isHeld || Date.now() - this.lastLeaseCheck >= LEASE_CHECK_MS) this.checkLease();
    options.onStep?.(this.step, { id });
    if (this.snapshotAt.has(this.step)) this.writeSnapshot(await engine.readWeights());
    if (isEvalStep(cfg.training.eval, this.step, steps)) {
      await this.evaluate();
      if (earlyStopReached(this.metrics.rows, this.step, cfg.training.earlyStopHold)) {
        this.draw();
        return "early-stop";
      }
    }
    this.draw();
    if (this.step >= steps) return "budget";
    if (options.stopAfter !== undefined && this.step - this.sessionStep0 >= options.stopAfter)
      this.stop.requested = true;
    return undefined;
  }

  /** A periodic checkpoint (and the state) when checkpointEvery steps or checkpointSeconds have passed. */
  async checkpointIfDue(): Promise<void> {
    const { options } = this.ctx;
    const checkpointEvery = options.checkpointEvery ?? 1000;
    const checkpointSeconds = options.checkpointSeconds ?? 60;
    if (this.step % checkpointEvery === 0 || Date.now() - this.lastCheckpointTime > checkpointSeconds * 1000) {
      await this.checkpoint(false);
      this.saveState();
    }
  }

  /** Writes the session's last checkpoint and state; returns the run's summary line. */
  async finish(stopReason: EndReason): Promise<string> {
    const { state } = this.ctx;
    if (stopReason !== null) {
      // the last row must describe the final network even when the schedule skipped this step
      if (this.lastRow()?.step !== this.step) await this.evaluate();
      await this.checkpoint(true);
      state.status = "finished";
      state.stopReason = stopReason;
    } else {
      await this.checkpoint(false);
      state.status = "stopped";
    }
    this.saveState();
    this.draw(true);
    return this.summary();
  }

  /**
   * Stops the run at its newest checkpoint on disk without reading the engine (whose device failed): its
   * state says "stopped" at that step, and a resume starts there.
   */
  abandon(): void {
    const { state } = this.ctx;
    this.step = this.checkpointStep;
    this.metrics = { columns: this.metrics.columns, rows: this.metrics.rows.filter((r) => r.step <= this.step) };
    state.status = "stopped";
    this.saveState();
  }

  /** The run's summary line: how it ended, its first steps at 99%, its training time. */
  summary(): string {
    const { id, state } = this.ctx;
    const steps = this.ctx.cfg.training.steps;
    const end =
      state.status === "finished"
        ? `finished (${state.stopReason}) at step ${this.step}`
        : `stopped at step ${this.step} of ${steps}; run the same command again to resume`;
    return (
      `run ${id}: ${end}; first step with train acc ≥ 99%: ${state.firstTrain99 ?? "not reached"}, ` +
      `val acc ≥ 99%: ${state.firstVal99 ?? "not reached"} (${formatDuration(state.trainSeconds)} of training)`
    );
  }

  /** The newest metrics row. */
  lastRow(): MetricsRow | undefined {
    return this.metrics.rows[this.metrics.rows.length - 1];
  }

  /**
   * Throws LockLostError when another process has taken the run over (its lease expired here): called before
   * every write, so that nothing more is written to a run that is not ours, and between writes.
   */
  private checkLease(): void {
    this.lastLeaseCheck = Date.now();
    const { id, lock } = this.ctx;
    if (!lock.verify()) throw new LockLostError(id, lock.takenOverBy);
  }

  private writeSnapshot(weights: NamedTensors): void {
    this.checkLease();
    this.ctx.store.writeSnapshot(this.ctx.id, this.step, weights);
  }

  private elapsed(): number {
    return this.start.trainSeconds + (Date.now() - this.sessionStart) / 1000;
  }

  private async checkpoint(final: boolean): Promise<void> {
    const { store, id, engine, options } = this.ctx;
    const tensors: NamedTensors = new Map([...(await engine.readWeights()), ...(await engine.readOptimizerState())]);
    const metadata = { trainSeconds: String(this.elapsed()), engine: engine.name, backend: engine.backend };
    this.checkLease();
    store.writeCheckpoint(id, this.step, tensors, metadata, { final, keep: options.keepCheckpoints ?? 2 });
    this.checkpointStep = this.step;
    this.lastCheckpointTime = Date.now();
  }

  private saveState(): void {
    const { store, state } = this.ctx;
    this.checkLease();
    state.stepsDone = this.step;
    state.trainSeconds = this.elapsed();
    state.firstTrain99 = firstStepAtLeast(this.metrics.rows, "train_acc", ACC_99);
    state.firstVal99 = firstStepAtLeast(this.metrics.rows, "val_acc", ACC_99);
    store.writeState(state);
  }

  private async evaluate(): Promise<void> {
    const { cfg, store, id, engine, options } = this.ctx;
    const row = await metricsRow(
      engine,
      this.data.train,
      this.data.val,
      this.step,
      learningRate(cfg.optimizer, this.step),
      this.elapsed(),
    );
    this.metrics.rows.push(row);
    if (this.metrics.columns.length === 0) this.metrics.columns = Object.keys(row);
    this.checkLease();
    store.writeMetrics(id, this.metrics);
    this.saveState();
    if (row.train_saturated > 0 && !this.saturationReported) {
      this.saturationReported = true;
      this.say(
        `run ${id}: softmax saturated at step ${this.step}: ${(100 * row.train_saturated).toFixed(1)}% of training ` +
          `examples have float32 loss exactly 0 and give no gradient`,
      );
    }
    await options.onEval?.(row, { id, steps: cfg.training.steps });
    this.stop.throwIfInterruptedTwice();
  }

  private draw(force = false): void {
    if (!this.progress) return;
    const last = this.lastRow();
    const done = this.step - this.sessionStep0;
    const line = {
      step: this.step,
      steps: this.target,
      trainLoss: last?.train_loss ?? NaN,
      trainAcc: last?.train_acc ?? NaN,
      valLoss: last?.val_loss ?? NaN,
      valAcc: last?.val_acc ?? NaN,
      secondsPerStep: done > 0 ? (Date.now() - this.sessionStart) / 1000 / done : NaN,
    };
    this.progress.draw(formatProgress(line, this.progress.mode === "tty" ? 24 : 0), force);
  }
}

function asBatch(dataset: Dataset, ex: Examples): Batch {
  return { size: ex.size, inputs: encodeInputs(dataset, ex), targets: ex.answer };
}

/** One row of metrics.csv. */
async function metricsRow(
  engine: RunEngine,
  train: Batch,
  val: Batch,
  step: number,
  lr: number,
  wallSeconds: number,
): Promise<MetricsRow> {
  const tr = await engine.evaluate(train);
  const va = await engine.evaluate(val);
  const norms: Record<string, number> = {};
  let sq = 0;
  for (const [name, t] of await engine.readWeights()) {
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

function firstStepAtLeast(rows: MetricsRow[], column: string, threshold: number): number | null {
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
