// Packs: many runs trained together on one PackEngine (the webgpu engine with a leading run dimension), each
// an ordinary run in the store, with its own directory, config, metrics, checkpoints, snapshots, state and
// lock. Each run keeps its own data order, evaluation schedule, budget and early stop: the pack loop drives
// one TrainingSession per run (the same sessions train() drives for one run), and a run that finishes
// writes its final checkpoint and leaves the pack while the others go on. Stopped, the runs resume from
// their own checkpoints, each exactly as train() would resume it.

import { normalizeConfig, resolveBatchSize, RunConfig } from "../config/run-config";
import { DeviceError, EngineSetup, packConflict, PackEngine } from "../engines/engine";
import { PACK_BUDGET_BYTES, packCapacity } from "../engines/webgpu/capacity";
import { WebGpuPackEngine } from "../engines/webgpu/pack-engine";
import { initParams, ModelDims } from "../model/config";
import { displayPath, RunStore } from "../store/run-store";
import { LockLostError, RunLock } from "../store/lock";
import { UserError } from "../util/errors";
import { formatDuration, formatEta, ProgressDisplay, progressDisplayFor } from "./progress";
import {
  EndReason,
  deviceFailure,
  markRunning,
  prepareRun,
  resumeFromCheckpoint,
  RunContext,
  sessionData,
  startMessage,
  StopController,
  TrainingSession,
  TrainOptions,
  TrainResult,
  yieldToEventLoop,
} from "./trainer";

export interface PackOptions extends TrainOptions {
  /** The pack engine to train on (default: a webgpu pack engine on its own device, disposed at the end). */
  packEngine?: PackEngine;
  /** Called as each run ends: finished (budget, early stop) or stopped with a checkpoint (null). */
  onRunEnd?: (id: string, reason: EndReason) => void;
}

export interface PackResult {
  /** Every run, in the order of the configs (runs finished before this call included). */
  runs: TrainResult[];
  /** True when the pack stopped before every run finished (interrupted, aborted, or stopAfter). */
  interrupted: boolean;
  /** The runs another host took over while the pack trained them (their leases expired here): theirs now. */
  lost: string[];
}

/**
 * Trains runs as one pack to their budgets, resuming those the store has, skipping those it has finished.
 * A DeviceError stops every run at its newest checkpoint on disk (status "stopped", resumable) and is
 * rethrown naming the step each run resumes from.
 */
export async function trainPack(configs: RunConfig[], options: PackOptions = {}): Promise<PackResult> {
  const store = RunStore.of(options.store);
  const log = options.log ?? ((m: string) => process.stderr.write(m + "\n"));
  const cfgs = configs.map((c) => normalizeConfig(c));
  const ids = cfgs.map((c) => RunStore.idFor(c));
  const repeated = ids.find((id, i) => ids.indexOf(id) !== i);
  if (repeated !== undefined) throw new UserError(`a pack holds each run once; run ${repeated} is there twice`);
  const finished = (i: number) => store.has(ids[i]) && store.readState(ids[i]).status === "finished";
  const todo = cfgs.map((_, i) => i).filter((i) => !finished(i));
  for (const i of cfgs.keys())
    if (!todo.includes(i)) log(`run ${ids[i]} is already finished (${displayPath(store.dir(ids[i]))})`);
  const trained = new Map<number, TrainResult>();
  const lost: string[] = [];
  if (todo.length > 0) {
    // everything that can fail on bad input fails here, before any run directory exists
    const prepared = todo.map((i) => prepareRun(cfgs[i]));
    checkPackable(
      todo.map((i) => ids[i]),
      todo.map((i, k) => engineSetup(cfgs[i], prepared[k].dims)),
    );
    const pack = options.packEngine ?? (await WebGpuPackEngine.create(undefined, packMemoryBudget()));
    const locks: RunLock[] = [];
    try {
      const runs = todo.map((i, k): PackRun => {
        const { lock, state } = store.openForTraining(cfgs[i], { onLost: (m) => log(`run ${ids[i]}: ${m}`) });
        locks.push(lock);
        return { cfg: cfgs[i], store, id: ids[i], lock, state, ...prepared[k], options, log };
      });
      const results = await runPack(pack, runs, options, log);
      todo.forEach((i, k) => trained.set(i, results[k]));
      lost.push(...todo.filter((_, k) => results[k].lost).map((i) => ids[i]));
    } finally {
      for (const lock of locks) lock.release();
      if (!options.packEngine) pack.dispose();
    }
  }
  const runs = cfgs.map(
    (_, i) => trained.get(i) ?? { ...store.info(ids[i]), metrics: store.readMetrics(ids[i]), interrupted: false },
  );
  // a run another host took over is theirs now: not this call's to resume
  return { runs, interrupted: runs.some((r) => r.interrupted && !lost.includes(r.id)), lost };
}

