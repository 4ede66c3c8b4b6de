// The models' forward passes in TensorFlow.js ops; tfjs's autodiff gives the backward pass.
//
// Written for the wasm backend's fast paths: its transposed matMuls and high-rank transposes are ~10× slower
// than a plain matMul, so every matrix product goes through `linear` (2-D only, explicit 2-D transposes in
// its gradient), embeddings are one-hot products, and attention over the 4-token context is computed with
// broadcasting instead of batched matMuls over transposed heads.

import type * as TF from "@tensorflow/tfjs";
import { MlpConfig, ModelConfig, ModelDims, TransformerConfig, sinusoidalPositions } from "../../model/config";
import { Tf } from "./backend";

export type Params = Record<string, TF.Tensor>;

export interface ForwardInputs {
  /** int32 [batch, seqLen] */
  inputs: TF.Tensor2D;
  /** Dropout masks from engines/engine.dropoutMasks, as tensors; empty when not training. */
  masks: TF.Tensor[];
}

export class TfjsModel {
  private readonly linear: (x: TF.Tensor2D, w: TF.Tensor2D) => TF.Tensor2D;
  private readonly softmaxKeys: (scores: TF.Tensor4D) => TF.Tensor4D;
  private readonly positions: TF.Tensor2D | null;
  private readonly causalMask: TF.Tensor4D | null;

  constructor(
    private readonly tf: Tf,
    readonly config: ModelConfig,
    readonly dims: ModelDims,
  ) {
    // y = x·W with the gradients written as plain matMuls of explicitly transposed 2-D operands.
    this.linear = tf.customGrad((...args: Array<TF.Tensor | TF.GradSaveFunc>) => {
      const [x, w, save] = args as [TF.Tensor2D, TF.Tensor2D, TF.GradSaveFunc];
      save([x, w]);
      return {
        value: tf.matMul(x, w),
        gradFunc: (dy: TF.Tensor, saved: TF.Tensor[]) => {
          const [sx, sw] = saved as TF.Tensor2D[];
          return [tf.matMul(dy as TF.Tensor2D, tf.transpose(sw)), tf.matMul(tf.transpose(sx), dy as TF.Tensor2D)];
        },
      };
    }) as (x: TF.Tensor2D, w: TF.Tensor2D) => TF.Tensor2D;
    // Softmax over the key axis (axis 2 of [batch, query, key, head]) with its analytic gradient
    // dS = A ⊙ (dA − Σ_k dA ⊙ A), so no gradient flows through the max subtracted for stability.
    this.softmaxKeys = tf.customGrad((...args: Array<TF.Tensor | TF.GradSaveFunc>) => {
      const [scores, save] = args as [TF.Tensor4D, TF.GradSaveFunc];
      const shifted = tf.sub(scores, tf.max(scores, 2, true));
      const e = tf.exp(shifted);
      const a = tf.div(e, tf.sum(e, 2, true));
      save([a]);
      return {
        value: a,
        gradFunc: (dy: TF.Tensor, saved: TF.Tensor[]) => {
          const [sa] = saved;
          return tf.mul(sa, tf.sub(dy, tf.sum(tf.mul(dy, sa), 2, true)));
        },
      };
    }) as (scores: TF.Tensor4D) => TF.Tensor4D;

    if (config.kind === "transformer") {
      this.positions =
        config.positions === "sinusoidal"
          ? tf.keep(tf.tensor2d(sinusoidalPositions(dims.seqLen, config.width), [dims.seqLen, config.width]))
          : null;
      const t = dims.seqLen;
      const mask = new Float32Array(t * t);
      for (let q = 0; q < t; q++) for (let k = 0; k < t; k++) mask[q * t + k] = k <= q ? 0 : -1e9;
      this.causalMask = tf.keep(tf.tensor4d(mask, [1, t, t, 1]));
    } else {
      this.positions = null;
      this.causalMask = null;
    }
  }

  dispose(): void {
    this.positions?.dispose();
    this.causalMask?.dispose();
  }

  /** Logits [batch, numSymbols] for the answer token. */
  logits(p: Params, x: ForwardInputs): TF.Tensor2D {
    return this.config.kind === "transformer" ? this.transformer(this.config, p, x) : this.mlp(this.config, p, x);
  }

  private activation(kind: "relu" | "gelu", x: TF.Tensor): TF.Tensor {
    const tf = this.tf;
    if (kind === "relu") return tf.relu(x);
    // exact GELU, as PyTorch's nn.GELU: x·Φ(x)
    return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
  }

