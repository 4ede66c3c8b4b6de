// The transformer's forward and backward passes, layer by layer side by side, on the fast engine's kernels.
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
// (example b, position 2+t) → b·2+t. Weights are stored [in, out] (y = x·W), as everywhere in the project.

import { ModelDims, TransformerConfig, ffnWidth, sinusoidalPositions } from "../../model/config";
import { Kernels } from "./kernels";
import { Workspace } from "./workspace";

export type Weights = Map<string, Float32Array>;

/** Forward activations of one group of rows in one layer, kept for the backward pass. */
interface GroupCache {
  rows: number;
  /** The layer's input (residual stream). */
  x: Float32Array;
  /** Input of the q/k/v projections: x (post-LN) or LN1(x) (pre-LN). */
  a: Float32Array;
  /** LN1's statistics: before attention over all rows (pre-LN), or after it over the selected rows (post-LN). */
  ln1Mean?: Float32Array;
  ln1Rstd?: Float32Array;
  k: Float32Array;
  v: Float32Array;
  /** Rows that continue past attention (all rows, or the answer position only in the last layer); 0 if none. */
  qRows: number;
  /** Indices of those rows within the group (null: all rows, in order). */
  qSel: Int32Array | null;
  q?: Float32Array;
  att?: Float32Array;
  ao?: Float32Array;
  /** Residual input of the selected rows (x, gathered). */
  xSel?: Float32Array;
  r1?: Float32Array;
  x1?: Float32Array;
  fIn?: Float32Array;
  h?: Float32Array;
  ha?: Float32Array;
  r2?: Float32Array;
  out?: Float32Array;
  ln2Mean?: Float32Array;
  ln2Rstd?: Float32Array;
  mask1?: Float32Array;
  mask2?: Float32Array;
}

export interface TransformerPass {
  /** Logits [size × numSymbols]. */
  logits: Float32Array;
  /** Per-example cross-entropy. */
  losses: Float32Array;
}

export class FastTransformer {
  private readonly d: number;
  private readonly f: number;
  private readonly heads: number;
  private readonly dh: number;
  private readonly positions: Float32Array | null;
  private readonly ws = new Workspace();

  constructor(
    private readonly k: Kernels,
    private readonly cfg: TransformerConfig,
    private readonly dims: ModelDims,
  ) {
    if (dims.seqLen !== 4) throw new Error(`the fast transformer handles sequences of 4 tokens (x ∘ y =), not ${dims.seqLen}`);
    this.d = cfg.width;
    this.f = ffnWidth(cfg);
    this.heads = cfg.heads;
    this.dh = cfg.width / cfg.heads;
    this.positions = cfg.positions === "sinusoidal" ? sinusoidalPositions(4, cfg.width) : null;
  }

