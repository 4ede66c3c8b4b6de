import assert from "node:assert/strict";
import { test } from "node:test";
import {
  chanceShare,
  fourierCircle,
  fourierSpectrum,
  keyFrequencies,
  nearestNeighbourShare,
  spearman,
  symbolVectors,
  tsne2d,
} from "../src/analysis/embeddings";
import { Rng } from "../src/util/rng";

test("symbolVectors: a symbol's output row is its column of head.weight [in, out]; its input row is its embedding", () => {
  const head = { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) };
  const emb = { shape: [5, 2], data: Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]) };
  const w = new Map([
    ["head.weight", head],
    ["embed.token", emb],
  ]);
  assert.deepEqual(
    symbolVectors(w, 3, "output").map((v) => Array.from(v)),
    [
      [1, 4],
      [2, 5],
      [3, 6],
    ],
  );
  assert.deepEqual(
    symbolVectors(w, 3, "input").map((v) => Array.from(v)),
    [
      [0, 1],
      [2, 3],
      [4, 5],
    ],
  );
  assert.throws(() => symbolVectors(w, 4, "output"), /3 outputs, not 4 symbols/);
});

test("tsne2d is repeatable for a seed and separates two well-separated clusters", () => {
  const rng = new Rng(1);
  const points = Array.from({ length: 30 }, (_, i) =>
    Float32Array.from({ length: 8 }, () => rng.normal() * 0.1 + (i < 15 ? 0 : 5)),
  );
  const a = tsne2d(points, { seed: 3, iterations: 1000 });
  assert.deepEqual(tsne2d(points, { seed: 3, iterations: 1000 }), a);
  assert.notDeepEqual(tsne2d(points, { seed: 4, iterations: 1000 }), a);
  // every point's nearest neighbour in the layout is from its own cluster
  const dist = (p: [number, number], q: [number, number]) => Math.hypot(p[0] - q[0], p[1] - q[1]);
  a.forEach((p, i) => {
    let nearest = -1;
    a.forEach((q, j) => {
      if (j !== i && (nearest < 0 || dist(p, q) < dist(p, a[nearest]))) nearest = j;
    });
    assert.equal(nearest < 15, i < 15, `point ${i}'s nearest neighbour is ${nearest}`);
  });
});