  private layerNorm(x: TF.Tensor2D, weight: TF.Tensor, bias: TF.Tensor): TF.Tensor2D {
    const tf = this.tf;
    const mean = tf.mean(x, 1, true);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), 1, true);
    return tf.add(tf.mul(tf.mul(centered, tf.rsqrt(tf.add(variance, 1e-5))), weight), bias) as TF.Tensor2D;
  }

  private embed(p: Params, inputs: TF.Tensor2D, vocab: number): TF.Tensor2D {
    const tf = this.tf;
    const oneHot = tf.cast(tf.oneHot(tf.reshape(inputs, [-1]) as TF.Tensor1D, vocab), "float32") as TF.Tensor2D;
    return this.linear(oneHot, p["embed.token"] as TF.Tensor2D);
  }

  private transformer(cfg: TransformerConfig, p: Params, { inputs, masks }: ForwardInputs): TF.Tensor2D {
    const tf = this.tf;
    const [batch, t] = inputs.shape;
    const d = cfg.width;
    const h = cfg.heads;
    const dh = d / h;
    const rows = batch * t;
    const positions = this.positions ?? (p["embed.pos"] as TF.Tensor2D);
    // the residual stream, [batch·t, d] (row = example·t + position)
    let x = tf.reshape(tf.add(tf.reshape(this.embed(p, inputs, this.dims.vocabSize), [batch, t, d]), positions), [
      rows,
      d,
    ]) as TF.Tensor2D;

    // Attention of every position (queryRows = batch·t) or of the last position only (queryRows = batch):
    // the last layer needs nothing else, since only the answer position is scored.
    const attention = (xin: TF.Tensor2D, query: TF.Tensor2D, b: string): TF.Tensor2D => {
      const tq = query.shape[0] / batch;
      const q = tf.reshape(this.linear(query, p[`${b}.attn.wq`] as TF.Tensor2D), [batch, tq, 1, h, dh]);
      const k = tf.reshape(this.linear(xin, p[`${b}.attn.wk`] as TF.Tensor2D), [batch, 1, t, h, dh]);
      const v = tf.reshape(this.linear(xin, p[`${b}.attn.wv`] as TF.Tensor2D), [batch, 1, t, h, dh]);
      // scores [batch, query, key, head]; the last query sees every key, so it needs no mask
      let scores = tf.mul(tf.sum(tf.mul(q, k), 4), 1 / Math.sqrt(dh)) as TF.Tensor4D;
      if (tq === t) scores = tf.add(scores, this.causalMask!) as TF.Tensor4D;
      const att = this.softmaxKeys(scores);
      // Σ_key att · v → [batch, query, head, dh]
      const out = tf.sum(tf.mul(tf.reshape(att, [batch, tq, t, h, 1]), v), 2);
      return this.linear(tf.reshape(out, [batch * tq, d]) as TF.Tensor2D, p[`${b}.attn.wo`] as TF.Tensor2D);
    };
    const ffn = (xin: TF.Tensor2D, b: string): TF.Tensor2D =>
      this.linear(
        this.activation(cfg.activation, this.linear(xin, p[`${b}.mlp.w1`] as TF.Tensor2D)) as TF.Tensor2D,
        p[`${b}.mlp.w2`] as TF.Tensor2D,
      );
    const ln = (xin: TF.Tensor2D, name: string) => this.layerNorm(xin, p[`${name}.weight`], p[`${name}.bias`]);

    const lastPosition = (xs: TF.Tensor2D) =>
      tf.reshape(tf.slice(tf.reshape(xs, [batch, t, d]), [0, t - 1, 0], [batch, 1, d]), [batch, d]) as TF.Tensor2D;
    for (let l = 0; l < cfg.layers; l++) {
      const b = `blocks.${l}`;
      const final = l === cfg.layers - 1;
      // dropout masks cover every position; the last layer uses the rows of the last position
      const drop = (y: TF.Tensor2D, site: number): TF.Tensor2D => {
        if (!masks.length) return y;
        const m = final ? lastPosition(masks[site] as TF.Tensor2D) : masks[site];
        return tf.mul(y, m) as TF.Tensor2D;
      };
      if (cfg.norm === "post") {
        const residual = final ? lastPosition(x) : x;
        x = ln(tf.add(residual, drop(attention(x, residual, b), 2 * l)) as TF.Tensor2D, `${b}.ln1`);
        x = ln(tf.add(x, drop(ffn(x, b), 2 * l + 1)) as TF.Tensor2D, `${b}.ln2`);
      } else {
        const normed = ln(x, `${b}.ln1`);
        const residual = final ? lastPosition(x) : x;
        x = tf.add(residual, drop(attention(normed, final ? lastPosition(normed) : normed, b), 2 * l)) as TF.Tensor2D;
        x = tf.add(x, drop(ffn(ln(x, `${b}.ln2`), b), 2 * l + 1)) as TF.Tensor2D;
      }
    }
    // x now holds the last position only: [batch, d]
    let last = x;
    if (cfg.norm === "pre") last = ln(last, "final.ln");
    return this.linear(last, p["head.weight"] as TF.Tensor2D);
  }

  private mlp(cfg: MlpConfig, p: Params, { inputs, masks }: ForwardInputs): TF.Tensor2D {
    const tf = this.tf;
    const batch = inputs.shape[0];
    // the operands are positions 0 (x) and 2 (y) of x ∘ y =
    const xy = tf.gather(inputs, [0, 2], 1) as TF.Tensor2D;
    const emb = tf.reshape(this.embed(p, xy, this.dims.numSymbols), [batch, 2 * cfg.width]) as TF.Tensor2D;
    let hidden = this.activation(
      cfg.activation,
      tf.add(this.linear(emb, p["mlp.w1"] as TF.Tensor2D), p["mlp.b1"]),
    ) as TF.Tensor2D;
    if (masks.length) hidden = tf.mul(hidden, masks[0]) as TF.Tensor2D;
    return tf.add(this.linear(hidden, p["head.weight"] as TF.Tensor2D), p["head.bias"]) as TF.Tensor2D;
  }
}
