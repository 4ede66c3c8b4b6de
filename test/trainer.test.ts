import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { loadRun, loadWeights, metricsFrame } from "../src/analysis/runs";
import { TfjsEngine } from "../src/engines/tfjs/engine";
import { createEngine } from "../src/engines/index";
import { encodeInputs, makeDataset } from "../src/data/dataset";
import { initParams } from "../src/model/config";
import { LockLostError, RunLock, RunLockedError } from "../src/store/lock";
import { displayPath, RunStore } from "../src/store/run-store";
import { isEvalStep, normalizeConfig, resolveBatchSize, RunConfig, withChanges } from "../src/config/run-config";
import { PAPER_OPTIMIZER } from "../src/optim/optimizer";
import { FIG2_OPTIMIZER_VARIANTS } from "../src/training/presets";
import { ProgressDisplay } from "../src/training/progress";
import { earlyStopReached, train } from "../src/training/trainer";
import { filesUnder, REPO_ROOT, takeOverLock, tempStore, tempStoreInRepo, tinyConfig, withoutTime } from "./helpers";

const quiet = { progress: false, log: () => {} };

test("the evaluation schedule is dense early, log-spaced later, and includes the last step", () => {
  const schedule = { denseUntil: 10, perDecade: 10, every: 0 };
  const steps = Array.from({ length: 1001 }, (_, s) => s).filter((s) => isEvalStep(schedule, s, 1000));
  assert.deepEqual(steps.slice(0, 11), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.ok(steps.includes(13) && steps.includes(100) && steps.includes(1000));
  assert.ok(steps.length < 45, `${steps.length} evaluations`);
  const every = Array.from({ length: 251 }, (_, s) => s).filter((s) =>
    isEvalStep({ denseUntil: 0, perDecade: 0, every: 100 }, s, 250),
  );
  assert.deepEqual(every, [0, 100, 200, 250]);
});

test("a run records config, metrics rows with every column, checkpoints and first steps at 99%", async () => {
  const store = tempStore("run");
  const result = await train(tinyConfig({ steps: 40 }), { store, ...quiet });
  assert.equal(result.status, "finished");
  assert.equal(result.stopReason, "budget");
  assert.equal(result.stepsDone, 40);
  const cols = result.metrics.columns;
  for (const c of [
    "step",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "train_saturated",
    "lr",
    "weight_norm",
    "wall_seconds",
    "norm.blocks.0.attn.wq",
    "norm.head.weight",
  ]) {
    assert.ok(cols.includes(c), `missing column ${c}`);
  }
  const rows = result.metrics.rows;
  assert.equal(rows[0].step, 0);
  assert.equal(rows[rows.length - 1].step, 40);
  // total norm is the norm of the per-tensor norms
  const last = rows[rows.length - 1];
  const sq = cols.filter((c) => c.startsWith("norm.")).reduce((s, c) => s + last[c] ** 2, 0);
  assert.ok(Math.abs(Math.sqrt(sq) - last.weight_norm) < 1e-9 * last.weight_norm);
  // the training loss falls on a real table
  assert.ok(last.train_loss < rows[0].train_loss - 0.1, `train loss ${rows[0].train_loss} → ${last.train_loss}`);
  const firstTrain = rows.find((r) => r.train_acc >= 0.99)?.step ?? null;
  assert.equal(result.firstTrain99, firstTrain);
  assert.equal(result.firstVal99, rows.find((r) => r.val_acc >= 0.99)?.step ?? null);
  const s = new RunStore(store);
  assert.deepEqual(
    s.checkpoints(result.id).map((c) => c.final),
    [true],
  );
  // a finished run is returned from the store without training again
  const again = await train(tinyConfig({ steps: 40 }), { store, ...quiet });
  assert.deepEqual(again.metrics.rows, rows);
  // weights load back into an engine and reproduce the last evaluation
  const { weights, step } = loadWeights(result.id, "final", store);
  assert.equal(step, 40);
  const cfg = normalizeConfig(tinyConfig({ steps: 40 }));
  const { engine } = await createEngine({ engine: result.engine as "fast" | "tfjs" });
  const ds = makeDataset(cfg.data);
  const dims = { vocabSize: ds.vocabSize, numSymbols: ds.numSymbols, seqLen: ds.seqLen };
  engine.initialize({ model: cfg.model, dims, optimizer: cfg.optimizer, seed: 0 }, weights);
  const val = await engine.evaluate({ size: ds.val.size, inputs: encodeInputs(ds, ds.val), targets: ds.val.answer });
  assert.equal(val.loss, last.val_loss);
  assert.equal(val.accuracy, last.val_acc);
  const loaded = loadRun(result.id, store);
  assert.equal(loaded.status, "finished");
  const frame = metricsFrame(loaded);
  assert.deepEqual(frame.shape, [rows.length, cols.length]);
  assert.deepEqual(frame.columns, cols);
  engine.dispose();
});

/** Every option that draws random numbers, so resuming must restore each stream exactly. */
function noisyConfig(): RunConfig {
  const cfg = tinyConfig({ steps: 36, batchSize: 16 });
  cfg.model = {
    ...cfg.model,
    kind: "transformer",
    dropout: 0.1,
    norm: "pre",
    positions: "learned",
  } as RunConfig["model"];
  cfg.optimizer = {
    ...cfg.optimizer,
    decayToward: "init",
    updateNoise: 0.05,
    weightNoise: 0.01,
    grokfast: { alpha: 0.98, lambda: 2 },
  };
  cfg.data.outliers = 3;
  return cfg;
}

for (const [name, config] of [
  ["the paper's optimizer, full batch", () => tinyConfig({ steps: 36 })],
  ["minibatches, dropout, weight and update noise, Grokfast, decay toward init, outliers", noisyConfig],
  [
    "the MLP model with dropout",
    () => {
      const cfg = tinyConfig({ steps: 36, batchSize: 8 });
      cfg.model = { kind: "mlp", width: 8, hidden: 32, activation: "gelu", dropout: 0.2 };
      return cfg;
    },
  ],
] as const) {
  for (const engine of ["tfjs", "fast"] as const)
    test(`a stopped and resumed run ends with the metrics of an uninterrupted one (${engine} engine): ${name}`, async () => {
      const straightStore = tempStore("straight");
      const straight = await train(config(), { store: straightStore, engine, ...quiet });
      const store = tempStore("resumed");
      // stop twice, between checkpoints: the resumed run replays from the last checkpoint
      const first = await train(config(), { store, engine, stopAfter: 7, checkpointEvery: 5, ...quiet });
      assert.equal(first.status, "stopped");
      assert.equal(first.interrupted, true);
      const second = await train(config(), { store, engine, stopAfter: 13, checkpointEvery: 5, ...quiet });
      assert.equal(second.status, "stopped");
      const done = await train(config(), { store, engine, checkpointEvery: 5, ...quiet });
      assert.equal(done.status, "finished");
      assert.deepEqual(withoutTime(done.metrics.rows), withoutTime(straight.metrics.rows));
      assert.deepEqual(withoutTime(new RunStore(store).readMetrics(done.id).rows), withoutTime(straight.metrics.rows));
      const a = loadWeights(straight.id, "final", straightStore).weights;
      const b = loadWeights(done.id, "final", store).weights;
      for (const [n, t] of a) assert.deepEqual(b.get(n)!.data, t.data, n);
    });
}

test("the same seed gives identical metrics; another model seed or split seed does not", async () => {
  const a = await train(tinyConfig({ steps: 12 }), { store: tempStore("seed-a"), ...quiet });
  const b = await train(tinyConfig({ steps: 12 }), { store: tempStore("seed-b"), ...quiet });
  assert.deepEqual(withoutTime(a.metrics.rows), withoutTime(b.metrics.rows));
  const otherSeed = tinyConfig({ steps: 12 });
  otherSeed.training.seed = 4;
  const c = await train(otherSeed, { store: tempStore("seed-c"), ...quiet });
  assert.notDeepEqual(withoutTime(c.metrics.rows), withoutTime(a.metrics.rows));
  assert.notEqual(c.id, a.id);
  const otherSplit = tinyConfig({ steps: 12 });
  otherSplit.data.splitSeed = 2;
  assert.notEqual(RunStore.idFor(normalizeConfig(otherSplit)), a.id);
});

test("a locked run is refused with the holder named, and nothing is trained", async () => {
  const store = tempStore("lock");
  const cfg = normalizeConfig(tinyConfig({ steps: 5 }));
  const dir = new RunStore(store).dir(RunStore.idFor(cfg));
  fs.mkdirSync(dir, { recursive: true });
  const lock = RunLock.acquire(dir);
  await assert.rejects(
    train(cfg, { store, ...quiet }),
    (err: Error) => err instanceof RunLockedError && err.message.includes(String(process.pid)),
  );
  assert.ok(!fs.existsSync(path.join(dir, "metrics.csv")));
  lock.release();
  const done = await train(cfg, { store, ...quiet });
  assert.equal(done.status, "finished");
});

test("a run another host takes over stops with a clear message, writing nothing more to its directory", async () => {
  const store = tempStore("lost");
  const cfg = normalizeConfig(tinyConfig({ steps: 200 }));
  const dir = new RunStore(store).dir(RunStore.idFor(cfg));
  const lines: string[] = [];
  let taken: Map<string, string> | null = null;
  const training = train(cfg, {
    store,
    checkpointEvery: 10,
    progress: false,
    log: (m) => lines.push(m),
    onStep: (step) => {
      if (step !== 25) return;
      takeOverLock(dir);
      taken = filesUnder(dir);
    },
  });
  await assert.rejects(
    training,
    (err: Error) =>
      err instanceof LockLostError &&
      /process 4242 on another-host took the run over .*; stopped without writing more/.test(err.message),
  );
  assert.ok(taken, "the lock was taken over");
  assert.deepEqual(filesUnder(dir), taken, "nothing written after the takeover, the lock left as the other's");
  assert.match(lines.join("\n"), /lost the lock .*another process took it over/);
  assert.equal(new RunStore(store).readState(RunStore.idFor(cfg)).status, "running");
});

test("the trainer names its store relative to the repository; its progress line counts to the session's end", async () => {
  assert.equal(displayPath(path.join(REPO_ROOT, "data", "runs", "abc")), path.join("data", "runs", "abc"));
  assert.equal(displayPath(REPO_ROOT), ".");
  assert.equal(displayPath("/elsewhere/runs"), "/elsewhere/runs");
  assert.equal(displayPath(`${REPO_ROOT}-other/runs`), `${REPO_ROOT}-other/runs`);
  const store = tempStoreInRepo("paths");
  const shown = path.relative(REPO_ROOT, store);
  const cfg = tinyConfig({ steps: 40 });
  const messages: string[] = [];
  const lines: string[] = [];
  const progress = new ProgressDisplay({
    mode: "lines",
    everyMs: 0,
    stream: { write: (text: string) => lines.push(text) },
  });
  const first = await train(cfg, { store, progress, stopAfter: 10, log: (m) => messages.push(m) });
  assert.ok(messages.includes(`run ${first.id}: store ${shown}/${first.id}`), messages.join("\n"));
  // the caller's display is drawn on, not ended: the summary is logged
  assert.match(messages[messages.length - 1], /stopped at step 10 of 40/);
  assert.match(lines[0], /^step 0\/10  train loss – /);
  assert.match(lines[lines.length - 1], /^step 10\/10  train loss \d/);
  assert.ok(
    lines.every((l) => !l.includes("/40")),
    "a session stopped after 10 steps counts to 10",
  );
  await train(cfg, { store, ...quiet });
  messages.length = 0;
  await train(cfg, { store, progress: false, log: (m) => messages.push(m) });
  assert.deepEqual(messages, [`run ${first.id} is already finished (${shown}/${first.id})`]);
});

test("early stop waits until validation accuracy has held ≥ 99% for the hold period", () => {
  const rows = (accs: [number, number][]) => accs.map(([step, val_acc]) => ({ step, val_acc }));
  const history = rows([
    [0, 0.1],
    [10, 0.995],
    [20, 0.98],
    [30, 0.99],
    [50, 1],
    [80, 1],
  ]);
  assert.equal(earlyStopReached(history.slice(0, 2), 10, 0), true);
  assert.equal(earlyStopReached(history.slice(0, 2), 10, 5), false);
  // the dip at step 20 restarts the clock at step 30
  assert.equal(earlyStopReached(history.slice(0, 5), 50, 30), false);
  assert.equal(earlyStopReached(history, 80, 50), true);
  assert.equal(earlyStopReached(history, 80, 51), false);
  assert.equal(earlyStopReached(history, 80, null), false);
});

test("evaluation reports softmax saturation: float32 losses of exactly 0", async () => {
  const model = { kind: "mlp" as const, width: 4, hidden: 8, activation: "relu" as const, dropout: 0 };
  const dims = { vocabSize: 7, numSymbols: 5, seqLen: 4 };
  const weights = initParams(model, dims, 0);
  // a huge bias on class 0 pushes its logit far beyond float32's softmax resolution
  weights.get("head.bias")!.data.set([1000, 0, 0, 0, 0]);
  const engine = await TfjsEngine.create();
  engine.initialize({ model, dims, optimizer: PAPER_OPTIMIZER, seed: 0 }, weights);
  const set = { size: 2, inputs: Int32Array.from([1, 5, 2, 6, 3, 5, 4, 6]), targets: Int32Array.from([0, 1]) };
  const r = await engine.evaluate(set);
  assert.equal(r.saturated, 0.5); // the first example has loss exactly 0; the second a huge finite loss
  assert.ok(Number.isFinite(r.loss) && r.loss > 400, `loss ${r.loss}`);
  engine.dispose();
});

test("each optimizer variant of the paper's Fig 2 is one config that trains", async () => {
  const names = Object.keys(FIG2_OPTIMIZER_VARIANTS);
  assert.equal(names.length, 9);
  const ids = new Set<string>();
  for (const name of names) {
    const cfg = normalizeConfig(withChanges(tinyConfig({ steps: 3, batchSize: 16 }), FIG2_OPTIMIZER_VARIANTS[name]));
    ids.add(RunStore.idFor(cfg));
    const result = await train(cfg, { store: tempStore("fig2"), ...quiet });
    assert.equal(result.stepsDone, 3, name);
    assert.ok(
      result.metrics.rows.every((r) => Number.isFinite(r.train_loss)),
      name,
    );
  }
  assert.equal(ids.size, 9, "two variants are the same config");
});

test("batch sizes: the paper's rule min(512, half the training set), full batch, or a number capped by the set", () => {
  assert.equal(resolveBatchSize("paper", 4656), 512);
  assert.equal(resolveBatchSize("paper", 601), 301);
  assert.equal(resolveBatchSize("full", 4656), 4656);
  assert.equal(resolveBatchSize(128, 4656), 128);
  assert.equal(resolveBatchSize(1000, 300), 300);
});
