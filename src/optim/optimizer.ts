// The optimizers of the paper's Fig 2 (left) on plain Float32Arrays. One implementation serves every engine,
// so a variant means the same thing whichever engine computes the gradients, and its state is a set of named
// tensors that checkpoints save exactly.

import { Rng, Stream } from "../util/rng";
import { NamedTensors } from "../util/tensors";

export interface OptimizerConfig {
  kind: "adamw" | "adam" | "sgd";
  lr: number;
  /** Linear warmup from lr/warmupSteps to lr over the first warmupSteps updates (0: none). */
  warmupSteps: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** SGD momentum (ignored by Adam/AdamW). */
  momentum: number;
  /** AdamW: decoupled, w ← w − lr·wd·(w − target). Adam and SGD: an L2 term wd·(w − target) in the gradient. */
  weightDecay: number;
  /** target = 0 ("zero") or the initial weights ("init"). */
  decayToward: "zero" | "init";
  /** σ of Gaussian noise added to each update, in units of the normalized update (openai/grok's noise_factor). */
  updateNoise: number;
  /** σ of Gaussian noise added to the weights for each forward/backward pass; the update applies to the clean weights. */
  weightNoise: number;
  /** Grokfast-EMA (Lee et al. 2024): g ← g + λ·ema, ema ← α·ema + (1−α)·g. Null: off. */
  grokfast: { alpha: number; lambda: number } | null;
  /**
   * ⊥Grad (Prieto et al. 2025): each tensor's gradient loses its component along the tensor's weights before
   * the update (after Grokfast); with AdamW this is ⊥AdamW. Absent: off.
   */
  orthogonalGrad?: boolean;
}

/** The paper's default (Appendix A.1.2): AdamW, lr 1e-3, wd 1, β = (0.9, 0.98), 10 warmup steps. */
export const PAPER_OPTIMIZER: OptimizerConfig = {
  kind: "adamw",
  lr: 1e-3,
  warmupSteps: 10,
  beta1: 0.9,
  beta2: 0.98,
  eps: 1e-8,
  momentum: 0,
  weightDecay: 1,
  decayToward: "zero",
  updateNoise: 0,
  weightNoise: 0,
  grokfast: null,
};

export function learningRate(cfg: OptimizerConfig, step: number): number {
  if (cfg.warmupSteps > 0 && step < cfg.warmupSteps) return (cfg.lr * (step + 1)) / cfg.warmupSteps;
  return cfg.lr;
}

export function validateOptimizerConfig(cfg: OptimizerConfig): void {
  const fail = (msg: string): never => {
    throw new Error(`optimizer: ${msg}`);
  };
  if (!["adamw", "adam", "sgd"].includes(cfg.kind)) fail(`kind must be adamw, adam or sgd (got ${cfg.kind})`);
  if (!(cfg.lr > 0 && Number.isFinite(cfg.lr))) fail(`lr must be a positive number (got ${cfg.lr})`);
  if (!Number.isInteger(cfg.warmupSteps) || cfg.warmupSteps < 0)
    fail(`warmupSteps must be an integer ≥ 0 (got ${cfg.warmupSteps})`);
  if (!(cfg.beta1 >= 0 && cfg.beta1 < 1)) fail(`beta1 must be in [0, 1) (got ${cfg.beta1})`);
  if (!(cfg.beta2 >= 0 && cfg.beta2 < 1)) fail(`beta2 must be in [0, 1) (got ${cfg.beta2})`);
  if (!(cfg.eps > 0)) fail(`eps must be positive (got ${cfg.eps})`);
  if (!(cfg.momentum >= 0 && cfg.momentum < 1)) fail(`momentum must be in [0, 1) (got ${cfg.momentum})`);
  if (!(cfg.weightDecay >= 0 && Number.isFinite(cfg.weightDecay)))
    fail(`weightDecay must be ≥ 0 (got ${cfg.weightDecay})`);
  if (!["zero", "init"].includes(cfg.decayToward)) fail(`decayToward must be zero or init (got ${cfg.decayToward})`);
  if (!(cfg.updateNoise >= 0)) fail(`updateNoise must be ≥ 0 (got ${cfg.updateNoise})`);
  if (!(cfg.weightNoise >= 0)) fail(`weightNoise must be ≥ 0 (got ${cfg.weightNoise})`);
  if (cfg.grokfast) {
    const { alpha, lambda } = cfg.grokfast;
    if (!(alpha >= 0 && alpha < 1)) fail(`grokfast alpha must be in [0, 1) (got ${alpha})`);
    if (!(lambda >= 0)) fail(`grokfast lambda must be ≥ 0 (got ${lambda})`);
  }
  if (cfg.orthogonalGrad !== undefined && typeof cfg.orthogonalGrad !== "boolean")
    fail(`orthogonalGrad must be true or false (got ${JSON.stringify(cfg.orthogonalGrad)})`);
}

