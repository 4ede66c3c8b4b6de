// Tensors by parameter name (model/config.paramSpecs): a model's weights, or its gradient buffers.

export type Weights = Map<string, Float32Array>;

/** The tensor called `name` (an Error when there is none). */
export function tensor(tensors: Weights, name: string): Float32Array {
  const t = tensors.get(name);
  if (!t) throw new Error(`fast engine: no tensor ${name}`);
  return t;
}
