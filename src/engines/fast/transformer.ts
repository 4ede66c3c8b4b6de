// The transformer's forward and backward passes on the fast engine's kernels, in the style of llm.c: one
// function per stage (embedding, block, head), each forward beside its backward, and the activations the
// backward pass needs in records of plain buffers.
//
// Only the work the loss needs is done, exactly:
// - Positions 0 and 1 (x and the operation token) see nothing after them, so their residual stream depends
//   only on (x, op). It is computed once per distinct prefix in the batch (at most p rows instead of one per
//   example) and its keys and values are shared by every example with that prefix. Dropout masks differ
//   per example, so with dropout every example keeps its own prefix.
// - The last layer needs queries, the attention output, the FFN and the output head only at the answer
//   position (3); positions 0–2 contribute keys and values alone.
//
// Rows of the "prefix" stream are (prefix u, position t ∈ {0,1}) → u·2+t; rows of the "suffix" stream are
// (example e, position 2+t) → e·2+t. Weights are stored [in, out] (y = x·W), as everywhere in the project.
// Shapes: d = width, f = FFN width, n = numSymbols, R = a stream's rows, Q = its query rows.
//
// Every buffer lives in the workspace under its role (block, stream, tensor), so the next call to run()
// overwrites all of them, the logits and losses it returned included.

import { ModelDims, TransformerConfig, ffnWidth, sinusoidalPositions } from "../../model/config";
import type { ForwardPass } from "../base";
import { Kernels } from "./kernels";
import { tensor, Weights } from "./weights";
import { Workspace } from "./workspace";

interface LayerNormWeights {
  weight: Float32Array; // [d]
  bias: Float32Array; // [d]
}

/** One block's weights, or their gradients (the same record over the gradient buffers). */
interface BlockWeights {
  wq: Float32Array; // [d × d]
  wk: Float32Array; // [d × d]
  wv: Float32Array; // [d × d]
  wo: Float32Array; // [d × d]
  ln1: LayerNormWeights;
  w1: Float32Array; // [d × f]
  w2: Float32Array; // [f × d]
  ln2: LayerNormWeights;
}

/** The model's weights, or their gradients, resolved by name once per pass. */
interface ModelWeights {
  tokenEmbedding: Float32Array; // [vocab × d]
  /** [4 × d]; null when positions are sinusoidal (fixed, not a weight). */
  positionEmbedding: Float32Array | null;
  blocks: BlockWeights[];
  /** The final layer norm (pre-LN; null post-LN). */
  finalLn: LayerNormWeights | null;
  head: Float32Array; // [d × n]
}

/** One stream of a batch: two consecutive positions per sequence, a row each. */
interface Stream {
  name: "prefix" | "suffix";
  /** R: two per sequence. */
  rows: number;
  /** [R] the token each row embeds. */
  tokens: Int32Array;
  /** Row r sits at position firstPosition + r % 2. */
  firstPosition: number;
}

/** A batch as two streams: the prefixes (tokens 0–1), shared by examples where they can be, and the suffixes (tokens 2–3). */
interface BatchStreams {
  size: number;
  /** U, the number of distinct prefixes. */
  prefixCount: number;
  /** [size] each example's prefix. */
  prefixOf: Int32Array;
  prefix: Stream; // U·2 rows
  suffix: Stream; // size·2 rows
}

/**
 * The attention a stream's query rows make, in the kernels' terms (kernels.ts): `sequences` sequences of tq
 * queries (positions queryOffset, …) over tk keys and values (positions 0 … tk−1). Q = sequences·tq.
 */
interface AttentionShape {
  sequences: number;
  tq: number;
  tk: number;
  queryOffset: number;
}

/** Keys and values (or their gradients), [sequences × tk × d] each. */
interface KeyValues {
  keys: Float32Array;
  values: Float32Array;
}

/**
 * One stream's activations in one block, kept for the backward pass. Its query rows are the rows that go on
 * past attention: every row, except in the last block (the suffix's answer rows, and no row of the prefix,
 * which only gives keys and values there). "= y": in that norm the buffer is y itself.
 */