/**
 * ⊥Grad of one tensor, in place: g ← g − (g·w / w·w)·w, the gradient without its component along the
 * weights w (the direction that only scales the weights, which is what lets the logits grow until the
 * softmax saturates). Dot products in double; an all-zero w (a bias at its initial value) has no direction
 * to remove and leaves g as it is.
 */
export function orthogonalizeGradient(g: Float32Array, w: Float32Array): void {
  let gw = 0;
  let ww = 0;
  for (let i = 0; i < w.length; i++) {
    gw += g[i] * w[i];
    ww += w[i] * w[i];
  }
  if (ww === 0) return;
  const c = gw / ww;
  for (let i = 0; i < w.length; i++) g[i] -= c * w[i];
}

/**
 * One Adam/AdamW update of n parameters in place (see engines/fast/kernels.ts for the contract):
 * decay toward `init` (or 0), decoupled (AdamW) or in the gradient (Adam); then the bias-corrected step,
 * plus `noise` (σ·N(0,1) per parameter) on the normalized update. Double-precision arithmetic in this exact
 * order, so a native kernel can match it bit for bit.
 */
export type AdamUpdate = (
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  init: Float32Array | null,
  noise: Float32Array | null,
  n: number,
  lr: number,
  beta1: number,
  beta2: number,
  eps: number,
  bc1: number,
  bc2: number,
  weightDecay: number,
  decoupled: boolean,
) => void;

export const adamUpdate: AdamUpdate = (
  p,
  g,
  m,
  v,
  init,
  noise,
  n,
  lr,
  beta1,
  beta2,
  eps,
  bc1,
  bc2,
  weightDecay,
  decoupled,
) => {
  const sqrtBc2 = Math.sqrt(bc2);
  const stepSize = lr / bc1;
  for (let i = 0; i < n; i++) {
    let gi = g[i];
    if (weightDecay > 0) {
      const decay = weightDecay * (init ? p[i] - init[i] : p[i]);
      if (decoupled) p[i] -= lr * decay;
      else gi += decay;
    }
    m[i] = beta1 * m[i] + (1 - beta1) * gi;
    v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
    let u = m[i] / (Math.sqrt(v[i]) / sqrtBc2 + eps);
    if (noise) u += noise[i];
    p[i] -= stepSize * u;
  }
};

/** Optimizer state slot names as they appear in checkpoints: "optim.<slot>.<param>". */
const SLOT_PREFIX = "optim.";

/** Per-parameter state: m, v (Adam), buf (SGD momentum), init (decay toward init), ema (Grokfast). */
export type OptimizerSlot = "m" | "v" | "buf" | "init" | "ema";

/** The state slots a configuration keeps, and no others (every engine keeps and checkpoints exactly these). */
export function optimizerSlots(cfg: OptimizerConfig): OptimizerSlot[] {
  const slots: OptimizerSlot[] = cfg.kind === "sgd" ? (cfg.momentum > 0 ? ["buf"] : []) : ["m", "v"];
  if (cfg.weightDecay > 0 && cfg.decayToward === "init") slots.push("init");
  if (cfg.grokfast) slots.push("ema");
  return slots;
}

export class Optimizer {
  private readonly slots = new Map<OptimizerSlot, Map<string, Float32Array>>();

