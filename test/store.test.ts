import { test } from "node:test";
import assert from "node:assert/strict";
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { removeStaleTempFiles, writeFileAtomic } from "../src/store/atomic";
import { RunLock, RunLockedError } from "../src/store/lock";
import { decodeSafetensors, encodeSafetensors, readCheckpoint, writeCheckpoint } from "../src/store/safetensors";
import { formatCsv, parseCsv } from "../src/store/csv";
import { canonicalJson, configHash } from "../src/store/hash";
import { NamedTensors } from "../src/util/tensors";
import { tempStore } from "./helpers";

// Compiled modules for child processes: this file runs as dist/test/store.test.js.
const ATOMIC_JS = path.resolve(__dirname, "../src/store/atomic.js");
const LOCK_JS = path.resolve(__dirname, "../src/store/lock.js");

function tempDir(): string {
  return tempStore("store");
}

function runNode(code: string): ChildProcess {
  return spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "pipe"] });
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

function collectStdout(child: ChildProcess): Promise<string> {
  let out = "";
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  return exited(child).then(() => out);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function writeLockFile(dir: string, holder: { pid: number; host: string; startedAt: string }): void {
  fs.writeFileSync(path.join(dir, "lock"), JSON.stringify(holder));
}

// ---------------------------------------------------------------- atomic writes

test("writeFileAtomic replaces the content and leaves no temporary file", () => {
  const dir = tempDir();
  const target = path.join(dir, "config.json");
  writeFileAtomic(target, "first");
  writeFileAtomic(target, new Uint8Array([1, 2, 3]));
  assert.deepEqual([...fs.readFileSync(target)], [1, 2, 3]);
  assert.deepEqual(fs.readdirSync(dir), ["config.json"]);
});

test("removeStaleTempFiles deletes only leftover .*.tmp files", () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, ".ckpt.safetensors.123.abc.tmp"), "partial");
  fs.writeFileSync(path.join(dir, "metrics.csv"), "kept");
  fs.writeFileSync(path.join(dir, "notes.tmp"), "kept: not hidden");
  assert.deepEqual(removeStaleTempFiles(dir), [".ckpt.safetensors.123.abc.tmp"]);
  assert.deepEqual(fs.readdirSync(dir).sort(), ["metrics.csv", "notes.tmp"]);
  assert.deepEqual(removeStaleTempFiles(path.join(dir, "missing")), []);
});

test("a writer killed with SIGKILL mid-write never leaves a truncated target", async () => {
  const dir = tempDir();
  const target = path.join(dir, "big.bin");
  const size = 4 << 20;
  // Each version is `size` copies of one byte, so a torn or truncated file is easy to detect.
  const code = `
    const fs = require("node:fs");
    const { writeFileAtomic } = require(${JSON.stringify(ATOMIC_JS)});
    for (let version = 1; ; version++) {
      writeFileAtomic(${JSON.stringify(target)}, Buffer.alloc(${size}, version % 251));
      if (version === 1) fs.writeSync(1, "ready\\n");
    }`;
  for (const delayMs of [0, 15, 40, 90]) {
    const child = runNode(code);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once("data", () => resolve());
      child.once("exit", (status) => reject(new Error(`writer exited early with ${status}`)));
    });
    await sleep(delayMs);
    child.kill("SIGKILL");
    await exited(child);
    const content = fs.readFileSync(target);
    assert.equal(content.length, size, "target is one complete version");
    assert.ok(content.equals(Buffer.alloc(size, content[0])), "target is not a mix of versions");
    removeStaleTempFiles(dir);
    assert.deepEqual(fs.readdirSync(dir), ["big.bin"]);
  }
});

// ---------------------------------------------------------------- run lock

test("a second acquire fails with RunLockedError naming the holder; release is idempotent", () => {
  const dir = tempDir();
  const lock = RunLock.acquire(dir);
  assert.equal(lock.path, path.join(dir, "lock"));
  const content = JSON.parse(fs.readFileSync(lock.path, "utf8"));
  assert.equal(content.pid, process.pid);
  assert.equal(content.host, os.hostname());
  assert.ok(!Number.isNaN(Date.parse(content.startedAt)));
  assert.throws(
    () => RunLock.acquire(dir),
    (err: unknown) =>
      err instanceof RunLockedError && err.holder?.pid === process.pid && err.message.includes(String(process.pid)),
  );
  // the same directory under another name is still the same lock
  assert.throws(() => RunLock.acquire(path.relative(process.cwd(), dir)), RunLockedError);
  lock.release();
  lock.release();
  assert.ok(!fs.existsSync(lock.path));
  RunLock.acquire(dir).release();
});