interface StreamActivations {
  /** Workspace key of this block's stream, e.g. "block0.prefix". */
  name: string;
  rows: number; // R
  queryCount: number; // Q
  /** [Q] each query row's row in the stream; null: every row, in order (Q = R). */
  queryRows: Int32Array | null;
  attention: AttentionShape;
  x: Float32Array; // [R × d] the block's input (the residual stream)
  a: Float32Array; // [R × d] input of the q/k/v projections: LN1(x) pre-LN; = x post-LN
  ln1Mean: Float32Array; // [R] pre-LN (LN1 of x); [Q] post-LN (LN1 of r1)
  ln1Rstd: Float32Array; // likewise
  keys: Float32Array; // [R × d] a·Wk
  values: Float32Array; // [R × d] a·Wv
  aq: Float32Array; // [Q × d] a at the query rows (= a when queryRows is null)
  xq: Float32Array; // [Q × d] x at the query rows (= x when queryRows is null)
  queries: Float32Array; // [Q × d] aq·Wq
  att: Float32Array; // [sequences × heads × tq × tk] attention probabilities
  ao: Float32Array; // [Q × d] attention output, heads side by side
  mask1: Float32Array | null; // [Q × d] dropout mask on ao·Wo; null: no dropout
  r1: Float32Array; // [Q × d] xq + dropout(ao·Wo)
  x1: Float32Array; // [Q × d] the attention sublayer's output: LN1(r1) post-LN; = r1 pre-LN
  ln2Mean: Float32Array; // [Q] LN2 of r2 (post-LN) or of x1 (pre-LN)
  ln2Rstd: Float32Array; // likewise
  ffnIn: Float32Array; // [Q × d] input of the FFN: LN2(x1) pre-LN; = x1 post-LN
  h: Float32Array; // [Q × f] ffnIn·W1
  ha: Float32Array; // [Q × f] activation(h)
  mask2: Float32Array | null; // [Q × d] dropout mask on ha·W2; null: no dropout
  r2: Float32Array; // [Q × d] x1 + dropout(ha·W2)
  out: Float32Array; // [Q × d] the block's output: LN2(r2) post-LN; = r2 pre-LN
}

/** One block's activations: its two streams, and the keys and values every example attends to. */
interface BlockActivations {
  prefix: StreamActivations;
  suffix: StreamActivations;
  /** [size × 4 × d] each: an example's prefix's keys/values (positions 0–1), then its own (2–3). */
  joined: KeyValues;
}

/** The output head's activations, at the answer position of every example. */
interface HeadActivations {
  size: number;
  x: Float32Array; // [size × d] the last block's output
  normed: Float32Array; // [size × d] final LN(x) pre-LN; = x post-LN
  lnMean: Float32Array; // [size] the final LN's statistics (pre-LN)
  lnRstd: Float32Array; // [size]
  logits: Float32Array; // [size × n] normed·Whead
  losses: Float32Array; // [size] cross-entropy per example
}

export class FastTransformer {
  private readonly d: number;
  private readonly f: number;
  private readonly n: number;
  private readonly heads: number;
  private readonly headDim: number;
  /** Added in place of a position embedding when positions are sinusoidal. */
  private readonly sinusoidal: Float32Array;
  private readonly ws = new Workspace();

  constructor(
    private readonly kernels: Kernels,
    private readonly cfg: TransformerConfig,
    private readonly dims: ModelDims,
  ) {
    if (dims.seqLen !== 4)
      throw new Error(`the fast transformer handles sequences of 4 tokens (x ∘ y =), not ${dims.seqLen}`);
    this.d = cfg.width;
    this.f = ffnWidth(cfg);
    this.n = dims.numSymbols;
    this.heads = cfg.heads;
    this.headDim = cfg.width / cfg.heads;
    this.sinusoidal = sinusoidalPositions(4, cfg.width);
  }

  /**
   * Forward pass over `size` examples; with `grads`, also the backward pass of the mean cross-entropy,
   * accumulating into grads (by weight name). `masks` are the dropout masks of engines/engine.dropoutMasks
   * (empty: no dropout). The logits and losses returned are overwritten by the next call.
   */
  run(
    w: Weights,
    inputs: Int32Array,
    targets: Int32Array,
    size: number,
    masks: Float32Array[],
    grads: Weights | null,
  ): ForwardPass {
    const weights = this.resolve(w);
    const batch = this.streams(inputs, size, masks.length === 0);
    let prefix = this.embeddingForward(batch.prefix, weights);
    let suffix = this.embeddingForward(batch.suffix, weights);
    const blocks: BlockActivations[] = [];
    for (let l = 0; l < this.cfg.layers; l++) {
      const block = this.blockForward(l, weights.blocks[l], prefix, suffix, batch, masks);
      blocks.push(block);
      prefix = block.prefix.out;
      suffix = block.suffix.out;
    }
    const dlogits = grads ? this.ws.get("head.dlogits", size * this.n) : null;
    const head = this.headForward(suffix, weights, targets, size, dlogits);
    if (!grads || !dlogits) return { logits: head.logits, losses: head.losses };

    const gradients = this.resolve(grads);
    let dSuffix = this.headBackward(head, dlogits, weights, gradients);
    let dPrefix: Float32Array = new Float32Array(0); // the last block's prefix has no output rows
    for (let l = this.cfg.layers - 1; l >= 0; l--) {
      [dPrefix, dSuffix] = this.blockBackward(
        l,
        weights.blocks[l],
        gradients.blocks[l],
        blocks[l],
        batch,
        dPrefix,
        dSuffix,
      );
    }
    this.embeddingBackward(batch.prefix, dPrefix, gradients);
    this.embeddingBackward(batch.suffix, dSuffix, gradients);
    return { logits: head.logits, losses: head.losses };
  }

