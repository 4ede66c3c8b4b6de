// Named float32 tensors: the currency between engines, the optimizer, checkpoints and notebooks.

export interface Tensor32 {
  shape: number[];
  data: Float32Array;
}

/** Ordered by insertion; names like "blocks.0.attn.wq". */
export type NamedTensors = Map<string, Tensor32>;

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function tensor32(shape: number[], data?: Float32Array): Tensor32 {
  const n = sizeOf(shape);
  if (data && data.length !== n) throw new Error(`tensor of shape [${shape}] needs ${n} values, got ${data.length}`);
  return { shape: [...shape], data: data ?? new Float32Array(n) };
}

export function cloneTensors(t: NamedTensors): NamedTensors {
  const out: NamedTensors = new Map();
  for (const [name, v] of t) out.set(name, { shape: [...v.shape], data: new Float32Array(v.data) });
  return out;
}

/** Euclidean norm of one tensor, accumulated in double precision. */
export function l2norm(data: Float32Array): number {
  let s = 0;
  for (let i = 0; i < data.length; i++) s += data[i] * data[i];
  return Math.sqrt(s);
}
