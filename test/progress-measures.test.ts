import { test } from "node:test";
import assert from "node:assert/strict";
import {
  changeOnset,
  crossEntropyOf,
  fourierGini,
  gini,
  progressMeasures,
  progressPhases,
  projectKeyFrequencies,
  TableLogits,
} from "../src/analysis/progress-measures";
import { buildTable } from "../src/data/operations";

// A synthetic network on x+y mod 11: its logits are an algorithm part at the key frequencies 2 and 5,
// A_k·cos(w_k(x+y−c)), plus a memorizing part outside their span, B·cos(w_3·x + c) (over the table it is
// orthogonal to every cos/sin(w_k(x+y)), and its mean over the cells is 0). So the restricted logits are the
// algorithm part exactly, and the excluded logits the memorizing part.
const p = 11;
const table = buildTable("add", p);
const w = (k: number) => (2 * Math.PI * k) / p;
const algorithm = (x: number, y: number, c: number) =>
  3 * Math.cos(w(2) * (x + y - c)) + 2 * Math.cos(w(5) * (x + y - c));
const memorizing = (x: number, y: number, c: number) => 4 * Math.cos(w(3) * x + c);

function logitsOf(f: (x: number, y: number, c: number) => number): Float64Array {
  const out = new Float64Array(table.size * p);
  for (let r = 0; r < table.size; r++) for (let c = 0; c < p; c++) out[r * p + c] = f(table.x[r], table.y[r], c);
  return out;
}

const tableLogits = (logits: Float64Array): TableLogits => ({ logits, classes: p, x: table.x, y: table.y });
const trainRows = Int32Array.from({ length: table.size }, (_, r) => r).filter((r) => (r * 7) % 10 < 4);

test("the key-frequency projection splits synthetic logits into their algorithm and memorizing parts", () => {
  const full = logitsOf((x, y, c) => algorithm(x, y, c) + memorizing(x, y, c));
  const { restricted, excluded } = projectKeyFrequencies(tableLogits(full), p, [2, 5]);
  const alg = logitsOf(algorithm);
  const mem = logitsOf(memorizing);
  for (let i = 0; i < full.length; i++) {
    assert.ok(Math.abs(restricted[i] - alg[i]) < 1e-9, `restricted[${i}]`);
    assert.ok(Math.abs(excluded[i] - mem[i]) < 1e-9, `excluded[${i}]`);
  }
  const m = progressMeasures(tableLogits(full), table.answer, trainRows, p, [2, 5]);
  assert.ok(Math.abs(m.restrictedLoss - crossEntropyOf(alg, p, table.answer)) < 1e-9);
  assert.ok(Math.abs(m.excludedLoss - crossEntropyOf(mem, p, table.answer, trainRows)) < 1e-9);
  // the algorithm alone is right on every cell (its largest logit is at c = x+y), so its loss is below chance
  assert.ok(m.restrictedLoss < Math.log(p) - 1);
  // without a key frequency, the excluded logits keep the algorithm's other frequency
  const one = projectKeyFrequencies(tableLogits(logitsOf(algorithm)), p, [2]);
  const five = logitsOf((x, y, c) => 2 * Math.cos(w(5) * (x + y - c)));
  for (let i = 0; i < five.length; i++) assert.ok(Math.abs(one.excluded[i] - five[i]) < 1e-9);
});

test("excluded logits of a pure algorithm are uniform: the excluded loss is ln p", () => {
  const m = progressMeasures(tableLogits(logitsOf(algorithm)), table.answer, trainRows, p, [2, 5]);
  assert.ok(Math.abs(m.excludedLoss - Math.log(p)) < 1e-9);
  assert.ok(Math.abs(m.restrictedLoss - m.trainLoss) < 1e-3);
});

test("key frequencies outside 1 … (p−1)/2, repeated, or logits of the wrong size are errors", () => {
  const logits = tableLogits(logitsOf(algorithm));
  assert.throws(() => projectKeyFrequencies(logits, p, [0]), /key frequency 0 is not in 1…5/);
  assert.throws(() => projectKeyFrequencies(logits, p, [6]), /key frequency 6/);
  assert.throws(() => projectKeyFrequencies(logits, p, [2, 2]), /repeat/);
  assert.throws(() => projectKeyFrequencies({ ...logits, classes: 10 }, p, [2]), /values for 121×10/);
});

test("gini: 0 for equal values, (n−1)/n for one value holding everything; Fourier sparsity", () => {
  assert.equal(gini([2, 2, 2, 2]), 0);
  assert.ok(Math.abs(gini([0, 0, 0, 5]) - 3 / 4) < 1e-12);
  assert.ok(Math.abs(gini([1, 2, 3]) - 2 / 9) < 1e-12);
  assert.throws(() => gini([-1, 2]), /none negative/);
  // embeddings at a single frequency: everything at one of the 5 frequencies
  const wave = Array.from({ length: p }, (_, x) => Float32Array.from([Math.cos(w(3) * x), Math.sin(w(3) * x), 0.5]));
  assert.ok(Math.abs(fourierGini(wave) - 4 / 5) < 1e-6);
  // a vector per residue with equal power at every frequency (a delta at x = 0) is not sparse at all
  const delta = Array.from({ length: p }, (_, x) => Float32Array.from([x === 0 ? 1 : 0]));
  assert.ok(fourierGini(delta) < 0.2);
});

test("changeOnset and progressPhases find the steps where synthetic curves turn", () => {
  const steps = [0, 10, 20, 30, 40, 50, 60, 70, 80];
  // flat at 1 until 30, then down a decade by 60 (log-linear), flat after
  const val = [2, 3, 4, 4, 4 / Math.sqrt(10), 0.4, 0.4 / Math.sqrt(10), 0.04, 0.04];
  assert.equal(changeOnset(steps, val, 30, "fall", 0.1), 40);
  assert.equal(changeOnset(steps, val, 30, "fall", 0.9), 70);
  // from the value at `from`: 2 → 8 (log), half way is at 4
  assert.equal(changeOnset(steps, [2, 1, 2, 4, 8, 8, 8, 8, 8], 0, "rise", 0.5), 30);
  // a spike after the onset does not move it: 10% of the way from 1 to 0.01 (log) is below 0.63
  assert.equal(changeOnset(steps, [1, 1, 0.5, 5, 0.1, 0.01, 0.01, 0.01, 0.01], 0, "fall", 0.1), 20);
  // linear: from 0.1 to 1, 10% of the way is 0.19
  const acc = [0.1, 0.1, 0.1, 0.15, 0.2, 0.6, 1, 1, 1];
  assert.equal(changeOnset(steps, acc, 10, "rise", 0.1, "linear"), 40);
  assert.equal(changeOnset(steps, acc, 10, "rise", 0.1, "log"), 30);
  assert.equal(changeOnset(steps, [1, 1, 1, 1, 1, 1, 1, 1, 1], 0, "rise"), null);
  assert.equal(changeOnset(steps, val, 90, "fall"), null);
  assert.throws(() => changeOnset(steps, [1], 0, "fall"), /9 steps, 1 values/);
  // memorized at 20; the validation loss peaks at 20–40 and falls from 40 (10% at 40, 90% at 70)
  assert.deepEqual(progressPhases(steps, val, 20), { memorizationEnd: 20, cleanupStart: 40, cleanupEnd: 70 });
});