  /** The weights (or gradient buffers) by role. */
  private resolve(tensors: Weights): ModelWeights {
    const get = (name: string) => tensor(tensors, name);
    const layerNorm = (name: string) => ({ weight: get(`${name}.weight`), bias: get(`${name}.bias`) });
    const blocks: BlockWeights[] = [];
    for (let l = 0; l < this.cfg.layers; l++) {
      const block = `blocks.${l}`;
      blocks.push({
        wq: get(`${block}.attn.wq`),
        wk: get(`${block}.attn.wk`),
        wv: get(`${block}.attn.wv`),
        wo: get(`${block}.attn.wo`),
        ln1: layerNorm(`${block}.ln1`),
        w1: get(`${block}.mlp.w1`),
        w2: get(`${block}.mlp.w2`),
        ln2: layerNorm(`${block}.ln2`),
      });
    }
    return {
      tokenEmbedding: get("embed.token"),
      positionEmbedding: this.cfg.positions === "learned" ? get("embed.pos") : null,
      blocks,
      finalLn: this.cfg.norm === "pre" ? layerNorm("final.ln") : null,
      head: get("head.weight"),
    };
  }

  /** Groups the examples by prefix (tokens 0 and 1); with `share` false (dropout), each keeps its own. */
  private streams(inputs: Int32Array, size: number, share: boolean): BatchStreams {
    const prefixOf = new Int32Array(size);
    const prefixTokens = new Int32Array(size * 2);
    const suffixTokens = new Int32Array(size * 2);
    const seen = new Map<number, number>();
    let count = 0;
    for (let e = 0; e < size; e++) {
      const key = inputs[e * 4] * this.dims.vocabSize + inputs[e * 4 + 1];
      let u = share ? seen.get(key) : undefined;
      if (u === undefined) {
        u = count++;
        if (share) seen.set(key, u);
        prefixTokens[u * 2] = inputs[e * 4];
        prefixTokens[u * 2 + 1] = inputs[e * 4 + 1];
      }
      prefixOf[e] = u;
      suffixTokens[e * 2] = inputs[e * 4 + 2];
      suffixTokens[e * 2 + 1] = inputs[e * 4 + 3];
    }
    return {
      size,
      prefixCount: count,
      prefixOf,
      prefix: { name: "prefix", rows: count * 2, tokens: prefixTokens.subarray(0, count * 2), firstPosition: 0 },
      suffix: { name: "suffix", rows: size * 2, tokens: suffixTokens, firstPosition: 2 },
    };
  }

  // ---------------------------------------------------------------------------------------------------
  // embedding

  /** A stream's input [R × d]: each row's token embedding plus its position's. */
  private embeddingForward(stream: Stream, w: ModelWeights): Float32Array {
    const { d } = this;
    const x = this.ws.get(`embedding.${stream.name}`, stream.rows * d);
    const tokenEmbedding = w.tokenEmbedding;
    const positionEmbedding = w.positionEmbedding ?? this.sinusoidal;
    for (let r = 0; r < stream.rows; r++) {
      const token = stream.tokens[r];
      const position = stream.firstPosition + (r % 2);
      for (let i = 0; i < d; i++) x[r * d + i] = tokenEmbedding[token * d + i] + positionEmbedding[position * d + i];
    }
    return x;
  }

