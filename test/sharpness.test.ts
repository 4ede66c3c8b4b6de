import assert from "node:assert/strict";
import { test } from "node:test";
import { makeDataset, encodeInputs } from "../src/data/dataset";
import { loadWeights } from "../src/analysis/runs";
import { maximizeInBox, randomSubspace, runSharpness, sharpnessOf } from "../src/analysis/sharpness";
import { train } from "../src/training/trainer";
import { Rng } from "../src/util/rng";
import { NamedTensors } from "../src/util/tensors";
import { tempStore, tinyConfig } from "./helpers";
import { referenceLoss } from "./reference-model";

type Vector = Float64Array | Float32Array;
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

/** sign · ½ (y − c)ᵀ Q (y − c) and its gradient, in the precision of y. */
function quadratic(Q: number[][], c: ArrayLike<number>, sign: 1 | -1) {
  return <V extends Vector>(y: V) => {
    const d = Array.from(y, (v, i) => v - c[i]);
    const Qd = Q.map((row) => dot(row, d));
    const grad = y.map((_, i) => sign * Qd[i]) as V;
    return { value: 0.5 * sign * dot(d, Qd), grad };
  };
}

/** A random symmetric positive definite matrix M Mᵀ + I/10. */
function randomSpd(p: number, rng: Rng): number[][] {
  const M = Array.from({ length: p }, () => Array.from({ length: p }, () => rng.normal()));
  return M.map((row, i) => M.map((other, j) => dot(row, other) + (i === j ? 0.1 : 0)));
}

test("maximizeInBox: a linear function's maximum is the vertex of its gradient's signs", async () => {
  // gradients over five orders of magnitude and unequal half-widths
  const c = Float64Array.from({ length: 10 }, (_, i) => (i % 3 ? -1 : 1) * 10 ** (-i / 2));
  const bound = Float64Array.from({ length: 10 }, (_, i) => 1e-3 * (1 + i));
  const r = await maximizeInBox((y) => ({ value: dot(c, y), grad: Float64Array.from(c) }), bound);
  assert.deepEqual(
    Array.from(r.y),
    Array.from(bound, (b, i) => Math.sign(c[i]) * b),
  );
  assert.ok(Math.abs(r.value - dot(c.map(Math.abs), bound)) < 1e-15);
  assert.equal(r.stop, "converged");
});

test("maximizeInBox: a concave quadratic's maximum inside the box, and one outside it on a face", async () => {
  const rng = new Rng(3);
  const Q = randomSpd(6, rng);
  const m = Float64Array.from({ length: 6 }, () => 0.6 * rng.uniform() - 0.3);
  const inside = await maximizeInBox(quadratic(Q, m, -1), new Float64Array(6).fill(1));
  assert.equal(inside.stop, "converged");
  assert.ok(inside.value > -1e-9, `found ${inside.value}, maximum 0`);
  inside.y.forEach((v, i) => assert.ok(Math.abs(v - m[i]) < 1e-4, `y[${i}] = ${v}, maximum at ${m[i]}`));

  // −½ (y − m)ᵀQ(y − m), Q = [[2, 1], [1, 2]], m = (3, −½): on the face y₁ = 1 the best y₂ is ½, where f = −3
  // and ∂f/∂y₁ = 3 points out of the box (so it is the maximum: f is concave)
  const face = await maximizeInBox(
    quadratic(
      [
        [2, 1],
        [1, 2],
      ],
      [3, -0.5],
      -1,
    ),
    Float64Array.from([1, 1]),
  );
  assert.equal(face.y[0], 1);
  assert.ok(
    Math.abs(face.y[1] - 0.5) < 1e-6 && Math.abs(face.value + 3) < 1e-9,
    `${Array.from(face.y)}: ${face.value}`,
  );
});

test("maximizeInBox: a non-separable convex quadratic, against every vertex of the box", async () => {
  // the maximum of a convex function is at a vertex; the ascent from the centre reaches a vertex that is a
  // local maximum, and restarts from random points find the best one
  for (let seed = 0; seed < 6; seed++) {
    const rng = new Rng(seed);
    const p = 5;
    const f = quadratic(
      randomSpd(p, rng),
      Float64Array.from({ length: p }, () => 0.3 * rng.normal()),
      1,
    );
    const bound = Float64Array.from({ length: p }, () => 0.5 + rng.uniform());
    let best = -Infinity;
    for (let v = 0; v < 2 ** p; v++) best = Math.max(best, f(bound.map((b, i) => ((v >> i) & 1 ? b : -b))).value);

    const local = await maximizeInBox(f, bound);
    assert.deepEqual(Array.from(local.y, Math.abs), Array.from(bound), `seed ${seed}: a vertex`);
    f(local.y).grad.forEach((g, i) => assert.ok(g * local.y[i] >= 0, `seed ${seed}: coordinate ${i} could still rise`));
    const global = await maximizeInBox(f, bound, { restarts: 8, seed: 1 });
    assert.ok(
      Math.abs(global.value - best) < 1e-12 * best,
      `seed ${seed}: found ${global.value}, the best vertex ${best}`,
    );
  }
});