test("a lock left by a dead process on this host is recovered", () => {
  const dir = tempDir();
  const { pid } = spawnSync(process.execPath, ["-e", ""]);
  writeLockFile(dir, { pid, host: os.hostname(), startedAt: new Date().toISOString() });
  const lock = RunLock.acquire(dir);
  assert.equal(JSON.parse(fs.readFileSync(lock.path, "utf8")).pid, process.pid);
  lock.release();
});

test("a lock carrying our pid that this process does not hold is left from an earlier process", () => {
  const dir = tempDir();
  writeLockFile(dir, { pid: process.pid, host: os.hostname(), startedAt: "2020-01-01T00:00:00.000Z" });
  RunLock.acquire(dir).release();
});

test("a lock held by a live process blocks until that process is gone", async () => {
  const dir = tempDir();
  const sleeper = runNode("setTimeout(() => {}, 60000)");
  try {
    const pid = sleeper.pid!;
    writeLockFile(dir, { pid, host: os.hostname(), startedAt: "2024-05-01T12:00:00.000Z" });
    assert.throws(
      () => RunLock.acquire(dir),
      (err: unknown) =>
        err instanceof RunLockedError &&
        err.holder?.pid === pid &&
        err.message.includes(String(pid)) &&
        err.message.includes(os.hostname()) &&
        err.message.includes("2024-05-01T12:00:00.000Z"),
    );
  } finally {
    sleeper.kill("SIGKILL");
    await exited(sleeper);
  }
  RunLock.acquire(dir).release();
});

test("a lock from another host is trusted; an unreadable lock is stale only once old", () => {
  const dir = tempDir();
  writeLockFile(dir, { pid: 1, host: `not-${os.hostname()}`, startedAt: new Date().toISOString() });
  assert.throws(() => RunLock.acquire(dir), RunLockedError);

  const lockPath = path.join(dir, "lock");
  fs.writeFileSync(lockPath, '{"pid": 12'); // a writer that died mid-write
  assert.throws(
    () => RunLock.acquire(dir),
    (err: unknown) => err instanceof RunLockedError && err.holder === null,
  );
  const twoMinutesAgo = new Date(Date.now() - 120_000);
  fs.utimesSync(lockPath, twoMinutesAgo, twoMinutesAgo);
  RunLock.acquire(dir).release();
});

