// The MLP's forward and backward passes on the fast engine's kernels: embeddings of x and y,
// concatenated → hidden layer (+ dropout) → logits.

import { MlpConfig, ModelDims } from "../../model/config";
import { Kernels } from "./kernels";
import type { TransformerPass, Weights } from "./transformer";
import { Workspace } from "./workspace";

export class FastMlp {
  private readonly ws = new Workspace();

  constructor(
    private readonly k: Kernels,
    private readonly cfg: MlpConfig,
    private readonly dims: ModelDims,
  ) {}

  run(w: Weights, inputs: Int32Array, targets: Int32Array, size: number, masks: Float32Array[], grads: Weights | null): TransformerPass {
    const { k, ws } = this;
    const d = this.cfg.width;
    const hid = this.cfg.hidden;
    const n = this.dims.numSymbols;
    const seq = this.dims.seqLen;
    const emb = w.get("embed.token")!;
    // e[b] = [E[x], E[y]]: x and y are positions 0 and 2 of x ∘ y =
    const e = ws.get("e", size * 2 * d);
    for (let b = 0; b < size; b++) {
      e.set(emb.subarray(inputs[b * seq] * d, inputs[b * seq] * d + d), b * 2 * d);
      e.set(emb.subarray(inputs[b * seq + 2] * d, inputs[b * seq + 2] * d + d), b * 2 * d + d);
    }
    const h = ws.get("h", size * hid);
    k.matmul(false, false, size, hid, 2 * d, e, w.get("mlp.w1")!, h, false);
    const b1 = w.get("mlp.b1")!;
    for (let r = 0; r < size; r++) for (let j = 0; j < hid; j++) h[r * hid + j] += b1[j];
    const a = ws.get("a", size * hid);
    k.activationForward(this.cfg.activation, h, a, size * hid);
    const mask = masks[0];
    if (mask) for (let i = 0; i < a.length; i++) a[i] *= mask[i];
    const logits = ws.get("logits", size * n);
    k.matmul(false, false, size, n, hid, a, w.get("head.weight")!, logits, false);
    const hb = w.get("head.bias")!;
    for (let r = 0; r < size; r++) for (let c = 0; c < n; c++) logits[r * n + c] += hb[c];
    const losses = ws.get("losses", size);
    const dlogits = grads ? ws.get("dlogits", size * n) : null;
    k.softmaxCrossEntropy(logits, targets, size, n, losses, dlogits, 1 / size);
    if (!grads || !dlogits) return { logits, losses };

    const g = (name: string) => grads.get(name)!;
    k.matmul(true, false, hid, n, size, a, dlogits, g("head.weight"), true);
    const dhb = g("head.bias");
    for (let r = 0; r < size; r++) for (let c = 0; c < n; c++) dhb[c] += dlogits[r * n + c];
    const da = ws.zeros("da", size * hid);
    k.matmul(false, true, size, hid, n, dlogits, w.get("head.weight")!, da, true);
    if (mask) for (let i = 0; i < da.length; i++) da[i] *= mask[i];
    const dh = ws.get("dh", size * hid);
    k.activationBackward(this.cfg.activation, da, h, dh, size * hid);
    k.matmul(true, false, 2 * d, hid, size, e, dh, g("mlp.w1"), true);
    const db1 = g("mlp.b1");
    for (let r = 0; r < size; r++) for (let j = 0; j < hid; j++) db1[j] += dh[r * hid + j];
    const de = ws.zeros("de", size * 2 * d);
    k.matmul(false, true, size, 2 * d, hid, dh, w.get("mlp.w1")!, de, true);
    const dEmb = g("embed.token");
    for (let b = 0; b < size; b++) {
      const x = inputs[b * seq];
      const y = inputs[b * seq + 2];
      for (let i = 0; i < d; i++) {
        dEmb[x * d + i] += de[b * 2 * d + i];
        dEmb[y * d + i] += de[b * 2 * d + d + i];
      }
    }
    return { logits, losses };
  }
}
