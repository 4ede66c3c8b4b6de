// Every table is checked against a separately written computation or an algebraic property, because a
// wrong table (e.g. "division" that is really multiplication) silently ruins every experiment on it.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  S5_ELEMENTS,
  S5_ORDER,
  s5Compose,
  s5FromCycles,
  s5Index,
  s5Inverse,
  s5Label,
  s5Subgroup,
} from "../src/data/s5";
import { buildTable, findOperation, OPERATIONS, OperationTable, symbolLabel } from "../src/data/operations";
import { DatasetConfig, defaultBatchSize, encodeInputs, makeDataset } from "../src/data/dataset";

// ---------- independent references ----------

function powMod(base: bigint, exp: bigint, p: bigint): bigint {
  let result = 1n;
  let b = base % p;
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % p;
    b = (b * b) % p;
  }
  return result;
}
const modBig = (a: bigint, p: bigint): bigint => ((a % p) + p) % p;
// division by Fermat's little theorem, unlike the extended Euclid of the implementation
const divBig = (x: bigint, y: bigint, p: bigint): bigint => modBig(x * powMod(y, p - 2n, p), p);

const MODULAR_REFERENCE: Record<string, (x: bigint, y: bigint, p: bigint) => bigint> = {
  add: (x, y, p) => modBig(x + y, p),
  sub: (x, y, p) => modBig(x - y, p),
  mul: (x, y, p) => modBig(x * y, p),
  div: divBig,
  div_odd: (x, y, p) => (y % 2n === 1n ? divBig(x, y, p) : modBig(x - y, p)),
  sq_sum: (x, y, p) => modBig(x ** 2n + y ** 2n, p),
  quad: (x, y, p) => modBig(x ** 2n + x * y + y ** 2n, p),
  quad_x: (x, y, p) => modBig(x ** 2n + x * y + y ** 2n + x, p),
  cube_xy: (x, y, p) => modBig(x ** 3n + x * y, p),
  cube_xy2_y: (x, y, p) => modBig(x ** 3n + x * y ** 2n + y, p),
};
const S5_IDS = ["s5", "s5_conj", "s5_xyx"];

/** One-line composition written out here: apply a first, then b. */
const composeArrays = (a: ArrayLike<number>, b: ArrayLike<number>): number[] => Array.from(a, (ai) => b[ai]);
const invertArray = (a: ArrayLike<number>): number[] => {
  const inv = new Array<number>(a.length);
  for (let i = 0; i < a.length; i++) inv[a[i]] = i;
  return inv;
};
const perm = (i: number): number[] => Array.from(S5_ELEMENTS[i]);

function assertRowMajor(t: OperationTable, minY: number): void {
  let row = 0;
  for (let x = 0; x < t.numSymbols; x++) {
    for (let y = minY; y < t.numSymbols; y++, row++) {
      if (t.x[row] !== x || t.y[row] !== y)
        assert.fail(`${t.op.id}: row ${row} is (${t.x[row]}, ${t.y[row]}), want (${x}, ${y})`);
    }
  }
  assert.equal(row, t.size);
}

// ---------- operations ----------

test("the operation list is exactly the 13 operations with a reference here", () => {
  assert.deepEqual(OPERATIONS.map((o) => o.id).sort(), [...Object.keys(MODULAR_REFERENCE), ...S5_IDS].sort());
  for (const op of OPERATIONS) assert.equal(op.domain, S5_IDS.includes(op.id) ? "s5" : "modular", op.id);
  assert.deepEqual(
    OPERATIONS.filter((o) => o.needsPrime)
      .map((o) => o.id)
      .sort(),
    ["div", "div_odd"],
  );
});

test("table sizes: 9,409 / 9,312 for p = 97, 14,400 for S5, and for p = 7 and 11", () => {
  for (const p of [97, 7, 11]) {
    for (const id of Object.keys(MODULAR_REFERENCE)) {
      const t = buildTable(id, p);
      const want = id === "div" ? p * (p - 1) : p * p;
      assert.equal(t.size, want, `${id} mod ${p}`);
      for (const column of [t.x, t.y, t.answer]) assert.equal(column.length, want);
      assert.equal(t.numSymbols, p);
      assert.equal(t.modulus, p);
    }
  }
  assert.equal(buildTable("div").size, 9312);
  assert.equal(buildTable("add").size, 9409);
  for (const id of S5_IDS) {
    const t = buildTable(id);
    assert.equal(t.size, 14400);
    assert.equal(t.numSymbols, 120);
    assert.equal(t.modulus, null);
  }
});

