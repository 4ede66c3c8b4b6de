// The transformer's forward and backward passes, in the style of llm.c: one function per stage (embedding,
// block, head), each forward beside its backward, and the activations the backward pass needs in records
// of plain buffers. The sequence is written once over a ModelKernels set (model-kernels.ts): the fast
// engine runs it on Float32Arrays (each call computes), the webgpu engine on GPU arrays (each call is
// recorded, and the step runs when the engine submits it). Index arrays are built here on the CPU from the
// batch's tokens and handed to the kernel set (kernels.indices), which uploads them where it must.
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
// Several runs at once (a pack, see model-kernels.ts): every stream holds run after run, the same number
// of rows each, and the kernels that touch a weight get the run count. Run r's example e is example
// r·size + e; its tokens index rows r·vocab + token of the token table [runs·vocab × d] (and learned
// positions rows r·4 + position). Runs differ in their number of distinct prefixes U: every run gets the
// most any run has, its real prefixes first, then rows no example joins. Those rows' gradients are exact
// zeros, and they come after the real rows in every sum over rows, so a run's results do not change.
// Runs whose batches are smaller are padded the same way: padding examples after the real ones (counts),
// whose loss has scale 0, so their rows' gradients are exact zeros too.
//
// Every buffer is the kernel set's buffer for its role (block, stream, tensor), so the next call to run()
// overwrites all of them, the logits and losses it returned included.

import { ModelDims, TransformerConfig, ffnWidth, sinusoidalPositions } from "../../model/config";
import { exampleCounts, ModelKernels, ModelOutput, ModelSequence, named, NamedArrays } from "./model-kernels";

interface LayerNormWeights<A> {
  weight: A; // [d]
  bias: A; // [d]
}

/** One block's weights, or their gradients (the same record over the gradient buffers). */
interface BlockWeights<A> {
  wq: A; // [d × d]
  wk: A; // [d × d]
  wv: A; // [d × d]
  wo: A; // [d × d]
  ln1: LayerNormWeights<A>;
  w1: A; // [d × f]
  w2: A; // [f × d]
  ln2: LayerNormWeights<A>;
}

/** The model's weights, or their gradients, resolved by name once per pass. */
interface ModelWeights<A> {
  tokenEmbedding: A; // [vocab × d]
  /** [4 × d]: learned, or the fixed sinusoidal table (then it has no gradient). */
  positionEmbedding: A;
  /** False when positions are sinusoidal (not a weight). */
  learnedPositions: boolean;
  blocks: BlockWeights<A>[];
  /** The final layer norm (pre-LN; null post-LN). */
  finalLn: LayerNormWeights<A> | null;
  head: A; // [d × n]
}

/** One stream of a batch: two consecutive positions per sequence, a row each. */
interface Stream<I> {
  name: "prefix" | "suffix";
  /** R: two per sequence. */
  rows: number;
  /** [R] the token each row embeds. */
  tokens: I;
  /** [R] each row's position: firstPosition + r % 2. */
  positions: I;
  /** Row r sits at position firstPosition + r % 2. */
  firstPosition: number;
}

/** A batch as two streams: the prefixes (tokens 0–1), shared by examples where they can be, and the suffixes (tokens 2–3). */
interface BatchStreams<I> {
  /** Examples per run. */
  size: number;
  runs: number;
  /** Every run's examples: runs·size. */
  examples: number;
  /** Each run's real examples, the first of its size (the rest are padding). */
  counts: number[];
  /** U, the number of distinct prefixes per run (the most of any run; the others padded to it). */
  prefixCount: number;
  prefix: Stream<I>; // runs·U·2 rows
  suffix: Stream<I>; // runs·size·2 rows
  /** Where the rows of the joined keys/values [size × 4] come from and go to (see joinForward). */
  join: JoinIndex<I>;
}

/**
 * The joined keys and values [examples × 4 × d] of every example: rows e·4+t, t < 2 from prefix row
 * prefixOf[e]·2+t, t ≥ 2 from suffix row e·2+t−2.
 */