test("another host's lock is taken over only once its lease has expired", () => {
  const dir = tempDir();
  const elsewhere = `not-${os.hostname()}`;
  const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
  const lease = { pid: 1, host: elsewhere, startedAt: ago(600_000), leaseSeconds: 60 };
  fs.writeFileSync(path.join(dir, "lock"), JSON.stringify({ ...lease, heartbeatAt: ago(10_000) }));
  assert.throws(
    () => RunLock.acquire(dir),
    (err: unknown) =>
      err instanceof RunLockedError && /lease \(60 s/.test(err.message) && err.message.includes(elsewhere),
  );
  fs.writeFileSync(path.join(dir, "lock"), JSON.stringify({ ...lease, heartbeatAt: ago(61_000) }));
  const lock = RunLock.acquire(dir);
  assert.equal(JSON.parse(fs.readFileSync(lock.path, "utf8")).host, os.hostname());
  lock.release();
});

test("the holder renews its lease, and stops (saying so) when another host has taken it over", async () => {
  const dir = tempDir();
  const lost: string[] = [];
  const lock = RunLock.acquire(dir, { leaseSeconds: 0.2, onLost: (m) => lost.push(m) });
  const first = JSON.parse(fs.readFileSync(lock.path, "utf8"));
  assert.equal(first.leaseSeconds, 0.2);
  await sleep(160);
  const renewed = JSON.parse(fs.readFileSync(lock.path, "utf8"));
  assert.ok(Date.parse(renewed.heartbeatAt) > Date.parse(first.heartbeatAt), "heartbeat renewed");
  assert.equal(renewed.startedAt, first.startedAt);
  assert.throws(() => RunLock.acquire(dir), RunLockedError); // still ours, renewed in place
  const foreign = JSON.stringify({ pid: 1, host: "elsewhere", startedAt: new Date().toISOString() });
  fs.writeFileSync(lock.path, foreign);
  await sleep(120);
  assert.equal(lock.isHeld, false);
  assert.equal(lost.length, 1);
  assert.match(lost[0], /lost the lock .*another process took it over/);
  assert.equal(fs.readFileSync(lock.path, "utf8"), foreign);
  lock.release();
  assert.equal(fs.readFileSync(lock.path, "utf8"), foreign);
});

// A real process on another host: a child in its own UTS namespace (its own hostname), where unshare works.
const unshareWorks = spawnSync("unshare", ["--uts", "true"]).status === 0;

test(
  "a process on another host holds its lease while alive; killed, its lock is taken over after the lease",
  { skip: unshareWorks ? false : "unshare --uts is not permitted here (needs root)" },
  async () => {
    const dir = tempDir();
    const code = `
      const { RunLock } = require(${JSON.stringify(LOCK_JS)});
      RunLock.acquire(${JSON.stringify(dir)}, { leaseSeconds: 2 });
      process.stdout.write("held");
      setInterval(() => {}, 1000);`;
    const holder = spawn(
      "unshare",
      ["--uts", "sh", "-c", 'hostname grok-other-host && exec "$0" -e "$1"', process.execPath, code],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    try {
      await new Promise<void>((resolve) => holder.stdout!.once("data", () => resolve()));
      await sleep(2500); // longer than the lease: only the renewals keep it
      assert.throws(
        () => RunLock.acquire(dir),
        (err: unknown) => err instanceof RunLockedError && err.holder?.host === "grok-other-host",
      );
    } finally {
      holder.kill("SIGKILL");
      await exited(holder);
    }
    assert.throws(() => RunLock.acquire(dir), RunLockedError); // its lease has not run out yet
    await sleep(2100);
    RunLock.acquire(dir).release();
  },
);

test("release leaves alone a lock that is no longer ours", () => {
  const dir = tempDir();
  const lock = RunLock.acquire(dir);
  const foreign = JSON.stringify({ pid: 1, host: "elsewhere", startedAt: new Date().toISOString() });
  fs.writeFileSync(lock.path, foreign);
  lock.release();
  assert.equal(fs.readFileSync(lock.path, "utf8"), foreign);
});

test("processes racing to recover one stale lock: exactly one wins, and exit releases it", async () => {
  const dir = tempDir();
  const { pid: deadPid } = spawnSync(process.execPath, ["-e", ""]);
  writeLockFile(dir, { pid: deadPid, host: os.hostname(), startedAt: new Date().toISOString() });
  const startAt = Date.now() + 500; // all contenders start together, after their start-up
  const code = `
    const { RunLock, RunLockedError } = require(${JSON.stringify(LOCK_JS)});
    while (Date.now() < ${startAt}) {}
    try {
      RunLock.acquire(${JSON.stringify(dir)});
      process.stdout.write("won");
      setTimeout(() => {}, 700); // hold while the others try; the exit hook releases
    } catch (err) {
      if (!(err instanceof RunLockedError)) throw err;
      process.stdout.write("locked");
    }`;
  const outcomes = await Promise.all(Array.from({ length: 4 }, () => collectStdout(runNode(code))));
  assert.deepEqual(outcomes.sort(), ["locked", "locked", "locked", "won"]);
  assert.deepEqual(fs.readdirSync(dir), []);
});

// ---------------------------------------------------------------- safetensors

function sampleTensors(): NamedTensors {
  return new Map([
    ["scalar", { shape: [], data: Float32Array.of(-0) }],
    ["empty", { shape: [0], data: new Float32Array(0) }],
    ["vector", { shape: [3], data: Float32Array.of(1.5, NaN, -Infinity) }],
    [
      "blocks.0.attn.wq",
      { shape: [2, 3, 4], data: Float32Array.from({ length: 24 }, (_, i) => Math.fround(i / 7 - 1)) },
    ],
  ]);
}

function bytesOf(data: Float32Array): number[] {
  return [...new Uint8Array(data.buffer, data.byteOffset, data.byteLength)];
}

test("safetensors round-trips tensors bit-exactly, in order, with metadata", () => {
  const tensors = sampleTensors();
  const metadata = { step: "1200", config: '{"lr":0.001}' };
  const decoded = decodeSafetensors(encodeSafetensors(tensors, metadata));
  assert.deepEqual([...decoded.tensors.keys()], [...tensors.keys()]);
  for (const [name, tensor] of tensors) {
    const back = decoded.tensors.get(name)!;
    assert.deepEqual(back.shape, tensor.shape);
    assert.deepEqual(bytesOf(back.data), bytesOf(tensor.data), name);
    assert.equal(back.data.byteOffset, 0);
  }
  assert.deepEqual(decoded.metadata, metadata);
  assert.deepEqual(decodeSafetensors(encodeSafetensors(tensors)).metadata, {});
});

test("safetensors header is space-padded so the data starts 8-byte aligned", () => {
  const bytes = encodeSafetensors(sampleTensors(), { a: "b" });
  const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(headerLength % 8, 0);
  const header = Buffer.from(bytes.subarray(8, 8 + headerLength)).toString("utf8");
  assert.match(header, /^\{.*\} *$/);
  assert.equal(JSON.parse(header).vector.data_offsets.length, 2);
});

test("safetensors byte layout matches a hand-built file", () => {
  const header = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  '; // 54 bytes + 2 spaces
  const expected = Buffer.concat([
    Buffer.from([56, 0, 0, 0, 0, 0, 0, 0]),
    Buffer.from(header, "utf8"),
    Buffer.from([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0]), // 1.0f, -2.0f little-endian
  ]);
  const tensors: NamedTensors = new Map([["a", { shape: [2], data: Float32Array.of(1, -2) }]]);
  assert.deepEqual(Buffer.from(encodeSafetensors(tensors)), expected);
  const decoded = decodeSafetensors(expected);
  assert.deepEqual([...decoded.tensors.get("a")!.data], [1, -2]);
});

/** A safetensors file with an arbitrary header, for corruption tests. */
function rawSafetensors(header: unknown, dataBytes: number, headerLength?: bigint): Uint8Array {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header), "utf8");
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(headerLength ?? BigInt(json.length));
  return Buffer.concat([length, json, Buffer.alloc(dataBytes)]);
}