/**
 * The memory a pack may take on the GPU: $GROK_PACK_MEMORY in GiB (WebGPU does not tell an adapter's memory, so a
 * large GPU says it here, e.g. 100 on a 141 GB H200), else PACK_BUDGET_BYTES.
 */
export function packMemoryBudget(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.GROK_PACK_MEMORY;
  if (text === undefined || text === "") return PACK_BUDGET_BYTES;
  const gib = Number(text);
  if (!(Number.isFinite(gib) && gib > 0))
    throw new UserError(`GROK_PACK_MEMORY must be a positive number of GiB (got "${text}")`);
  return Math.floor(gib * 2 ** 30);
}

/**
 * Trains runs in packs of runs that can share one, at most `maxPack` runs each (default: as many as fit the
 * adapter), one pack after another on one pack engine. A stop ends the pack training then and starts no
 * other; a DeviceError stops the pack's runs at their checkpoints and is rethrown. The result holds the
 * runs of the packs that trained, in the order of the configs.
 */
export async function trainInPacks(
  configs: RunConfig[],
  options: Omit<PackOptions, "packEngine"> & { packEngine?: WebGpuPackEngine; maxPack?: number } = {},
): Promise<PackResult> {
  const { maxPack, ...packOptions } = options;
  const pack = options.packEngine ?? (await WebGpuPackEngine.create(undefined, packMemoryBudget()));
  const results = new Map<number, TrainResult>();
  const lost: string[] = [];
  let interrupted = false;
  try {
    for (const group of packGroups(configs, maxPack)) {
      // a group of compatible runs trains in packs of as many as fit the adapter. A pack step pads every
      // batch to the largest, so the runs go largest batch first (a stable sort: else in config order):
      // a pack's first run has its largest batch, the one its capacity is measured at
      const setups = new Map(group.map((i) => [i, packSetupOf(configs[i])]));
      const order = [...group].sort((a, b) => setups.get(b)!.batchSize - setups.get(a)!.batchSize);
      for (let start = 0; start < order.length && !interrupted && !options.signal?.aborted;) {
        const { setup, batchSize } = setups.get(order[start])!;
        const fit = packCapacity(pack.webgpu, setup, batchSize, pack.budgetBytes);
        if (fit.runs < 1)
          throw new UserError(
            `run ${RunStore.idFor(normalizeConfig(configs[order[start]]))} does not fit the adapter: ${fit.limit}`,
          );
        const part = order.slice(start, start + fit.runs);
        start += part.length;
        const result = await trainPack(
          part.map((i) => configs[i]),
          { ...packOptions, packEngine: pack },
        );
        part.forEach((i, k) => results.set(i, result.runs[k]));
        lost.push(...result.lost);
        interrupted = result.interrupted;
      }
    }
  } finally {
    if (!options.packEngine) pack.dispose();
  }
  const runs = configs.flatMap((_, i) => results.get(i) ?? []);
  const stopped = runs.some((r) => r.interrupted && !lost.includes(r.id));
  return { runs, interrupted: runs.length < configs.length || stopped, lost };
}

/** A run's engine setup (whether runs can share a pack) and its batch size (the room a pack needs). */
interface PackSetup {
  setup: EngineSetup;
  batchSize: number;
}

/** The engine setup of a run. */
function engineSetup(cfg: RunConfig, dims: ModelDims): EngineSetup {
  return { model: cfg.model, dims, optimizer: cfg.optimizer, seed: cfg.training.seed };
}

function packSetupOf(config: RunConfig): PackSetup {
  const cfg = normalizeConfig(config);
  const { dataset, dims } = prepareRun(cfg);
  return {
    setup: engineSetup(cfg, dims),
    batchSize: resolveBatchSize(cfg.training.batchSize, dataset.train.size),
  };
}

/**
 * A UserError naming the first run that cannot share a pack with the first one, and why (packConflict).
 * Batch sizes may differ, at any step: a pack step pads the smaller batches.
 */