interface JoinIndex<I> {
  /** [size·2] for row e·2+t of the list: the prefix row (prefixOf[e]·2+t) and the joined row (e·4+t). */
  prefixRows: I;
  prefixTargets: I;
  /** [size·2] the identity on the suffix rows, and their joined rows e·4+2+t. */
  suffixRows: I;
  suffixTargets: I;
  /** [size·4] each joined row's prefix row, or −1 (positions 2–3): the prefix's gradient sums. */
  joinedToPrefix: I;
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
interface KeyValues<A> {
  keys: A;
  values: A;
}

/**
 * One stream's activations in one block, kept for the backward pass. Its query rows are the rows that go on
 * past attention: every row, except in the last block (the suffix's answer rows, and no row of the prefix,
 * which only gives keys and values there). "= y": in that norm the buffer is y itself.
 */
interface StreamActivations<A, I> {
  /** Role prefix of this block's stream, e.g. "block0.prefix". */
  name: string;
  /** The runs of the pass: R and Q are runs·(a run's rows). */
  runs: number;
  rows: number; // R
  queryCount: number; // Q
  /** [Q] each query row's row in the stream, and 0 … Q−1; null: every row, in order (Q = R). */
  queryRows: { rows: I; identity: I } | null;
  attention: AttentionShape;
  x: A; // [R × d] the block's input (the residual stream)
  a: A; // [R × d] input of the q/k/v projections: LN1(x) pre-LN; = x post-LN
  ln1Mean: A; // [R] pre-LN (LN1 of x); [Q] post-LN (LN1 of r1)
  ln1Rstd: A; // likewise
  keys: A; // [R × d] a·Wk
  values: A; // [R × d] a·Wv
  aq: A; // [Q × d] a at the query rows (= a when queryRows is null)
  xq: A; // [Q × d] x at the query rows (= x when queryRows is null)
  queries: A; // [Q × d] aq·Wq
  att: A; // [sequences × heads × tq × tk] attention probabilities
  ao: A; // [Q × d] attention output, heads side by side
  mask1: A | null; // [Q × d] dropout mask on ao·Wo; null: no dropout
  r1: A; // [Q × d] xq + dropout(ao·Wo)
  x1: A; // [Q × d] the attention sublayer's output: LN1(r1) post-LN; = r1 pre-LN
  ln2Mean: A; // [Q] LN2 of r2 (post-LN) or of x1 (pre-LN)
  ln2Rstd: A; // likewise
  ffnIn: A; // [Q × d] input of the FFN: LN2(x1) pre-LN; = x1 post-LN
  h: A; // [Q × f] ffnIn·W1
  ha: A; // [Q × f] activation(h)
  mask2: A | null; // [Q × d] dropout mask on ha·W2; null: no dropout
  r2: A; // [Q × d] x1 + dropout(ha·W2)
  out: A; // [Q × d] the block's output: LN2(r2) post-LN; = r2 pre-LN
}

/** One block's activations: its two streams, and the keys and values every example attends to. */
interface BlockActivations<A, I> {
  prefix: StreamActivations<A, I>;
  suffix: StreamActivations<A, I>;
  /** [size × 4 × d] each: an example's prefix's keys/values (positions 0–1), then its own (2–3). */
  joined: KeyValues<A>;
}

/** The output head's activations, at the answer position of every example. */
interface HeadActivations<A> {
  /** Examples per run. */
  size: number;
  runs: number;
  x: A; // [runs·size × d] the last block's output
  normed: A; // [runs·size × d] final LN(x) pre-LN; = x post-LN
  lnMean: A; // [runs·size] the final LN's statistics (pre-LN)
  lnRstd: A; // [runs·size]
  logits: A; // [runs·size × n] normed·Whead
  losses: A; // [runs·size] cross-entropy per example
}

export class Transformer<A, I> implements ModelSequence<A> {
  private readonly d: number;
  private readonly f: number;
  private readonly n: number;
  private readonly heads: number;
  private readonly headDim: number;
  /** Used in place of a position embedding when positions are sinusoidal. */
  private readonly sinusoidal: Float32Array;

  constructor(
    private readonly kernels: ModelKernels<A, I>,
    private readonly cfg: TransformerConfig,
    private readonly dims: ModelDims,
  ) {
    if (dims.seqLen !== 4)
      throw new Error(`the transformer handles sequences of 4 tokens (x ∘ y =), not ${dims.seqLen}`);
    this.d = cfg.width;
    this.f = ffnWidth(cfg);
    this.n = dims.numSymbols;
    this.heads = cfg.heads;
    this.headDim = cfg.width / cfg.heads;
    this.sinusoidal = sinusoidalPositions(4, cfg.width);
  }

