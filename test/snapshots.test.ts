import assert from "node:assert/strict";
import { test } from "node:test";
import { tableAnswers } from "../src/analysis/predict";
import { ensureSnapshots, loadWeights } from "../src/analysis/runs";
import { RunStore } from "../src/store/run-store";
import { ProgressDisplay } from "../src/training/progress";
import { train } from "../src/training/trainer";
import { tempStore, tinyConfig } from "./helpers";

const quiet = { progress: false, log: () => {} };

test("snapshots: written during training, or replayed later to the same weights", async () => {
  const cfg = tinyConfig({ steps: 40 });
  const withSnaps = tempStore("snap-a");
  const a = await train(cfg, { ...quiet, store: withSnaps, snapshotSteps: [0, 7, 25] });
  assert.deepEqual(
    new RunStore(withSnaps).snapshots(a.id).map((s) => s.step),
    [0, 7, 25],
  );

  const plain = tempStore("snap-b");
  const b = await train(cfg, { ...quiet, store: plain });
  assert.equal(b.id, a.id);
  assert.deepEqual(await ensureSnapshots(b.id, [7, 25, 40], { store: plain }), [7, 25], "40 is the final checkpoint");
  assert.deepEqual(await ensureSnapshots(b.id, [7, 25, 40], { store: plain }), [], "nothing left to replay");
  for (const step of [7, 25]) {
    const replayed = loadWeights(b.id, step, plain).weights;
    const recorded = loadWeights(a.id, step, withSnaps).weights;
    for (const [name, t] of recorded) assert.deepEqual(replayed.get(name)!.data, t.data, `${name} at ${step}`);
  }
  await assert.rejects(ensureSnapshots(b.id, [41], { store: plain }), /integers in \[0, 40\]/);

  // a replay shows its progress, up to the last step it needs
  const lines: string[] = [];
  const progress = new ProgressDisplay({
    mode: "lines",
    everyMs: 0,
    stream: { write: (text: string) => lines.push(text) },
  });
  assert.deepEqual(await ensureSnapshots(b.id, [3, 12], { store: plain, progress }), [3, 12]);
  assert.match(lines[0], /^step 0\/12 /);
  assert.match(lines[lines.length - 1], /^step 12\/12 .* ETA 0s\n$/);
});

test("tableAnswers: the network's answer on every cell agrees with the run's final accuracies", async () => {
  const store = tempStore("answers");
  const run = await train(tinyConfig({ steps: 60 }), { ...quiet, store });
  const answers = await tableAnswers(run.id, "final", { store });
  const { table } = answers.dataset;
  assert.equal(answers.step, 60);
  assert.equal(answers.predicted.length, table.size);
  let trainRight = 0,
    trainN = 0,
    valRight = 0,
    valN = 0;
  for (let i = 0; i < table.size; i++) {
    const right = answers.predicted[i] === table.answer[i] ? 1 : 0;
    if (answers.inTrain[i]) ((trainRight += right), trainN++);
    else ((valRight += right), valN++);
  }
  const last = run.metrics.rows[run.metrics.rows.length - 1];
  assert.equal(trainN, answers.dataset.train.size);
  assert.ok(Math.abs(trainRight / trainN - last.train_acc) < 1e-9);
  assert.ok(Math.abs(valRight / valN - last.val_acc) < 1e-9);
});
