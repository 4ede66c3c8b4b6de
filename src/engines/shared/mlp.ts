// The MLP's forward and backward passes over a ModelKernels set (model-kernels.ts), shared by the fast and
// webgpu engines: embeddings of x and y, concatenated → hidden layer (+ dropout) → logits.

import { MlpConfig, ModelDims } from "../../model/config";
import { ModelKernels, ModelOutput, ModelSequence, named, NamedArrays } from "./model-kernels";

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
    masks: Float32Array[],
    grads: NamedArrays<A> | null,
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
    // e·2+1 of the embedded rows [size·2 × d] are the embeddings of x and y
    const xy = new Int32Array(size * 2);
    for (let e = 0; e < size; e++) {
      xy[e * 2] = inputs[e * seq];
      xy[e * 2 + 1] = inputs[e * seq + 2];
    }
    const tokens = kernels.indices("tokens", xy);
    const embedded = kernels.buffer("embedded", size * 2 * d);
    kernels.gatherRows(emb, tokens, size * 2, d, embedded, null, false);
    const h = kernels.buffer("h", size * hid);
    kernels.matmul(false, false, size, hid, 2 * d, embedded, w1, h, false);
    kernels.biasAdd(h, b1, size, hid);
    const activated = kernels.buffer("activated", size * hid);
    kernels.activationForward(this.cfg.activation, h, activated, size * hid);
    const mask = masks[0] ? kernels.upload("mask", masks[0]) : null;
    let a = activated;
    if (mask) {
      a = kernels.buffer("a", size * hid);
      kernels.multiply(activated, mask, size * hid, a);
    }
    const logits = kernels.buffer("logits", size * n);
    kernels.matmul(false, false, size, n, hid, a, head, logits, false);
    kernels.biasAdd(logits, hb, size, n);
    const losses = kernels.buffer("losses", size);
    const dlogits = grads ? kernels.buffer("dlogits", size * n) : null;
    kernels.softmaxCrossEntropy(logits, kernels.indices("targets", targets), size, n, losses, dlogits, 1 / size);
    if (!grads || !dlogits) return { logits, losses };

    kernels.matmul(true, false, hid, n, size, a, dlogits, named(grads, "head.weight"), true);
    kernels.columnSum(dlogits, size, n, named(grads, "head.bias"));
    let da = kernels.zeros("da", size * hid);
    kernels.matmul(false, true, size, hid, n, dlogits, head, da, true);
    if (mask) {
      const dActivated = kernels.buffer("dActivated", size * hid);
      kernels.multiply(da, mask, size * hid, dActivated);
      da = dActivated;
    }
    const dh = kernels.buffer("dh", size * hid);
    kernels.activationBackward(this.cfg.activation, da, h, dh, size * hid);
    kernels.matmul(true, false, 2 * d, hid, size, embedded, dh, named(grads, "mlp.w1"), true);
    kernels.columnSum(dh, size, hid, named(grads, "mlp.b1"));
    const dEmbedded = kernels.zeros("dEmbedded", size * 2 * d);
    kernels.matmul(false, true, size, 2 * d, hid, dh, w1, dEmbedded, true);
    kernels.scatterAddRows(dEmbedded, tokens, size * 2, d, n, named(grads, "embed.token")); // the MLP embeds symbols only
    return { logits, losses };
  }
}