  /**
   * Forward pass over `size` examples of each of `runs` runs; with `grads`, also the backward pass of each
   * run's mean cross-entropy, accumulating into grads (by weight name). `masks` are the dropout masks of
   * engines/engine.dropoutMasks, each run's after the other's (empty: no dropout); `counts` each run's real
   * examples (see ModelSequence). The logits and losses returned are overwritten by the next call.
   */
  run(
    w: NamedArrays<A>,
    inputs: Int32Array,
    targets: Int32Array,
    size: number,
    runs: number,
    masks: Float32Array[],
    grads: NamedArrays<A> | null,
    counts?: number[],
  ): ModelOutput<A> {
    const weights = this.resolve(w);
    const batch = this.streams(inputs, size, runs, masks.length === 0, exampleCounts(size, runs, counts));
    let prefix = this.embeddingForward(batch.prefix, weights);
    let suffix = this.embeddingForward(batch.suffix, weights);
    const blocks: BlockActivations<A, I>[] = [];
    for (let l = 0; l < this.cfg.layers; l++) {
      const block = this.blockForward(l, weights.blocks[l], prefix, suffix, batch, masks);
      blocks.push(block);
      prefix = block.prefix.out;
      suffix = block.suffix.out;
    }
    const dlogits = grads ? this.kernels.buffer("head.dlogits", batch.examples * this.n) : null;
    const head = this.headForward(suffix, weights, this.kernels.indices("head.targets", targets), batch, dlogits);
    if (!grads || !dlogits) return { logits: head.logits, losses: head.losses };

    const gradients = this.resolve(grads);
    let dSuffix = this.headBackward(head, dlogits, weights, gradients);
    let dPrefix = this.kernels.buffer("prefix.dOutEmpty", 0); // the last block's prefix has no output rows
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
    this.embeddingBackward(batch.prefix, dPrefix, gradients, runs);
    this.embeddingBackward(batch.suffix, dSuffix, gradients, runs);
    return { logits: head.logits, losses: head.losses };
  }

  /** The weights (or gradient buffers) by role. */
  private resolve(tensors: NamedArrays<A>): ModelWeights<A> {
    const get = (name: string) => named(tensors, name);
    const layerNorm = (name: string) => ({ weight: get(`${name}.weight`), bias: get(`${name}.bias`) });
    const blocks: BlockWeights<A>[] = [];
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
    const learnedPositions = this.cfg.positions === "learned";
    return {
      tokenEmbedding: get("embed.token"),
      positionEmbedding: learnedPositions ? get("embed.pos") : this.kernels.upload("embed.sinusoidal", this.sinusoidal),
      learnedPositions,
      blocks,
      finalLn: this.cfg.norm === "pre" ? layerNorm("final.ln") : null,
      head: get("head.weight"),
    };
  }