  /**
   * Forward pass over `size` examples; with `grads`, also the backward pass of the mean cross-entropy,
   * accumulating into grads (by weight name). `masks` are the dropout masks of engines/engine.dropoutMasks
   * (empty: no dropout).
   */
  run(w: Weights, inputs: Int32Array, targets: Int32Array, size: number, masks: Float32Array[], grads: Weights | null): TransformerPass {
    const { d } = this;
    const L = this.cfg.layers;
    const ws = this.ws;
    const get = (name: string) => {
      const t = w.get(name);
      if (!t) throw new Error(`fast transformer: no weight ${name}`);
      return t;
    };

    // group examples by prefix (tokens 0 and 1)
    const prefixOf = new Int32Array(size);
    const prefixTokens: number[] = [];
    if (masks.length === 0) {
      const seen = new Map<number, number>();
      for (let b = 0; b < size; b++) {
        const key = inputs[b * 4] * this.dims.vocabSize + inputs[b * 4 + 1];
        let u = seen.get(key);
        if (u === undefined) {
          u = seen.size;
          seen.set(key, u);
          prefixTokens.push(inputs[b * 4], inputs[b * 4 + 1]);
        }
        prefixOf[b] = u;
      }
    } else {
      for (let b = 0; b < size; b++) {
        prefixOf[b] = b;
        prefixTokens.push(inputs[b * 4], inputs[b * 4 + 1]);
      }
    }
    const U = prefixTokens.length / 2;

    // embeddings
    const emb = get("embed.token");
    const pos = this.positions ?? get("embed.pos");
    const embed = (name: string, rows: number, tokenAt: (r: number) => number, positionAt: (r: number) => number) => {
      const x = ws.get(name, rows * d);
      for (let r = 0; r < rows; r++) {
        const tok = tokenAt(r);
        const p = positionAt(r);
        for (let i = 0; i < d; i++) x[r * d + i] = emb[tok * d + i] + pos[p * d + i];
      }
      return x;
    };
    let xP = embed("emb.P", U * 2, (r) => prefixTokens[r], (r) => r % 2);
    let xS = embed("emb.S", size * 2, (r) => inputs[(r >> 1) * 4 + 2 + (r % 2)], (r) => 2 + (r % 2));

    // answer-position rows of the suffix stream: 1, 3, 5, …
    const answerRows = new Int32Array(size);
    for (let b = 0; b < size; b++) answerRows[b] = b * 2 + 1;
    const maskRows = (site: number, rowsOf: (r: number) => number, rows: number, name: string) => {
      if (masks.length === 0) return undefined;
      const m = ws.get(name, rows * d);
      for (let r = 0; r < rows; r++) m.set(masks[site].subarray(rowsOf(r) * d, rowsOf(r) * d + d), r * d);
      return m;
    };

    const caches: { P: GroupCache; S: GroupCache; kFull: Float32Array; vFull: Float32Array }[] = [];
    for (let l = 0; l < L; l++) {
      const last = l === L - 1;
      const b = `blocks.${l}`;
      const P = this.projectKV(`L${l}.P`, xP, U * 2, w, b);
      const S = this.projectKV(`L${l}.S`, xS, size * 2, w, b);
      // keys and values of all 4 positions per example: the shared prefix's, then the example's own
      const kFull = ws.get(`L${l}.kFull`, size * 4 * d);
      const vFull = ws.get(`L${l}.vFull`, size * 4 * d);
      for (let e = 0; e < size; e++) {
        const u = prefixOf[e];
        kFull.set(P.k.subarray(u * 2 * d, (u * 2 + 2) * d), e * 4 * d);
        vFull.set(P.v.subarray(u * 2 * d, (u * 2 + 2) * d), e * 4 * d);
        kFull.set(S.k.subarray(e * 2 * d, (e * 2 + 2) * d), (e * 4 + 2) * d);
        vFull.set(S.v.subarray(e * 2 * d, (e * 2 + 2) * d), (e * 4 + 2) * d);
      }
      if (!last) {
        // the prefix attends within itself (positions 0–1); the suffix to all four positions
        this.attendAndFeedForward(`L${l}.P`, P, null, P.k, P.v, U, 2, 2, 0, w, b, [
          maskRows(2 * l, (r) => (r >> 1) * 4 + (r % 2), U * 2, `L${l}.P.m1`),
          maskRows(2 * l + 1, (r) => (r >> 1) * 4 + (r % 2), U * 2, `L${l}.P.m2`),
        ]);
        this.attendAndFeedForward(`L${l}.S`, S, null, kFull, vFull, size, 2, 4, 2, w, b, [
          maskRows(2 * l, (r) => (r >> 1) * 4 + 2 + (r % 2), size * 2, `L${l}.S.m1`),
          maskRows(2 * l + 1, (r) => (r >> 1) * 4 + 2 + (r % 2), size * 2, `L${l}.S.m2`),
        ]);
        xP = P.out!;
        xS = S.out!;
      } else {
        this.attendAndFeedForward(`L${l}.S`, S, answerRows, kFull, vFull, size, 1, 4, 3, w, b, [
          maskRows(2 * l, (r) => r * 4 + 3, size, `L${l}.S.m1`),
          maskRows(2 * l + 1, (r) => r * 4 + 3, size, `L${l}.S.m2`),
        ]);
      }
      caches.push({ P, S, kFull, vFull });
    }

    // output head at the answer position
    const top = caches[L - 1].S;
    let xf = top.out!;
    let finalMean: Float32Array | null = null;
    let finalRstd: Float32Array | null = null;
    if (this.cfg.norm === "pre") {
      const normed = ws.get("final.out", size * d);
      finalMean = ws.get("final.mean", size);
      finalRstd = ws.get("final.rstd", size);
      this.k.layerNormForward(xf, get("final.ln.weight"), get("final.ln.bias"), size, d, normed, finalMean, finalRstd);
      xf = normed;
    }
    const n = this.dims.numSymbols;
    const logits = ws.get("logits", size * n);
    this.k.matmul(false, false, size, n, d, xf, get("head.weight"), logits, false);
    const losses = ws.get("losses", size);
    const dlogits = grads ? ws.get("dlogits", size * n) : null;
    this.k.softmaxCrossEntropy(logits, targets, size, n, losses, dlogits, 1 / size);
    if (!grads || !dlogits) return { logits, losses };

    // ---- backward ----
    const g = (name: string) => {
      const t = grads.get(name);
      if (!t) throw new Error(`fast transformer: no gradient buffer for ${name}`);
      return t;
    };
    this.k.matmul(true, false, d, n, size, xf, dlogits, g("head.weight"), true);
    let dTop = ws.zeros("d.top", size * d);
    this.k.matmul(false, true, size, d, n, dlogits, get("head.weight"), dTop, true);
    if (this.cfg.norm === "pre") {
      const dx = ws.zeros("d.final", size * d);
      this.k.layerNormBackward(dTop, top.out!, get("final.ln.weight"), finalMean!, finalRstd!, size, d, dx, g("final.ln.weight"), g("final.ln.bias"));
      dTop = dx;
    }
    // dS: gradient w.r.t. the suffix stream entering the current layer's output; dP likewise
    let dOutS: Float32Array | null = dTop;
    let dOutP: Float32Array | null = null;
    for (let l = L - 1; l >= 0; l--) {
      const last = l === L - 1;
      const b = `blocks.${l}`;
      const { P, S, kFull, vFull } = caches[l];
      const dkFull = ws.zeros(`L${l}.dkFull`, size * 4 * d);
      const dvFull = ws.zeros(`L${l}.dvFull`, size * 4 * d);
      const dxS = ws.zeros(`L${l}.S.dx`, size * 2 * d);
      const dqS = this.backAttendAndFeedForward(`L${l}.S`, S, dOutS!, kFull, vFull, size, last ? 1 : 2, 4, last ? 3 : 2, w, grads, b, dkFull, dvFull, dxS);
      // split the full keys/values gradient: positions 0–1 to the shared prefix, 2–3 to the example
      const dkP = ws.zeros(`L${l}.P.dk`, U * 2 * d);
      const dvP = ws.zeros(`L${l}.P.dv`, U * 2 * d);
      const dkS = ws.get(`L${l}.S.dk`, size * 2 * d);
      const dvS = ws.get(`L${l}.S.dv`, size * 2 * d);
      for (let e = 0; e < size; e++) {
        const u = prefixOf[e];
        for (let i = 0; i < 2 * d; i++) {
          dkP[u * 2 * d + i] += dkFull[e * 4 * d + i];
          dvP[u * 2 * d + i] += dvFull[e * 4 * d + i];
        }
        dkS.set(dkFull.subarray((e * 4 + 2) * d, (e * 4 + 4) * d), e * 2 * d);
        dvS.set(dvFull.subarray((e * 4 + 2) * d, (e * 4 + 4) * d), e * 2 * d);
      }
      const dxP = ws.zeros(`L${l}.P.dx`, U * 2 * d);
      if (!last) {
        // the prefix's own attention adds to the keys/values gradient the suffix left
        const dqP = this.backAttendAndFeedForward(`L${l}.P`, P, dOutP!, P.k, P.v, U, 2, 2, 0, w, grads, b, dkP, dvP, dxP);
        this.backProjectQKV(P, dqP, dkP, dvP, w, grads, b, dxP);
      } else {
        this.backProjectQKV(P, null, dkP, dvP, w, grads, b, dxP);
      }
      this.backProjectQKV(S, dqS, dkS, dvS, w, grads, b, dxS);
      dOutS = dxS;
      dOutP = dxP;
    }

    // embeddings
    const dEmb = g("embed.token");
    const dPos = this.positions ? null : g("embed.pos");
    const scatter = (dx: Float32Array, rows: number, tokenAt: (r: number) => number, positionAt: (r: number) => number) => {
      for (let r = 0; r < rows; r++) {
        const tok = tokenAt(r);
        const p = positionAt(r);
        for (let i = 0; i < d; i++) {
          dEmb[tok * d + i] += dx[r * d + i];
          if (dPos) dPos[p * d + i] += dx[r * d + i];
        }
      }
    };
    scatter(dOutP!, U * 2, (r) => prefixTokens[r], (r) => r % 2);
    scatter(dOutS!, size * 2, (r) => inputs[(r >> 1) * 4 + 2 + (r % 2)], (r) => 2 + (r % 2));
    return { logits, losses };
  }