test("maximizeInBox: bad input is named", async () => {
  const f = (y: Float64Array) => ({ value: 0, grad: new Float64Array(y.length) });
  assert.throws(() => maximizeInBox(f, Float64Array.from([1, 0])), /half-width 1 is 0/);
  assert.throws(() => maximizeInBox(f, Float64Array.from([1]), { maxIterations: 1.5 }), /maxIterations/);
  // argument errors throw at once; an objective that fails during the search rejects
  await assert.rejects(
    maximizeInBox(() => ({ value: NaN, grad: new Float64Array(1) }), Float64Array.from([1])),
    /objective is NaN/,
  );
});

test("randomSubspace: A⁺ has unit rows, A = pinv(A⁺) gives A⁺A = I, the same for a seed", () => {
  const { rows, columns } = randomSubspace(50, 4, 7);
  assert.equal(rows.length, 4);
  for (const row of rows) {
    assert.equal(row.length, 50);
    assert.ok(Math.abs(dot(row, row) - 1) < 1e-12);
    assert.ok(row.every((v) => Math.abs(v) <= 1));
  }
  rows.forEach((row, a) =>
    columns.forEach((col, b) => assert.ok(Math.abs(dot(row, col) - (a === b ? 1 : 0)) < 1e-12, `(A⁺A)[${a}][${b}]`)),
  );
  // the Moore-Penrose conditions left to check: A A⁺ (n×n) is symmetric (A⁺A = I gives the others)
  const AAplus = (i: number, j: number) => columns.reduce((s, col, a) => s + col[i] * rows[a][j], 0);
  for (let i = 0; i < 50; i++)
    for (let j = 0; j < i; j++) assert.ok(Math.abs(AAplus(i, j) - AAplus(j, i)) < 1e-12, `(AA⁺)[${i}][${j}]`);
  assert.deepEqual(randomSubspace(50, 4, 7), { rows, columns });
  assert.notDeepEqual(randomSubspace(50, 4, 8).rows, rows);
  assert.throws(() => randomSubspace(3, 4, 0), /dims must be an integer from 1 to the 3 weights/);
});

test("sharpnessOf, subspace: φ of a loss whose maximum over the box is known in closed form", async () => {
  // f(w) = 3 − ½ |A⁺(w − m)|², so f(x + A y) = 3 − ½ |c + y|² with c = A⁺(x − m): the maximum is at
  // y = clamp(−c) in the box; m is placed so that c is inside the box in half the coordinates, outside in the rest
  const n = 40;
  const rng = new Rng(5);
  const x = Float32Array.from({ length: n }, () => rng.normal());
  const opts = { dims: 4, epsilon: 0.05, seed: 3 };
  const { rows, columns } = randomSubspace(n, opts.dims, opts.seed);
  const bound = rows.map((row) => opts.epsilon * (Math.abs(dot(row, x)) + 1));
  const c = bound.map((b, a) => (a % 2 ? -3 : 0.5) * b);
  const m = Float64Array.from(x, (v, i) => v - columns.reduce((s, col, a) => s + col[i] * c[a], 0));
  const loss = (w: Float32Array) => {
    const proj = rows.map((row) => row.reduce((s, v, i) => s + v * (w[i] - m[i]), 0));
    return {
      value: 3 - 0.5 * dot(proj, proj),
      grad: Float32Array.from(w, (_, i) => -rows.reduce((s, row, a) => s + row[i] * proj[a], 0)),
    };
  };
  const r = await sharpnessOf(loss, x, opts);
  assert.equal(r.variant, "subspace");
  r.bound.forEach((b, a) => assert.ok(Math.abs(b - bound[a]) < 1e-15, "half-widths ε(|A⁺x| + 1)"));
  const f0 = 3 - 0.5 * dot(c, c);
  const fMax = 3 - 0.5 * c.reduce((s, ca, a) => s + (ca + Math.min(bound[a], Math.max(-bound[a], -ca))) ** 2, 0);
  assert.ok(Math.abs(r.loss - f0) < 1e-12);
  const phi = (100 * (fMax - f0)) / (1 + f0);
  assert.ok(Math.abs(r.sharpness - phi) < 1e-6 * phi, `φ ${r.sharpness}, known ${phi}`);
  c.forEach((ca, a) =>
    assert.ok(Math.abs(r.y[a] - Math.min(bound[a], Math.max(-bound[a], -ca))) < 1e-5 * bound[a], `y[${a}]`),
  );
  // a flat loss has sharpness 0
  assert.equal((await sharpnessOf(() => ({ value: 2, grad: new Float32Array(n) }), x, opts)).sharpness, 0);
  assert.throws(() => sharpnessOf(loss, x, { epsilon: 0 }), /epsilon must be a positive number/);
  assert.throws(() => sharpnessOf(loss, x, { variant: "diagonal" as "full" }), /variant must be "subspace" or "full"/);
});

