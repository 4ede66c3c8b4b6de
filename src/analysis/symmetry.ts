// The memorization floor of a split: the validation accuracy a network reaches without learning the rule,
// by answering each validation equation with the answer of a training equation that the operation's own
// symmetries make equal to it. For a commutative operation, x∘y = y∘x: a network that memorized y∘x (and
// ignores the order of its inputs) knows x∘y. In x²+y², x and −x are interchangeable symbols. A best
// validation accuracy near this floor is not yet generalization; x−y, x/y and the S5 product have a floor
// of zero.

import { Dataset } from "../data/dataset";
import { OperationTable } from "../data/operations";

/** A map of the inputs (x, y) → (x', y'), or null where it leaves the table's domain. */
type InputMap = (x: number, y: number, modulus: number) => [number, number] | null;

/**
 * The symmetries a memorizing network can use without learning the rule: swapping the inputs (a transformer
 * that mostly ignores the order of its inputs gets it for free), and, in a modular table, replacing x (or y)
 * by −x where that changes no answer, which makes the two symbols interchangeable rows (or columns) of the
 * table. A symmetry such as (x, y) → (−y, −x) for x−y is left out: it holds, but only a network that knows
 * what −x is can use it.
 */
const GENERATORS: { name: string; modular: boolean; map: InputMap }[] = [
  { name: "swap x and y", modular: false, map: (x, y) => [y, x] },
  { name: "x → −x", modular: true, map: (x, y, p) => [(p - x) % p, y] },
  { name: "y → −y", modular: true, map: (x, y, p) => [x, (p - y) % p] },
];

/** Row index of each (x, y) in the table, -1 where the pair is not in it (e.g. y = 0 for x/y). */
function rowIndex(table: OperationTable): Int32Array {
  const n = table.numSymbols;
  const index = new Int32Array(n * n).fill(-1);
  for (let r = 0; r < table.size; r++) index[table.x[r] * n + table.y[r]] = r;
  return index;
}

/** Where a map sends each row of the table (-1: outside it). */
function rowImages(table: OperationTable, index: Int32Array, map: InputMap): Int32Array {
  const p = table.modulus ?? 0;
  return Int32Array.from({ length: table.size }, (_, r) => {
    const image = map(table.x[r], table.y[r], p);
    return image ? index[image[0] * table.numSymbols + image[1]] : -1;
  });
}

/**
 * The table's symmetries of the kinds above: the generators that keep every answer, and their
 * compositions, each as where it sends every row (the identity left out).
 */
export function tableSymmetries(table: OperationTable): { name: string; rows: Int32Array }[] {
  const index = rowIndex(table);
  const generators = GENERATORS.filter((g) => !g.modular || table.modulus !== null)
    .map((g) => ({ name: g.name, rows: rowImages(table, index, g.map) }))
    .filter(({ rows }) => rows.every((to, r) => to >= 0 && table.answer[to] === table.answer[r]));
  // close under composition: the generators are involutions, so words of a few letters reach every element
  const key = (rows: Int32Array) => rows.join(",");
  const identity = Int32Array.from({ length: table.size }, (_, r) => r);
  const found = new Map<string, { name: string; rows: Int32Array }>([
    [key(identity), { name: "identity", rows: identity }],
  ]);
  let frontier = [...found.values()];
  while (frontier.length) {
    const next: { name: string; rows: Int32Array }[] = [];
    for (const element of frontier) {
      for (const g of generators) {
        const rows = element.rows.map((to) => g.rows[to]);
        if (found.has(key(rows))) continue;
        const composed = { name: element.name === "identity" ? g.name : `${element.name}, then ${g.name}`, rows: rows };
        found.set(key(rows), composed);
        next.push(composed);
      }
    }
    frontier = next;
  }
  found.delete(key(identity));
  return [...found.values()];
}

export interface SymmetryFloor {
  /** The table's symmetries (names), beyond the identity. */
  symmetries: string[];
  /** Share of the validation equations with a training equation among their images. */
  floor: number;
}

/** The memorization floor of a dataset's split (see the top of this file). */
export function symmetryFloor(dataset: Dataset): SymmetryFloor {
  const { table, train, val } = dataset;
  const symmetries = tableSymmetries(table);
  const inTrain = new Uint8Array(table.size);
  for (let i = 0; i < train.size; i++) inTrain[train.row[i]] = 1;
  let covered = 0;
  for (let i = 0; i < val.size; i++) if (symmetries.some(({ rows }) => inTrain[rows[val.row[i]]] === 1)) covered++;
  return { symmetries: symmetries.map((s) => s.name), floor: val.size ? covered / val.size : 0 };
}