  /** Backward of embeddingForward: scatters dx [R × d] into the token (and learned position) embeddings' gradients. */
  private embeddingBackward(stream: Stream, dx: Float32Array, g: ModelWeights): void {
    const { d } = this;
    const dTokenEmbedding = g.tokenEmbedding;
    const dPositionEmbedding = g.positionEmbedding;
    for (let r = 0; r < stream.rows; r++) {
      const token = stream.tokens[r];
      const position = stream.firstPosition + (r % 2);
      for (let i = 0; i < d; i++) {
        dTokenEmbedding[token * d + i] += dx[r * d + i];
        if (dPositionEmbedding) dPositionEmbedding[position * d + i] += dx[r * d + i];
      }
    }
  }

  // ---------------------------------------------------------------------------------------------------
  // block

  /** Block l over both streams, from their inputs prefixIn [U·2 × d] and suffixIn [size·2 × d]. */
  private blockForward(
    l: number,
    p: BlockWeights,
    prefixIn: Float32Array,
    suffixIn: Float32Array,
    batch: BatchStreams,
    masks: Float32Array[],
  ): BlockActivations {
    const last = l === this.cfg.layers - 1;
    const { size, prefixCount } = batch;
    // The prefix attends within itself (positions 0–1), the suffix to all four positions. The last block
    // goes on at the answer position (3) only, so there the prefix gives keys and values alone.
    const prefix = last
      ? this.streamActivations(
          l,
          batch.prefix,
          prefixIn,
          { sequences: prefixCount, tq: 0, tk: 2, queryOffset: 0 },
          new Int32Array(0),
          masks,
        )
      : this.streamActivations(
          l,
          batch.prefix,
          prefixIn,
          { sequences: prefixCount, tq: 2, tk: 2, queryOffset: 0 },
          null,
          masks,
        );
    const suffix = last
      ? this.streamActivations(
          l,
          batch.suffix,
          suffixIn,
          { sequences: size, tq: 1, tk: 4, queryOffset: 3 },
          answerRows(size),
          masks,
        )
      : this.streamActivations(
          l,
          batch.suffix,
          suffixIn,
          { sequences: size, tq: 2, tk: 4, queryOffset: 2 },
          null,
          masks,
        );
    this.qkvForward(prefix, p);
    this.qkvForward(suffix, p);
    const joined = this.joinForward(l, batch, prefix, suffix);
    if (!last) {
      this.selfAttentionForward(prefix, p, { keys: prefix.keys, values: prefix.values });
      this.ffnForward(prefix, p);
    }
    this.selfAttentionForward(suffix, p, joined);
    this.ffnForward(suffix, p);
    return { prefix, suffix, joined };
  }

  /**
   * Backward of blockForward, from the gradients of the streams' outputs ([Q × d] each: dPrefixOut is
   * empty in the last block). Accumulates the block's weight gradients into g; returns the gradients of
   * the streams' inputs, [dPrefixIn, dSuffixIn]. The weight gradients both streams add to are summed in
   * exactly the order below; another order would change their last bits.
   */
  private blockBackward(
    l: number,
    p: BlockWeights,
    g: BlockWeights,
    block: BlockActivations,
    batch: BatchStreams,
    dPrefixOut: Float32Array,
    dSuffixOut: Float32Array,
  ): [Float32Array, Float32Array] {
    const { d, ws } = this;
    const last = l === this.cfg.layers - 1;
    const { prefix, suffix } = block;
    const dJoined = {
      keys: ws.zeros(`block${l}.dKeys`, batch.size * 4 * d),
      values: ws.zeros(`block${l}.dValues`, batch.size * 4 * d),
    };
    const dSuffixQueries = ws.zeros(`${suffix.name}.dQueries`, suffix.queryCount * d);
    const dSuffixIn = ws.zeros(`${suffix.name}.dx`, suffix.rows * d);
    const dSuffixX1 = this.ffnBackward(suffix, p, g, dSuffixOut);
    this.selfAttentionBackward(suffix, p, g, dSuffixX1, block.joined, dJoined, dSuffixQueries, dSuffixIn);
    const dKeyValues = this.joinBackward(l, batch, dJoined);
    const dPrefixQueries = ws.zeros(`${prefix.name}.dQueries`, prefix.queryCount * d);
    const dPrefixIn = ws.zeros(`${prefix.name}.dx`, prefix.rows * d);
    if (!last) {
      // the prefix's own attention adds to the key and value gradients the suffix left
      const dPrefixX1 = this.ffnBackward(prefix, p, g, dPrefixOut);
      this.selfAttentionBackward(
        prefix,
        p,
        g,
        dPrefixX1,
        { keys: prefix.keys, values: prefix.values },
        dKeyValues.prefix,
        dPrefixQueries,
        dPrefixIn,
      );
    }
    this.qkvBackward(prefix, p, g, dPrefixQueries, dKeyValues.prefix, dPrefixIn);
    this.qkvBackward(suffix, p, g, dSuffixQueries, dKeyValues.suffix, dSuffixIn);
    return [dPrefixIn, dSuffixIn];
  }

