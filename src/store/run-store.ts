// The run store: one directory per run, named by a hash of the run's full config.
//
//   <root>/<id>/config.json                  the RunConfig (canonical JSON)
//   <root>/<id>/run.json                     status, steps done, first steps at 99%, engine, backend, times
//   <root>/<id>/metrics.csv                  one row per evaluation (see metricsRow in training/trainer.ts)
//   <root>/<id>/checkpoints/step-NNNNNNNNN.safetensors   periodic: weights + optimizer state
//   <root>/<id>/checkpoints/final.safetensors            at the end of the run
//   <root>/<id>/checkpoints/*.safetensors.bad            a checkpoint that failed to read, set aside
//   <root>/<id>/snapshots/step-NNNNNNNNN.safetensors     weights only, at steps asked for (never pruned)
//   <root>/<id>/lock                         while a process trains it
//
// Every file is replaced atomically (write, fsync, rename), so a reader never sees a half-written one.

import * as fs from "node:fs";
import * as path from "node:path";
import { RunConfig } from "../config/run-config";
import { errorLine } from "../util/errors";
import { NamedTensors } from "../util/tensors";
import { writeFileAtomic, removeStaleTempFiles } from "./atomic";
import { formatCsv, parseCsv } from "./csv";
import { canonicalJson, configHash } from "./hash";
import { LockOptions, RunLock } from "./lock";
import { readCheckpoint, writeCheckpoint } from "./safetensors";

export type RunStatus = "created" | "running" | "stopped" | "finished";

/** run.json */
export interface RunState {
  id: string;
  status: RunStatus;
  /** Optimizer updates done (as of the last evaluation or checkpoint written). */
  stepsDone: number;
  /** "budget" or "early-stop" once finished. */
  stopReason: "budget" | "early-stop" | null;
  /** First evaluated step with training / validation accuracy ≥ 99% (null: not yet). */
  firstTrain99: number | null;
  firstVal99: number | null;
  engine: string | null;
  backend: string | null;
  createdAt: string;
  updatedAt: string;
  /** Training time summed over every session of this run, in seconds. */
  trainSeconds: number;
}

export type MetricsRow = Record<string, number>;

export interface Metrics {
  columns: string[];
  rows: MetricsRow[];
}

export interface RunInfo extends RunState {
  dir: string;
  config: RunConfig;
}

export interface StoredCheckpoint {
  /** Steps done when it was written. */
  step: number;
  tensors: NamedTensors;
  metadata: Record<string, string>;
}

export interface CheckpointFile {
  /** Steps done when it was written. */
  step: number;
  final: boolean;
  path: string;
}

const FORMAT_VERSION = "1";

/** The repository this package was built in (this file is dist/src/store/run-store.js). */
export const REPO_ROOT = path.resolve(__dirname, "..", "..", "..");

/** The project's data/runs, wherever the process was started (notebooks run in notebooks/); GROK_STORE overrides. */
export function defaultStoreRoot(): string {
  return process.env.GROK_STORE ? path.resolve(process.env.GROK_STORE) : path.join(REPO_ROOT, "data", "runs");
}

/**
 * A path as messages print it: relative to the repository when inside it ("data/runs/1a2b3c4d5e6f"), so
 * logs and saved notebook outputs name no machine's directories; else absolute.
 */
export function displayPath(p: string): string {
  const abs = path.resolve(p);
  const rel = path.relative(REPO_ROOT, abs);
  if (rel === "") return ".";
  return rel === ".." || rel.startsWith(".." + path.sep) || path.isAbsolute(rel) ? abs : rel;
}

export class RunStore {
  readonly root: string;

  constructor(root: string = defaultStoreRoot()) {
    this.root = path.resolve(root);
  }

  /** A store given as itself or by its directory (default: defaultStoreRoot()). */
  static of(store?: RunStore | string): RunStore {
    return store instanceof RunStore ? store : new RunStore(store);
  }

  static idFor(config: RunConfig): string {
    return configHash(config);
  }

  dir(id: string): string {
    return path.join(this.root, id);
  }

  /** Whether the store holds run `id`: its config and its state (a run being created has the first a moment before the second). */
  has(id: string): boolean {
    return fs.existsSync(path.join(this.dir(id), "config.json")) && fs.existsSync(path.join(this.dir(id), "run.json"));
  }

