// Packs of runs on the webgpu engine: each run of a pack is an ordinary run in the store and ends with
// exactly the metrics, final checkpoint and state it has when trained alone with train(); stopped (stopAfter,
// an AbortSignal, kill -9 of the CLI, a device that fails), a pack resumes to the same end. On a real WebGPU
// adapter (lavapipe in CI); without one the tests skip, unless GROK_REQUIRE_WEBGPU=1.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test, TestContext } from "node:test";
import { DeviceError } from "../src/engines/engine";
import { WebGpu } from "../src/engines/webgpu/device";
import { WebGpuPackEngine } from "../src/engines/webgpu/pack-engine";
import { RunLock, RunLockedError } from "../src/store/lock";
import { RunStore } from "../src/store/run-store";
import { runSweep } from "../src/sweeps/runner";
import { expandSweep, FieldValue, SweepSpec } from "../src/sweeps/spec";
import { RunConfig } from "../src/config/run-config";
import { makeDataset, modelDims } from "../src/data/dataset";
import { PACK_BUDGET_BYTES, packCapacity } from "../src/engines/webgpu/capacity";
import { PackOptions, packGroups, packMemoryBudget, trainInPacks, trainPack } from "../src/training/pack";
import { train } from "../src/training/trainer";
import { UserError } from "../src/util/errors";
import { filesUnder, GROK_BIN, takeOverLock, tempStore, withoutTime } from "./helpers";
import { webGpuForTests } from "./webgpu-device";

const deviceFor = webGpuForTests();

function gpuTest(name: string, fn: (webgpu: WebGpu, t: TestContext) => Promise<void>): void {
  test(name, async (t) => {
    const webgpu = await deviceFor(t);
    if (webgpu) await fn(webgpu, t);
  });
}

// Three tiny runs (x+y mod 11, a 1-layer width-16 transformer) that differ in seed, training fraction, batch
// size, weight decay and budget: the first leaves the pack at step 60, the others go on. Their training sets
// (48, 61 and 40 of the table's 121 equations, at batch 16, 16 and 12) give epochs of 3, 4 and 4 steps whose
// last batches have 16, 13 and 4 examples, so the pack's steps mostly hold batches of different sizes.
const SPEC: SweepSpec = {
  name: "pack",
  base: "paper",
  set: {
    "data.op": "add",
    "data.modulus": 11,
    "data.splitSeed": 1,
    "model.layers": 1,
    "model.width": 16,
    "model.heads": 2,
    "training.batchSize": 16,
    "training.eval.perDecade": 10,
  },
  variants: {
    a: { "training.seed": 1, "data.trainFraction": 0.4, "optimizer.weightDecay": 1, "training.steps": 60 },
    b: { "training.seed": 2, "data.trainFraction": 0.5, "optimizer.weightDecay": 0.1, "training.steps": 120 },
    c: {
      "training.seed": 3,
      "data.trainFraction": 0.33,
      "training.batchSize": 12,
      "optimizer.weightDecay": 0,
      "training.steps": 90,
    },
  },
};
const CONFIGS = expandSweep(SPEC).map((r) => r.config);
const IDS = expandSweep(SPEC).map((r) => r.id);

const quiet = { progress: false, log: () => {} };

/** The runs trained alone with train() on the webgpu engine, once for the file: what every pack must match. */
let alone: Promise<string> | null = null;
function aloneStore(): Promise<string> {
  alone ??= (async () => {
    const store = tempStore("pack-alone");
    for (const cfg of CONFIGS) await train(cfg, { store, engine: "webgpu", ...quiet });
    return store;
  })();
  return alone;
}