  /** A stream's activation buffers in block l (see StreamActivations), with its rows of the dropout masks. */
  private streamActivations(
    l: number,
    stream: Stream,
    x: Float32Array,
    attention: AttentionShape,
    queryRows: Int32Array | null,
    masks: Float32Array[],
  ): StreamActivations {
    const { d, f } = this;
    const name = `block${l}.${stream.name}`;
    const R = stream.rows;
    const Q = attention.sequences * attention.tq;
    const pre = this.cfg.norm === "pre";
    const buffer = (role: string, size: number) => this.ws.get(`${name}.${role}`, size);
    const a = pre ? buffer("a", R * d) : x;
    const r1 = buffer("r1", Q * d);
    const x1 = pre ? r1 : buffer("x1", Q * d);
    const r2 = buffer("r2", Q * d);
    return {
      name,
      rows: R,
      queryCount: Q,
      queryRows,
      attention,
      x,
      a,
      ln1Mean: buffer("ln1Mean", pre ? R : Q),
      ln1Rstd: buffer("ln1Rstd", pre ? R : Q),
      keys: buffer("keys", R * d),
      values: buffer("values", R * d),
      aq: queryRows ? buffer("aq", Q * d) : a,
      xq: queryRows ? buffer("xq", Q * d) : x,
      queries: buffer("queries", Q * d),
      att: buffer("att", attention.sequences * this.heads * attention.tq * attention.tk),
      ao: buffer("ao", Q * d),
      mask1: this.maskRows(masks, 2 * l, stream, queryRows, Q, `${name}.mask1`),
      r1,
      x1,
      ln2Mean: buffer("ln2Mean", Q),
      ln2Rstd: buffer("ln2Rstd", Q),
      ffnIn: pre ? buffer("ffnIn", Q * d) : x1,
      h: buffer("h", Q * f),
      ha: buffer("ha", Q * f),
      mask2: this.maskRows(masks, 2 * l + 1, stream, queryRows, Q, `${name}.mask2`),
      r2,
      out: pre ? r2 : buffer("out", Q * d),
    };
  }

  /** Dropout mask `site` ([size × 4 × d]) at a stream's Q query rows [Q × d]; null without dropout. */
  private maskRows(
    masks: Float32Array[],
    site: number,
    stream: Stream,
    queryRows: Int32Array | null,
    Q: number,
    key: string,
  ): Float32Array | null {
    if (masks.length === 0) return null;
    const { d } = this;
    const rows = this.ws.get(key, Q * d);
    for (let r = 0; r < Q; r++) {
      // stream row s is position firstPosition + s % 2 of sequence s >> 1, an example (dropout shares no prefix)
      const s = queryRows ? queryRows[r] : r;
      const from = ((s >> 1) * 4 + stream.firstPosition + (s % 2)) * d;
      rows.set(masks[site].subarray(from, from + d), r * d);
    }
    return rows;
  }

  /** LN1 (pre-LN), then keys and values of every row and queries of the query rows. */
  private qkvForward(s: StreamActivations, p: BlockWeights): void {
    const { d, kernels } = this;
    if (this.cfg.norm === "pre")
      kernels.layerNormForward(s.x, p.ln1.weight, p.ln1.bias, s.rows, d, s.a, s.ln1Mean, s.ln1Rstd);
    kernels.matmul(false, false, s.rows, d, d, s.a, p.wk, s.keys, false);
    kernels.matmul(false, false, s.rows, d, d, s.a, p.wv, s.values, false);
    if (s.queryRows) gatherRows(s.a, s.queryRows, d, s.aq);
    kernels.matmul(false, false, s.queryCount, d, d, s.aq, p.wq, s.queries, false);
  }