  /** LN1 (pre-LN) and the key/value projections of every row of a group. */
  private projectKV(name: string, x: Float32Array, rows: number, w: Weights, b: string): GroupCache {
    const { d, ws, k } = this;
    const c: GroupCache = { rows, x, a: x, k: ws.get(`${name}.k`, rows * d), v: ws.get(`${name}.v`, rows * d), qRows: 0, qSel: null };
    if (this.cfg.norm === "pre") {
      c.a = ws.get(`${name}.a`, rows * d);
      c.ln1Mean = ws.get(`${name}.ln1.mean`, rows);
      c.ln1Rstd = ws.get(`${name}.ln1.rstd`, rows);
      k.layerNormForward(x, w.get(`${b}.ln1.weight`)!, w.get(`${b}.ln1.bias`)!, rows, d, c.a, c.ln1Mean, c.ln1Rstd);
    }
    k.matmul(false, false, rows, d, d, c.a, w.get(`${b}.attn.wk`)!, c.k, false);
    k.matmul(false, false, rows, d, d, c.a, w.get(`${b}.attn.wv`)!, c.v, false);
    return c;
  }

  /**
   * Queries, attention, output projection, residual, FFN and layer norms for the selected rows of a
   * group (`sel` null: every row). Attention is over `n` sequences of tq queries and tk keys/values.
   */
  private attendAndFeedForward(
    name: string, c: GroupCache, sel: Int32Array | null, kAll: Float32Array, vAll: Float32Array,
    n: number, tq: number, tk: number, offset: number, w: Weights, b: string, masks: (Float32Array | undefined)[],
  ): void {
    const { d, f, ws, k } = this;
    const rows = n * tq;
    const post = this.cfg.norm === "post";
    c.qRows = rows;
    c.qSel = sel;
    const pick = (src: Float32Array, dst: string) => {
      if (!sel) return src;
      const out = ws.get(dst, rows * d);
      for (let r = 0; r < rows; r++) out.set(src.subarray(sel[r] * d, sel[r] * d + d), r * d);
      return out;
    };
    const aSel = pick(c.a, `${name}.aSel`);
    c.xSel = pick(c.x, `${name}.xSel`);
    c.q = ws.get(`${name}.q`, rows * d);
    k.matmul(false, false, rows, d, d, aSel, w.get(`${b}.attn.wq`)!, c.q, false);
    c.att = ws.get(`${name}.att`, n * this.heads * tq * tk);
    c.ao = ws.get(`${name}.ao`, rows * d);
    k.attentionForward(c.q, kAll, vAll, n, tq, tk, this.heads, this.dh, offset, c.att, c.ao);
    const o = ws.get(`${name}.o`, rows * d);
    k.matmul(false, false, rows, d, d, c.ao, w.get(`${b}.attn.wo`)!, o, false);
    [c.mask1, c.mask2] = masks;
    if (c.mask1) for (let i = 0; i < o.length; i++) o[i] *= c.mask1[i];
    // first residual
    c.r1 = ws.get(`${name}.r1`, rows * d);
    for (let i = 0; i < rows * d; i++) c.r1[i] = c.xSel[i] + o[i];
    if (post) {
      c.x1 = ws.get(`${name}.x1`, rows * d);
      c.ln1Mean = ws.get(`${name}.ln1.mean`, rows);
      c.ln1Rstd = ws.get(`${name}.ln1.rstd`, rows);
      k.layerNormForward(c.r1, w.get(`${b}.ln1.weight`)!, w.get(`${b}.ln1.bias`)!, rows, d, c.x1, c.ln1Mean, c.ln1Rstd);
      c.fIn = c.x1;
    } else {
      c.x1 = c.r1;
      c.fIn = ws.get(`${name}.fIn`, rows * d);
      c.ln2Mean = ws.get(`${name}.ln2.mean`, rows);
      c.ln2Rstd = ws.get(`${name}.ln2.rstd`, rows);
      k.layerNormForward(c.x1, w.get(`${b}.ln2.weight`)!, w.get(`${b}.ln2.bias`)!, rows, d, c.fIn, c.ln2Mean, c.ln2Rstd);
    }
    // FFN
    c.h = ws.get(`${name}.h`, rows * f);
    c.ha = ws.get(`${name}.ha`, rows * f);
    k.matmul(false, false, rows, f, d, c.fIn, w.get(`${b}.mlp.w1`)!, c.h, false);
    k.activationForward(this.cfg.activation, c.h, c.ha, rows * f);
    const fo = ws.get(`${name}.fo`, rows * d);
    k.matmul(false, false, rows, d, f, c.ha, w.get(`${b}.mlp.w2`)!, fo, false);
    if (c.mask2) for (let i = 0; i < fo.length; i++) fo[i] *= c.mask2[i];
    c.r2 = ws.get(`${name}.r2`, rows * d);
    for (let i = 0; i < rows * d; i++) c.r2[i] = c.x1[i] + fo[i];
    if (post) {
      c.out = ws.get(`${name}.out`, rows * d);
      c.ln2Mean = ws.get(`${name}.ln2.mean`, rows);
      c.ln2Rstd = ws.get(`${name}.ln2.rstd`, rows);
      k.layerNormForward(c.r2, w.get(`${b}.ln2.weight`)!, w.get(`${b}.ln2.bias`)!, rows, d, c.out, c.ln2Mean, c.ln2Rstd);
    } else {
      c.out = c.r2;
    }
  }

