// The MLP's forward and backward passes on the fast engine's kernels: embeddings of x and y,
// concatenated → hidden layer (+ dropout) → logits.

import { MlpConfig, ModelDims } from "../../model/config";
import type { ForwardPass } from "../base";
import { Kernels } from "./kernels";
import { tensor, Weights } from "./weights";
import { Workspace } from "./workspace";

export class FastMlp {
  private readonly ws = new Workspace();

  constructor(
    private readonly kernels: Kernels,
    private readonly cfg: MlpConfig,
    private readonly dims: ModelDims,
  ) {}

  /**
   * As FastTransformer.run: the forward pass, and with `grads` the backward pass accumulating into them.
   * The logits and losses returned are overwritten by the next call.
   */
  run(
    w: Weights,
    inputs: Int32Array,
    targets: Int32Array,
    size: number,
    masks: Float32Array[],
    grads: Weights | null,
  ): ForwardPass {
    const { kernels, ws } = this;
    const d = this.cfg.width;
    const hid = this.cfg.hidden;
    const n = this.dims.numSymbols;
    const seq = this.dims.seqLen;
    const emb = tensor(w, "embed.token");
    const w1 = tensor(w, "mlp.w1");
    const b1 = tensor(w, "mlp.b1");
    const head = tensor(w, "head.weight");
    const hb = tensor(w, "head.bias");
    // embedded[e] = [E[x], E[y]] of example e: x and y are positions 0 and 2 of x ∘ y =
    const embedded = ws.get("embedded", size * 2 * d);
    for (let e = 0; e < size; e++) {
      embedded.set(emb.subarray(inputs[e * seq] * d, inputs[e * seq] * d + d), e * 2 * d);
      embedded.set(emb.subarray(inputs[e * seq + 2] * d, inputs[e * seq + 2] * d + d), e * 2 * d + d);
    }
    const h = ws.get("h", size * hid);
    kernels.matmul(false, false, size, hid, 2 * d, embedded, w1, h, false);
    for (let r = 0; r < size; r++) for (let j = 0; j < hid; j++) h[r * hid + j] += b1[j];
    const a = ws.get("a", size * hid);
    kernels.activationForward(this.cfg.activation, h, a, size * hid);
    const mask = masks[0];
    if (mask) for (let i = 0; i < a.length; i++) a[i] *= mask[i];
    const logits = ws.get("logits", size * n);
    kernels.matmul(false, false, size, n, hid, a, head, logits, false);
    for (let r = 0; r < size; r++) for (let c = 0; c < n; c++) logits[r * n + c] += hb[c];
    const losses = ws.get("losses", size);
    const dlogits = grads ? ws.get("dlogits", size * n) : null;
    kernels.softmaxCrossEntropy(logits, targets, size, n, losses, dlogits, 1 / size);
    if (!grads || !dlogits) return { logits, losses };

    kernels.matmul(true, false, hid, n, size, a, dlogits, tensor(grads, "head.weight"), true);
    const dhb = tensor(grads, "head.bias");
    for (let r = 0; r < size; r++) for (let c = 0; c < n; c++) dhb[c] += dlogits[r * n + c];
    const da = ws.zeros("da", size * hid);
    kernels.matmul(false, true, size, hid, n, dlogits, head, da, true);
    if (mask) for (let i = 0; i < da.length; i++) da[i] *= mask[i];
    const dh = ws.get("dh", size * hid);
    kernels.activationBackward(this.cfg.activation, da, h, dh, size * hid);
    kernels.matmul(true, false, 2 * d, hid, size, embedded, dh, tensor(grads, "mlp.w1"), true);
    const db1 = tensor(grads, "mlp.b1");
    for (let r = 0; r < size; r++) for (let j = 0; j < hid; j++) db1[j] += dh[r * hid + j];
    const dEmbedded = ws.zeros("dEmbedded", size * 2 * d);
    kernels.matmul(false, true, size, 2 * d, hid, dh, w1, dEmbedded, true);
    const dEmb = tensor(grads, "embed.token");
    for (let e = 0; e < size; e++) {
      const x = inputs[e * seq];
      const y = inputs[e * seq + 2];
      for (let i = 0; i < d; i++) {
        dEmb[x * d + i] += dEmbedded[e * 2 * d + i];
        dEmb[y * d + i] += dEmbedded[e * 2 * d + d + i];
      }
    }
    return { logits, losses };
  }
}
