// A deliberately naive float64 forward pass of both models, written from the paper/openai-grok description
// with plain loops and no shared code with the engines: the yardstick the engines are checked against.

import { ModelConfig, ModelDims, sinusoidalPositions } from "../src/model/config";
import { NamedTensors } from "../src/util/tensors";

type Vec = Float64Array;

function matVec(x: Vec, w: Float32Array, inDim: number, outDim: number): Vec {
  const out = new Float64Array(outDim);
  for (let o = 0; o < outDim; o++) {
    let s = 0;
    for (let i = 0; i < inDim; i++) s += x[i] * w[i * outDim + o];
    out[o] = s;
  }
  return out;
}

function layerNorm(x: Vec, weight: Float32Array, bias: Float32Array): Vec {
  const n = x.length;
  let mean = 0;
  for (const v of x) mean += v / n;
  let variance = 0;
  for (const v of x) variance += (v - mean) ** 2 / n;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = ((x[i] - mean) / Math.sqrt(variance + 1e-5)) * weight[i] + bias[i];
  return out;
}

function act(kind: "relu" | "gelu", v: number): number {
  if (kind === "relu") return Math.max(0, v);
  return 0.5 * v * (1 + erf(v / Math.SQRT2));
}

/** erf to ~1e-15 via its Taylor series (|x| small) or continued fraction (large). */
function erf(x: number): number {
  const sign = Math.sign(x);
  const a = Math.abs(x);
  if (a > 6) return sign;
  let sum = 0;
  let term = a;
  for (let n = 0; n < 200; n++) {
    sum += term / (2 * n + 1);
    term *= (-a * a) / (n + 1);
    if (Math.abs(term) < 1e-17) break;
  }
  return (sign * 2 * sum) / Math.sqrt(Math.PI);
}

/**
 * Logits [numSymbols] of one example. `masks` (optional) are the dropout masks of engines/engine.dropoutMasks
 * and `example` the example's index within the batch they were drawn for.
 */
export function referenceLogits(
  model: ModelConfig,
  dims: ModelDims,
  w: NamedTensors,
  tokens: ArrayLike<number>,
  masks: Float32Array[] = [],
  example = 0,
): Vec {
  const get = (name: string) => {
    const t = w.get(name);
    if (!t) throw new Error(`reference: no weight ${name}`);
    return t.data;
  };
  if (model.kind === "mlp") {
    const d = model.width;
    const e = new Float64Array(2 * d);
    for (let i = 0; i < d; i++) {
      e[i] = get("embed.token")[tokens[0] * d + i];
      e[d + i] = get("embed.token")[tokens[2] * d + i];
    }
    const hidden = matVec(e, get("mlp.w1"), 2 * d, model.hidden);
    for (let j = 0; j < model.hidden; j++) {
      hidden[j] = act(model.activation, hidden[j] + get("mlp.b1")[j]);
      if (masks.length) hidden[j] *= masks[0][example * model.hidden + j];
    }
    const out = matVec(hidden, get("head.weight"), model.hidden, dims.numSymbols);
    for (let c = 0; c < dims.numSymbols; c++) out[c] += get("head.bias")[c];
    return out;
  }
  const d = model.width;
  const T = dims.seqLen;
  const H = model.heads;
  const dh = d / H;
  const f = Math.round(model.ffnRatio * d);
  const pos = model.positions === "sinusoidal" ? sinusoidalPositions(T, d) : get("embed.pos");
  let xs: Vec[] = [];
  for (let t = 0; t < T; t++) {
    const v = new Float64Array(d);
    for (let i = 0; i < d; i++) v[i] = get("embed.token")[tokens[t] * d + i] + pos[t * d + i];
    xs.push(v);
  }
  const masked = (v: Vec, site: number, t: number): Vec => {
    if (!masks.length) return v;
    const out = new Float64Array(d);
    for (let i = 0; i < d; i++) out[i] = v[i] * masks[site][(example * T + t) * d + i];
    return out;
  };
  const add = (a: Vec, b: Vec) => a.map((v, i) => v + b[i]);
  for (let l = 0; l < model.layers; l++) {
    const b = `blocks.${l}`;
    const ln = (v: Vec, name: string) => layerNorm(v, get(`${b}.${name}.weight`), get(`${b}.${name}.bias`));
    const attention = (inp: Vec[]): Vec[] => {
      const q = inp.map((v) => matVec(v, get(`${b}.attn.wq`), d, d));
      const k = inp.map((v) => matVec(v, get(`${b}.attn.wk`), d, d));
      const vv = inp.map((v) => matVec(v, get(`${b}.attn.wv`), d, d));
      return inp.map((_, i) => {
        const o = new Float64Array(d);
        for (let h = 0; h < H; h++) {
          const scores: number[] = [];
          for (let j = 0; j <= i; j++) {
            let s = 0;
            for (let c = 0; c < dh; c++) s += q[i][h * dh + c] * k[j][h * dh + c];
            scores.push(s / Math.sqrt(dh));
          }
          const m = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - m));
          const z = e.reduce((a, c) => a + c, 0);
          for (let j = 0; j <= i; j++) for (let c = 0; c < dh; c++) o[h * dh + c] += (e[j] / z) * vv[j][h * dh + c];
        }
        return matVec(o, get(`${b}.attn.wo`), d, d);
      });
    };
    const ffn = (v: Vec) => {
      const hdn = matVec(v, get(`${b}.mlp.w1`), d, f).map((u) => act(model.activation, u));
      return matVec(hdn, get(`${b}.mlp.w2`), f, d);
    };
    if (model.norm === "post") {
      const a = attention(xs);
      xs = xs.map((v, t) => ln(add(v, masked(a[t], 2 * l, t)), "ln1"));
      xs = xs.map((v, t) => ln(add(v, masked(ffn(v), 2 * l + 1, t)), "ln2"));
    } else {
      const a = attention(xs.map((v) => ln(v, "ln1")));
      xs = xs.map((v, t) => add(v, masked(a[t], 2 * l, t)));
      xs = xs.map((v, t) => add(v, masked(ffn(ln(v, "ln2")), 2 * l + 1, t)));
    }
  }
  let last = xs[T - 1];
  if (model.norm === "pre") last = layerNorm(last, get("final.ln.weight"), get("final.ln.bias"));
  return matVec(last, get("head.weight"), d, dims.numSymbols);
}

/** Mean cross-entropy of a batch in float64. */
export function referenceLoss(
  model: ModelConfig,
  dims: ModelDims,
  w: NamedTensors,
  inputs: Int32Array,
  targets: Int32Array,
  masks: Float32Array[] = [],
): number {
  let total = 0;
  for (let b = 0; b < targets.length; b++) {
    const logits = referenceLogits(model, dims, w, inputs.subarray(b * dims.seqLen, (b + 1) * dims.seqLen), masks, b);
    const m = Math.max(...logits);
    let z = 0;
    for (const v of logits) z += Math.exp(v - m);
    total += -(logits[targets[b]] - m - Math.log(z));
  }
  return total / targets.length;
}