test("fourierSpectrum finds the frequencies vectors are built from", () => {
  const p = 23;
  const vectors = Array.from({ length: p }, (_, x) =>
    Float32Array.from([Math.cos((2 * Math.PI * 4 * x) / p), 0.5 * Math.sin((2 * Math.PI * 9 * x) / p), 2 + 0 * x]),
  );
  const s = fourierSpectrum(vectors);
  assert.equal(s.frequencies.length, 12);
  assert.ok(Math.abs(s.power.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  const key = keyFrequencies(s, 2);
  assert.deepEqual(
    key.map((k) => k.frequency),
    [4, 9],
  );
  assert.ok(Math.abs(key[0].power - 0.8) < 1e-6 && Math.abs(key[1].power - 0.2) < 1e-6, JSON.stringify(key)); // powers 1 : 0.25
});

test("spearman: ρ of monotone data is ±1 with a small p-value; of unrelated data near 0 with a large one", () => {
  const x = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const up = spearman(
    x,
    x.map((v) => v * v),
  );
  assert.equal(up.rho, 1);
  assert.ok(up.pValue < 0.001);
  assert.equal(
    spearman(
      x,
      x.map((v) => -Math.exp(v)),
    ).rho,
    -1,
  );
  const ties = spearman([1, 2, 2, 3], [1, 2, 3, 4]);
  assert.ok(Math.abs(ties.rho - 0.9486832980505138) < 1e-12, String(ties.rho)); // scipy.stats.spearmanr
  const rng = new Rng(9);
  const noise = spearman(
    x,
    x.map(() => rng.uniform()),
    { seed: 1 },
  );
  assert.ok(noise.pValue > 0.05, JSON.stringify(noise));
  assert.throws(() => spearman([1, 2], [1, 2]), /length ≥ 3/);
});

test("spearman's bootstrap interval: [1, 1] for a monotone relation, and around ρ with the asymptotic width", () => {
  const x = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  assert.deepEqual(
    spearman(
      x,
      x.map((v) => v ** 3),
      { permutations: 10 },
    ).ci,
    [1, 1],
  );
  const down = spearman(
    x,
    x.map((v) => -Math.exp(v)),
    { permutations: 10 },
  ).ci;
  assert.ok(Math.abs(down[0] + 1) < 1e-12 && Math.abs(down[1] + 1) < 1e-12, JSON.stringify(down));

  // a bivariate normal sample with correlation r: Spearman's ρ is (6/π) asin(r/2), and Fisher's z of ρ has a
  // standard error of about √(1.06/(n − 3)) (Fieller, Hartley & Pearson 1957)
  const rng = new Rng(4);
  const n = 600;
  const r = 0.6;
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < n; i++) {
    const u = rng.normal();
    a.push(u);
    b.push(r * u + Math.sqrt(1 - r * r) * rng.normal());
  }
  const rho = (6 / Math.PI) * Math.asin(r / 2);
  const { ci } = spearman(a, b, { permutations: 10, bootstrap: 2000, confidence: 0.95, seed: 2 });
  assert.ok(ci[0] < rho && rho < ci[1], `interval ${ci} misses ${rho}`);
  const predicted = 2 * 1.96 * Math.sqrt(1.06 / (n - 3)) * (1 - rho * rho);
  assert.ok(Math.abs(ci[1] - ci[0] - predicted) < 0.25 * predicted, `width ${ci[1] - ci[0]}, predicted ${predicted}`);
  assert.deepEqual(spearman(a, b, { permutations: 10, seed: 2 }).ci, ci, "repeatable for a seed");
  assert.deepEqual(spearman(a, b, { permutations: 20, seed: 2 }).ci, ci, "independent of the permutations");

  // three pairs: one resample in nine draws a single pair three times and has no ρ; it is left out
  const few = spearman([1, 2, 3], [1, 3, 2], { permutations: 10 });
  assert.ok(
    few.ci.every((v) => v >= -1 && v <= 1),
    JSON.stringify(few.ci),
  );
  const tied = spearman([1, 1, 1, 1, 2], [1, 2, 3, 4, 5], { permutations: 10 });
  assert.ok(tied.ci.every(Number.isFinite) && tied.ci[0] <= tied.rho && tied.rho <= tied.ci[1], JSON.stringify(tied));
  assert.throws(() => spearman(a, b, { confidence: 95 }), /confidence must be between 0 and 1/);
});

/** p symbols in d dimensions: Σ amplitude (cos(2πkx/p) e₁ + sin(2πkx/p) e₂) over the planted frequencies, each
 * pair e₁, e₂ of directions orthonormal to all others, plus a constant vector and Gaussian noise. */
function planted(
  p: number,
  d: number,
  frequencies: { k: number; amplitude: number; sine?: number }[],
  noise: number,
  seed: number,
): Float32Array[] {
  const rng = new Rng(seed);
  const basis: Float64Array[] = [];
  for (let i = 0; i < 2 * frequencies.length; i++) {
    const v = Float64Array.from({ length: d }, () => rng.normal());
    for (const e of basis) {
      const c = v.reduce((s, value, j) => s + value * e[j], 0);
      e.forEach((value, j) => (v[j] -= c * value));
    }
    const norm = Math.hypot(...v);
    basis.push(v.map((value) => value / norm));
  }
  const offset = Float64Array.from({ length: d }, () => rng.normal());
  return Array.from({ length: p }, (_, x) =>
    Float32Array.from({ length: d }, (_, j) => {
      let s = offset[j] + noise * rng.normal();
      frequencies.forEach(({ k, amplitude, sine }, f) => {
        const angle = (2 * Math.PI * k * x) / p;
        s += amplitude * (Math.cos(angle) * basis[2 * f][j] + (sine ?? 1) * Math.sin(angle) * basis[2 * f + 1][j]);
      });
      return s;
    }),
  );
}

test("fourierCircle: a planted frequency is a circle at angles 2πkx/p, a frequency not planted holds nothing", () => {
  const p = 31;
  // exact: amplitudes 1 and ½, so the planes hold 1/1.25 and 0.25/1.25 of the variance; the second is drawn
  // with the sine turned the other way, which the sine direction of its plane follows
  const exact = planted(
    p,
    16,
    [
      { k: 5, amplitude: 1 },
      { k: 11, amplitude: 0.5, sine: -1 },
    ],
    0,
    1,
  );
  const c5 = fourierCircle(exact, 5);
  assert.equal(c5.frequency, 5);
  assert.ok(
    Math.abs(c5.share - 0.8) < 1e-6 && c5.radiusSpread < 1e-6 && c5.angleError < 1e-6 && c5.inOrder,
    JSON.stringify({ ...c5, points: [] }),
  );
  c5.points.forEach(([a, b], x) => {
    assert.ok(Math.abs(Math.hypot(a, b) - 1) < 1e-6, `radius of ${x}`);
    const turn = Math.atan2(b, a) - Math.atan2(c5.points[0][1], c5.points[0][0]) - (2 * Math.PI * 5 * x) / p;
    assert.ok(Math.abs(Math.sin(turn)) < 1e-6 && Math.cos(turn) > 0, `angle of ${x}`);
  });
  const c11 = fourierCircle(exact, 11);
  assert.ok(Math.abs(c11.share - 0.2) < 1e-6 && c11.radiusSpread < 1e-6 && c11.angleError < 1e-6 && c11.inOrder);
  // p − k is the same plane, gone round the other way
  const c20 = fourierCircle(exact, p - 11);
  assert.ok(Math.abs(c20.share - 0.2) < 1e-6 && c20.inOrder);

  const noisy = planted(
    p,
    16,
    [
      { k: 5, amplitude: 1 },
      { k: 11, amplitude: 0.5 },
    ],
    0.02,
    2,
  );
  const n5 = fourierCircle(noisy, 5);
  assert.ok(
    Math.abs(n5.share - 0.8) < 0.02 && n5.radiusSpread < 0.05 && n5.angleError < 0.05 && n5.inOrder,
    JSON.stringify({ ...n5, points: [] }),
  );
  const spectrum = fourierSpectrum(noisy);
  for (const k of [1, 3, 7]) {
    const none = fourierCircle(noisy, k);
    assert.ok(none.share < 0.01 && !none.inOrder, `frequency ${k}: ${JSON.stringify({ ...none, points: [] })}`);
  }
  for (let k = 1; k < p; k++)
    assert.ok(
      Math.abs(fourierCircle(noisy, k).share - spectrum.power[Math.min(k, p - k)]) < 1e-9,
      "the spectrum's power at k",
    );
  // an ellipse (unequal amplitudes of cosine and sine) is no circle
  assert.ok(fourierCircle(planted(p, 16, [{ k: 5, amplitude: 1, sine: 0.5 }], 0, 3), 5).radiusSpread > 0.2);
  // p = 12, k = 3: four points on the circle, three symbols at each
  const shared = fourierCircle(planted(12, 6, [{ k: 3, amplitude: 1 }], 0.001, 4), 3);
  assert.ok(shared.inOrder && shared.angleError < 0.01, JSON.stringify({ ...shared, points: [] }));
  assert.throws(() => fourierCircle(exact, 0), /frequency 0 is not an integer from 1 to 30/);
  assert.throws(() => fourierCircle(planted(12, 6, [], 0.1, 5), 6), /other than 6/);
});

test("nearestNeighbourShare: 1 for tight clusters, about chanceShare for labels that ignore the points", () => {
  const rng = new Rng(3);
  // 6 clusters of 10 points around orthogonal directions in 8 dimensions
  const labels = Array.from({ length: 60 }, (_, i) => i % 6);
  const points = labels.map((c) => Float32Array.from({ length: 8 }, (_, j) => (j === c ? 1 : 0) + 0.05 * rng.normal()));
  assert.equal(nearestNeighbourShare(points, labels, { k: 5 }), 1);
  assert.equal(nearestNeighbourShare(points, labels, { k: 5, metric: "euclidean" }), 1);
  assert.ok(Math.abs(chanceShare(labels) - 9 / 59) < 1e-12);
  // the same points under labels drawn independently of them: the share averages chanceShare
  let sum = 0;
  const trials = 40;
  for (let t = 0; t < trials; t++) {
    const shuffled = [...labels];
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
    }
    sum += nearestNeighbourShare(points, shuffled, { k: 5 });
  }
  assert.ok(Math.abs(sum / trials - 9 / 59) < 0.03, `mean share ${sum / trials} vs chance ${9 / 59}`);
  assert.throws(() => nearestNeighbourShare(points, labels.slice(1)), /60 points but 59 labels/);
  assert.throws(() => nearestNeighbourShare(points, labels, { k: 60 }), /k must be an integer from 1 to 59/);
});