  /**
   * Backward of attendAndFeedForward: from dOut (gradient of the group's output rows) accumulates the
   * weight gradients, dk/dv of the attention's keys and values (kAll/vAll layout), and into dx the
   * residual path's gradient for the selected rows. Returns dq (gradient of the queries).
   */
  private backAttendAndFeedForward(
    name: string, c: GroupCache, dOut: Float32Array, kAll: Float32Array, vAll: Float32Array,
    n: number, tq: number, tk: number, offset: number, w: Weights, grads: Weights, b: string,
    dkAll: Float32Array, dvAll: Float32Array, dx: Float32Array,
  ): Float32Array {
    const { d, f, ws, k } = this;
    const rows = c.qRows;
    const post = this.cfg.norm === "post";
    const g = (p: string) => grads.get(p)!;
    // second sublayer
    let dr2 = dOut;
    if (post) {
      dr2 = ws.zeros(`${name}.dr2`, rows * d);
      k.layerNormBackward(dOut, c.r2!, w.get(`${b}.ln2.weight`)!, c.ln2Mean!, c.ln2Rstd!, rows, d, dr2, g(`${b}.ln2.weight`), g(`${b}.ln2.bias`));
    }
    const dfo = ws.get(`${name}.dfo`, rows * d);
    for (let i = 0; i < rows * d; i++) dfo[i] = c.mask2 ? dr2[i] * c.mask2[i] : dr2[i];
    const dha = ws.zeros(`${name}.dha`, rows * f);
    k.matmul(false, true, rows, f, d, dfo, w.get(`${b}.mlp.w2`)!, dha, true);
    k.matmul(true, false, f, d, rows, c.ha!, dfo, g(`${b}.mlp.w2`), true);
    const dh = ws.get(`${name}.dh`, rows * f);
    k.activationBackward(this.cfg.activation, dha, c.h!, dh, rows * f);
    const dfIn = ws.zeros(`${name}.dfIn`, rows * d);
    k.matmul(false, true, rows, d, f, dh, w.get(`${b}.mlp.w1`)!, dfIn, true);
    k.matmul(true, false, d, f, rows, c.fIn!, dh, g(`${b}.mlp.w1`), true);
    // gradient at x1 (the first sublayer's output)
    const dx1 = ws.get(`${name}.dx1`, rows * d);
    if (post) {
      for (let i = 0; i < rows * d; i++) dx1[i] = dr2[i] + dfIn[i];
    } else {
      dx1.set(dr2);
      k.layerNormBackward(dfIn, c.x1!, w.get(`${b}.ln2.weight`)!, c.ln2Mean!, c.ln2Rstd!, rows, d, dx1, g(`${b}.ln2.weight`), g(`${b}.ln2.bias`));
    }
    // first sublayer
    let dr1 = dx1;
    if (post) {
      dr1 = ws.zeros(`${name}.dr1`, rows * d);
      k.layerNormBackward(dx1, c.r1!, w.get(`${b}.ln1.weight`)!, c.ln1Mean!, c.ln1Rstd!, rows, d, dr1, g(`${b}.ln1.weight`), g(`${b}.ln1.bias`));
    }
    // residual: into the selected rows of dx
    const sel = c.qSel;
    for (let r = 0; r < rows; r++) {
      const to = (sel ? sel[r] : r) * d;
      for (let i = 0; i < d; i++) dx[to + i] += dr1[r * d + i];
    }
    const dO = ws.get(`${name}.dO`, rows * d);
    for (let i = 0; i < rows * d; i++) dO[i] = c.mask1 ? dr1[i] * c.mask1[i] : dr1[i];
    const dao = ws.zeros(`${name}.dao`, rows * d);
    k.matmul(false, true, rows, d, d, dO, w.get(`${b}.attn.wo`)!, dao, true);
    k.matmul(true, false, d, d, rows, c.ao!, dO, g(`${b}.attn.wo`), true);
    const dq = ws.zeros(`${name}.dq`, rows * d);
    k.attentionBackward(dao, c.q!, kAll, vAll, c.att!, n, tq, tk, this.heads, this.dh, offset, dq, dkAll, dvAll);
    return dq;
  }

