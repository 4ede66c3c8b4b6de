import { test } from "node:test";
import assert from "node:assert/strict";
import { detectSpikes, duringSpike, growthBefore } from "../src/analysis/spikes";
import { MetricsRow } from "../src/store/run-store";

// A training loss that decays from 3 to 0.001 over 200 evaluations (every 10 steps), with the last layer's norm
// growing by 1% per evaluation, plus two spikes: steps 800–830 (peak 2.0 at 810) and 1500 (a single
// evaluation at 0.5); a bump to 3× the loss at 1200 is no spike, nor is a 20× jump of a tiny loss.
function syntheticRows(): MetricsRow[] {
  const rows: MetricsRow[] = [];
  for (let i = 0; i < 200; i++) {
    const step = 10 * i;
    let loss = 3 * Math.pow(0.001 / 3, i / 199);
    const spike: Record<number, number> = { 800: 2.5, 810: 3.0, 820: 2.5, 830: 2.0, 1500: 0.5 };
    if (spike[step] !== undefined) loss = spike[step];
    if (step === 1200) loss *= 3;
    if (step === 1900) loss = 20 * loss; // ~0.03: below the floor
    const acc = loss > 0.3 ? 0.3 : 1;
    rows.push({ step, train_loss: loss, train_acc: acc, "norm.head.weight": Math.pow(1.01, i) } as MetricsRow);
  }
  return rows;
}

test("detectSpikes finds the two spikes of a synthetic loss curve and nothing else", () => {
  const rows = syntheticRows();
  const spikes = detectSpikes(rows);
  assert.deepEqual(
    spikes.map((s) => [s.start, s.end, s.peak, s.peakLoss]),
    [
      [800, 830, 810, 3.0],
      [1500, 1500, 1500, 0.5],
    ],
  );
  assert.equal(spikes[0].accBefore, 1);
  assert.equal(spikes[0].accLowest, 0.3);
  // the baseline is the median of the 20 evaluations before the spike (steps 600…790)
  const before = rows
    .slice(60, 80)
    .map((r) => r.train_loss)
    .sort((a, b) => a - b);
  assert.equal(spikes[0].baseline, (before[9] + before[10]) / 2);
  // without the floor, the tiny loss's jump counts too
  assert.equal(detectSpikes(rows, { floor: 0 }).length, 3);
  // a lower factor (and no floor) catches the 3× bump
  assert.ok(detectSpikes(rows, { factor: 1.5, floor: 0 }).some((s) => s.start === 1200));
  assert.throws(() => detectSpikes(rows, { factor: 1 }), /spike rule/);
});

test("growthBefore and duringSpike", () => {
  const rows = syntheticRows();
  const [first] = detectSpikes(rows);
  // 10 evaluations of 1% growth each before step 800
  assert.ok(Math.abs(growthBefore(rows, first, "norm.head.weight", 10) - Math.pow(1.01, 10)) < 1e-12);
  assert.ok(Number.isNaN(growthBefore(rows, first, "norm.head.weight", 100)));
  assert.equal(duringSpike([first], 850, 20), first);
  assert.equal(duringSpike([first], 851, 20), null);
  assert.equal(duringSpike([first], null, 20), null);
});