  /** Backward of qkvForward: accumulates into dx [R × d] from dQueries [Q × d] and dKeyValues [R × d each]. */
  private qkvBackward(
    s: StreamActivations,
    p: BlockWeights,
    g: BlockWeights,
    dQueries: Float32Array,
    dKeyValues: KeyValues,
    dx: Float32Array,
  ): void {
    const { d, kernels } = this;
    const R = s.rows;
    const Q = s.queryCount;
    const pre = this.cfg.norm === "pre";
    // post-LN, a is x: its gradient goes straight into dx
    const da = pre ? this.ws.zeros(`${s.name}.da`, R * d) : dx;
    kernels.matmul(false, true, R, d, d, dKeyValues.keys, p.wk, da, true);
    kernels.matmul(true, false, d, d, R, s.a, dKeyValues.keys, g.wk, true);
    kernels.matmul(false, true, R, d, d, dKeyValues.values, p.wv, da, true);
    kernels.matmul(true, false, d, d, R, s.a, dKeyValues.values, g.wv, true);
    kernels.matmul(true, false, d, d, Q, s.aq, dQueries, g.wq, true);
    const daq = this.ws.zeros(`${s.name}.daq`, Q * d);
    kernels.matmul(false, true, Q, d, d, dQueries, p.wq, daq, true);
    addRows(daq, s.queryRows, Q, d, da);
    if (pre) kernels.layerNormBackward(da, s.x, p.ln1.weight, s.ln1Mean, s.ln1Rstd, R, d, dx, g.ln1.weight, g.ln1.bias);
  }

  /** Every example's keys and values at all four positions: its prefix's (0–1), then its own (2–3). */
  private joinForward(l: number, batch: BatchStreams, prefix: StreamActivations, suffix: StreamActivations): KeyValues {
    const { d } = this;
    const keys = this.ws.get(`block${l}.keys`, batch.size * 4 * d);
    const values = this.ws.get(`block${l}.values`, batch.size * 4 * d);
    for (let e = 0; e < batch.size; e++) {
      const u = batch.prefixOf[e];
      keys.set(prefix.keys.subarray(u * 2 * d, (u * 2 + 2) * d), e * 4 * d);
      values.set(prefix.values.subarray(u * 2 * d, (u * 2 + 2) * d), e * 4 * d);
      keys.set(suffix.keys.subarray(e * 2 * d, (e * 2 + 2) * d), (e * 4 + 2) * d);
      values.set(suffix.values.subarray(e * 2 * d, (e * 2 + 2) * d), (e * 4 + 2) * d);
    }
    return { keys, values };
  }

  /** Backward of joinForward: positions 0–1 summed into each example's prefix, 2–3 copied back to the example. */
  private joinBackward(l: number, batch: BatchStreams, dJoined: KeyValues): { prefix: KeyValues; suffix: KeyValues } {
    const { d, ws } = this;
    const prefixSize = batch.prefixCount * 2 * d;
    const dPrefixKeys = ws.zeros(`block${l}.prefix.dKeys`, prefixSize);
    const dPrefixValues = ws.zeros(`block${l}.prefix.dValues`, prefixSize);
    const dSuffixKeys = ws.get(`block${l}.suffix.dKeys`, batch.size * 2 * d);
    const dSuffixValues = ws.get(`block${l}.suffix.dValues`, batch.size * 2 * d);
    const { keys: dKeys, values: dValues } = dJoined;
    for (let e = 0; e < batch.size; e++) {
      const u = batch.prefixOf[e];
      for (let i = 0; i < 2 * d; i++) {
        dPrefixKeys[u * 2 * d + i] += dKeys[e * 4 * d + i];
        dPrefixValues[u * 2 * d + i] += dValues[e * 4 * d + i];
      }
      dSuffixKeys.set(dKeys.subarray((e * 4 + 2) * d, (e * 4 + 4) * d), e * 2 * d);
      dSuffixValues.set(dValues.subarray((e * 4 + 2) * d, (e * 4 + 4) * d), e * 2 * d);
    }
    return {
      prefix: { keys: dPrefixKeys, values: dPrefixValues },
      suffix: { keys: dSuffixKeys, values: dSuffixValues },
    };
  }

