import assert from "node:assert/strict";
import { test } from "node:test";
import { makeDataset } from "../src/data/dataset";
import { buildTable } from "../src/data/operations";
import { symmetryFloor, tableSymmetries } from "../src/analysis/symmetry";

const dataset = (op: string, modulus = 11, trainFraction = 0.5) =>
  makeDataset({ op, modulus, trainFraction, splitSeed: 0, outliers: 0 });

test("tableSymmetries: the input maps that keep every answer of a table", () => {
  // x−y = (−y)−(−x) and x/y = (−x)/(−y) hold, but need −x: not a memorizer's symmetry
  assert.deepEqual(
    tableSymmetries(buildTable("sub", 11)).map((s) => s.name),
    [],
  );
  assert.deepEqual(
    tableSymmetries(buildTable("div", 11)).map((s) => s.name),
    [],
  );
  assert.deepEqual(
    tableSymmetries(buildTable("add", 11)).map((s) => s.name),
    ["swap x and y"],
  );
  assert.deepEqual(
    tableSymmetries(buildTable("mul", 11)).map((s) => s.name),
    ["swap x and y"],
  );
  // swaps and sign changes of x²+y²: the 8 elements of their group, less the identity
  assert.equal(tableSymmetries(buildTable("sq_sum", 11)).length, 7);
  assert.deepEqual(
    tableSymmetries(buildTable("s5", 0)).map((s) => s.name),
    [],
  );
});

test("symmetryFloor: zero without symmetries; for x+y, the share of validation pairs whose swap was trained on", () => {
  assert.equal(symmetryFloor(dataset("sub")).floor, 0);
  const ds = dataset("add", 23, 0.4);
  const trained = new Set(Array.from({ length: ds.train.size }, (_, i) => `${ds.train.x[i]},${ds.train.y[i]}`));
  let swapped = 0;
  for (let i = 0; i < ds.val.size; i++) if (trained.has(`${ds.val.y[i]},${ds.val.x[i]}`)) swapped++;
  const { symmetries, floor } = symmetryFloor(ds);
  assert.deepEqual(symmetries, ["swap x and y"]);
  assert.equal(floor, swapped / ds.val.size);
  assert.ok(floor > 0.3 && floor < 0.5, `floor ${floor} near the training fraction`);
  // eight images per equation: almost every validation equation has one in a half of the table
  assert.ok(symmetryFloor(dataset("sq_sum", 23, 0.5)).floor > 0.9);
});
