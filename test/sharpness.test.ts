import assert from "node:assert/strict";
import { test } from "node:test";
import { maximizeInBox, randomSubspace, runSharpness, sharpnessOf } from "../src/analysis/sharpness";
import { train } from "../src/training/trainer";
import { Rng } from "../src/util/rng";
import { tempStore, tinyConfig } from "./helpers";

test("maximizeInBox finds the known maximum of a convex quadratic (a vertex) and of a concave one (inside)", () => {
  const h = Float64Array.from([3, 0.5, 1, 2, 0.1]);
  const bound = Float64Array.from([0.2, 1, 0.5, 0.3, 2]);
  const convex = (y: Float64Array) => ({ value: 0.5 * y.reduce((s, v, i) => s + h[i] * v * v, 0), grad: Float64Array.from(y, (v, i) => h[i] * v) });
  const truth = 0.5 * h.reduce((s, hi, i) => s + hi * bound[i] * bound[i], 0);
  const found = maximizeInBox(convex, bound, { seed: 1 });
  assert.ok(Math.abs(found.value - truth) < 1e-9 * truth, `found ${found.value}, maximum ${truth}`);
  assert.deepEqual(Array.from(found.y, Math.abs), Array.from(bound), "at a vertex");

  const c = Float64Array.from([0.1, -0.4, 0.2, 0, 1.5]);
  const concave = (y: Float64Array) => ({ value: -y.reduce((s, v, i) => s + (v - c[i]) ** 2, 0), grad: Float64Array.from(y, (v, i) => -2 * (v - c[i])) });
  const inside = maximizeInBox(concave, bound, { seed: 2 });
  assert.ok(inside.value > -1e-4, `found ${inside.value}, maximum 0`);
});

test("sharpness φ is Keskar's maximum over the box, checked against every vertex of a convex loss", () => {
  const n = 40;
  const rng = new Rng(5);
  const h = Float32Array.from({ length: n }, () => 0.1 + rng.uniform());
  const x = Float32Array.from({ length: n }, () => rng.normal());
  const loss = (w: Float32Array) => ({ value: 0.5 * w.reduce((s, v, i) => s + h[i] * v * v, 0), grad: Float32Array.from(w, (v, i) => h[i] * v) });
  const f0 = loss(x).value;
  const r = sharpnessOf(loss, x, { dims: 3, epsilon: 0.05, seed: 3 });
  assert.ok(Math.abs(r.loss - f0) < 1e-9);
  assert.ok(r.sharpness > 0, "a maximum, never below the loss at x");
  // brute force: the same A and box (same seed); f is convex in y, so its maximum is at one of the 2^3 vertices
  const { directions, bound } = randomSubspace(x, { dims: 3, epsilon: 0.05, seed: 3 });
  let vertexMax = -Infinity;
  for (let corner = 0; corner < 8; corner++) {
    const w = Float32Array.from(x);
    directions.forEach((d, a) => {
      const ya = (corner >> a) & 1 ? bound[a] : -bound[a];
      for (let i = 0; i < n; i++) w[i] += d[i] * ya;
    });
    vertexMax = Math.max(vertexMax, loss(w).value);
  }
  assert.ok(Math.abs(r.maxLoss - vertexMax) < 1e-5 * vertexMax, `found ${r.maxLoss}, the best vertex ${vertexMax}`);
  assert.ok(Math.abs(r.sharpness - (100 * (r.maxLoss - f0)) / (1 + f0)) < 1e-9);
  // a flat loss has sharpness 0
  const flat = sharpnessOf(() => ({ value: 2, grad: new Float32Array(n) }), x, { dims: 3 });
  assert.equal(flat.sharpness, 0);
});

test("runSharpness of a trained run: its training loss at the weights and a non-negative φ", async () => {
  const store = tempStore("sharp");
  const run = await train(tinyConfig({ steps: 40 }), { store, progress: false, log: () => {} });
  const last = run.metrics.rows[run.metrics.rows.length - 1];
  const r = await runSharpness(run.id, "final", { store, dims: 4, steps: 10, restarts: 1 });
  assert.ok(Math.abs(r.loss - last.train_loss) < 1e-4 * Math.max(1, last.train_loss), `${r.loss} vs ${last.train_loss}`);
  assert.ok(Number.isFinite(r.sharpness) && r.sharpness >= 0);
  assert.ok(r.maxLoss >= r.loss);
});