  /**
   * Groups each run's examples by prefix (tokens 0 and 1); with `share` false (dropout), each keeps its own.
   * Every run gets U pairs of prefix rows, U the most of any run: its own prefixes first, then padding.
   */
  private streams(inputs: Int32Array, size: number, runs: number, share: boolean, counts: number[]): BatchStreams<I> {
    const examples = runs * size;
    const vocab = this.dims.vocabSize;
    const prefixOf = new Int32Array(examples); // the prefix of example g within its run
    const runPrefixes: Int32Array[] = []; // each run's prefixes' tokens, [its U × 2]
    for (let r = 0; r < runs; r++) {
      const tokens = new Int32Array(size * 2);
      const seen = new Map<number, number>();
      let count = 0;
      for (let g = r * size; g < (r + 1) * size; g++) {
        const key = inputs[g * 4] * vocab + inputs[g * 4 + 1];
        let u = share ? seen.get(key) : undefined;
        if (u === undefined) {
          u = count++;
          if (share) seen.set(key, u);
          tokens[u * 2] = inputs[g * 4];
          tokens[u * 2 + 1] = inputs[g * 4 + 1];
        }
        prefixOf[g] = u;
      }
      runPrefixes.push(tokens.subarray(0, count * 2));
    }
    const U = Math.max(0, ...runPrefixes.map((t) => t.length / 2));
    // token rows in each run's table; padding rows embed token 0 (any token would do)
    const prefixTokens = new Int32Array(runs * U * 2);
    runPrefixes.forEach((tokens, r) => {
      for (let i = 0; i < U * 2; i++) prefixTokens[r * U * 2 + i] = r * vocab + (i < tokens.length ? tokens[i] : 0);
    });
    const suffixTokens = new Int32Array(examples * 2);
    for (let g = 0; g < examples; g++) {
      const table = Math.floor(g / size) * vocab;
      suffixTokens[g * 2] = table + inputs[g * 4 + 2];
      suffixTokens[g * 2 + 1] = table + inputs[g * 4 + 3];
    }
    const rowsPerRun = { prefix: U * 2, suffix: size * 2 };
    const stream = (name: "prefix" | "suffix", tokens: Int32Array, firstPosition: number): Stream<I> => ({
      name,
      rows: tokens.length,
      tokens: this.kernels.indices(`${name}.tokens`, tokens),
      positions: this.kernels.indices(
        `${name}.positions`,
        Int32Array.from(tokens, (_, r) => this.positionRow(Math.floor(r / rowsPerRun[name]), firstPosition + (r % 2))),
      ),
      firstPosition,
    });
    const prefixRows = new Int32Array(examples * 2);
    const prefixTargets = new Int32Array(examples * 2);
    const suffixRows = new Int32Array(examples * 2);
    const suffixTargets = new Int32Array(examples * 2);
    const joinedToPrefix = new Int32Array(examples * 4).fill(-1);
    for (let g = 0; g < examples; g++)
      for (let t = 0; t < 2; t++) {
        const prefixRow = (Math.floor(g / size) * U + prefixOf[g]) * 2 + t;
        prefixRows[g * 2 + t] = prefixRow;
        prefixTargets[g * 2 + t] = g * 4 + t;
        suffixRows[g * 2 + t] = g * 2 + t;
        suffixTargets[g * 2 + t] = g * 4 + 2 + t;
        joinedToPrefix[g * 4 + t] = prefixRow;
      }
    return {
      size,
      runs,
      examples,
      counts,
      prefixCount: U,
      prefix: stream("prefix", prefixTokens, 0),
      suffix: stream("suffix", suffixTokens, 2),
      join: {
        prefixRows: this.kernels.indices("join.prefixRows", prefixRows),
        prefixTargets: this.kernels.indices("join.prefixTargets", prefixTargets),
        suffixRows: this.kernels.indices("join.suffixRows", suffixRows),
        suffixTargets: this.kernels.indices("join.suffixTargets", suffixTargets),
        joinedToPrefix: this.kernels.indices("join.joinedToPrefix", joinedToPrefix),
      },
    };
  }

  /** The row of run r's position embedding: its own learned table's, or the one sinusoidal table's. */
  private positionRow(run: number, position: number): number {
    return this.cfg.positions === "learned" ? run * 4 + position : position;
  }

  // ---------------------------------------------------------------------------------------------------
  // embedding

  /** A stream's input [R × d]: each row's token embedding plus its position's. */
  private embeddingForward(stream: Stream<I>, w: ModelWeights<A>): A {
    const { d, kernels } = this;
    const x = kernels.buffer(`embedding.${stream.name}`, stream.rows * d);
    kernels.gatherRows(w.tokenEmbedding, stream.tokens, stream.rows, d, x, null, false);
    kernels.gatherRows(w.positionEmbedding, stream.positions, stream.rows, d, x, null, true);
    return x;
  }

  /** Backward of embeddingForward: scatters dx [R × d] into the token (and learned position) embeddings' gradients. */
  private embeddingBackward(stream: Stream<I>, dx: A, g: ModelWeights<A>, runs: number): void {
    const { d, kernels } = this;
    const { tokens, positions, rows } = stream;
    kernels.scatterAddRows(dx, tokens, rows, d, runs * this.dims.vocabSize, g.tokenEmbedding, runs);
    if (g.learnedPositions) kernels.scatterAddRows(dx, positions, rows, d, runs * 4, g.positionEmbedding, runs);
  }

  // ---------------------------------------------------------------------------------------------------
  // block