test("every modular answer matches a separately written BigInt formula (p = 97, 7, 11, 2)", () => {
  for (const p of [97, 7, 11, 2]) {
    for (const [id, reference] of Object.entries(MODULAR_REFERENCE)) {
      const t = buildTable(id, p);
      assertRowMajor(t, id === "div" ? 1 : 0);
      const P = BigInt(p);
      for (let r = 0; r < t.size; r++) {
        const want = Number(reference(BigInt(t.x[r]), BigInt(t.y[r]), P));
        if (t.answer[r] !== want) assert.fail(`${id} mod ${p}: ${t.x[r]}, ${t.y[r]} gave ${t.answer[r]}, want ${want}`);
      }
    }
  }
});

test("polynomial tables stay exact at the largest allowed modulus", () => {
  const p = 9973; // prime, close to the 10,000 limit; products exceed 2^32 if not reduced
  for (const id of ["cube_xy2_y", "quad_x"]) {
    const op = findOperation(id);
    for (const [x, y] of [
      [p - 1, p - 1],
      [p - 2, p - 3],
      [1234, 9876],
      [0, p - 1],
    ]) {
      assert.equal(
        op.compute(x, y, p),
        Number(MODULAR_REFERENCE[id](BigInt(x), BigInt(y), BigInt(p))),
        `${id}(${x}, ${y})`,
      );
    }
  }
});

test("x/y: answer·y ≡ x for every row, y = 0 is absent, and it is not multiplication", () => {
  const p = 97;
  const t = buildTable("x/y", p);
  for (let r = 0; r < t.size; r++) {
    assert.notEqual(t.y[r], 0);
    if ((t.answer[r] * t.y[r]) % p !== t.x[r]) assert.fail(`row ${r}: ${t.answer[r]}·${t.y[r]} ≢ ${t.x[r]}`);
  }
  const at = (x: number, y: number): number => t.answer[x * (p - 1) + (y - 1)];
  assert.equal(at(1, 2), 49); // 2·49 = 98 ≡ 1
  let differsFromProduct = 0;
  for (let r = 0; r < t.size; r++) if (t.answer[r] !== (t.x[r] * t.y[r]) % p) differsFromProduct++;
  assert.ok(differsFromProduct > t.size / 2, `x/y equals x*y on ${t.size - differsFromProduct} of ${t.size} rows`);
  // every row of a group table is a permutation of the nonzero residues (x ≠ 0)
  for (let x = 1; x < p; x++) {
    const seen = new Set<number>();
    for (let y = 1; y < p; y++) seen.add(at(x, y));
    assert.equal(seen.size, p - 1);
  }
});

test("x/y if y odd else x-y: both branches", () => {
  const p = 97;
  const t = buildTable("x/y if y odd else x-y", p);
  let odd = 0;
  let even = 0;
  for (let r = 0; r < t.size; r++) {
    const x = t.x[r];
    const y = t.y[r];
    if (y % 2 === 1) {
      odd++;
      assert.equal((t.answer[r] * y) % p, x);
    } else {
      even++;
      assert.equal((t.answer[r] + y) % p, x);
    }
  }
  assert.equal(odd, 97 * 48);
  assert.equal(even, 97 * 49);
  assert.equal(t.answer[1 * p + 3], 65); // 1/3 = 65 (3·65 = 195 = 2·97 + 1)
  assert.equal(t.answer[1 * p + 2], 96); // 1-2 = -1
});

test("symbolLabel: numbers mod p, one-line strings for S5", () => {
  assert.equal(symbolLabel(buildTable("add", 7), 5), "5");
  const s5Table = buildTable("s5");
  assert.equal(symbolLabel(s5Table, 0), "01234");
  assert.equal(symbolLabel(s5Table, 119), "43210");
  assert.throws(() => symbolLabel(s5Table, 120), /out of range/);
});