  /** Attention of the query rows over `attended`, output projection, dropout and residual; post-LN, then LN1. */
  private selfAttentionForward(s: StreamActivations, p: BlockWeights, attended: KeyValues): void {
    const { d, kernels } = this;
    const Q = s.queryCount;
    const { sequences, tq, tk, queryOffset } = s.attention;
    kernels.attentionForward(
      s.queries,
      attended.keys,
      attended.values,
      sequences,
      tq,
      tk,
      this.heads,
      this.headDim,
      queryOffset,
      s.att,
      s.ao,
    );
    const projected = this.ws.get(`${s.name}.projected`, Q * d);
    kernels.matmul(false, false, Q, d, d, s.ao, p.wo, projected, false);
    if (s.mask1) for (let i = 0; i < Q * d; i++) projected[i] *= s.mask1[i];
    if (s.queryRows) gatherRows(s.x, s.queryRows, d, s.xq);
    for (let i = 0; i < Q * d; i++) s.r1[i] = s.xq[i] + projected[i];
    if (this.cfg.norm === "post")
      kernels.layerNormForward(s.r1, p.ln1.weight, p.ln1.bias, Q, d, s.x1, s.ln1Mean, s.ln1Rstd);
  }

  /**
   * Backward of selfAttentionForward, from dx1 [Q × d]: accumulates the residual's gradient into dx
   * [R × d] at the query rows, and the attention's into dAttended and dQueries [Q × d].
   */
  private selfAttentionBackward(
    s: StreamActivations,
    p: BlockWeights,
    g: BlockWeights,
    dx1: Float32Array,
    attended: KeyValues,
    dAttended: KeyValues,
    dQueries: Float32Array,
    dx: Float32Array,
  ): void {
    const { d, ws, kernels } = this;
    const Q = s.queryCount;
    let dr1 = dx1;
    if (this.cfg.norm === "post") {
      dr1 = ws.zeros(`${s.name}.dr1`, Q * d);
      kernels.layerNormBackward(dx1, s.r1, p.ln1.weight, s.ln1Mean, s.ln1Rstd, Q, d, dr1, g.ln1.weight, g.ln1.bias);
    }
    addRows(dr1, s.queryRows, Q, d, dx);
    const dProjected = ws.get(`${s.name}.dProjected`, Q * d);
    for (let i = 0; i < Q * d; i++) dProjected[i] = s.mask1 ? dr1[i] * s.mask1[i] : dr1[i];
    const dao = ws.zeros(`${s.name}.dao`, Q * d);
    kernels.matmul(false, true, Q, d, d, dProjected, p.wo, dao, true);
    kernels.matmul(true, false, d, d, Q, s.ao, dProjected, g.wo, true);
    const { sequences, tq, tk, queryOffset } = s.attention;
    kernels.attentionBackward(
      dao,
      s.queries,
      attended.keys,
      attended.values,
      s.att,
      sequences,
      tq,
      tk,
      this.heads,
      this.headDim,
      queryOffset,
      dQueries,
      dAttended.keys,
      dAttended.values,
    );
  }

  /** The FFN of x1 (pre-LN: of LN2(x1)), dropout and residual; post-LN, then LN2. */
  private ffnForward(s: StreamActivations, p: BlockWeights): void {
    const { d, f, kernels } = this;
    const Q = s.queryCount;
    const pre = this.cfg.norm === "pre";
    if (pre) kernels.layerNormForward(s.x1, p.ln2.weight, p.ln2.bias, Q, d, s.ffnIn, s.ln2Mean, s.ln2Rstd);
    kernels.matmul(false, false, Q, f, d, s.ffnIn, p.w1, s.h, false);
    kernels.activationForward(this.cfg.activation, s.h, s.ha, Q * f);
    const ffnOut = this.ws.get(`${s.name}.ffnOut`, Q * d);
    kernels.matmul(false, false, Q, d, f, s.ha, p.w2, ffnOut, false);
    if (s.mask2) for (let i = 0; i < Q * d; i++) ffnOut[i] *= s.mask2[i];
    for (let i = 0; i < Q * d; i++) s.r2[i] = s.x1[i] + ffnOut[i];
    if (!pre) kernels.layerNormForward(s.r2, p.ln2.weight, p.ln2.bias, Q, d, s.out, s.ln2Mean, s.ln2Rstd);
  }