  /**
   * Creates the run directory for a normalized config (or checks that an existing one holds the same
   * config) and takes its lock, a lease (store/lock.ts): `onLost` hears when another host has taken the run
   * over, after which the caller must write nothing more to it (lock.verify() says so before each write).
   * The caller releases the lock.
   */
  openForTraining(
    config: RunConfig,
    options: Pick<LockOptions, "onLost"> = {},
  ): { id: string; lock: RunLock; state: RunState } {
    const id = RunStore.idFor(config);
    const dir = this.dir(id);
    fs.mkdirSync(path.join(dir, "checkpoints"), { recursive: true });
    const lock = RunLock.acquire(dir, { onLost: options.onLost });
    try {
      removeStaleTempFiles(dir);
      removeStaleTempFiles(path.join(dir, "checkpoints"));
      const configPath = path.join(dir, "config.json");
      if (fs.existsSync(configPath)) {
        const existing = this.readConfig(id);
        if (canonicalJson(existing) !== canonicalJson(config)) {
          throw new Error(
            `run ${id} in ${displayPath(dir)} holds a different config (hash collision or edited config.json)`,
          );
        }
      } else {
        writeFileAtomic(configPath, JSON.stringify(config, null, 2) + "\n");
      }
      let state: RunState;
      if (fs.existsSync(path.join(dir, "run.json"))) state = this.readState(id);
      else {
        const now = new Date().toISOString();
        state = {
          id,
          status: "created",
          stepsDone: 0,
          stopReason: null,
          firstTrain99: null,
          firstVal99: null,
          engine: null,
          backend: null,
          createdAt: now,
          updatedAt: now,
          trainSeconds: 0,
        };
        this.writeState(state);
      }
      return { id, lock, state };
    } catch (err) {
      lock.release();
      throw err;
    }
  }

  readConfig(id: string): RunConfig {
    return readJson(path.join(this.dir(id), "config.json")) as RunConfig;
  }

  readState(id: string): RunState {
    const state = readJson(path.join(this.dir(id), "run.json")) as RunState;
    if (typeof state.status !== "string" || typeof state.stepsDone !== "number") {
      throw new Error(`${path.join(this.dir(id), "run.json")}: not a run state (missing status or stepsDone)`);
    }
    return state;
  }

  writeState(state: RunState): void {
    state.updatedAt = new Date().toISOString();
    writeFileAtomic(path.join(this.dir(state.id), "run.json"), JSON.stringify(state, null, 2) + "\n");
  }

  info(id: string): RunInfo {
    return { ...this.readState(id), dir: this.dir(id), config: this.readConfig(id) };
  }

  /** Every run in the store, oldest first; directories that are not runs are skipped. */
  list(): RunInfo[] {
    if (!fs.existsSync(this.root)) return [];
    const runs: RunInfo[] = [];
    for (const name of fs.readdirSync(this.root)) {
      const dir = path.join(this.root, name);
      if (!fs.existsSync(path.join(dir, "run.json")) || !fs.existsSync(path.join(dir, "config.json"))) continue;
      runs.push(this.info(name));
    }
    return runs.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  /** A run id from an id, a unique prefix of one, or a run directory's path. */
  resolve(ref: string): string {
    if (ref.includes(path.sep) && fs.existsSync(path.join(ref, "run.json"))) {
      const dir = path.resolve(ref);
      if (path.dirname(dir) !== this.root)
        throw new Error(`${ref} is not in the store ${displayPath(this.root)} (use --store)`);
      return path.basename(dir);
    }
    if (this.has(ref)) return ref;
    const matches = fs.existsSync(this.root)
      ? fs.readdirSync(this.root).filter((n) => n.startsWith(ref) && this.has(n))
      : [];
    if (matches.length === 1) return matches[0];
    if (matches.length > 1)
      throw new Error(`run "${ref}" is ambiguous in ${displayPath(this.root)}: ${matches.join(", ")}`);
    throw new Error(`no run "${ref}" in ${displayPath(this.root)}`);
  }

  readMetrics(id: string): Metrics {
    const file = path.join(this.dir(id), "metrics.csv");
    if (!fs.existsSync(file)) return { columns: [], rows: [] };
    return parseCsv(fs.readFileSync(file, "utf8"), file);
  }

  writeMetrics(id: string, metrics: Metrics): void {
    writeFileAtomic(path.join(this.dir(id), "metrics.csv"), formatCsv(metrics.columns, metrics.rows));
  }

  checkpoints(id: string): CheckpointFile[] {
    const out = this.periodicCheckpoints(id);
    const final = this.finalCheckpointPath(id);
    if (fs.existsSync(final)) out.push({ step: Number(readCheckpoint(final).metadata.step), final: true, path: final });
    return out.sort((a, b) => a.step - b.step || Number(a.final) - Number(b.final));
  }

  private finalCheckpointPath(id: string): string {
    return path.join(this.dir(id), "checkpoints", "final.safetensors");
  }

  /** The periodic checkpoints, by step (from their names: nothing is read). */
  private periodicCheckpoints(id: string): CheckpointFile[] {
    const dir = path.join(this.dir(id), "checkpoints");
    if (!fs.existsSync(dir)) return [];
    const out: CheckpointFile[] = [];
    for (const name of fs.readdirSync(dir)) {
      const m = /^step-(\d+)\.safetensors$/.exec(name);
      if (m) out.push({ step: Number(m[1]), final: false, path: path.join(dir, name) });
    }
    return out.sort((a, b) => a.step - b.step);
  }

  /**
   * Writes a checkpoint of weights + optimizer state after `step` updates, then keeps only the newest
   * `keep` periodic ones (0: keep all). The final checkpoint is never pruned.
   */
  writeCheckpoint(
    id: string,
    step: number,
    tensors: NamedTensors,
    metadata: Record<string, string>,
    opts: { final: boolean; keep: number },
  ): string {
    const dir = path.join(this.dir(id), "checkpoints");
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, opts.final ? "final.safetensors" : `step-${String(step).padStart(9, "0")}.safetensors`);
    writeCheckpoint(file, tensors, {
      format: "grokking-workbench checkpoint",
      version: FORMAT_VERSION,
      run: id,
      step: String(step),
      ...metadata,
    });
    if (!opts.final && opts.keep > 0) {
      const periodic = this.periodicCheckpoints(id);
      for (const old of periodic.slice(0, Math.max(0, periodic.length - opts.keep)))
        fs.rmSync(old.path, { force: true });
    }
    return file;
  }

