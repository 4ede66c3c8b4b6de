// Named starting configurations for `grok train --preset` and the demo.

import { PAPER_TRANSFORMER } from "../model/config";
import { FieldValue, paperConfig, RunConfig } from "../config/run-config";

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
  cfg.training = { ...cfg.training, steps: 10000, batchSize: "paper", earlyStopHold: 500 };
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

const ADAM = { "optimizer.kind": "adam", "optimizer.weightDecay": 0 };

/**
 * The nine optimizer variants of the paper's Fig 2 (left), each a set of field changes to a base config
 * (the paper trains them on the S5 product): usable as a sweep's `variants` or with withChanges(). The
 * learning rate of the other variants is the base's (the paper's 10⁻³). The paper gives no σ for the
 * update noise; 0.1 is our choice.
 */
export const FIG2_OPTIMIZER_VARIANTS: Record<string, Record<string, FieldValue>> = {
  "full-batch Adam": { ...ADAM, "training.batchSize": "full" },
  "minibatch Adam": { ...ADAM, "training.batchSize": "paper" },
  "full-batch Adam, update noise": { ...ADAM, "training.batchSize": "full", "optimizer.updateNoise": 0.1 },
  "Adam, residual dropout 0.1": { ...ADAM, "model.dropout": 0.1 },
  "AdamW, weight decay 1": { "optimizer.kind": "adamw", "optimizer.weightDecay": 1 },
  "AdamW, decay toward init": {
    "optimizer.kind": "adamw",
    "optimizer.weightDecay": 1,
    "optimizer.decayToward": "init",
  },
  "Adam, lr 3e-4": { ...ADAM, "optimizer.lr": 3e-4 },
  "Adam, lr 3e-3": { ...ADAM, "optimizer.lr": 3e-3 },
  "Adam, weight noise 0.01": { ...ADAM, "optimizer.weightNoise": 0.01 },
};
