// The binary operations of the paper (Appendix A.1.1, plus x*y from its figures) and their full tables.
//
// Modular operations act on the symbols 0..p-1 (p = 97 in the paper); the S5 operations act on the 120
// permutations of 0..4 (see s5.ts for the symbol order and the product convention).

import { S5_ORDER, s5Compose, s5Inverse, s5Label } from "./s5";

export interface Operation {
  /** Short snake-case name used in configs and run ids. */
  id: string;
  /** The paper's notation. */
  notation: string;
  /** Other spellings accepted by `findOperation` (ASCII forms, names used by openai/grok). */
  aliases: readonly string[];
  domain: "modular" | "s5";
  /** Division needs every y in the table to be invertible mod p. */
  needsPrime: boolean;
  describe: string;
  /** Smallest y in the table: 1 where y = 0 has no answer (x/y), else 0. */
  minY: number;
  /** The answer for symbols x, y (0 ≤ x, y < numSymbols); the modulus is ignored for S5. */
  compute(x: number, y: number, modulus: number): number;
}

const mod = (a: number, p: number): number => ((a % p) + p) % p;

/** Inverse of a mod p by the extended Euclidean algorithm. */
function modInverse(a: number, p: number): number {
  let [r0, r1] = [mod(a, p), p];
  let [s0, s1] = [1, 0];
  while (r1 !== 0) {
    const q = Math.floor(r0 / r1);
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1) throw new Error(`${a} has no inverse mod ${p}`);
  return mod(s0, p);
}

// Every product below has both factors reduced mod p (< 10,000), so it stays far below 2^53.
const mulMod = (a: number, b: number, p: number): number => (a * b) % p;

function modular(
  id: string,
  notation: string,
  aliases: string[],
  describe: string,
  compute: (x: number, y: number, p: number) => number,
  division: { needsPrime: boolean; minY: number } = { needsPrime: false, minY: 0 },
): Operation {
  return { id, notation, aliases, domain: "modular", describe, compute, ...division };
}

function s5(id: string, notation: string, aliases: string[], describe: string, compute: (x: number, y: number) => number): Operation {
  return { id, notation, aliases, domain: "s5", needsPrime: false, describe, minY: 0, compute };
}

const divide = (x: number, y: number, p: number): number => mulMod(x, modInverse(y, p), p);

export const OPERATIONS: readonly Operation[] = Object.freeze([
  modular("add", "x+y", ["plus", "addition"], "x plus y mod p", (x, y, p) => (x + y) % p),
  modular("sub", "x-y", ["minus", "subtraction"], "x minus y mod p", (x, y, p) => mod(x - y, p)),
  modular("mul", "x*y", ["times", "multiplication"], "x times y mod p", mulMod),
  modular("div", "x/y", ["division", "divide", "x*y^-1"], "x times the inverse of y mod p, y ≠ 0 (p must be prime)", divide, {
    needsPrime: true,
    minY: 1,
  }),
  modular(
    "div_odd",
    "x/y if y odd else x-y",
    ["x/y if y is odd else x-y", "div_or_sub"],
    "x/y mod p when y is odd, x-y mod p when y is even (p must be prime)",
    (x, y, p) => (y % 2 === 1 ? divide(x, y, p) : mod(x - y, p)),
    { needsPrime: true, minY: 0 },
  ),
  modular("sq_sum", "x^2+y^2", ["x*x+y*y", "sum_of_squares"], "x² + y² mod p", (x, y, p) => (mulMod(x, x, p) + mulMod(y, y, p)) % p),
  modular(
    "quad",
    "x^2+xy+y^2",
    ["x^2+x*y+y^2", "x^2+y^2+xy", "x^2+y^2+x*y"],
    "x² + xy + y² mod p",
    (x, y, p) => (mulMod(x, x, p) + mulMod(x, y, p) + mulMod(y, y, p)) % p,
  ),
  modular(
    "quad_x",
    "x^2+xy+y^2+x",
    ["x^2+x*y+y^2+x", "x^2+y^2+xy+x", "x^2+y^2+x*y+x"],
    "x² + xy + y² + x mod p",
    (x, y, p) => (mulMod(x, x, p) + mulMod(x, y, p) + mulMod(y, y, p) + x) % p,
  ),
  modular("cube_xy", "x^3+xy", ["x^3+x*y", "cube1"], "x³ + xy mod p", (x, y, p) => (mulMod(mulMod(x, x, p), x, p) + mulMod(x, y, p)) % p),
  modular(
    "cube_xy2_y",
    "x^3+xy^2+y",
    ["x^3+x*y^2+y", "cube2"],
    "x³ + xy² + y mod p",
    (x, y, p) => (mulMod(mulMod(x, x, p), x, p) + mulMod(x, mulMod(y, y, p), p) + y) % p,
  ),
  s5("s5", "x·y", ["x.y", "s5_mul", "s5_product", "s5_compose"], "S5 product: apply x, then y", s5Compose),
  s5(
    "s5_conj",
    "x·y·x⁻¹",
    ["x.y.x^-1", "x*y*x^-1", "s5conj", "conj", "s5_conjugate"],
    "S5 conjugation x·y·x⁻¹ (apply x, then y, then x⁻¹)",
    (x, y) => s5Compose(s5Compose(x, y), s5Inverse(x)),
  ),
  s5("s5_xyx", "x·y·x", ["x.y.x", "x*y*x", "s5aba", "s5_aba"], "S5 product x·y·x (apply x, then y, then x)", (x, y) =>
    s5Compose(s5Compose(x, y), x),
  ),
]);