test("buildTable rejects bad moduli with clear messages; S5 ignores the modulus", () => {
  assert.throws(() => buildTable("x/y", 96), { message: "operation x/y needs a prime modulus (got 96)" });
  assert.throws(() => buildTable("div_odd", 9), /needs a prime modulus \(got 9\)/);
  assert.throws(() => buildTable("add", 1), /integer modulus in 2\.\.10000 \(got 1\)/);
  assert.throws(() => buildTable("add", 10001), /got 10001/);
  assert.throws(() => buildTable("add", 7.5), /got 7\.5/);
  assert.equal(buildTable("add", 96).size, 96 * 96);
  const t = buildTable("s5", 4);
  assert.equal(t.modulus, null);
  assert.equal(t.size, 14400);
});

// ---------- findOperation ----------

test("findOperation resolves every id, notation and alias", () => {
  for (const op of OPERATIONS) {
    for (const name of [op.id, op.notation, ...op.aliases]) {
      assert.equal(findOperation(name), op, `"${name}"`);
      assert.equal(findOperation(` ${name.toUpperCase()} `), op, `"${name}" upper-cased`);
    }
  }
});

test("findOperation ignores spaces and case, and reads unicode and ** spellings", () => {
  const cases: [string, string][] = [
    ["x * y", "mul"],
    ["x.y", "s5"],
    ["x · y", "s5"],
    ["x ⋅ y ⋅ x", "s5_xyx"],
    ["x·y·x^-1", "s5_conj"],
    ["x.y.x⁻¹", "s5_conj"],
    ["x*y*x^-1", "s5_conj"],
    ["x**2 + y**2", "sq_sum"],
    ["x² + y²", "sq_sum"],
    ["X^2 + XY + Y^2", "quad"],
    ["x**3+x*y**2+y", "cube_xy2_y"],
    ["x³+xy", "cube_xy"],
    ["x − y", "sub"],
    ["x ÷ y", "div"],
    ["X/Y IF Y ODD ELSE X-Y", "div_odd"],
  ];
  for (const [text, id] of cases) assert.equal(findOperation(text).id, id, `"${text}"`);
});

test("findOperation: unknown text names the input and lists every id with its notation", () => {
  assert.throws(
    () => findOperation("x%y"),
    (err: Error) => {
      assert.match(err.message, /"x%y"/);
      for (const op of OPERATIONS) {
        assert.ok(err.message.includes(op.id), `message lacks ${op.id}`);
        assert.ok(err.message.includes(op.notation), `message lacks ${op.notation}`);
      }
      return true;
    },
  );
});

// ---------- S5 ----------

test("S5: 120 distinct permutations in lexicographic order, symbol 0 the identity", () => {
  assert.equal(S5_ELEMENTS.length, 120);
  assert.equal(S5_ORDER, 120);
  const labels = S5_ELEMENTS.map((_, i) => s5Label(i));
  assert.equal(new Set(labels).size, 120);
  for (let i = 0; i < 120; i++) {
    assert.deepEqual([...labels[i]].sort().join(""), "01234");
    if (i > 0) assert.ok(labels[i - 1] < labels[i], `${labels[i - 1]} before ${labels[i]}`);
    assert.equal(s5Index(S5_ELEMENTS[i]), i);
  }
  assert.equal(labels[0], "01234");
  assert.equal(labels[119], "43210");
  assert.throws(() => s5Index([0, 1, 1, 3, 4]), /not a permutation/);
  assert.throws(() => s5Index([0, 1, 2, 3]), /not a permutation/);
});

test("S5 product order on a hand-checked example: (x·y)(i) = y(x(i))", () => {
  const x = s5FromCycles([[0, 1]]); // one-line 10234
  const y = s5FromCycles([[1, 2]]); // one-line 02134
  assert.equal(s5Label(x), "10234");
  assert.equal(s5Label(y), "02134");
  // x first: 0→1→2, 1→0→0, 2→2→1
  assert.equal(s5Label(s5Compose(x, y)), "20134");
  // y first: 0→0→1, 1→2→2, 2→1→0
  assert.equal(s5Label(s5Compose(y, x)), "12034");
  // the same entry in the x·y table (symbols 24 and 6 give 48)
  assert.deepEqual([x, y, s5Compose(x, y)], [24, 6, 48]);
  const t = buildTable("x.y");
  assert.equal(t.answer[x * 120 + y], 48);
  assert.equal(t.answer[y * 120 + x], s5Index([1, 2, 0, 3, 4]));
});