test("sharpnessOf, full: φ over every weight of a loss whose maximum over the box is known in closed form", async () => {
  // f(w) = 1 + Σ ½ h_i (w_i − m_i)², h of both signs: where h > 0 the far end of |δ_i| ≤ ε(|x_i| + 1) from m_i,
  // where h < 0 the point of the box nearest m_i
  const n = 1000;
  const rng = new Rng(8);
  const x = Float32Array.from({ length: n }, () => rng.normal());
  const h = Float64Array.from({ length: n }, (_, i) => (i % 3 ? 1 : -1) * (0.1 + rng.uniform()));
  const m = Float64Array.from(x, (v) => v + 0.004 * rng.normal());
  const loss = (w: Float32Array) => ({
    value: 1 + w.reduce((s, v, i) => s + 0.5 * h[i] * (v - m[i]) ** 2, 0),
    grad: Float32Array.from(w, (v, i) => h[i] * (v - m[i])),
  });
  const eps = 1e-3;
  const best = Float64Array.from(x, (v, i) => {
    const b = eps * (Math.abs(v) + 1);
    const toM = m[i] - v;
    return h[i] > 0 ? (toM > 0 ? -b : b) : Math.min(b, Math.max(-b, toM));
  });
  const f0 = loss(x).value;
  const fMax = 1 + best.reduce((s, d, i) => s + 0.5 * h[i] * (x[i] + d - m[i]) ** 2, 0);
  const r = await sharpnessOf(loss, x, { variant: "full", epsilon: eps });
  assert.equal(r.variant, "full");
  assert.equal(r.y.length, n);
  const phi = (100 * (fMax - f0)) / (1 + f0);
  assert.ok(
    Math.abs(r.sharpness - phi) < 1e-4 * phi,
    `φ ${r.sharpness}, known ${phi} (${r.iterations} iterations, ${r.stop})`,
  );
});

test("runSharpness of a trained run: its training loss, a finite φ ≥ 0, the same twice, above float32 noise", async () => {
  const store = tempStore("sharp");
  // 300 full-batch steps: the tiny model fits most of its training set
  const run = await train(tinyConfig({ steps: 300 }), { store, progress: false, log: () => {} });
  const last = run.metrics.rows[run.metrics.rows.length - 1];
  const dataset = makeDataset(run.config.data);
  const { weights } = loadWeights(run.id, "final", store);
  const names = [...weights.keys()];
  const x = Float32Array.from(names.flatMap((nm) => Array.from(weights.get(nm)!.data)));
  // the float64 reference forward pass at weights w (flat, in the order of the named tensors)
  const reference = (w: Float32Array) => {
    const named: NamedTensors = new Map();
    let offset = 0;
    for (const nm of names) {
      const size = weights.get(nm)!.data.length;
      named.set(nm, { shape: weights.get(nm)!.shape, data: w.subarray(offset, offset + size) });
      offset += size;
    }
    const dims = { vocabSize: dataset.vocabSize, numSymbols: dataset.numSymbols, seqLen: dataset.seqLen };
    return referenceLoss(
      { ...run.config.model, dropout: 0 },
      dims,
      named,
      encodeInputs(dataset, dataset.train),
      dataset.train.answer,
    );
  };
  for (const variant of ["subspace", "full"] as const) {
    const r = await runSharpness(run.id, "final", { store, variant });
    assert.ok(Math.abs(r.loss - last.train_loss) < 1e-6 * last.train_loss, `${r.loss} vs ${last.train_loss}`);
    assert.ok(Number.isFinite(r.sharpness) && r.sharpness > 0 && r.maxLoss > r.loss, `${variant}: φ ${r.sharpness}`);
    assert.deepEqual(await runSharpness(run.id, "final", { store, variant }), r);
    // the rise of the loss the engine measures (in float32) against the float64 forward pass at the same two
    // points: the evaluation noise of the difference is far below the difference at ε = 1e-3
    const offset = variant === "full" ? r.y : new Float64Array(x.length);
    if (variant === "subspace")
      randomSubspace(x.length, 10, 0).columns.forEach((col, a) =>
        offset.forEach((v, i) => (offset[i] = v + col[i] * r.y[a])),
      );
    const w = Float32Array.from(x, (v, i) => v + offset[i]);
    const rise = reference(w) - reference(x);
    assert.ok(
      Math.abs(r.maxLoss - r.loss - rise) < 1e-3 * rise,
      `${variant}: float32 rise ${r.maxLoss - r.loss}, float64 ${rise}`,
    );
  }
});
