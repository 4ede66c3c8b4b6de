// Model configurations and their parameters: names, shapes and initial values. Engine-independent, so
// every engine trains the same network from the same initial weights and checkpoints are interchangeable.

import { Rng, Stream } from "../util/rng";
import { NamedTensors, sizeOf, tensor32 } from "../util/tensors";

/** The decoder-only transformer of the paper (Appendix A.1.2) and its variants. */
export interface TransformerConfig {
  kind: "transformer";
  layers: number;
  width: number;
  heads: number;
  /** FFN hidden size = ffnRatio · width. */
  ffnRatio: number;
  /** "post": LN(x + sublayer(x)) as in openai/grok, no final LN; "pre": x + sublayer(LN(x)), final LN. */
  norm: "post" | "pre";
  positions: "sinusoidal" | "learned";
  activation: "relu" | "gelu";
  /** Residual dropout: on each sublayer's output before it joins the residual stream. */
  dropout: number;
  /** Multiplies every initial weight (Omnigrok's initialization scale α); absent means 1. */
  initScale?: number;
  /** The output function of the cross-entropy loss (see OutputKind); absent means softmax. */
  output?: OutputKind;
}

/** A cheap baseline: embeddings of x and y, concatenated → one hidden layer → answer. */
export interface MlpConfig {
  kind: "mlp";
  /** Embedding size of each operand. */
  width: number;
  hidden: number;
  activation: "relu" | "gelu";
  /** Dropout on the hidden layer. */
  dropout: number;
  /** Multiplies every initial weight (Omnigrok's initialization scale α); absent means 1. */
  initScale?: number;
  /** The output function of the cross-entropy loss (see OutputKind); absent means softmax. */
  output?: OutputKind;
}

export type ModelConfig = TransformerConfig | MlpConfig;

/**
 * The function that turns logits into probabilities in the loss: softmax, exp(x_i)/Σ exp(x_j), or StableMax
 * (Prieto et al. 2025), s(x_i)/Σ s(x_j) with s(x) = x + 1 for x ≥ 0 and 1/(1 − x) below, which grows
 * linearly instead of exponentially, so float32 probabilities do not saturate at 1 (Softmax Collapse).
 */
export type OutputKind = "softmax" | "stablemax";
export const OUTPUT_KINDS: readonly OutputKind[] = ["softmax", "stablemax"];

/** What the model needs to know about the data. */
export interface ModelDims {
  /** Input tokens: the symbols, the operation token and "=". */
  vocabSize: number;
  /** Output classes: the answer is always a symbol. */
  numSymbols: number;
  /** Input length: x ∘ y = */
  seqLen: number;
}

/** The paper's network: 2 layers, width 128, 4 heads, post-LN, ReLU, sinusoidal positions. */
export const PAPER_TRANSFORMER: TransformerConfig = {
  kind: "transformer",
  layers: 2,
  width: 128,
  heads: 4,
  ffnRatio: 4,
  norm: "post",
  positions: "sinusoidal",
  activation: "relu",
  dropout: 0,
};

export const DEFAULT_MLP: MlpConfig = { kind: "mlp", width: 64, hidden: 256, activation: "relu", dropout: 0 };

type Init = { kind: "normal"; std: number } | { kind: "uniform"; bound: number } | { kind: "ones" } | { kind: "zeros" };

export interface ParamSpec {
  name: string;
  shape: number[];
  init: Init;
  /** Embeddings and the output head are not counted in the paper's "non-embedding parameters". */
  embedding: boolean;
}

// PyTorch's defaults, as in openai/grok: nn.Linear draws U(±1/√fan_in), nn.Embedding N(0, 1),
// nn.LayerNorm starts at weight 1, bias 0. Linear weights are stored [in, out] (y = x·W), the transpose
// of PyTorch's layout.
const linear = (name: string, fanIn: number, fanOut: number, embedding = false): ParamSpec => ({
  name,
  shape: [fanIn, fanOut],
  init: { kind: "uniform", bound: 1 / Math.sqrt(fanIn) },
  embedding,
});
const layerNorm = (prefix: string, width: number): ParamSpec[] => [
  { name: `${prefix}.weight`, shape: [width], init: { kind: "ones" }, embedding: false },
  { name: `${prefix}.bias`, shape: [width], init: { kind: "zeros" }, embedding: false },
];

