// Loss spikes in a run's metrics, and what the weights did around them (Thilak et al. 2022, "the slingshot
// mechanism": late in training, with Adam, the last layer's weight norm grows until the training loss spikes,
// the network recovers, and generalization often comes with these cycles).
//
// A spike is found by a rule in code: a run of consecutive evaluations whose training loss is more than `factor`
// times the median of the `window` evaluations before the spike began (and above `floor`, so that noise in a
// loss that is already tiny does not count).

import { MetricsRow } from "../store/run-store";

export interface SpikeRule {
  /** The loss must exceed this multiple of the running median (default 10). */
  factor: number;
  /** Evaluations in the running median (default 20). */
  window: number;
  /** ...and this absolute training loss (default 0.1: below it accuracy barely moves). */
  floor: number;
}

export const DEFAULT_SPIKE_RULE: SpikeRule = { factor: 10, window: 20, floor: 0.1 };

export interface LossSpike {
  /** The first and last evaluation steps above the threshold, and the step of the highest loss. */
  start: number;
  end: number;
  peak: number;
  peakLoss: number;
  /** The running median the spike is measured against. */
  baseline: number;
  /** Training accuracy just before the spike and at its lowest during it. */
  accBefore: number;
  accLowest: number;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The spikes of the training loss in `rows` (a run's metrics, in step order). */
export function detectSpikes(rows: MetricsRow[], rule: Partial<SpikeRule> = {}): LossSpike[] {
  const { factor, window, floor } = { ...DEFAULT_SPIKE_RULE, ...rule };
  if (!(factor > 1) || !Number.isInteger(window) || window < 1 || !(floor >= 0))
    throw new Error(
      `spike rule: factor > 1, window a positive integer, floor ≥ 0 (got ${factor}, ${window}, ${floor})`,
    );
  const spikes: LossSpike[] = [];
  let i = window;
  while (i < rows.length) {
    const baseline = median(rows.slice(i - window, i).map((r) => r.train_loss));
    const above = (r: MetricsRow) => r.train_loss > factor * baseline && r.train_loss > floor;
    if (!above(rows[i])) {
      i++;
      continue;
    }
    let j = i;
    while (j + 1 < rows.length && above(rows[j + 1])) j++;
    const during = rows.slice(i, j + 1);
    const top = during.reduce((a, b) => (b.train_loss > a.train_loss ? b : a));
    spikes.push({
      start: rows[i].step,
      end: rows[j].step,
      peak: top.step,
      peakLoss: top.train_loss,
      baseline,
      accBefore: rows[i - 1].train_acc,
      accLowest: Math.min(...during.map((r) => r.train_acc)),
    });
    // the next spike is measured against evaluations after this one
    i = j + 1 + window;
  }
  return spikes;
}

/**
 * How a metrics column (e.g. "norm.head.weight") changed over the `lead` evaluations before a spike: its
 * value at the last evaluation before the spike over its value `lead` evaluations earlier (NaN when the run
 * has fewer evaluations before it).
 */
export function growthBefore(rows: MetricsRow[], spike: LossSpike, column: string, lead: number): number {
  const i = rows.findIndex((r) => r.step === spike.start);
  if (i - 1 - lead < 0) return NaN;
  return rows[i - 1][column] / rows[i - 1 - lead][column];
}

/** Whether `step` falls within a spike, widened by `margin` steps on each side. */
export function duringSpike(spikes: LossSpike[], step: number | null, margin: number): LossSpike | null {
  if (step === null) return null;
  return spikes.find((s) => step >= s.start - margin && step <= s.end + margin) ?? null;
}