test("safetensors decoding rejects each kind of corruption, naming the source", () => {
  const vector = (offsets: number[], shape = [2]) => ({ dtype: "F32", shape, data_offsets: offsets });
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ["short file", new Uint8Array(5), /shorter than the 8-byte/],
    ["header past the end", rawSafetensors({ a: vector([0, 8]) }, 8, 1000n), /header length 1000 exceeds/],
    ["invalid JSON", rawSafetensors("{not json", 0), /not valid UTF-8 JSON/],
    ["non-object header", rawSafetensors("[1,2]", 0), /not a JSON object/],
    ["other dtype", rawSafetensors({ a: { dtype: "F16", shape: [2], data_offsets: [0, 4] } }, 4), /dtype "F16"/],
    ["shape/offset mismatch", rawSafetensors({ a: vector([0, 8], [3]) }, 8), /needs 12 bytes/],
    ["offsets out of bounds", rawSafetensors({ a: vector([8, 16]) }, 8), /run past/],
    ["malformed offsets", rawSafetensors({ a: vector([0]) }, 8), /invalid data_offsets/],
    ["overlap", rawSafetensors({ a: vector([0, 8]), b: vector([4, 12]) }, 12), /overlaps/],
    ["gap", rawSafetensors({ a: vector([4, 12]) }, 12), /unused bytes/],
    ["trailing garbage", Buffer.concat([encodeSafetensors(sampleTensors()), Buffer.from("junk")]), /4 trailing bytes/],
    ["bad metadata", rawSafetensors({ __metadata__: { step: 5 } }, 0), /not a string/],
  ];
  for (const [label, bytes, problem] of cases) {
    assert.throws(
      () => decodeSafetensors(bytes, "runs/x/ckpt.safetensors"),
      (err: unknown) =>
        err instanceof Error && err.message.includes("runs/x/ckpt.safetensors") && problem.test(err.message),
      label,
    );
  }
});