/** Lower-case, no spaces, unicode operators spelled in ASCII: "X · y⁻¹" and "x.y^-1" are the same key. */
function lookupKey(text: string): string {
  return text
    .toLowerCase()
    .replace(/\s+/g, "")
    .replace(/[·⋅∙•]/g, ".")
    .replace(/⁻¹/g, "^-1")
    .replace(/²/g, "^2")
    .replace(/³/g, "^3")
    .replace(/\*\*/g, "^")
    .replace(/−/g, "-")
    .replace(/÷/g, "/");
}

const BY_KEY: ReadonlyMap<string, Operation> = (() => {
  const byKey = new Map<string, Operation>();
  for (const op of OPERATIONS) {
    for (const name of [op.id, op.notation, ...op.aliases]) {
      const key = lookupKey(name);
      const other = byKey.get(key);
      // a spelling shared by two operations would make configs ambiguous
      if (other && other !== op) throw new Error(`operation name "${name}" is used by both ${other.id} and ${op.id}`);
      byKey.set(key, op);
    }
  }
  return byKey;
})();

/** The operation named by an id, the paper's notation or an alias (spaces, case and unicode ignored). */
export function findOperation(text: string): Operation {
  const op = BY_KEY.get(lookupKey(text));
  if (op) return op;
  const choices = OPERATIONS.map((o) => `  ${o.id.padEnd(11)} ${o.notation}`).join("\n");
  throw new Error(`unknown operation "${text}"; valid operations (id, notation):\n${choices}`);
}

export interface OperationTable {
  op: Operation;
  /** p for modular operations, null for S5. */
  modulus: number | null;
  numSymbols: number;
  x: Int32Array;
  y: Int32Array;
  answer: Int32Array;
  size: number;
}

const MAX_MODULUS = 10000;

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/** The full table of an operation, rows in row-major order of (x, y). The modulus is ignored for S5. */
export function buildTable(op: string | Operation, modulus = 97): OperationTable {
  const operation = typeof op === "string" ? findOperation(op) : op;
  let numSymbols: number;
  if (operation.domain === "s5") {
    numSymbols = S5_ORDER;
  } else {
    if (!Number.isInteger(modulus) || modulus < 2 || modulus > MAX_MODULUS) {
      throw new Error(`operation ${operation.notation} needs an integer modulus in 2..${MAX_MODULUS} (got ${modulus})`);
    }
    if (operation.needsPrime && !isPrime(modulus)) {
      throw new Error(`operation ${operation.notation} needs a prime modulus (got ${modulus})`);
    }
    numSymbols = modulus;
  }
  const size = numSymbols * (numSymbols - operation.minY);
  const x = new Int32Array(size);
  const y = new Int32Array(size);
  const answer = new Int32Array(size);
  let row = 0;
  for (let a = 0; a < numSymbols; a++) {
    for (let b = operation.minY; b < numSymbols; b++) {
      x[row] = a;
      y[row] = b;
      answer[row] = operation.compute(a, b, modulus);
      row++;
    }
  }
  return { op: operation, modulus: operation.domain === "s5" ? null : modulus, numSymbols, x, y, answer, size };
}

/** How a symbol is shown: its number mod p, or the permutation's one-line form ("01234"). */
export function symbolLabel(table: OperationTable, i: number): string {
  if (!Number.isInteger(i) || i < 0 || i >= table.numSymbols) {
    throw new Error(`symbol ${i} is out of range 0..${table.numSymbols - 1} for ${table.op.notation}`);
  }
  return table.op.domain === "s5" ? s5Label(i) : String(i);
}