export function paramSpecs(model: ModelConfig, dims: ModelDims): ParamSpec[] {
  if (model.kind === "mlp") {
    const d = model.width;
    return [
      { name: "embed.token", shape: [dims.numSymbols, d], init: { kind: "normal", std: 1 }, embedding: true },
      linear("mlp.w1", 2 * d, model.hidden),
      {
        name: "mlp.b1",
        shape: [model.hidden],
        init: { kind: "uniform", bound: 1 / Math.sqrt(2 * d) },
        embedding: false,
      },
      linear("head.weight", model.hidden, dims.numSymbols, true),
      {
        name: "head.bias",
        shape: [dims.numSymbols],
        init: { kind: "uniform", bound: 1 / Math.sqrt(model.hidden) },
        embedding: true,
      },
    ];
  }
  const d = model.width;
  const f = ffnWidth(model);
  const specs: ParamSpec[] = [
    { name: "embed.token", shape: [dims.vocabSize, d], init: { kind: "normal", std: 1 }, embedding: true },
  ];
  if (model.positions === "learned") {
    specs.push({ name: "embed.pos", shape: [dims.seqLen, d], init: { kind: "normal", std: 1 }, embedding: true });
  }
  for (let l = 0; l < model.layers; l++) {
    const b = `blocks.${l}`;
    specs.push(
      linear(`${b}.attn.wq`, d, d),
      linear(`${b}.attn.wk`, d, d),
      linear(`${b}.attn.wv`, d, d),
      linear(`${b}.attn.wo`, d, d),
      ...layerNorm(`${b}.ln1`, d),
      linear(`${b}.mlp.w1`, d, f),
      linear(`${b}.mlp.w2`, f, d),
      ...layerNorm(`${b}.ln2`, d),
    );
  }
  if (model.norm === "pre") specs.push(...layerNorm("final.ln", d));
  specs.push(linear("head.weight", d, dims.numSymbols, true));
  return specs;
}

export function ffnWidth(model: TransformerConfig): number {
  return Math.round(model.ffnRatio * model.width);
}

/** Initial weights, a pure function of the model seed: each tensor draws from its own stream. */
export function initParams(model: ModelConfig, dims: ModelDims, seed: number): NamedTensors {
  const out: NamedTensors = new Map();
  paramSpecs(model, dims).forEach((spec, index) => {
    const t = tensor32(spec.shape);
    const rng = Rng.for(seed, Stream.init, index);
    const init = spec.init;
    const scale = model.initScale ?? 1;
    if (init.kind === "normal") rng.fillNormal(t.data, scale * init.std);
    else if (init.kind === "uniform") rng.fillUniform(t.data, -scale * init.bound, scale * init.bound);
    else if (init.kind === "ones") t.data.fill(scale);
    out.set(spec.name, t);
  });
  return out;
}

export function countParams(model: ModelConfig, dims: ModelDims): { total: number; nonEmbedding: number } {
  let total = 0;
  let nonEmbedding = 0;
  for (const spec of paramSpecs(model, dims)) {
    const n = sizeOf(spec.shape);
    total += n;
    if (!spec.embedding) nonEmbedding += n;
  }
  return { total, nonEmbedding };
}

/** Fixed sinusoidal positions of openai/grok: sin(pos/10000^(i/d)) at even i, cos(pos/10000^((i-1)/d)) at odd i. */
export function sinusoidalPositions(seqLen: number, width: number): Float32Array {
  const out = new Float32Array(seqLen * width);
  for (let pos = 0; pos < seqLen; pos++) {
    for (let i = 0; i < width; i++) {
      const even = i - (i % 2);
      const angle = pos / Math.pow(10000, even / width);
      out[pos * width + i] = i % 2 === 0 ? Math.sin(angle) : Math.cos(angle);
    }
  }
  return out;
}

/** Clear errors for impossible shapes; called before anything is created on disk. */
export function validateModelConfig(model: ModelConfig): void {
  const fail = (msg: string): never => {
    throw new Error(`model: ${msg}`);
  };
  const positiveInt = (name: string, v: number) => {
    if (!Number.isInteger(v) || v <= 0) fail(`${name} must be a positive integer (got ${v})`);
  };
  if (!["relu", "gelu"].includes(model.activation)) fail(`activation must be relu or gelu (got ${model.activation})`);
  if (!(model.dropout >= 0 && model.dropout < 1)) fail(`dropout must be in [0, 1) (got ${model.dropout})`);
  positiveInt("width", model.width);
  if (model.initScale !== undefined && !(Number.isFinite(model.initScale) && model.initScale > 0))
    fail(`initScale must be a positive number (got ${model.initScale})`);
  if (model.output !== undefined && !OUTPUT_KINDS.includes(model.output))
    fail(`output must be softmax or stablemax (got ${model.output})`);
  if (model.kind === "mlp") {
    positiveInt("hidden", model.hidden);
    return;
  }
  if (model.kind !== "transformer") fail(`kind must be transformer or mlp (got ${(model as { kind: string }).kind})`);
  positiveInt("layers", model.layers);
  positiveInt("heads", model.heads);
  if (model.width % model.heads !== 0) fail(`width ${model.width} is not divisible by heads ${model.heads}`);
  if (!(model.ffnRatio > 0) || !Number.isInteger(ffnWidth(model)) || ffnWidth(model) <= 0) {
    fail(`ffnRatio must be positive (got ${model.ffnRatio})`);
  }
  if (!["post", "pre"].includes(model.norm)) fail(`norm must be post or pre (got ${model.norm})`);
  if (!["sinusoidal", "learned"].includes(model.positions)) {
    fail(`positions must be sinusoidal or learned (got ${model.positions})`);
  }
}
