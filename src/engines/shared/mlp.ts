// The MLP's forward and backward passes over a ModelKernels set (model-kernels.ts), shared by the fast and
// webgpu engines: embeddings of x and y, concatenated → hidden layer (+ dropout) → logits. With several
// runs (a pack), run r's example e is row r·size + e of every activation, and its tokens index rows
// r·numSymbols + token of the embedding table [runs·numSymbols × d]; a run's padding examples (counts, see
// ModelSequence) come after its real ones.

import { MlpConfig, ModelDims } from "../../model/config";
import { exampleCounts, ModelKernels, ModelOutput, ModelSequence, named, NamedArrays } from "./model-kernels";

export class Mlp<A, I> implements ModelSequence<A> {
  constructor(
    private readonly kernels: ModelKernels<A, I>,
    private readonly cfg: MlpConfig,
    private readonly dims: ModelDims,
  ) {}

  /**
   * As Transformer.run: the forward pass, and with `grads` the backward pass accumulating into them.
   * The logits and losses returned are overwritten by the next call.
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
    const { kernels } = this;
    const d = this.cfg.width;
    const hid = this.cfg.hidden;
    const n = this.dims.numSymbols;
    const seq = this.dims.seqLen;
    const emb = named(w, "embed.token");
    const w1 = named(w, "mlp.w1");
    const b1 = named(w, "mlp.b1");
    const head = named(w, "head.weight");
    const hb = named(w, "head.bias");
    // embedded[e] = [E[x], E[y]] of example e: x and y are positions 0 and 2 of x ∘ y =, so rows e·2 and
    // e·2+1 of the embedded rows [rows·2 × d] are the embeddings of x and y (in its run's table)
    const rows = runs * size; // every run's examples
    const xy = new Int32Array(rows * 2);
    for (let e = 0; e < rows; e++) {
      const table = Math.floor(e / size) * n; // the MLP embeds symbols only: [numSymbols × d] per run
      xy[e * 2] = table + inputs[e * seq];
      xy[e * 2 + 1] = table + inputs[e * seq + 2];
    }
    const tokens = kernels.indices("tokens", xy);
    const embedded = kernels.buffer("embedded", rows * 2 * d);
    kernels.gatherRows(emb, tokens, rows * 2, d, embedded, null, false);
    const h = kernels.buffer("h", rows * hid);
    kernels.matmul(false, false, size, hid, 2 * d, embedded, w1, h, false, runs);
    kernels.biasAdd(h, b1, rows, hid, runs);
    const activated = kernels.buffer("activated", rows * hid);
    kernels.activationForward(this.cfg.activation, h, activated, rows * hid);
    const mask = masks[0] ? kernels.upload("mask", masks[0]) : null;
    let a = activated;
    if (mask) {
      a = kernels.buffer("a", rows * hid);
      kernels.multiply(activated, mask, rows * hid, a);
    }
    const logits = kernels.buffer("logits", rows * n);
    kernels.matmul(false, false, size, n, hid, a, head, logits, false, runs);
    kernels.biasAdd(logits, hb, rows, n, runs);
    const losses = kernels.buffer("losses", rows);
    const dlogits = grads ? kernels.buffer("dlogits", rows * n) : null;
    const runCounts = exampleCounts(size, runs, counts);
    const targetIndices = kernels.indices("targets", targets);
    const output = this.cfg.output ?? "softmax";
    kernels.softmaxCrossEntropy(logits, targetIndices, rows, n, losses, dlogits, runCounts, output);
    if (!grads || !dlogits) return { logits, losses };

    kernels.matmul(true, false, hid, n, size, a, dlogits, named(grads, "head.weight"), true, runs);
    kernels.columnSum(dlogits, rows, n, named(grads, "head.bias"), runs);
    let da = kernels.zeros("da", rows * hid);
    kernels.matmul(false, true, size, hid, n, dlogits, head, da, true, runs);
    if (mask) {
      const dActivated = kernels.buffer("dActivated", rows * hid);
      kernels.multiply(da, mask, rows * hid, dActivated);
      da = dActivated;
    }
    const dh = kernels.buffer("dh", rows * hid);
    kernels.activationBackward(this.cfg.activation, da, h, dh, rows * hid);
    kernels.matmul(true, false, 2 * d, hid, size, embedded, dh, named(grads, "mlp.w1"), true, runs);
    kernels.columnSum(dh, rows, hid, named(grads, "mlp.b1"), runs);
    const dEmbedded = kernels.zeros("dEmbedded", rows * 2 * d);
    kernels.matmul(false, true, size, 2 * d, hid, dh, w1, dEmbedded, true, runs);
    kernels.scatterAddRows(dEmbedded, tokens, rows * 2, d, runs * n, named(grads, "embed.token"), runs);
    return { logits, losses };
  }
}
