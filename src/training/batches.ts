// Minibatches as a pure function of (seed, step): epoch e visits the training set in the order of its own
// permutation, so resuming at any step replays exactly the batches an uninterrupted run would see.

import { Batch } from "../engines/engine";
import { Rng, Stream } from "../util/rng";

export class BatchSampler {
  private readonly stepsPerEpoch: number;
  private cachedEpoch = -1;
  private order: Int32Array = new Int32Array(0);

  constructor(
    /** The whole training set, already encoded. */
    private readonly set: Batch,
    readonly batchSize: number,
    private readonly seed: number,
    private readonly seqLen: number,
  ) {
    if (!(batchSize >= 1 && batchSize <= set.size)) throw new Error(`batch size ${batchSize} is not in 1..${set.size}`);
    // like PyTorch's DataLoader without drop_last: the last batch of an epoch may be smaller
    this.stepsPerEpoch = Math.ceil(set.size / batchSize);
  }

  /** The batch for 0-based update `step`. */
  at(step: number): Batch {
    if (this.batchSize === this.set.size) return this.set;
    const epoch = Math.floor(step / this.stepsPerEpoch);
    if (epoch !== this.cachedEpoch) {
      this.order = Rng.for(this.seed, Stream.batches, epoch).permutation(this.set.size);
      this.cachedEpoch = epoch;
    }
    const start = (step % this.stepsPerEpoch) * this.batchSize;
    const size = Math.min(this.batchSize, this.set.size - start);
    const inputs = new Int32Array(size * this.seqLen);
    const targets = new Int32Array(size);
    for (let i = 0; i < size; i++) {
      const row = this.order[start + i];
      inputs.set(this.set.inputs.subarray(row * this.seqLen, (row + 1) * this.seqLen), i * this.seqLen);
      targets[i] = this.set.targets[row];
    }
    return { size, inputs, targets };
  }
}