test("S5 composition matches one-line arrays c[i] = y[x[i]] for all 14,400 pairs; S5 is non-abelian", () => {
  const t = buildTable("s5");
  assertRowMajor(t, 0);
  let commuting = 0;
  for (let r = 0; r < t.size; r++) {
    const a = t.x[r];
    const b = t.y[r];
    const want = s5Index(composeArrays(perm(a), perm(b)));
    if (t.answer[r] !== want || s5Compose(a, b) !== want)
      assert.fail(`${s5Label(a)}·${s5Label(b)}: got ${t.answer[r]}, want ${want}`);
    if (s5Compose(b, a) === want) commuting++;
  }
  // the commuting pairs of a group number |G| times its number of conjugacy classes (7 for S5)
  assert.equal(commuting, 120 * 7);
});

test("S5 group axioms: identity, inverses, associativity over all triples", () => {
  for (let a = 0; a < 120; a++) {
    assert.equal(s5Compose(0, a), a);
    assert.equal(s5Compose(a, 0), a);
    assert.equal(s5Compose(a, s5Inverse(a)), 0);
    assert.equal(s5Compose(s5Inverse(a), a), 0);
    assert.deepEqual(perm(s5Inverse(a)), invertArray(perm(a)));
  }
  for (let a = 0; a < 120; a++) {
    for (let b = 0; b < 120; b++) {
      const ab = s5Compose(a, b);
      for (let c = 0; c < 120; c++) {
        if (s5Compose(ab, c) !== s5Compose(a, s5Compose(b, c))) assert.fail(`(${a}·${b})·${c} ≠ ${a}·(${b}·${c})`);
      }
    }
  }
});

test("x·y·x⁻¹ and x·y·x tables match compositions of one-line arrays", () => {
  const conj = buildTable("s5_conj");
  const xyx = buildTable("s5_xyx");
  assertRowMajor(conj, 0);
  assertRowMajor(xyx, 0);
  for (let r = 0; r < conj.size; r++) {
    const x = perm(conj.x[r]);
    const y = perm(conj.y[r]);
    const xy = composeArrays(x, y);
    assert.equal(conj.answer[r], s5Index(composeArrays(xy, invertArray(x))));
    assert.equal(xyx.answer[r], s5Index(composeArrays(xy, x)));
  }
  // conjugation fixes the identity and conjugating by the identity changes nothing
  for (let a = 0; a < 120; a++) {
    assert.equal(conj.answer[a * 120], 0);
    assert.equal(conj.answer[a], a);
  }
});

test("s5FromCycles and the subgroup generated by (0,3)(1,4) and (1,2)(3,4)", () => {
  const a = s5FromCycles([
    [0, 3],
    [1, 4],
  ]);
  const b = s5FromCycles([
    [1, 2],
    [3, 4],
  ]);
  assert.equal(s5Label(a), "34201");
  assert.equal(s5Label(b), "02143");
  assert.equal(s5Label(s5FromCycles([[0, 1, 2]])), "12034");
  assert.equal(s5FromCycles([]), 0);
  assert.throws(
    () =>
      s5FromCycles([
        [0, 1],
        [1, 2],
      ]),
    /appears twice/,
  );
  assert.throws(() => s5FromCycles([[0, 5]]), /not a point/);
  // a·b is a 5-cycle, so the two involutions generate the dihedral group of order 10
  const h = s5Subgroup([a, b]);
  assert.equal(h.length, 10);
  assert.equal(h[0], 0);
  const members = new Set(h);
  for (const g of h) for (const k of h) assert.ok(members.has(s5Compose(g, k)));
  assert.deepEqual(s5Subgroup([]), [0]);
});

// ---------- dataset ----------

const baseConfig: DatasetConfig = { op: "x/y", modulus: 97, trainFraction: 0.3, splitSeed: 0, outliers: 0 };

test("split: sizes, ascending, disjoint and covering, rows match the table", () => {
  const ds = makeDataset(baseConfig);
  assert.equal(ds.train.size, Math.round(9312 * 0.3));
  assert.equal(ds.train.size + ds.val.size, 9312);
  const covered = new Uint8Array(9312);
  for (const ex of [ds.train, ds.val]) {
    for (let i = 0; i < ex.size; i++) {
      if (i > 0) assert.ok(ex.row[i - 1] < ex.row[i]);
      covered[ex.row[i]]++;
      const r = ex.row[i];
      assert.deepEqual([ex.x[i], ex.y[i], ex.answer[i]], [ds.table.x[r], ds.table.y[r], ds.table.answer[r]]);
    }
  }
  assert.ok(covered.every((c) => c === 1));
  assert.deepEqual([ds.numSymbols, ds.vocabSize, ds.opToken, ds.eqToken, ds.seqLen], [97, 99, 97, 98, 4]);
  assert.equal(ds.outlierPositions.length, 0);
});

