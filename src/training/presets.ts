// Named starting configurations for `grok train --preset` and the demo.

import { PAPER_TRANSFORMER } from "../model/config";
import { paperConfig, RunConfig } from "./config";

/**
 * The demo: small enough to train in a few minutes on a 2-core laptop, and still the paper's effect:
 * training accuracy reaches 99% long before validation accuracy does. Calibrated by running it here.
 */
export function demoConfig(): RunConfig {
  const cfg = paperConfig();
  cfg.data = { op: "add", modulus: 47, trainFraction: 0.4, splitSeed: 0, outliers: 0 };
  cfg.model = { ...PAPER_TRANSFORMER, layers: 1, width: 64, heads: 4 };
  cfg.optimizer = { ...cfg.optimizer, lr: 3e-3 };
  // the paper's minibatch rule; stop 500 steps after validation accuracy holds at 99%
  cfg.training = { ...cfg.training, steps: 8000, batchSize: "paper", earlyStopHold: 500 };
  return cfg;
}

/** Fig 1 (left) of the paper: Adam without weight decay, 10⁶ updates. */
export function fig1Config(): RunConfig {
  const cfg = paperConfig();
  cfg.optimizer = { ...cfg.optimizer, kind: "adam", weightDecay: 0 };
  cfg.training = { ...cfg.training, steps: 1_000_000 };
  return cfg;
}

export const PRESETS: Record<string, () => RunConfig> = {
  paper: paperConfig,
  fig1: fig1Config,
  demo: demoConfig,
};
