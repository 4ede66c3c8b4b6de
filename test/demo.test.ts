import assert from "node:assert/strict";
import { test } from "node:test";
import { demoConfig } from "../src/training/presets";
import { train } from "../src/training/trainer";
import { tempStore } from "./helpers";

// The demo's promise, checked by training it for real (a few minutes): training accuracy reaches 99%
// long before validation accuracy does.
test("the demo run groks: validation accuracy reaches 99% at least 5× later than training accuracy", async () => {
  const result = await train(demoConfig(), { store: tempStore("demo"), progress: false, log: () => {} });
  assert.equal(result.status, "finished");
  const t = result.firstTrain99;
  const v = result.firstVal99;
  assert.ok(t !== null && v !== null, `train99 ${t}, val99 ${v}`);
  assert.ok(v >= 5 * t, `validation reached 99% at step ${v}, only ${(v / t).toFixed(1)}× after training (${t})`);
  // in between, validation accuracy stays far from 99%: the network memorized first
  const atTrain99 = result.metrics.rows.find((r) => r.step === t)!;
  assert.ok(atTrain99.val_acc < 0.5, `validation accuracy ${atTrain99.val_acc} when training reached 99%`);
});
