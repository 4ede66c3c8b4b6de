// The PyTorch baseline of `grok bench --all` (bench/torch_reference.py) is the same model as ours: from the
// same weights and batch it gives the same loss and gradients as our engines. Skipped where torch is missing.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test, TestContext } from "node:test";
import { findTorchPython, TORCH_REFERENCE_SCRIPT } from "../src/bench/torch";
import { encodeInputs, makeDataset } from "../src/data/dataset";
import { Batch, Engine } from "../src/engines/engine";
import { createEngine, EngineOptions } from "../src/engines/index";
import { initParams, ModelDims, PAPER_TRANSFORMER } from "../src/model/config";
import { writeCheckpoint } from "../src/store/safetensors";
import { PAPER_OPTIMIZER } from "../src/optim/optimizer";
import { Rng } from "../src/util/rng";
import { NamedTensors } from "../src/util/tensors";
import { tempStore } from "./helpers";

const DIMS: ModelDims = { vocabSize: 99, numSymbols: 97, seqLen: 4 };
const BATCH_SIZE = 64;
const LOSS_RTOL = 1e-5;
/** Per tensor: max |ours − torch| ≤ GRAD_RTOL · max |torch|. */
const GRAD_RTOL = 1e-4;

const torch = findTorchPython();
const skip =
  torch.python === null
    ? `PyTorch is not installed (${torch.reason}); apt-get install python3-torch to run this`
    : false;

interface TorchParity {
  loss: number;
  grads: Record<string, number[]>;
  torch: string;
}

/** 64 real equations of x/y mod 97 from the paper's training split, and the paper model's initial weights. */
function fixture(): { weights: NamedTensors; batch: Batch } {
  const ds = makeDataset({ op: "x/y", modulus: 97, trainFraction: 0.5, splitSeed: 0, outliers: 0 });
  assert.equal(ds.vocabSize, DIMS.vocabSize);
  const positions = new Rng(11).permutation(ds.train.size).slice(0, BATCH_SIZE);
  const targets = Int32Array.from(positions, (p) => ds.train.answer[p]);
  return {
    weights: initParams(PAPER_TRANSFORMER, DIMS, 5),
    batch: { size: BATCH_SIZE, inputs: encodeInputs(ds, ds.train, positions), targets },
  };
}

let cached: { weights: NamedTensors; batch: Batch; ref: TorchParity } | null = null;

/** Runs `torch_reference.py parity` once on the fixture. */
function reference(): { weights: NamedTensors; batch: Batch; ref: TorchParity } {
  if (cached) return cached;
  if (torch.python === null) throw new Error("unreachable: torch missing");
  const { weights, batch } = fixture();
  const dir = tempStore("torch");
  const weightsPath = path.join(dir, "weights.safetensors");
  const batchPath = path.join(dir, "batch.json");
  writeCheckpoint(weightsPath, weights);
  const rows: number[][] = [];
  for (let i = 0; i < batch.size; i++)
    rows.push(Array.from(batch.inputs.subarray(i * DIMS.seqLen, (i + 1) * DIMS.seqLen)));
  fs.writeFileSync(batchPath, JSON.stringify({ inputs: rows, targets: Array.from(batch.targets) }));
  const r = spawnSync(
    torch.python,
    [TORCH_REFERENCE_SCRIPT, "parity", "--weights", weightsPath, "--batch", batchPath],
    {
      encoding: "utf8",
      maxBuffer: 256 << 20,
      timeout: 5 * 60_000,
    },
  );
  assert.equal(r.status, 0, `torch_reference.py parity failed: ${r.error?.message ?? ""}${r.stderr}`);
  cached = { weights, batch, ref: JSON.parse(r.stdout) as TorchParity };
  return cached;
}

/** Compares one engine's loss and gradients with PyTorch's, reporting the worst relative error per tensor. */
async function compare(t: TestContext, opts: EngineOptions): Promise<void> {
  const { weights, batch, ref } = reference();
  let engine: Engine;
  try {
    engine = (await createEngine(opts)).engine;
  } catch (err) {
    t.skip(`engine ${JSON.stringify(opts)} is not available: ${(err as Error).message.split("\n")[0]}`);
    return;
  }
  try {
    engine.initialize({ model: PAPER_TRANSFORMER, dims: DIMS, optimizer: PAPER_OPTIMIZER, seed: 0 }, weights);
    const ours = await engine.gradients(batch, 0);
    const label = `${engine.name} on ${engine.backend}`;
    const lossErr = Math.abs(ours.loss - ref.loss) / Math.abs(ref.loss);
    t.diagnostic(`${label}: loss ${ours.loss} vs torch ${ref.loss} (relative error ${lossErr.toExponential(2)})`);

    assert.deepEqual([...ours.grads.keys()].sort(), Object.keys(ref.grads).sort(), "gradient names");
    const failures: string[] = [];
    let worst = 0;
    for (const [name, theirs] of Object.entries(ref.grads)) {
      const mine = ours.grads.get(name)!;
      assert.equal(mine.length, theirs.length, `${name}: ${mine.length} values, torch has ${theirs.length}`);
      let maxAbs = 0;
      let maxDiff = 0;
      for (let i = 0; i < theirs.length; i++) {
        maxAbs = Math.max(maxAbs, Math.abs(theirs[i]));
        maxDiff = Math.max(maxDiff, Math.abs(mine[i] - theirs[i]));
      }
      assert.ok(maxAbs > 0, `${name}: PyTorch's gradient is all zero`);
      const rel = maxDiff / maxAbs;
      worst = Math.max(worst, rel);
      if (!(rel <= GRAD_RTOL))
        failures.push(
          `${name}: max |diff| ${maxDiff.toExponential(2)} = ${rel.toExponential(2)} of max |grad| ${maxAbs.toExponential(2)}`,
        );
    }
    t.diagnostic(
      `${label}: worst gradient error ${worst.toExponential(2)} of the tensor's max |grad| (tolerance ${GRAD_RTOL})`,
    );
    assert.ok(
      lossErr <= LOSS_RTOL,
      `${label}: loss ${ours.loss} vs torch ${ref.loss}, relative error ${lossErr.toExponential(2)} > ${LOSS_RTOL}`,
    );
    assert.equal(
      failures.length,
      0,
      `${label}: gradients differ from PyTorch's beyond ${GRAD_RTOL}:\n  ${failures.join("\n  ")}`,
    );
  } finally {
    engine.dispose();
  }
}

test("PyTorch reference: the same loss and gradients as the tfjs engine", { skip }, async (t) => {
  await compare(t, { engine: "tfjs" });
});

test("PyTorch reference: the same loss and gradients as the fast engine (TypeScript kernels)", { skip }, async (t) => {
  await compare(t, { engine: "fast", kernels: "typescript" });
});

test(
  "PyTorch reference: the same loss and gradients as the fast engine (native kernels, 2 threads)",
  { skip },
  async (t) => {
    await compare(t, { engine: "fast", kernels: "native", threads: 2 });
  },
);
