// Scratch buffers reused from step to step, so a training step allocates (almost) nothing.
//
// Each buffer is named by its role (e.g. "block0.suffix.queries"), never by its size: two roles under one
// name would share memory. A model's next pass writes the same buffers again, so what it returned from
// them (logits, losses) is overwritten then.

export class Workspace {
  private readonly buffers = new Map<string, Float32Array>();

  /** A buffer of exactly n floats under `name`; its contents are whatever the last user left. */
  get(name: string, n: number): Float32Array {
    let buf = this.buffers.get(name);
    if (!buf || buf.length !== n) {
      buf = new Float32Array(n);
      this.buffers.set(name, buf);
    }
    return buf;
  }

  /** The same, filled with zeros (for kernels that accumulate). */
  zeros(name: string, n: number): Float32Array {
    const buf = this.get(name, n);
    buf.fill(0);
    return buf;
  }
}
