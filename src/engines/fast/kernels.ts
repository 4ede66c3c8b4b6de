// The hot kernels of the fast engine. Two implementations with one contract: native code built by node-gyp
// during `npm install` (native/), and TypeScript (ts-kernels.ts) wherever the addon did not build.
//
// Conventions: every array is a row-major Float32Array; sizes are element counts; "accumulates" means
// the kernel adds into its output (callers zero it first when they need a plain result).
//
// Also part of the contract (both implementations; the tests in test/kernels.test.ts pin them down):
// - Sizes are non-negative integers. An array may be longer than its size (only the leading elements are
//   used); a shorter one, a wrong array type or a bad size throws an Error "<kernel>: <problem>" before
//   anything is read or written.
// - Outputs must not overlap inputs, except that the elementwise kernels (activations) may work in place.
// - Every method works when called detached from the object (e.g. `const f = kernels.adamUpdate; f(…)`).
// - Inside, sums are carried in double precision (TypeScript) or float32 FMA chains (native SGEMM), and
//   results are rounded to float32 once when stored. Native and TypeScript agree to rounding, not bit for
//   bit, except adamUpdate, which is bitwise identical; native results never depend on the thread count.

export interface Kernels {
  /** "native" or "typescript". */
  readonly kind: "native" | "typescript";
  /** Threads the kernels use (TypeScript: always 1). */
  threads(): number;
  /**
   * Sets the thread count (native: clamped to 1..cores, an Error for a non-integer or n < 1; the default is
   * min(2, cores), or GROK_THREADS when set; TypeScript ignores it).
   */
  setThreads(n: number): void;

  /**
   * C[m×n] = op(A)·op(B), or C += op(A)·op(B) when `accumulate`. op(A) is m×k: A is stored m×k, or k×m
   * when transA. op(B) is k×n: B is stored k×n, or n×k when transB. k = 0 gives C = 0 (C unchanged
   * when accumulating). C must not overlap A or B.
   */
  matmul(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    accumulate: boolean,
  ): void;

  /**
   * out = (x − mean)/√(var + 1e-5)·weight + bias per row of x [rows×width]; saves mean and rstd [rows].
   * var is the population variance (÷ width); rstd = 1/√(var + 1e-5).
   */
  layerNormForward(
    x: Float32Array,
    weight: Float32Array,
    bias: Float32Array,
    rows: number,
    width: number,
    out: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
  ): void;
  /**
   * Accumulates dx [rows×width], dweight and dbias [width] from dout, given the forward's x, mean, rstd
   * (the saved float32 values are the ones used).
   */
  layerNormBackward(
    dout: Float32Array,
    x: Float32Array,
    weight: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    rows: number,
    width: number,
    dx: Float32Array,
    dweight: Float32Array,
    dbias: Float32Array,
  ): void;

  /**
   * Causal multi-head attention for short sequences. q [batch×tq×(heads·headDim)] holds the queries of
   * positions queryOffset … queryOffset+tq−1; k, v [batch×tk×(heads·headDim)] the keys and values of
   * positions 0 … tk−1. Query position i attends to keys j ≤ i, scores scaled by 1/√headDim.
   * Writes att [batch×heads×tq×tk] (softmax probabilities, exactly 0 where masked) and out
   * [batch×tq×(heads·headDim)]. Requires queryOffset + tq ≤ tk (an Error otherwise), so every query sees
   * at least key 0; keys beyond the last query position are masked like any other future key.
   */
  attentionForward(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    batch: number,
    tq: number,
    tk: number,
    heads: number,
    headDim: number,
    queryOffset: number,
    att: Float32Array,
    out: Float32Array,
  ): void;
  /** Accumulates dq, dk, dv (shapes of q, k, v) from dout (shape of out), given the forward's q, k, v, att. */
  attentionBackward(
    dout: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    att: Float32Array,
    batch: number,
    tq: number,
    tk: number,
    heads: number,
    headDim: number,
    queryOffset: number,
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
  ): void;

  /**
   * Per row of logits [rows×classes]: losses[r] = −log softmax(logits[r])[targets[r]] (stable: max
   * subtracted, computed in double precision), and, when dlogits is given, dlogits[r] =
   * (softmax(logits[r]) − onehot(targets[r]))·scale (written, not accumulated). `scale` applies to
   * dlogits only (losses are per row, unscaled). Every target must lie in 0..classes−1 (an Error otherwise).
   */
  softmaxCrossEntropy(
    logits: Float32Array,
    targets: Int32Array,
    rows: number,
    classes: number,
    losses: Float32Array,
    dlogits: Float32Array | null,
    scale: number,
  ): void;

  /**
   * The same with StableMax in place of softmax (model/config.ts, OutputKind): with s(x) = x + 1 for x ≥ 0
   * and 1/(1 − x) below, S = Σ_j s(logits[r, j]) and t = targets[r], losses[r] = log S − log s(logits[r, t])
   * and dlogits[r, j] = (s'(x_j)/S − [j = t]·s'(x_t)/s(x_t))·scale, with s'(x) = 1 for x ≥ 0 and
   * 1/(1 − x)² below. No maximum is subtracted (StableMax is not shift-invariant; s never overflows).
   */
  stablemaxCrossEntropy(
    logits: Float32Array,
    targets: Int32Array,
    rows: number,
    classes: number,
    losses: Float32Array,
    dlogits: Float32Array | null,
    scale: number,
  ): void;

  /** out = act(x), elementwise over n values. relu(x) = x > 0 ? x : 0, and NaN stays NaN. */
  activationForward(kind: "relu" | "gelu", x: Float32Array, out: Float32Array, n: number): void;
  /**
   * dx = dout·act'(x), elementwise (written, not accumulated). GELU is exact: x·Φ(x), Φ from erfc.
   * relu'(x) = 1 for x > 0, else 0 (0 at x = 0).
   */
  activationBackward(kind: "relu" | "gelu", dout: Float32Array, x: Float32Array, dx: Float32Array, n: number): void;

  /**
   * One Adam/AdamW update of n parameters in place (the optimizer's hot loop):
   *   if decay: p ← p − lr·wd·(p − target)   [decoupled]  or  g ← g + wd·(p − target)   [coupled]
   *   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  u ← m/(√v/√bc2 + eps) (+ noise[i] if noise);  p ← p − (lr/bc1)·u
   * target is `init` when given, else 0. `noise` (optional) holds σ·N(0,1) per parameter; it is added to
   * u, so it is scaled by lr/bc1 like the rest of the step. Decay applies when weightDecay > 0. Computed
   * element by element in double precision in exactly the order of ts-kernels.ts (each float32 store
   * rounds), so native and TypeScript give identical bits.
   */
  adamUpdate(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    init: Float32Array | null,
    noise: Float32Array | null,
    n: number,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    bc1: number,
    bc2: number,
    weightDecay: number,
    decoupled: boolean,
  ): void;
}

/** Which kernels the fast engine uses: native when the addon loads (auto), or one forced. */
export type KernelChoice = "auto" | "native" | "typescript";
