import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { RunStore } from "../src/store/run-store";
import { encodeSafetensors, readCheckpoint, writeCheckpoint } from "../src/store/safetensors";
import { NamedTensors } from "../src/util/tensors";
import { train } from "../src/training/trainer";
import { tempStore, tinyConfig, withoutTime } from "./helpers";

const tensors = (): NamedTensors =>
  new Map([
    ["a", { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
    ["b", { shape: [4], data: Float32Array.from([-1, 0.5, 1e-30, 7]) }],
  ]);

/** The header of a safetensors file and where its data section starts. */
function headerOf(file: string): {
  header: Record<string, { data_offsets: [number, number] } & Record<string, unknown>>;
  dataStart: number;
} {
  const bytes = fs.readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + length).toString("utf8")), dataStart: 8 + length };
}

/** Flips one bit in the middle of a tensor's data block (the header stays valid). */
function flipDataBit(file: string, tensor?: string): void {
  const { header, dataStart } = headerOf(file);
  const name = tensor ?? Object.keys(header).filter((k) => k !== "__metadata__")[0];
  const [begin, end] = header[name].data_offsets;
  const bytes = fs.readFileSync(file);
  bytes[dataStart + Math.floor((begin + end) / 2)] ^= 0x10;
  fs.writeFileSync(file, bytes);
}

function truncate(file: string): void {
  fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2));
}

test("checkpoints carry a SHA-256 per tensor; a flipped data bit fails the read naming file and tensor", () => {
  const file = path.join(tempStore("checksum"), "c.safetensors");
  writeCheckpoint(file, tensors(), { step: "5" });
  const metadata = headerOf(file).header.__metadata__ as Record<string, string>;
  assert.deepEqual(Object.keys(metadata).sort(), ["sha256.a", "sha256.b", "step"]);
  assert.match(metadata["sha256.a"], /^[0-9a-f]{64}$/);
  // the checksums are the file format's business: the reader gets back the metadata it wrote
  assert.deepEqual(readCheckpoint(file).metadata, { step: "5" });
  flipDataBit(file, "b");
  assert.throws(
    () => readCheckpoint(file),
    (err: Error) => err.message.includes(file) && /tensor "b" does not match its checksum/.test(err.message),
  );
});

test("a checkpoint written before checksums existed still loads", () => {
  const file = path.join(tempStore("no-checksum"), "c.safetensors");
  fs.writeFileSync(file, encodeSafetensors(tensors(), { step: "5" }));
  const read = readCheckpoint(file);
  assert.deepEqual(read.metadata, { step: "5" });
  assert.deepEqual(read.tensors, tensors());
});

const quiet = { progress: false, engine: "fast" as const };

for (const [damage, corrupt] of [
  ["truncated", truncate],
  ["with a flipped bit in a tensor's data", (file: string) => flipDataBit(file)],
] as const) {
  test(`a resume skips a newest checkpoint ${damage}, keeps it as .bad and ends with the metrics of an uninterrupted run`, async () => {
    const config = tinyConfig({ steps: 40 });
    const straight = await train(config, { store: tempStore("straight"), log: () => {}, ...quiet });
    const store = tempStore("fallback");
    // checkpoints at steps 10 and 20, and at 25 where the session stops; the two newest are kept
    const stopped = await train(config, { store, stopAfter: 25, checkpointEvery: 10, log: () => {}, ...quiet });
    const runs = new RunStore(store);
    assert.deepEqual(
      runs.checkpoints(stopped.id).map((c) => c.step),
      [20, 25],
    );
    const newest = path.join(runs.dir(stopped.id), "checkpoints", "step-000000025.safetensors");
    corrupt(newest);
    const damaged = fs.readFileSync(newest);

    const messages: string[] = [];
    const done = await train(config, { store, checkpointEvery: 10, log: (m) => messages.push(m), ...quiet });
    assert.equal(done.status, "finished");
    assert.deepEqual(withoutTime(done.metrics.rows), withoutTime(straight.metrics.rows));
    const setAside = messages.find((m) => m.includes("step-000000025.safetensors"));
    assert.ok(setAside && /renamed it to step-000000025\.safetensors\.bad/.test(setAside), messages.join("\n"));
    assert.ok(
      messages.some((m) => /resuming from the checkpoint at step 20 of 40 \(.*step-000000020\.safetensors\)/.test(m)),
      messages.join("\n"),
    );
    // kept for inspection, byte for byte, and no longer a checkpoint
    assert.deepEqual(fs.readFileSync(`${newest}.bad`), damaged);
    assert.ok(!fs.existsSync(newest));
  });
}

test("a single corrupt checkpoint with no older one stops the resume with an error naming the file", async () => {
  const config = tinyConfig({ steps: 40 });
  const store = tempStore("no-fallback");
  const stopped = await train(config, { store, stopAfter: 5, log: () => {}, ...quiet });
  const runs = new RunStore(store);
  const only = path.join(runs.dir(stopped.id), "checkpoints", "step-000000005.safetensors");
  assert.deepEqual(
    runs.checkpoints(stopped.id).map((c) => c.path),
    [only],
  );
  flipDataBit(only);
  await assert.rejects(
    train(config, { store, log: () => {}, ...quiet }),
    (err: Error) =>
      err.message.includes(only) &&
      /cannot resume/.test(err.message) &&
      /does not match its checksum/.test(err.message),
  );
  // nothing was renamed: the run has no good checkpoint to go on from
  assert.ok(fs.existsSync(only));
});