test("writeCheckpoint/readCheckpoint round-trip through a file; read errors name the path", () => {
  const dir = tempDir();
  const file = path.join(dir, "step-100.safetensors");
  writeCheckpoint(file, sampleTensors(), { step: "100" });
  assert.deepEqual(fs.readdirSync(dir), ["step-100.safetensors"]);
  const { tensors, metadata } = readCheckpoint(file);
  assert.deepEqual(metadata, { step: "100" });
  assert.deepEqual(
    bytesOf(tensors.get("blocks.0.attn.wq")!.data),
    bytesOf(sampleTensors().get("blocks.0.attn.wq")!.data),
  );
  fs.writeFileSync(file, "garbage!garbage!");
  assert.throws(
    () => readCheckpoint(file),
    (err: unknown) => err instanceof Error && err.message.includes(file),
  );
});

// ---------------------------------------------------------------- CSV

test("CSV round-trips awkward numbers exactly", () => {
  const values = [
    1e-30,
    0.1 + 0.2,
    -0,
    NaN,
    Infinity,
    -Infinity,
    2 ** 53 - 1,
    2 ** 60,
    1e21,
    5e-324,
    -1.7976931348623157e308,
    42,
  ];
  const rows = values.map((value, step) => ({ step, value }));
  const text = formatCsv(["step", "value"], rows);
  assert.ok(text.startsWith("step,value\n0,1e-30\n"));
  const parsed = parseCsv(text);
  assert.deepEqual(parsed.columns, ["step", "value"]);
  assert.equal(parsed.rows.length, values.length);
  parsed.rows.forEach((row, i) => {
    assert.ok(Object.is(row.value, values[i]), `${values[i]} read back as ${row.value}`);
    assert.equal(row.step, i);
  });
});

test("CSV writes missing values empty (read back as NaN) and quotes strings only when needed", () => {
  const text = formatCsv(
    ["step", "val, acc", "note"],
    [
      { step: 1, "val, acc": 0.5, note: "plain" },
      { step: 2, note: 'says "hi"\nthere' },
    ],
  );
  assert.equal(text, 'step,"val, acc",note\n1,0.5,plain\n2,,"says ""hi""\nthere"\n');
  const parsed = parseCsv('step,"val, acc"\r\n1,"0.5"\r\n2,\r\n3,nan');
  assert.deepEqual(parsed.columns, ["step", "val, acc"]);
  assert.deepEqual(
    parsed.rows.map((r) => r["val, acc"]),
    [0.5, NaN, NaN],
  );
});

test("CSV parsing errors name the source and line", () => {
  assert.throws(() => parseCsv("step,loss\n1,0.5\n2\n"), /metrics\.csv: line 3: expected 2 fields, found 1/);
  assert.throws(() => parseCsv("step,loss\n1,0.5,9\n", "runs/a/metrics.csv"), /runs\/a\/metrics\.csv: line 2/);
  assert.throws(() => parseCsv("step,loss\n1,abc\n"), /line 2: column "loss" holds "abc", not a number/);
  assert.throws(() => parseCsv('step,loss\n1,"0.5\n'), /line 2: unterminated quoted field/);
  assert.deepEqual(parseCsv(""), { columns: [], rows: [] });
});

// ---------------------------------------------------------------- hashes

test("canonicalJson sorts keys recursively and drops undefined values", () => {
  assert.equal(
    canonicalJson({ b: [1, { d: true, c: null }], a: "x", u: undefined }),
    '{"a":"x","b":[1,{"c":null,"d":true}]}',
  );
});

test("configHash ignores key order but not values", () => {
  const config = { model: { width: 128, layers: 2 }, lr: 1e-3, task: "x+y" };
  const reordered = { task: "x+y", lr: 1e-3, model: { layers: 2, width: 128 } };
  assert.match(configHash(config), /^[0-9a-f]{12}$/);
  assert.equal(configHash(reordered), configHash(config));
  assert.notEqual(configHash({ ...config, lr: 2e-3 }), configHash(config));
  assert.notEqual(configHash({ ...config, model: { width: 128, layers: 3 } }), configHash(config));
});

test("canonicalJson rejects values JSON cannot represent faithfully", () => {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  const cases: Array<[unknown, RegExp]> = [
    [{ lr: NaN }, /NaN .* at \$\.lr/],
    [{ f: () => 1 }, /function .* at \$\.f/],
    [[1, undefined], /undefined .* at \$\[1\]/],
    [undefined, /undefined/],
    [{ when: new Date(0) }, /Date/],
    [cyclic, /circular/],
  ];
  for (const [value, message] of cases) assert.throws(() => canonicalJson(value), message);
});