/** Each run of `store` has the metrics (without wall-clock time), final checkpoint and state of the run alone. */
async function assertSameAsAlone(store: string): Promise<void> {
  const ref = new RunStore(await aloneStore());
  const got = new RunStore(store);
  for (const id of IDS) {
    assert.deepEqual(
      withoutTime(got.readMetrics(id).rows),
      withoutTime(ref.readMetrics(id).rows),
      `run ${id}: metrics`,
    );
    const a = got.readCheckpoint(id, "final");
    const b = ref.readCheckpoint(id, "final");
    assert.equal(a.step, b.step, `run ${id}: final step`);
    assert.deepEqual([...a.tensors.keys()], [...b.tensors.keys()]);
    for (const [name, t] of b.tensors) assert.deepEqual(a.tensors.get(name)!.data, t.data, `run ${id}: ${name}`);
    const [sa, sb] = [got.readState(id), ref.readState(id)];
    for (const key of ["status", "stopReason", "stepsDone", "firstTrain99", "firstVal99", "engine", "backend"] as const)
      assert.equal(sa[key], sb[key], `run ${id}: state ${key}`);
  }
}

/** Resolves once the processes named in the store's lock files have exited (a killed worker may linger a moment). */
async function lockHoldersGone(store: string): Promise<void> {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (const id of IDS) {
    const lock = path.join(new RunStore(store).dir(id), "lock");
    if (!fs.existsSync(lock)) continue;
    const { pid } = JSON.parse(fs.readFileSync(lock, "utf8")) as { pid: number };
    while (alive(pid)) await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const states = (store: string) => IDS.map((id) => new RunStore(store).readState(id));

gpuTest("each run of a pack ends exactly as it does alone, and leaves the pack at its own end", async (webgpu) => {
  const store = tempStore("pack");
  const ended: string[] = [];
  const result = await trainPack(CONFIGS, {
    store,
    packEngine: new WebGpuPackEngine(webgpu),
    onRunEnd: (id) => ended.push(id),
    ...quiet,
  });
  assert.equal(result.interrupted, false);
  assert.deepEqual(
    result.runs.map((r) => [r.id, r.status, r.stepsDone]),
    IDS.map((id, i) => [id, "finished", CONFIGS[i].training.steps]),
  );
  // the shortest budget leaves first, the longest last
  assert.deepEqual(ended, [IDS[0], IDS[2], IDS[1]]);
  await assertSameAsAlone(store);
  // finished runs are skipped
  const again = await trainPack(CONFIGS, { store, packEngine: new WebGpuPackEngine(webgpu), ...quiet });
  assert.deepEqual(
    again.runs.map((r) => withoutTime(r.metrics.rows)),
    result.runs.map((r) => withoutTime(r.metrics.rows)),
  );
});

gpuTest("a pack stopped by stopAfter, then by an AbortSignal, resumes to the uninterrupted end", async (webgpu) => {
  const store = tempStore("pack-resume");
  const options: PackOptions = { store, checkpointEvery: 20, ...quiet };
  const first = await trainPack(CONFIGS, { ...options, packEngine: new WebGpuPackEngine(webgpu), stopAfter: 45 });
  assert.equal(first.interrupted, true);
  assert.deepEqual(
    states(store).map((s) => [s.status, s.stepsDone]),
    IDS.map(() => ["stopped", 45]),
  );
  // the runs resume at 45; the first finishes at 60 and leaves; the abort comes at step 75 of the others
  const abort = new AbortController();
  const second = await trainPack(CONFIGS, {
    ...options,
    packEngine: new WebGpuPackEngine(webgpu),
    signal: abort.signal,
    onEval: (row) => {
      if (row.step >= 75) abort.abort();
    },
  });
  assert.equal(second.interrupted, true);
  assert.deepEqual(
    states(store).map((s) => s.status),
    ["finished", "stopped", "stopped"],
  );
  const steps = states(store).map((s) => s.stepsDone);
  assert.ok(steps[1] >= 75 && steps[1] < 90 && steps[2] === steps[1], `stopped at ${steps}`);
  const third = await trainPack(CONFIGS, { ...options, packEngine: new WebGpuPackEngine(webgpu) });
  assert.equal(third.interrupted, false);
  await assertSameAsAlone(store);
});

gpuTest("a failing device stops every run of the pack at its last checkpoint, and the pack resumes", async () => {
  const store = tempStore("pack-device");
  const pack = await WebGpuPackEngine.create();
  let lost = false;
  const failed = trainPack(CONFIGS, {
    store,
    packEngine: pack,
    checkpointEvery: 20,
    ...quiet,
    onStep: (step) => {
      // the device goes away under the pack, as a driver reset would take it
      if (step === 50 && !lost) {
        lost = true;
        pack.webgpu.device.destroy();
      }
    },
  });
  await assert.rejects(failed, (err: Error) => {
    assert.ok(err instanceof DeviceError, `${err.name}: ${err.message}`);
    for (const id of IDS) assert.match(err.message, new RegExp(`run ${id} from step 40`));
    return true;
  });
  pack.dispose();
  assert.deepEqual(
    states(store).map((s) => [s.status, s.stepsDone]),
    IDS.map(() => ["stopped", 40]),
  );
  for (const id of IDS) assert.equal(new RunStore(store).checkpoints(id).at(-1)!.step, 40);
  await trainPack(CONFIGS, { store, packEngine: await WebGpuPackEngine.create(), ...quiet });
  await assertSameAsAlone(store);
});

gpuTest(
  "a run another host takes over leaves the pack writing nothing more; the others end as alone",
  async (webgpu) => {
    const store = tempStore("pack-lost");
    const dir = new RunStore(store).dir(IDS[1]);
    const lines: string[] = [];
    let taken: Map<string, string> | null = null;
    const result = await trainPack(CONFIGS, {
      store,
      packEngine: new WebGpuPackEngine(webgpu),
      progress: false,
      log: (m) => lines.push(m),
      checkpointEvery: 20,
      onStep: (step, run) => {
        if (run.id !== IDS[1] || step !== 30) return;
        takeOverLock(dir);
        taken = filesUnder(dir);
      },
    });
    assert.deepEqual(result.lost, [IDS[1]]);
    assert.equal(result.interrupted, false);
    assert.ok(taken, "the lock was taken over");
    assert.deepEqual(filesUnder(dir), taken, "nothing written after the takeover");
    assert.match(lines.join("\n"), /process 4242 on another-host took the run over .*; stopped without writing more/);
    assert.match(lines.join("\n"), /pack of 3 runs: 2 finished, 1 taken over by another host/);
    const ref = new RunStore(await aloneStore());
    for (const id of [IDS[0], IDS[2]])
      assert.deepEqual(
        withoutTime(new RunStore(store).readMetrics(id).rows),
        withoutTime(ref.readMetrics(id).rows),
        id,
      );
  },
);

gpuTest("runSweep on the webgpu engine trains its runs in packs of as many as fit, each as alone", async () => {
  const store = tempStore("pack-sweep");
  const lines: string[] = [];
  const result = await runSweep(SPEC, { store, engine: "webgpu", progress: false, log: (m) => lines.push(m) });
  assert.deepEqual([result.trained, result.failed, result.unfinished], [3, 0, 0]);
  assert.match(lines[0], /3 to train in 1 group of packs \(as many runs as fit the adapter\) on 1 worker/);
  await assertSameAsAlone(store);
});

gpuTest("trainInPacks sizes each pack at its largest batch, runs of the largest batches first", async (webgpu) => {
  const setupOf = (cfg: RunConfig) => ({
    model: cfg.model,
    dims: modelDims(makeDataset(cfg.data)),
    optimizer: cfg.optimizer,
    seed: cfg.training.seed,
  });
  // room for 3 runs at run c's batch of 12, but for only 2 at the others' 16, to which a pack pads c's
  const budget = 3 * packCapacity(webgpu, setupOf(CONFIGS[2]), 12).bytesPerRun;
  assert.equal(packCapacity(webgpu, setupOf(CONFIGS[0]), 16, budget).runs, 2);
  const store = tempStore("pack-capacity");
  const lines: string[] = [];
  const result = await trainInPacks(CONFIGS, {
    store,
    packEngine: new WebGpuPackEngine(webgpu, false, budget),
    progress: false,
    log: (m) => lines.push(m),
  });
  assert.equal(result.interrupted, false);
  assert.deepEqual(
    lines.filter((m) => /^pack of \d+ runs? on /.test(m)).map((m) => m.split(" on ")[0]),
    ["pack of 2 runs", "pack of 1 run"],
  );
  await assertSameAsAlone(store);
});

gpuTest("a run locked by another process stops the pack before anything is trained", async (webgpu) => {
  const store = tempStore("pack-lock");
  const dir = new RunStore(store).dir(IDS[1]);
  fs.mkdirSync(dir, { recursive: true });
  const lock = RunLock.acquire(dir);
  await assert.rejects(
    trainPack(CONFIGS, { store, packEngine: new WebGpuPackEngine(webgpu), ...quiet }),
    (err: Error) => err instanceof RunLockedError && err.message.includes(IDS[1]),
  );
  lock.release();
  for (const id of IDS) assert.ok(!fs.existsSync(path.join(new RunStore(store).dir(id), "metrics.csv")));
});

/**
 * Starts `grok sweep ARGS` in its own process group and sends the group `signal` (as a terminal's Ctrl-C does to
 * its foreground group) once the first pack's second run has done 40 steps; resolves with how it exited.
 */
async function interruptMidPack(
  args: string[],
  store: string,
  signal: "SIGINT" | "SIGKILL",
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const child = spawn(process.execPath, [GROK_BIN, ...args, "--no-progress"], { detached: true, stdio: "ignore" });
  return new Promise((resolve) => {
    let sent = false;
    const timer = setInterval(() => {
      const s = new RunStore(store);
      if (!sent && s.has(IDS[1]) && s.readState(IDS[1]).stepsDone >= 40) {
        sent = true;
        process.kill(-child.pid!, signal);
      }
    }, 20);
    child.on("exit", (code, exitSignal) => {
      clearInterval(timer);
      resolve({ code: sent ? code : -1, signal: exitSignal });
    });
  });
}

for (const signal of ["SIGKILL", "SIGINT"] as const) {
  const how = signal === "SIGKILL" ? "kill -9" : "Ctrl-C";
  gpuTest(`grok sweep --engine webgpu --pack: ${how} mid-pack, run again, the table of the runs alone`, async () => {
    const dir = tempStore("pack-cli");
    const spec = path.join(dir, "pack.json");
    fs.writeFileSync(spec, JSON.stringify(SPEC));
    const grok = (args: string[]) => spawnSync(process.execPath, [GROK_BIN, ...args], { encoding: "utf8" });
    const store = path.join(dir, "runs");
    const args = ["sweep", spec, "--store", store, "--engine", "webgpu", "--pack", "2", "--checkpoint-every", "20"];

    const ended = await interruptMidPack(args, store, signal);
    assert.notEqual(ended.code, -1, "the sweep ended before it was interrupted");
    if (signal === "SIGKILL") {
      assert.equal(ended.signal, "SIGKILL");
      assert.equal(new RunStore(store).readState(IDS[1]).status, "running");
    } else {
      // a stop with a checkpoint: the runs are "stopped", and the sweep says it did not finish
      assert.notEqual(ended.code, 0);
      assert.equal(new RunStore(store).readState(IDS[1]).status, "stopped");
    }
    await lockHoldersGone(store);

    const resumed = grok(args);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(resumed.stderr, /resuming from the checkpoint/);
    await assertSameAsAlone(store);
    // the same results table as the runs trained alone
    const reference = grok(["sweep", spec, "--store", await aloneStore(), "--engine", "webgpu"]);
    assert.equal(reference.status, 0, reference.stderr);
    assert.equal(resumed.stdout, reference.stdout);
  });
}

test("runs share a pack when their engine setups agree, whatever their batch sizes", async () => {
  const variant = (fraction: number, batchSize: number | "full", over: Record<string, FieldValue> = {}) =>
    expandSweep({
      ...SPEC,
      variants: undefined,
      set: { ...SPEC.set, "data.trainFraction": fraction, "training.batchSize": batchSize, ...over },
    })[0].config;
  const configs = [
    variant(0.4, 16), // 48 examples: three whole batches
    variant(0.5, 16), // 61: its last batch of an epoch has 13
    variant(0.66, 16), // 80: five whole batches
    variant(0.4, 16, { "optimizer.kind": "sgd" }),
    variant(0.4, "full"),
    variant(0.4, 16, { "training.seed": 9, "model.dropout": 0.1 }),
    variant(0.3, 8, { "training.seed": 9 }),
  ];
  assert.deepEqual(packGroups(configs), [[0, 1, 2, 4, 6], [3], [5]]);
  assert.deepEqual(packGroups(configs, 2), [[0, 1], [2, 4], [3], [5], [6]]);
  await assert.rejects(
    trainPack([configs[0], configs[3]], { store: tempStore("pack-conflict"), ...quiet }),
    (err: Error) =>
      err instanceof UserError &&
      /cannot share a pack with run .*: the optimizers differ \(adamw vs sgd\)/.test(err.message),
  );
});

test("--pack is for the webgpu engine, a whole number ≥ 1, and documented", async () => {
  const grok = (args: string[]) => spawnSync(process.execPath, [GROK_BIN, ...args], { encoding: "utf8" });
  const dir = tempStore("pack-flags");
  const spec = path.join(dir, "pack.json");
  fs.writeFileSync(spec, JSON.stringify(SPEC));
  const store = path.join(dir, "runs");
  for (const [flags, message] of [
    [
      ["--engine", "fast", "--pack", "2"],
      /--pack trains runs in packs on the webgpu engine only \(the engine is fast\)/,
    ],
    [["--engine", "webgpu", "--pack", "0"], /--pack needs an integer ≥ 1 \(got "0"\)/],
    [["--engine", "webgpu", "--pack", "two"], /--pack needs an integer ≥ 1/],
  ] as const) {
    const r = grok(["sweep", spec, "--store", store, ...flags]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, message);
  }
  assert.ok(!fs.existsSync(store), "nothing is written on a bad flag");
  await assert.rejects(runSweep(SPEC, { store, engine: "tfjs", pack: 2, ...quiet }), UserError);
  await assert.rejects(runSweep(SPEC, { store, engine: "webgpu", pack: 1.5, ...quiet }), UserError);
  const help = grok(["sweep", "--help"]);
  assert.match(help.stdout, /--pack N/);
});

test("GROK_PACK_MEMORY sets a pack's memory budget in GiB; a bad value stops a webgpu sweep before it starts", async () => {
  assert.equal(packMemoryBudget({}), PACK_BUDGET_BYTES);
  assert.equal(packMemoryBudget({ GROK_PACK_MEMORY: "100" }), 100 * 2 ** 30);
  assert.equal(packMemoryBudget({ GROK_PACK_MEMORY: "0.5" }), 2 ** 29);
  for (const bad of ["0", "-2", "lots"])
    assert.throws(
      () => packMemoryBudget({ GROK_PACK_MEMORY: bad }),
      /GROK_PACK_MEMORY must be a positive number of GiB/,
    );
  const dir = tempStore("pack-memory");
  const spec = path.join(dir, "pack.json");
  fs.writeFileSync(spec, JSON.stringify(SPEC));
  const store = path.join(dir, "runs");
  const r = spawnSync(process.execPath, [GROK_BIN, "sweep", spec, "--store", store, "--engine", "webgpu"], {
    encoding: "utf8",
    env: { ...process.env, GROK_PACK_MEMORY: "lots" },
  });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /GROK_PACK_MEMORY must be a positive number of GiB \(got "lots"\)/);
  assert.ok(!fs.existsSync(store), "nothing is written on a bad value");
});