  /** Backward of the q/k/v projections (and LN1 in pre-LN), accumulating into dx (the group's input). */
  private backProjectQKV(c: GroupCache, dq: Float32Array | null, dk: Float32Array, dv: Float32Array, w: Weights, grads: Weights, b: string, dx: Float32Array): void {
    const { d, ws, k } = this;
    const g = (p: string) => grads.get(p)!;
    const rows = c.rows;
    const pre = this.cfg.norm === "pre";
    const da = pre ? ws.zeros(`${b}.da.${rows}`, rows * d) : dx;
    k.matmul(false, true, rows, d, d, dk, w.get(`${b}.attn.wk`)!, da, true);
    k.matmul(true, false, d, d, rows, c.a, dk, g(`${b}.attn.wk`), true);
    k.matmul(false, true, rows, d, d, dv, w.get(`${b}.attn.wv`)!, da, true);
    k.matmul(true, false, d, d, rows, c.a, dv, g(`${b}.attn.wv`), true);
    if (dq) {
      const qRows = c.qRows;
      const sel = c.qSel;
      // queries came from the selected rows of a
      const aSel = sel ? ws.get(`${b}.aSel.${qRows}`, qRows * d) : c.a;
      if (sel) for (let r = 0; r < qRows; r++) aSel.set(c.a.subarray(sel[r] * d, sel[r] * d + d), r * d);
      k.matmul(true, false, d, d, qRows, aSel, dq, g(`${b}.attn.wq`), true);
      const daSel = ws.zeros(`${b}.daSel.${qRows}`, qRows * d);
      k.matmul(false, true, qRows, d, d, dq, w.get(`${b}.attn.wq`)!, daSel, true);
      for (let r = 0; r < qRows; r++) {
        const to = (sel ? sel[r] : r) * d;
        for (let i = 0; i < d; i++) da[to + i] += daSel[r * d + i];
      }
    }
    if (pre) k.layerNormBackward(da, c.x, w.get(`${b}.ln1.weight`)!, c.ln1Mean!, c.ln1Rstd!, rows, d, dx, g(`${b}.ln1.weight`), g(`${b}.ln1.bias`));
  }
}