  /** Backward of ffnForward, from dOut [Q × d] (the gradient of s.out); returns dx1 [Q × d]. */
  private ffnBackward(s: StreamActivations, p: BlockWeights, g: BlockWeights, dOut: Float32Array): Float32Array {
    const { d, f, ws, kernels } = this;
    const Q = s.queryCount;
    const post = this.cfg.norm === "post";
    let dr2 = dOut;
    if (post) {
      dr2 = ws.zeros(`${s.name}.dr2`, Q * d);
      kernels.layerNormBackward(dOut, s.r2, p.ln2.weight, s.ln2Mean, s.ln2Rstd, Q, d, dr2, g.ln2.weight, g.ln2.bias);
    }
    const dFfnOut = ws.get(`${s.name}.dFfnOut`, Q * d);
    for (let i = 0; i < Q * d; i++) dFfnOut[i] = s.mask2 ? dr2[i] * s.mask2[i] : dr2[i];
    const dha = ws.zeros(`${s.name}.dha`, Q * f);
    kernels.matmul(false, true, Q, f, d, dFfnOut, p.w2, dha, true);
    kernels.matmul(true, false, f, d, Q, s.ha, dFfnOut, g.w2, true);
    const dh = ws.get(`${s.name}.dh`, Q * f);
    kernels.activationBackward(this.cfg.activation, dha, s.h, dh, Q * f);
    const dFfnIn = ws.zeros(`${s.name}.dFfnIn`, Q * d);
    kernels.matmul(false, true, Q, d, f, dh, p.w1, dFfnIn, true);
    kernels.matmul(true, false, d, f, Q, s.ffnIn, dh, g.w1, true);
    const dx1 = ws.get(`${s.name}.dx1`, Q * d);
    if (post) {
      for (let i = 0; i < Q * d; i++) dx1[i] = dr2[i] + dFfnIn[i];
    } else {
      dx1.set(dr2);
      kernels.layerNormBackward(dFfnIn, s.x1, p.ln2.weight, s.ln2Mean, s.ln2Rstd, Q, d, dx1, g.ln2.weight, g.ln2.bias);
    }
    return dx1;
  }

  // ---------------------------------------------------------------------------------------------------
  // head

  /** Final LN (pre-LN), logits and cross-entropy of x [size × d]; dlogits too, when given. */
  private headForward(
    x: Float32Array,
    w: ModelWeights,
    targets: Int32Array,
    size: number,
    dlogits: Float32Array | null,
  ): HeadActivations {
    const { d, n, ws, kernels } = this;
    const head: HeadActivations = {
      size,
      x,
      normed: w.finalLn ? ws.get("head.normed", size * d) : x,
      lnMean: ws.get("head.lnMean", size),
      lnRstd: ws.get("head.lnRstd", size),
      logits: ws.get("head.logits", size * n),
      losses: ws.get("head.losses", size),
    };
    if (w.finalLn)
      kernels.layerNormForward(x, w.finalLn.weight, w.finalLn.bias, size, d, head.normed, head.lnMean, head.lnRstd);
    kernels.matmul(false, false, size, n, d, head.normed, w.head, head.logits, false);
    kernels.softmaxCrossEntropy(head.logits, targets, size, n, head.losses, dlogits, 1 / size);
    return head;
  }

  /** Backward of headForward from dlogits [size × n]; returns the gradient of x [size × d]. */
  private headBackward(head: HeadActivations, dlogits: Float32Array, w: ModelWeights, g: ModelWeights): Float32Array {
    const { d, n, ws, kernels } = this;
    const { size } = head;
    kernels.matmul(true, false, d, n, size, head.normed, dlogits, g.head, true);
    const dNormed = ws.zeros("head.dNormed", size * d);
    kernels.matmul(false, true, size, d, n, dlogits, w.head, dNormed, true);
    if (!w.finalLn || !g.finalLn) return dNormed;
    const dx = ws.zeros("head.dx", size * d);
    kernels.layerNormBackward(
      dNormed,
      head.x,
      w.finalLn.weight,
      head.lnMean,
      head.lnRstd,
      size,
      d,
      dx,
      g.finalLn.weight,
      g.finalLn.bias,
    );
    return dx;
  }
}

/** The suffix rows at the answer position (3): 1, 3, 5, … */
function answerRows(size: number): Int32Array {
  const rows = new Int32Array(size);
  for (let e = 0; e < size; e++) rows[e] = e * 2 + 1;
  return rows;
}

/** dst [rows.length × width] = the given rows of src. */
function gatherRows(src: Float32Array, rows: Int32Array, width: number, dst: Float32Array): void {
  for (let r = 0; r < rows.length; r++) dst.set(src.subarray(rows[r] * width, rows[r] * width + width), r * width);
}

/** Adds src [count × width] into the given rows of dst (rows null: rows 0 … count−1). */
function addRows(src: Float32Array, rows: Int32Array | null, count: number, width: number, dst: Float32Array): void {
  for (let r = 0; r < count; r++) {
    const to = (rows ? rows[r] : r) * width;
    for (let i = 0; i < width; i++) dst[to + i] += src[r * width + i];
  }
}