test("split: deterministic per splitSeed, different for different seeds", () => {
  const a = makeDataset(baseConfig);
  const b = makeDataset(baseConfig);
  const c = makeDataset({ ...baseConfig, splitSeed: 1 });
  assert.deepEqual(a.train.row, b.train.row);
  assert.notDeepEqual(a.train.row, c.train.row);
  const s5 = makeDataset({ ...baseConfig, op: "s5", trainFraction: 0.5 });
  assert.equal(s5.train.size, 7200);
  assert.equal(s5.vocabSize, 122);
});

test("split: trainFraction must leave both sets non-empty", () => {
  for (const trainFraction of [0, 1, -0.1, 1.5, NaN, 1e-9, 1 - 1e-9]) {
    assert.throws(() => makeDataset({ ...baseConfig, trainFraction }), /trainFraction/, String(trainFraction));
  }
  assert.throws(() => makeDataset({ ...baseConfig, op: "nope" }), /unknown operation "nope"/);
});

test("outliers: exact count, all wrong, deterministic, split and validation untouched", () => {
  const clean = makeDataset({ ...baseConfig, op: "add" });
  const noisy = makeDataset({ ...baseConfig, op: "add", outliers: 300 });
  assert.deepEqual(noisy.train.row, clean.train.row);
  assert.deepEqual(noisy.val, clean.val);
  assert.equal(noisy.outlierPositions.length, 300);
  assert.equal(new Set(noisy.outlierPositions).size, 300);
  const isOutlier = new Set(noisy.outlierPositions);
  let changed = 0;
  for (let i = 0; i < noisy.train.size; i++) {
    const truth = noisy.table.answer[noisy.train.row[i]];
    const given = noisy.train.answer[i];
    assert.ok(given >= 0 && given < 97);
    if (given !== truth) changed++;
    assert.equal(given !== truth, isOutlier.has(i));
  }
  assert.equal(changed, 300);
  const again = makeDataset({ ...baseConfig, op: "add", outliers: 300 });
  assert.deepEqual(again.train.answer, noisy.train.answer);
  assert.deepEqual(again.outlierPositions, noisy.outlierPositions);

  // every training answer replaced, on a table with only two symbols: each must flip
  const all = makeDataset({ op: "add", modulus: 2, trainFraction: 0.5, splitSeed: 3, outliers: 2 });
  for (let i = 0; i < all.train.size; i++) assert.equal(all.train.answer[i], 1 - all.table.answer[all.train.row[i]]);

  for (const outliers of [-1, 2.5, clean.train.size + 1]) {
    assert.throws(() => makeDataset({ ...baseConfig, outliers }), /outliers must be an integer/, String(outliers));
  }
});

test("encodeInputs: rows of x, op, y, = for all or chosen positions", () => {
  const ds = makeDataset({ ...baseConfig, op: "s5", trainFraction: 0.5 });
  const all = encodeInputs(ds, ds.val);
  assert.equal(all.length, ds.val.size * 4);
  for (let i = 0; i < ds.val.size; i++) {
    assert.deepEqual(Array.from(all.subarray(i * 4, i * 4 + 4)), [ds.val.x[i], 120, ds.val.y[i], 121]);
  }
  const positions = Int32Array.from([5, 0, 5]);
  const some = encodeInputs(ds, ds.train, positions);
  assert.deepEqual(Array.from(some), [
    ...[ds.train.x[5], 120, ds.train.y[5], 121],
    ...[ds.train.x[0], 120, ds.train.y[0], 121],
    ...[ds.train.x[5], 120, ds.train.y[5], 121],
  ]);
  assert.throws(() => encodeInputs(ds, ds.train, Int32Array.from([ds.train.size])), /outside/);
});

test("defaultBatchSize = min(512, ceil(n/2))", () => {
  assert.equal(defaultBatchSize(2794), 512);
  assert.equal(defaultBatchSize(1024), 512);
  assert.equal(defaultBatchSize(1025), 512);
  assert.equal(defaultBatchSize(101), 51);
  assert.equal(defaultBatchSize(1), 1);
  assert.throws(() => defaultBatchSize(0));
});