  /** Block l over both streams, from their inputs prefixIn [U·2 × d] and suffixIn [size·2 × d]. */
  private blockForward(
    l: number,
    p: BlockWeights<A>,
    prefixIn: A,
    suffixIn: A,
    batch: BatchStreams<I>,
    masks: Float32Array[],
  ): BlockActivations<A, I> {
    const last = l === this.cfg.layers - 1;
    const { examples, runs } = batch;
    const prefixes = runs * batch.prefixCount;
    // The prefix attends within itself (positions 0–1), the suffix to all four positions. The last block
    // goes on at the answer position (3) only, so there the prefix gives keys and values alone.
    const prefix = last
      ? this.streamActivations(
          l,
          runs,
          batch.prefix,
          prefixIn,
          { sequences: prefixes, tq: 0, tk: 2, queryOffset: 0 },
          new Int32Array(0),
          masks,
        )
      : this.streamActivations(
          l,
          runs,
          batch.prefix,
          prefixIn,
          { sequences: prefixes, tq: 2, tk: 2, queryOffset: 0 },
          null,
          masks,
        );
    const suffix = last
      ? this.streamActivations(
          l,
          runs,
          batch.suffix,
          suffixIn,
          { sequences: examples, tq: 1, tk: 4, queryOffset: 3 },
          answerRows(examples),
          masks,
        )
      : this.streamActivations(
          l,
          runs,
          batch.suffix,
          suffixIn,
          { sequences: examples, tq: 2, tk: 4, queryOffset: 2 },
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
    p: BlockWeights<A>,
    g: BlockWeights<A>,
    block: BlockActivations<A, I>,
    batch: BatchStreams<I>,
    dPrefixOut: A,
    dSuffixOut: A,
  ): [A, A] {
    const { d, kernels } = this;
    const last = l === this.cfg.layers - 1;
    const { prefix, suffix } = block;
    const dJoined = {
      keys: kernels.zeros(`block${l}.dKeys`, batch.examples * 4 * d),
      values: kernels.zeros(`block${l}.dValues`, batch.examples * 4 * d),
    };
    const dSuffixQueries = kernels.zeros(`${suffix.name}.dQueries`, suffix.queryCount * d);
    const dSuffixIn = kernels.zeros(`${suffix.name}.dx`, suffix.rows * d);
    const dSuffixX1 = this.ffnBackward(suffix, p, g, dSuffixOut);
    this.selfAttentionBackward(suffix, p, g, dSuffixX1, block.joined, dJoined, dSuffixQueries, dSuffixIn);
    const dKeyValues = this.joinBackward(l, batch, dJoined);
    const dPrefixQueries = kernels.zeros(`${prefix.name}.dQueries`, prefix.queryCount * d);
    const dPrefixIn = kernels.zeros(`${prefix.name}.dx`, prefix.rows * d);
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
    runs: number,
    stream: Stream<I>,
    x: A,
    attention: AttentionShape,
    queryRows: Int32Array | null,
    masks: Float32Array[],
  ): StreamActivations<A, I> {
    const { d, f, kernels } = this;
    const name = `block${l}.${stream.name}`;
    const R = stream.rows;
    const Q = attention.sequences * attention.tq;
    const pre = this.cfg.norm === "pre";
    const buffer = (role: string, size: number) => kernels.buffer(`${name}.${role}`, size);
    const a = pre ? buffer("a", R * d) : x;
    const r1 = buffer("r1", Q * d);
    const x1 = pre ? r1 : buffer("x1", Q * d);
    const r2 = buffer("r2", Q * d);
    return {
      name,
      runs,
      rows: R,
      queryCount: Q,
      queryRows: queryRows
        ? {
            rows: kernels.indices(`${name}.queryRows`, queryRows),
            identity: kernels.indices(
              `${name}.queryIdentity`,
              Int32Array.from(queryRows, (_, r) => r),
            ),
          }
        : null,
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

  /** Dropout mask `site` ([examples × 4 × d]) at a stream's Q query rows [Q × d]; null without dropout. */
  private maskRows(
    masks: Float32Array[],
    site: number,
    stream: Stream<I>,
    queryRows: Int32Array | null,
    Q: number,
    role: string,
  ): A | null {
    if (masks.length === 0) return null;
    const { d } = this;
    const rows = new Float32Array(Q * d);
    for (let r = 0; r < Q; r++) {
      // stream row s is position firstPosition + s % 2 of sequence s >> 1, an example (dropout shares no prefix)
      const s = queryRows ? queryRows[r] : r;
      const from = ((s >> 1) * 4 + stream.firstPosition + (s % 2)) * d;
      rows.set(masks[site].subarray(from, from + d), r * d);
    }
    return this.kernels.upload(role, rows);
  }

  /** LN1 (pre-LN), then keys and values of every row and queries of the query rows. */
  private qkvForward(s: StreamActivations<A, I>, p: BlockWeights<A>): void {
    const { d, kernels } = this;
    const { runs } = s;
    if (this.cfg.norm === "pre")
      kernels.layerNormForward(s.x, p.ln1.weight, p.ln1.bias, s.rows, d, s.a, s.ln1Mean, s.ln1Rstd, runs);
    kernels.matmul(false, false, s.rows / runs, d, d, s.a, p.wk, s.keys, false, runs);
    kernels.matmul(false, false, s.rows / runs, d, d, s.a, p.wv, s.values, false, runs);
    if (s.queryRows) kernels.gatherRows(s.a, s.queryRows.rows, s.queryCount, d, s.aq, null, false);
    kernels.matmul(false, false, s.queryCount / runs, d, d, s.aq, p.wq, s.queries, false, runs);
  }

  /** Backward of qkvForward: accumulates into dx [R × d] from dQueries [Q × d] and dKeyValues [R × d each]. */
  private qkvBackward(
    s: StreamActivations<A, I>,
    p: BlockWeights<A>,
    g: BlockWeights<A>,
    dQueries: A,
    dKeyValues: KeyValues<A>,
    dx: A,
  ): void {
    const { d, kernels } = this;
    const { runs } = s;
    const R = s.rows / runs; // per run
    const Q = s.queryCount / runs;
    const pre = this.cfg.norm === "pre";
    // post-LN, a is x: its gradient goes straight into dx
    const da = pre ? kernels.zeros(`${s.name}.da`, s.rows * d) : dx;
    kernels.matmul(false, true, R, d, d, dKeyValues.keys, p.wk, da, true, runs);
    kernels.matmul(true, false, d, d, R, s.a, dKeyValues.keys, g.wk, true, runs);
    kernels.matmul(false, true, R, d, d, dKeyValues.values, p.wv, da, true, runs);
    kernels.matmul(true, false, d, d, R, s.a, dKeyValues.values, g.wv, true, runs);
    kernels.matmul(true, false, d, d, Q, s.aq, dQueries, g.wq, true, runs);
    const daq = kernels.zeros(`${s.name}.daq`, s.queryCount * d);
    kernels.matmul(false, true, Q, d, d, dQueries, p.wq, daq, true, runs);
    this.addRows(daq, s.queryRows, s.queryCount, da);
    if (pre) {
      const { ln1 } = p;
      kernels.layerNormBackward(
        da,
        s.x,
        ln1.weight,
        s.ln1Mean,
        s.ln1Rstd,
        s.rows,
        d,
        dx,
        g.ln1.weight,
        g.ln1.bias,
        runs,
      );
    }
  }

  /** Every example's keys and values at all four positions: its prefix's (0–1), then its own (2–3). */
  private joinForward(
    l: number,
    batch: BatchStreams<I>,
    prefix: StreamActivations<A, I>,
    suffix: StreamActivations<A, I>,
  ): KeyValues<A> {
    const { d, kernels } = this;
    const { join, examples } = batch;
    const keys = kernels.buffer(`block${l}.keys`, examples * 4 * d);
    const values = kernels.buffer(`block${l}.values`, examples * 4 * d);
    kernels.gatherRows(prefix.keys, join.prefixRows, examples * 2, d, keys, join.prefixTargets, false);
    kernels.gatherRows(prefix.values, join.prefixRows, examples * 2, d, values, join.prefixTargets, false);
    kernels.gatherRows(suffix.keys, join.suffixRows, examples * 2, d, keys, join.suffixTargets, false);
    kernels.gatherRows(suffix.values, join.suffixRows, examples * 2, d, values, join.suffixTargets, false);
    return { keys, values };
  }

  /** Backward of joinForward: positions 0–1 summed into each example's prefix, 2–3 copied back to the example. */
  private joinBackward(
    l: number,
    batch: BatchStreams<I>,
    dJoined: KeyValues<A>,
  ): { prefix: KeyValues<A>; suffix: KeyValues<A> } {
    const { d, kernels } = this;
    const { join, examples } = batch;
    const prefixRows = batch.prefix.rows;
    const dPrefixKeys = kernels.zeros(`block${l}.prefix.dKeys`, prefixRows * d);
    const dPrefixValues = kernels.zeros(`block${l}.prefix.dValues`, prefixRows * d);
    const dSuffixKeys = kernels.buffer(`block${l}.suffix.dKeys`, examples * 2 * d);
    const dSuffixValues = kernels.buffer(`block${l}.suffix.dValues`, examples * 2 * d);
    const { runs } = batch;
    kernels.scatterAddRows(dJoined.keys, join.joinedToPrefix, examples * 4, d, prefixRows, dPrefixKeys, runs);
    kernels.scatterAddRows(dJoined.values, join.joinedToPrefix, examples * 4, d, prefixRows, dPrefixValues, runs);
    kernels.gatherRows(dJoined.keys, join.suffixTargets, examples * 2, d, dSuffixKeys, null, false);
    kernels.gatherRows(dJoined.values, join.suffixTargets, examples * 2, d, dSuffixValues, null, false);
    return {
      prefix: { keys: dPrefixKeys, values: dPrefixValues },
      suffix: { keys: dSuffixKeys, values: dSuffixValues },
    };
  }

  /** Attention of the query rows over `attended`, output projection, dropout and residual; post-LN, then LN1. */
  private selfAttentionForward(s: StreamActivations<A, I>, p: BlockWeights<A>, attended: KeyValues<A>): void {
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
    const projected = kernels.buffer(`${s.name}.projected`, Q * d);
    kernels.matmul(false, false, Q / s.runs, d, d, s.ao, p.wo, projected, false, s.runs);
    if (s.queryRows) kernels.gatherRows(s.x, s.queryRows.rows, Q, d, s.xq, null, false);
    kernels.residualAdd(s.xq, projected, s.mask1, Q * d, s.r1);
    if (this.cfg.norm === "post")
      kernels.layerNormForward(s.r1, p.ln1.weight, p.ln1.bias, Q, d, s.x1, s.ln1Mean, s.ln1Rstd, s.runs);
  }

  /**
   * Backward of selfAttentionForward, from dx1 [Q × d]: accumulates the residual's gradient into dx
   * [R × d] at the query rows, and the attention's into dAttended and dQueries [Q × d].
   */
  private selfAttentionBackward(
    s: StreamActivations<A, I>,
    p: BlockWeights<A>,
    g: BlockWeights<A>,
    dx1: A,
    attended: KeyValues<A>,
    dAttended: KeyValues<A>,
    dQueries: A,
    dx: A,
  ): void {
    const { d, kernels } = this;
    const { runs } = s;
    const Q = s.queryCount;
    let dr1 = dx1;
    if (this.cfg.norm === "post") {
      dr1 = kernels.zeros(`${s.name}.dr1`, Q * d);
      const { ln1 } = p;
      kernels.layerNormBackward(dx1, s.r1, ln1.weight, s.ln1Mean, s.ln1Rstd, Q, d, dr1, g.ln1.weight, g.ln1.bias, runs);
    }
    this.addRows(dr1, s.queryRows, Q, dx);
    const dProjected = this.dropoutBackward(dr1, s.mask1, Q * d, `${s.name}.dProjected`);
    const dao = kernels.zeros(`${s.name}.dao`, Q * d);
    kernels.matmul(false, true, Q / runs, d, d, dProjected, p.wo, dao, true, runs);
    kernels.matmul(true, false, d, d, Q / runs, s.ao, dProjected, g.wo, true, runs);
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
  private ffnForward(s: StreamActivations<A, I>, p: BlockWeights<A>): void {
    const { d, f, kernels } = this;
    const { runs } = s;
    const Q = s.queryCount;
    const pre = this.cfg.norm === "pre";
    if (pre) kernels.layerNormForward(s.x1, p.ln2.weight, p.ln2.bias, Q, d, s.ffnIn, s.ln2Mean, s.ln2Rstd, runs);
    kernels.matmul(false, false, Q / runs, f, d, s.ffnIn, p.w1, s.h, false, runs);
    kernels.activationForward(this.cfg.activation, s.h, s.ha, Q * f);
    const ffnOut = kernels.buffer(`${s.name}.ffnOut`, Q * d);
    kernels.matmul(false, false, Q / runs, d, f, s.ha, p.w2, ffnOut, false, runs);
    kernels.residualAdd(s.x1, ffnOut, s.mask2, Q * d, s.r2);
    if (!pre) kernels.layerNormForward(s.r2, p.ln2.weight, p.ln2.bias, Q, d, s.out, s.ln2Mean, s.ln2Rstd, runs);
  }

  /** Backward of ffnForward, from dOut [Q × d] (the gradient of s.out); returns dx1 [Q × d]. */
  private ffnBackward(s: StreamActivations<A, I>, p: BlockWeights<A>, g: BlockWeights<A>, dOut: A): A {
    const { d, f, kernels } = this;
    const { runs } = s;
    const Q = s.queryCount;
    const q = Q / runs; // query rows per run
    const post = this.cfg.norm === "post";
    const { ln2 } = p;
    let dr2 = dOut;
    if (post) {
      dr2 = kernels.zeros(`${s.name}.dr2`, Q * d);
      kernels.layerNormBackward(
        dOut,
        s.r2,
        ln2.weight,
        s.ln2Mean,
        s.ln2Rstd,
        Q,
        d,
        dr2,
        g.ln2.weight,
        g.ln2.bias,
        runs,
      );
    }
    const dFfnOut = this.dropoutBackward(dr2, s.mask2, Q * d, `${s.name}.dFfnOut`);
    const dha = kernels.zeros(`${s.name}.dha`, Q * f);
    kernels.matmul(false, true, q, f, d, dFfnOut, p.w2, dha, true, runs);
    kernels.matmul(true, false, f, d, q, s.ha, dFfnOut, g.w2, true, runs);
    const dh = kernels.buffer(`${s.name}.dh`, Q * f);
    kernels.activationBackward(this.cfg.activation, dha, s.h, dh, Q * f);
    const dFfnIn = kernels.zeros(`${s.name}.dFfnIn`, Q * d);
    kernels.matmul(false, true, q, d, f, dh, p.w1, dFfnIn, true, runs);
    kernels.matmul(true, false, d, f, q, s.ffnIn, dh, g.w1, true, runs);
    const dx1 = kernels.buffer(`${s.name}.dx1`, Q * d);
    if (post) {
      kernels.residualAdd(dr2, dFfnIn, null, Q * d, dx1);
    } else {
      kernels.copy(dr2, dx1, Q * d);
      kernels.layerNormBackward(
        dFfnIn,
        s.x1,
        ln2.weight,
        s.ln2Mean,
        s.ln2Rstd,
        Q,
        d,
        dx1,
        g.ln2.weight,
        g.ln2.bias,
        runs,
      );
    }
    return dx1;
  }

  /** The gradient through a dropout mask: dy ⊙ mask, or dy itself without dropout. */
  private dropoutBackward(dy: A, mask: A | null, n: number, role: string): A {
    if (!mask) return dy;
    const dx = this.kernels.buffer(role, n);
    this.kernels.multiply(dy, mask, n, dx);
    return dx;
  }

  /** Adds src [count × d] into the stream rows the query rows came from (every row, in order, when null). */
  private addRows(src: A, queryRows: { rows: I; identity: I } | null, count: number, dst: A): void {
    if (queryRows) this.kernels.gatherRows(src, queryRows.identity, count, this.d, dst, queryRows.rows, true);
    else this.kernels.addInto(src, count * this.d, dst);
  }

  // ---------------------------------------------------------------------------------------------------
  // head

  /** Final LN (pre-LN), logits and cross-entropy of x [examples × d]; dlogits too, when given. */
  private headForward(
    x: A,
    w: ModelWeights<A>,
    targets: I,
    batch: BatchStreams<I>,
    dlogits: A | null,
  ): HeadActivations<A> {
    const { d, n, kernels } = this;
    const { size, runs, examples } = batch;
    const head: HeadActivations<A> = {
      size,
      runs,
      x,
      normed: w.finalLn ? kernels.buffer("head.normed", examples * d) : x,
      lnMean: kernels.buffer("head.lnMean", examples),
      lnRstd: kernels.buffer("head.lnRstd", examples),
      logits: kernels.buffer("head.logits", examples * n),
      losses: kernels.buffer("head.losses", examples),
    };
    if (w.finalLn) {
      const { weight, bias } = w.finalLn;
      kernels.layerNormForward(x, weight, bias, examples, d, head.normed, head.lnMean, head.lnRstd, runs);
    }
    kernels.matmul(false, false, size, n, d, head.normed, w.head, head.logits, false, runs);
    // each run's mean over its own real examples
    const output = this.cfg.output ?? "softmax";
    kernels.softmaxCrossEntropy(head.logits, targets, examples, n, head.losses, dlogits, batch.counts, output);
    return head;
  }

  /** Backward of headForward from dlogits [size × n]; returns the gradient of x [size × d]. */
  private headBackward(head: HeadActivations<A>, dlogits: A, w: ModelWeights<A>, g: ModelWeights<A>): A {
    const { d, n, kernels } = this;
    const { size, runs } = head;
    kernels.matmul(true, false, d, n, size, head.normed, dlogits, g.head, true, runs);
    const dNormed = kernels.zeros("head.dNormed", runs * size * d);
    kernels.matmul(false, true, size, d, n, dlogits, w.head, dNormed, true, runs);
    if (!w.finalLn || !g.finalLn) return dNormed;
    const dx = kernels.zeros("head.dx", runs * size * d);
    kernels.layerNormBackward(
      dNormed,
      head.x,
      w.finalLn.weight,
      head.lnMean,
      head.lnRstd,
      runs * size,
      d,
      dx,
      g.finalLn.weight,
      g.finalLn.bias,
      runs,
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