  /** Weight-only snapshots (TrainOptions.snapshotSteps), by step. */
  snapshots(id: string): CheckpointFile[] {
    const dir = path.join(this.dir(id), "snapshots");
    if (!fs.existsSync(dir)) return [];
    const out: CheckpointFile[] = [];
    for (const name of fs.readdirSync(dir)) {
      const m = /^step-(\d+)\.safetensors$/.exec(name);
      if (m) out.push({ step: Number(m[1]), final: false, path: path.join(dir, name) });
    }
    return out.sort((a, b) => a.step - b.step);
  }

  writeSnapshot(id: string, step: number, weights: NamedTensors): string {
    const dir = path.join(this.dir(id), "snapshots");
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `step-${String(step).padStart(9, "0")}.safetensors`);
    writeCheckpoint(file, weights, {
      format: "grokking-workbench snapshot",
      version: FORMAT_VERSION,
      run: id,
      step: String(step),
    });
    return file;
  }

  /**
   * For resuming: the newest checkpoint that reads and verifies, or null when the run has none. Each newer
   * one that fails is renamed aside to "<name>.bad" (kept for inspection, never deleted) and described in
   * `setAside`. When no checkpoint reads, nothing is renamed and the error names every file.
   */
  readNewestValidCheckpoint(id: string): (StoredCheckpoint & { file: string; setAside: string[] }) | null {
    // newest first: the final checkpoint, when there is one, comes after every periodic one
    const final = this.finalCheckpointPath(id);
    const files = [
      ...(fs.existsSync(final) ? [final] : []),
      ...this.periodicCheckpoints(id)
        .reverse()
        .map((c) => c.path),
    ];
    const failures: { file: string; error: string }[] = [];
    for (const file of files) {
      let read: { tensors: NamedTensors; metadata: Record<string, string> };
      try {
        read = readCheckpoint(file, displayPath(file));
      } catch (err) {
        failures.push({ file, error: errorLine(err) });
        continue;
      }
      const setAside = failures.map(
        (f) => `skipped checkpoint ${f.error}; renamed it to ${path.basename(renameAsBad(f.file))}`,
      );
      return { step: Number(read.metadata.step), ...read, file, setAside };
    }
    if (failures.length === 0) return null;
    throw new Error(
      `run ${id} cannot resume: no checkpoint reads and verifies (${failures.map((f) => f.error).join("; ")}); ` +
        `move ${failures.length === 1 ? "it" : "them"} aside to train the run from the start`,
    );
  }

  /** Reads a checkpoint: the final one, the newest one ("latest"), or the one (or the snapshot) written after a given step. */
  readCheckpoint(id: string, which: "final" | "latest" | number = "latest"): StoredCheckpoint {
    const all = this.checkpoints(id);
    let file: CheckpointFile | undefined;
    if (which === "final") file = all.find((c) => c.final);
    else if (which === "latest") file = all[all.length - 1];
    else file = all.find((c) => c.step === which) ?? this.snapshots(id).find((c) => c.step === which);
    if (!file) {
      const have = all.map((c) => (c.final ? `final(${c.step})` : String(c.step))).join(", ") || "none";
      const snaps = this.snapshots(id)
        .map((c) => c.step)
        .join(", ");
      throw new Error(
        `run ${id} has no ${which === "latest" ? "" : `${which} `}checkpoint (have: ${have}${snaps ? `; snapshots: ${snaps}` : ""})`,
      );
    }
    const { tensors, metadata } = readCheckpoint(file.path);
    return { step: file.step, tensors, metadata };
  }
}

/** Renames a bad file to "<name>.bad" (or "<name>.bad.N" when taken), so nothing is lost; returns the new path. */
function renameAsBad(file: string): string {
  let target = `${file}.bad`;
  for (let n = 1; fs.existsSync(target); n++) target = `${file}.bad.${n}`;
  fs.renameSync(file, target);
  return target;
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${file} is not valid JSON: ${(err as Error).message}`);
  }
}