function checkPackable(ids: string[], setups: EngineSetup[]): void {
  for (let r = 1; r < setups.length; r++) {
    const conflict = packConflict(setups[0], setups[r]);
    if (conflict) throw new UserError(`run ${ids[r]} cannot share a pack with run ${ids[0]}: ${conflict}`);
  }
}

/**
 * Groups runs into packs of runs that can share one, at most `maxSize` runs each; returns each group's
 * indexes into `configs`, groups in the order of their first run. A UserError on a bad data config.
 */
export function packGroups(configs: RunConfig[], maxSize = Infinity): number[][] {
  const setups = configs.map(packSetupOf);
  const groups: number[][] = [];
  for (const [i, setup] of setups.entries()) {
    const group = groups.find((g) => g.length < maxSize && packConflict(setups[g[0]].setup, setup.setup) === null);
    if (group) group.push(i);
    else groups.push([i]);
  }
  return groups;
}

/** A run of the pack, locked, before the pack engine holds it. */
type PackRun = Omit<RunContext, "engine">;

/** Sets up the pack's runs on the engine, each from its newest checkpoint, then trains them to their ends. */
async function runPack(
  pack: PackEngine,
  runs: PackRun[],
  options: PackOptions,
  log: (message: string) => void,
): Promise<(TrainResult & { lost: boolean })[]> {
  const label = `pack of ${runs.length} run${runs.length > 1 ? "s" : ""}`;
  const setups = runs.map(({ cfg, dims }) => engineSetup(cfg, dims));
  await pack.initialize(
    setups,
    setups.map((s) => initParams(s.model, s.dims, s.seed)),
  );
  const { display: progress, owned: ownsProgress } = progressDisplayFor(options.progress, { label, out: log });
  const say = (m: string) => (progress ? progress.log(m, log) : log(m));
  const stop = new StopController(label, options, say);
  log(`${label} on ${pack.name} (${pack.backend})`);
  const sessions: TrainingSession[] = [];
  const loop = new PackLoop(pack, sessions, stop, progress, say, options.onRunEnd);
  let summary: string | undefined;
  try {
    runs.forEach((run, r) => {
      const ctx: RunContext = { ...run, engine: pack.run(r) };
      const start = resumeFromCheckpoint(ctx);
      markRunning(ctx);
      const session = new TrainingSession(ctx, start, sessionData(ctx), null, say, stop);
      log(`${startMessage(ctx, session)}; store ${displayPath(ctx.store.dir(ctx.id))}`);
      sessions.push(session);
    });
    await loop.train();
    summary = loop.summary(label);
  } catch (err) {
    if (!(err instanceof DeviceError)) throw err;
    throw new DeviceError(err.kind, loop.abandon(label, err));
  } finally {
    // in a notebook cell the progress line becomes the summary; elsewhere the summary follows it
    if (ownsProgress) progress?.done(summary);
    stop.dispose();
  }
  if (!(ownsProgress && progress)) log(summary);
  return sessions.map((s) => ({
    ...runs[0].store.info(s.id),
    metrics: s.metrics,
    interrupted: loop.ended.get(s) === null || loop.lost.has(s),
    lost: loop.lost.has(s),
  }));
}

/** The steps of a pack: every run in it one step at a time, until each has ended (or a stop). */
class PackLoop {
  /** How each run ended: budget, early stop, or null (stopped). */
  readonly ended = new Map<TrainingSession, EndReason>();
  /** The runs another host took over: they left the pack writing nothing more (LockLostError). */
  readonly lost = new Set<TrainingSession>();
  private active: TrainingSession[] = [];
  private readonly startedAt = Date.now();
  private packSteps = 0;

  constructor(
    private readonly pack: PackEngine,
    private readonly sessions: TrainingSession[],
    private readonly stop: StopController,
    private readonly progress: ProgressDisplay | null,
    private readonly say: (message: string) => void,
    private readonly onRunEnd?: (id: string, reason: EndReason) => void,
  ) {}

  async train(): Promise<void> {
    const { pack, stop } = this;
    this.active = [...this.sessions];
    await this.endWhere(await this.each((s) => s.begin()));
    this.draw(true);
    while (this.active.length > 0) {
      await pack.trainStep(
        this.active.map((s) => s.batch()),
        this.active.map((s) => s.step),
      );
      this.packSteps++;
      await this.endWhere(await this.each((s) => s.afterStep()));
      if (stop.requested) {
        await this.each((s) => this.end(s, null));
        this.active = [];
        break;
      }
      await this.endWhere(await this.each((s) => s.checkpointIfDue()));
      this.draw();
      await yieldToEventLoop();
      stop.throwIfInterruptedTwice();
    }
  }