  constructor(
    readonly cfg: OptimizerConfig,
    /** Seeds the update noise; the same seed and step give the same noise. */
    private readonly seed: number,
    initialWeights: NamedTensors,
    /** The Adam/AdamW inner loop: this module's, or an engine's native kernel with the same arithmetic. */
    private readonly adam: AdamUpdate = adamUpdate,
  ) {
    // every slot starts at zero, except init: a copy of the initial weights
    for (const slot of optimizerSlots(cfg))
      this.slots.set(
        slot,
        new Map(
          [...initialWeights].map(([name, t]) => [
            name,
            slot === "init" ? new Float32Array(t.data) : new Float32Array(t.data.length),
          ]),
        ),
      );
  }

  /**
   * One update of `weights` in place from `grads` (same names), for 0-based `step`. Grads may be modified
   * (Grokfast filters them and ⊥Grad projects them in place).
   */
  update(weights: NamedTensors, grads: Map<string, Float32Array>, step: number): void {
    const cfg = this.cfg;
    const lr = learningRate(cfg, step);
    const noise = cfg.updateNoise > 0 ? Rng.for(this.seed, Stream.updateNoise, step) : null;
    const t = step + 1;
    const bc1 = 1 - Math.pow(cfg.beta1, t);
    const bc2 = 1 - Math.pow(cfg.beta2, t);
    const wd = cfg.weightDecay;
    for (const [name, w] of weights) {
      const g = grads.get(name);
      if (!g) throw new Error(`optimizer: no gradient for ${name}`);
      const p = w.data;
      const init = this.slots.get("init")?.get(name);
      const ema = this.slots.get("ema")?.get(name);
      if (ema && cfg.grokfast) {
        const { alpha, lambda } = cfg.grokfast;
        for (let i = 0; i < g.length; i++) {
          ema[i] = alpha * ema[i] + (1 - alpha) * g[i];
          g[i] += lambda * ema[i];
        }
      }
      // as in the paper's code, ⊥Grad takes the gradient the optimizer would use: after the Grokfast filter
      if (cfg.orthogonalGrad) orthogonalizeGradient(g, p);
      if (cfg.kind === "sgd") {
        const buf = this.slots.get("buf")?.get(name);
        for (let i = 0; i < p.length; i++) {
          let gi = g[i];
          if (wd > 0) gi += wd * (init ? p[i] - init[i] : p[i]);
          if (buf) gi = buf[i] = cfg.momentum * buf[i] + gi;
          let u = gi;
          if (noise) u += cfg.updateNoise * noise.normal();
          p[i] -= lr * u;
        }
        continue;
      }
      const m = this.slots.get("m")!.get(name)!;
      const v = this.slots.get("v")!.get(name)!;
      let noiseValues: Float32Array | null = null;
      if (noise) {
        noiseValues = new Float32Array(p.length);
        for (let i = 0; i < p.length; i++) noiseValues[i] = cfg.updateNoise * noise.normal();
      }
      this.adam(
        p,
        g,
        m,
        v,
        init ?? null,
        noiseValues,
        p.length,
        lr,
        cfg.beta1,
        cfg.beta2,
        cfg.eps,
        bc1,
        bc2,
        wd,
        cfg.kind === "adamw",
      );
    }
  }

  /** The state as named tensors ("optim.m.blocks.0.attn.wq", …), shapes taken from `weights`. */
  state(weights: NamedTensors): NamedTensors {
    const out: NamedTensors = new Map();
    for (const [slot, perParam] of this.slots) {
      for (const [name, data] of perParam) {
        out.set(`${SLOT_PREFIX}${slot}.${name}`, {
          shape: [...weights.get(name)!.shape],
          data: new Float32Array(data),
        });
      }
    }
    return out;
  }

  /** Restores state written by `state`; every slot this configuration uses must be present. */
  loadState(state: NamedTensors): void {
    for (const [slot, perParam] of this.slots) {
      for (const [name, data] of perParam) {
        const key = `${SLOT_PREFIX}${slot}.${name}`;
        const saved = state.get(key);
        if (!saved) throw new Error(`optimizer state is missing ${key}`);
        if (saved.data.length !== data.length)
          throw new Error(`optimizer state ${key} has ${saved.data.length} values, expected ${data.length}`);
        data.set(saved.data);
      }
    }
  }

  static isStateName(name: string): boolean {
    return name.startsWith(SLOT_PREFIX);
  }
}
