// The phases of learning of Liu et al. (2022, "Towards understanding grokking"), read off one run by rules in
// code: when training and validation accuracy first reach 99%, if ever.

export const PHASES = ["comprehension", "delayed", "grokking", "memorization", "confusion"] as const;
export type Phase = (typeof PHASES)[number];

/** What each phase means, for legends and notebooks. */
export const PHASE_RULES: Record<Phase, string> = {
  comprehension: "training and validation accuracy both reach 99%, validation within 2× the steps of training",
  delayed: "validation reaches 99% between 2× and 10× the steps training took (between the two phases above)",
  grokking: "validation accuracy reaches 99% at least 10× later than training accuracy does",
  memorization: "training accuracy reaches 99%, validation accuracy never does",
  confusion: "training accuracy never reaches 99%",
};

export interface PhaseOfRun {
  phase: Phase;
  /** firstVal99 / firstTrain99 (null when either is missing). */
  delay: number | null;
}

/**
 * The phase of a run from the first steps at which training and validation accuracy reached 99% (null: never).
 * A run whose validation accuracy got there first (or at once) counts as comprehension.
 */
export function classifyRun(firstTrain99: number | null, firstVal99: number | null): PhaseOfRun {
  if (firstTrain99 === null) return { phase: "confusion", delay: null };
  if (firstVal99 === null) return { phase: "memorization", delay: null };
  const delay = firstVal99 / Math.max(firstTrain99, 1);
  const phase = delay <= 2 ? "comprehension" : delay >= 10 ? "grokking" : "delayed";
  return { phase, delay };
}
