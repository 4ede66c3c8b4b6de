// Summaries of sweep results for figures: group runs (by variant and grid values, across seeds) and take the
// median, quartiles, mean and range of a quantity.

import type { FieldValue } from "../sweeps/spec";
import type { SweepRunResult } from "../sweeps/runner";

export interface GroupSummary {
  /** The group's key values, by field path ("variant" for the variant's name). */
  key: Record<string, FieldValue>;
  runs: SweepRunResult[];
  /** The quantity for each run that has it (null values, e.g. "never reached 99%", are left out). */
  values: number[];
  /** Runs without a value (and not counted through nullAs). */
  missing: number;
  median: number;
  q25: number;
  q75: number;
  mean: number;
  min: number;
  max: number;
}

/** The q-quantile (0..1) of values, by linear interpolation between order statistics; NaN when empty. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  if (lo === hi || sorted[lo] === sorted[hi]) return sorted[lo];
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function keyValue(run: SweepRunResult, field: string): FieldValue {
  if (field === "variant") return run.variant;
  if (!(field in run.params))
    throw new Error(
      `group by "${field}": not a grid field of this sweep (grid: ${Object.keys(run.params).join(", ") || "none"})`,
    );
  return run.params[field];
}

/**
 * Groups runs by the given fields (grid paths or "variant"), in the order groups first appear, and
 * summarizes `value` over each group, e.g. summarizeRuns(result.runs, ["data.trainFraction"], (r) => r.firstVal99).
 * With `nullAs` (e.g. Infinity for "not within the budget"), runs without a value count as that value, so a
 * median stays honest when some runs never got there: it is Infinity when half of them did not.
 */
export function summarizeRuns(
  runs: SweepRunResult[],
  by: string[],
  value: (run: SweepRunResult) => number | null,
  opts: { nullAs?: number } = {},
): GroupSummary[] {
  const groups = new Map<string, SweepRunResult[]>();
  for (const run of runs) {
    const k = JSON.stringify(by.map((f) => keyValue(run, f)));
    groups.set(k, [...(groups.get(k) ?? []), run]);
  }
  return [...groups.values()].map((members) => {
    const key: Record<string, FieldValue> = {};
    for (const f of by) key[f] = keyValue(members[0], f);
    const values = members
      .map(value)
      .map((v) => (v === null && opts.nullAs !== undefined ? opts.nullAs : v))
      .filter((v): v is number => v !== null && !Number.isNaN(v));
    return {
      key,
      runs: members,
      values,
      missing: members.length - values.length,
      median: quantile(values, 0.5),
      q25: quantile(values, 0.25),
      q75: quantile(values, 0.75),
      mean: values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN,
      min: values.length ? Math.min(...values) : NaN,
      max: values.length ? Math.max(...values) : NaN,
    };
  });
}