  /**
   * Runs `what` for each run in the pack in turn; their answers in the pack's order. A run another host took
   * over is lost (said so), and leaves the pack at the next endWhere; the others go on.
   */
  private async each<T>(what: (s: TrainingSession) => Promise<T>): Promise<(T | undefined)[]> {
    const out: (T | undefined)[] = [];
    for (const s of this.active) {
      try {
        out.push(await what(s));
      } catch (err) {
        if (!(err instanceof LockLostError)) throw err;
        this.lost.add(s);
        this.say(err.message);
        out.push(undefined);
      }
    }
    return out;
  }

  /** Ends the runs with an end reason (final checkpoint, state), then lets them and the lost ones leave the pack. */
  private async endWhere(ends: (EndReason | void | undefined)[]): Promise<void> {
    const ending = this.active.filter((s, r) => ends[r] !== undefined && !this.lost.has(s));
    await this.each((s) => (ending.includes(s) ? this.end(s, ends[this.active.indexOf(s)]!) : Promise.resolve()));
    const staying = this.active.filter((s, r) => ends[r] === undefined && !this.lost.has(s));
    if (staying.length === this.active.length) return;
    if (staying.length > 0) {
      await this.pack.keep(staying.map((s) => this.active.indexOf(s)));
      staying.forEach((s, r) => (s.engine = this.pack.run(r)));
    }
    this.active = staying;
  }

  private async end(session: TrainingSession, reason: EndReason): Promise<void> {
    const summary = await session.finish(reason);
    this.ended.set(session, reason);
    this.say(summary);
    this.onRunEnd?.(session.id, reason);
  }

  /**
   * After a device error: every run that has not ended stops at its newest checkpoint on disk, reading
   * nothing from the engine. Returns the message that says so.
   */
  abandon(label: string, err: DeviceError): string {
    const open = this.sessions.filter((s) => !this.ended.has(s) && !this.lost.has(s));
    for (const s of open) {
      try {
        s.abandon();
        this.ended.set(s, null);
      } catch (e) {
        // a run another host took over is left as that host has it
        if (!(e instanceof LockLostError)) throw e;
        this.lost.add(s);
      }
    }
    const stopped = open.filter((s) => !this.lost.has(s));
    const where = stopped.map((s) => `run ${s.id} from step ${s.checkpointStep}`).join(", ");
    return (
      `${label}: ${deviceFailure(err)}; ` +
      (stopped.length
        ? `${stopped.length} run${stopped.length > 1 ? "s" : ""} stopped at their last checkpoints, ` +
          `run the same command again to resume (${where})`
        : this.sessions.length > 0
          ? "every run had ended"
          : "before any run started; run the same command again")
    );
  }

  /** The pack's summary line: how many runs finished, how many stopped, in what time. */
  summary(label: string): string {
    const reasons = [...this.ended.values()];
    const finished = reasons.filter((r) => r !== null).length;
    const stopped = reasons.length - finished;
    return (
      `${label}: ${finished} finished${stopped ? `, ${stopped} stopped (run the same command again to resume)` : ""}` +
      `${this.lost.size ? `, ${this.lost.size} taken over by another host` : ""}` +
      ` in ${formatDuration((Date.now() - this.startedAt) / 1000)}`
    );
  }

  /** The pack's progress line: runs in the pack, each one's step and validation accuracy, an ETA. */
  private draw(force = false): void {
    if (!this.progress) return;
    const seconds = (Date.now() - this.startedAt) / 1000;
    const left = Math.max(0, ...this.active.map((s) => s.target - s.step));
    const shown = this.active.slice(0, 4).map((s) => {
      const val = s.lastRow()?.val_acc;
      return `${s.id.slice(0, 6)} ${s.step}/${s.target} val ${val === undefined ? "–" : (100 * val).toFixed(0) + "%"}`;
    });
    const more = this.active.length > shown.length ? ` · +${this.active.length - shown.length} more` : "";
    this.progress.draw(
      `${this.active.length} training, ${this.ended.size} ended · ${shown.join(" · ")}${more} · ` +
        `ETA ${formatEta(left, this.packSteps, seconds)}`,
      force,
    );
  }
}
