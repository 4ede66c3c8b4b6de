import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { quantile, summarizeRuns } from "../src/analysis/sweeps";
import { RunLock } from "../src/store/lock";
import { RunStore } from "../src/store/run-store";
import { UserError } from "../src/util/errors";
import { train } from "../src/training/trainer";
import { runSweep, sweepStatus, SweepRunResult } from "../src/sweeps/runner";
import { expandSweep, loadSweepSpec, SweepSpec } from "../src/sweeps/spec";
import { GROK_BIN, tempStore, withoutTime } from "./helpers";

// Real sweeps of real (tiny) runs: x+y mod 11, a 1-layer width-16 transformer, full batch.
const TINY_SET = {
  "data.op": "add",
  "data.modulus": 11,
  "data.splitSeed": 1,
  "model.layers": 1,
  "model.width": 16,
  "model.heads": 2,
  "training.batchSize": "full",
};

function tinySweep(steps: number, seeds: number[], fractions = [0.5]): SweepSpec {
  return {
    name: "tiny",
    base: "paper",
    set: { ...TINY_SET, "training.steps": steps },
    grid: { "data.trainFraction": fractions, "training.seed": seeds },
  };
}

const quiet = { progress: false, log: () => {} };

test("a sweep spec expands to every combination of its grid, variants outermost, in JSON and YAML alike", () => {
  const dir = tempStore("spec");
  const yaml = path.join(dir, "s.yaml");
  fs.writeFileSync(
    yaml,
    [
      "name: fractions",
      "base: demo",
      "set:",
      "  training.steps: 123",
      "  training.eval.every: 50",
      "grid:",
      "  data.trainFraction: [0.3, 0.5]",
      "  training.seed: [0, 1, 2]",
      "variants:",
      "  wd1: { optimizer.weightDecay: 1 }",
      "  adam: { optimizer.kind: adam, optimizer.weightDecay: 0 }",
    ].join("\n"),
  );
  const json = path.join(dir, "s.json");
  fs.writeFileSync(json, JSON.stringify(loadSweepSpec(yaml)));
  const runs = expandSweep(loadSweepSpec(yaml));
  assert.deepEqual(expandSweep(loadSweepSpec(json)), runs);
  assert.equal(runs.length, 2 * 2 * 3);
  assert.deepEqual(
    runs.map((r) => r.index),
    [...runs.keys()],
  );
  assert.deepEqual(
    runs.slice(0, 3).map((r) => [r.variant, r.params["data.trainFraction"], r.params["training.seed"]]),
    [
      ["wd1", 0.3, 0],
      ["wd1", 0.3, 1],
      ["wd1", 0.3, 2],
    ],
  );
  const adam = runs.find(
    (r) => r.variant === "adam" && r.params["training.seed"] === 2 && r.params["data.trainFraction"] === 0.5,
  )!;
  assert.equal(adam.config.optimizer.kind, "adam");
  assert.equal(adam.config.optimizer.weightDecay, 0);
  assert.equal(adam.config.training.seed, 2);
  assert.equal(adam.config.training.steps, 123);
  assert.equal(adam.config.training.eval.every, 50);
  assert.equal(adam.config.data.modulus, 47); // from the demo preset
  assert.equal(adam.id, RunStore.idFor(adam.config));
  assert.equal(new Set(runs.map((r) => r.id)).size, runs.length);
  // the same config twice in a variant is one run
  assert.equal(expandSweep({ grid: { "training.seed": [0, 0, 1] } }).length, 2);
  // switching the model kind starts from that kind's defaults
  const mlp = expandSweep({ set: { "model.kind": "mlp" }, grid: { "model.hidden": [32] } });
  assert.equal(mlp[0].config.model.kind, "mlp");
});

test("bad sweep specs fail naming the problem", () => {
  const cases: [SweepSpec, RegExp][] = [
    [
      { grid: { "data.fraction": [0.5] } },
      /"data.fraction" is not a config field \(data has op, modulus, trainFraction/,
    ],
    [{ grid: { trainFraction: [0.5] } }, /"trainFraction" is not a config field \(write section.field/],
    [{ grid: { "data.trainFraction": [] } }, /grid.data.trainFraction must be a non-empty list/],
    [
      { grid: { "data.trainFraction": [0.5, 1.5] } },
      /data.trainFraction=1.5: invalid config: data: trainFraction must be in \(0, 1\)/,
    ],
    [{ base: "nope" }, /unknown preset "nope"/],
    [{ set: { "optimizer.lr": 1e-3 }, seeds: [1] } as unknown as SweepSpec, /unknown key "seeds"/],
    [{ variants: { a: { "model.depth": 2 } } }, /variant "a": "model.depth" is not a config field/],
  ];
  for (const [spec, message] of cases) {
    assert.throws(
      () => expandSweep(spec),
      (err: Error) => err instanceof UserError && message.test(err.message),
      `${JSON.stringify(spec)}`,
    );
  }
  const dir = tempStore("badspec");
  fs.writeFileSync(path.join(dir, "broken.yaml"), "grid: [unclosed");
  assert.throws(() => loadSweepSpec(path.join(dir, "broken.yaml")), /broken.yaml: /);
  assert.throws(() => loadSweepSpec(path.join(dir, "spec.toml")), /cannot read/);
});

test("runSweep trains every run on a pool of workers, each exactly as train() would, and skips them the next time", async () => {
  const store = tempStore("sweep");
  const spec = tinySweep(25, [0, 1], [0.4, 0.6]);
  const first = await runSweep(spec, { ...quiet, store, workers: 2 });
  assert.equal(first.runs.length, 4);
  assert.deepEqual(
    [first.trained, first.skipped, first.failed, first.unfinished, first.interrupted],
    [4, 0, 0, 0, false],
  );
  const reference = tempStore("sweep-ref");
  const s = new RunStore(store);
  for (const run of first.runs) {
    assert.equal(run.status, "finished");
    const alone = await train(run.config, { store: reference, progress: false, log: () => {} });
    assert.deepEqual(withoutTime(s.readMetrics(run.id).rows), withoutTime(alone.metrics.rows), `run ${run.id}`);
    assert.equal(run.bestValAcc, Math.max(...alone.metrics.rows.map((r) => r.val_acc)));
  }
  const again = await runSweep(spec, { ...quiet, store });
  assert.deepEqual([again.trained, again.skipped, again.unfinished], [0, 4, 0]);
  assert.deepEqual(
    sweepStatus(spec, store).runs.map((r) => r.status),
    ["finished", "finished", "finished", "finished"],
  );
});

test("a stopped sweep keeps its finished runs and resumes the stopped one to the same result", async () => {
  const store = tempStore("sweep-stop");
  const spec = tinySweep(400, [0, 1, 2]);
  const abort = new AbortController();
  const ended: SweepRunResult[] = [];
  const stopped = await runSweep(spec, {
    ...quiet,
    store,
    workers: 1,
    checkpointEvery: 50,
    signal: abort.signal,
    onRunEnd: (r) => {
      ended.push(r);
      abort.abort();
    },
  });
  assert.equal(stopped.interrupted, true);
  assert.deepEqual(
    stopped.runs.map((r) => r.status),
    ["finished", "missing", "missing"],
  );
  const finishedCkpt = new RunStore(store).checkpoints(stopped.runs[0].id).find((c) => c.final)!;
  const mtime = fs.statSync(finishedCkpt.path).mtimeMs;

  // stop the next run in the middle: it ends with a checkpoint and status "stopped"
  const abort2 = new AbortController();
  let sawProgress = false;
  const timer = setInterval(() => {
    const st = sweepStatus(spec, store).runs[1];
    if (st.status !== "missing" && st.stepsDone >= 50 && !sawProgress) {
      sawProgress = true;
      abort2.abort();
    }
  }, 20);
  const middle = await runSweep(spec, {
    ...quiet,
    store,
    workers: 1,
    checkpointEvery: 50,
    checkpointSeconds: 1,
    signal: abort2.signal,
  });
  clearInterval(timer);
  assert.equal(middle.skipped, 1);
  assert.equal(middle.runs[1].status, "stopped");
  assert.ok(middle.runs[1].stepsDone > 0 && middle.runs[1].stepsDone < 400, `stopped at ${middle.runs[1].stepsDone}`);

  const done = await runSweep(spec, { ...quiet, store, workers: 2 });
  assert.deepEqual([done.skipped, done.trained, done.unfinished], [1, 2, 0]);
  assert.equal(fs.statSync(finishedCkpt.path).mtimeMs, mtime, "a finished run was trained again");
  const reference = await train(done.runs[1].config, {
    store: tempStore("sweep-stop-ref"),
    progress: false,
    log: () => {},
  });
  assert.deepEqual(
    withoutTime(new RunStore(store).readMetrics(done.runs[1].id).rows),
    withoutTime(reference.metrics.rows),
  );
});

test("two variants that share a run train it once and both report it", async () => {
  const store = tempStore("sweep-shared");
  const spec: SweepSpec = {
    ...tinySweep(15, [0]),
    variants: { base: {}, "same lr": { "optimizer.lr": 1e-3 }, "other lr": { "optimizer.lr": 3e-3 } },
  };
  const runs = expandSweep(spec);
  assert.equal(runs.length, 3);
  assert.equal(runs[0].id, runs[1].id);
  const result = await runSweep(spec, { ...quiet, store, workers: 2 });
  assert.deepEqual(
    result.runs.map((r) => [r.variant, r.status]),
    [
      ["base", "finished"],
      ["same lr", "finished"],
      ["other lr", "finished"],
    ],
  );
  assert.equal(result.trained, 2);
  assert.equal(new RunStore(store).list().length, 2);
});

test("a run that fails is reported and the others go on", async () => {
  const store = tempStore("sweep-fail");
  const spec = tinySweep(20, [0, 1, 2]);
  const runs = expandSweep(spec);
  // another process "trains" run 2: its lock is held
  const s = new RunStore(store);
  fs.mkdirSync(s.dir(runs[1].id), { recursive: true });
  const lock = RunLock.acquire(s.dir(runs[1].id));
  try {
    const result = await runSweep(spec, { ...quiet, store, workers: 2 });
    assert.deepEqual(
      result.runs.map((r) => r.status),
      ["finished", "failed", "finished"],
    );
    assert.match(result.runs[1].error ?? "", /is locked by process/);
    assert.equal(result.failed, 1);
  } finally {
    lock.release();
  }
});

test("grok sweep: --status, a full run, a bad spec, and Ctrl-C exits 130 and resumes", async () => {
  const store = tempStore("sweep-cli");
  const dir = tempStore("sweep-cli-spec");
  const file = path.join(dir, "tiny.json");
  fs.writeFileSync(file, JSON.stringify(tinySweep(3000, [0, 1])));
  const grok = (args: string[]) => spawnSync(process.execPath, [GROK_BIN, ...args], { encoding: "utf8" });

  const status = grok(["sweep", file, "--store", store, "--status"]);
  assert.equal(status.status, 0, status.stderr);
  assert.match(status.stdout, /missing/);
  assert.match(status.stdout, /0\/2 finished/);

  const bad = path.join(dir, "bad.yaml");
  fs.writeFileSync(bad, "grid:\n  data.trainFraction: [2]\n");
  const r = grok(["sweep", bad, "--store", store]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /trainFraction must be in \(0, 1\)/);
  assert.equal(grok(["sweep", file, "--workers", "0"]).status, 2);

  // interrupt while the runs train: exit 130, checkpoints written, nothing finished is lost
  const child = spawn(
    process.execPath,
    [GROK_BIN, "sweep", file, "--store", store, "--workers", "2", "--checkpoint-seconds", "1", "--no-progress"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => {
    const timer = setInterval(() => {
      if (sweepStatus(tinySweep(3000, [0, 1]), store).runs.every((x) => x.stepsDone > 0)) {
        clearInterval(timer);
        child.kill("SIGINT");
      }
    }, 50);
    child.on("exit", (c) => {
      clearInterval(timer);
      resolve(c);
    });
  });
  assert.equal(code, 130, stderr);
  assert.match(stderr, /stopping/);
  const after = sweepStatus(tinySweep(3000, [0, 1]), store).runs;
  assert.ok(
    after.every((x) => x.status === "stopped" && x.stepsDone > 0),
    JSON.stringify(after.map((x) => [x.status, x.stepsDone])),
  );
  const resumed = grok(["sweep", file, "--store", store, "--no-progress", "--json"]);
  assert.equal(resumed.status, 0, resumed.stderr);
  const json = JSON.parse(resumed.stdout);
  assert.equal(json.runs.length, 2);
  assert.ok(json.runs.every((x: { status: string }) => x.status === "finished"));
  assert.match(resumed.stderr, /resuming from the checkpoint/);
});

test("sweep summaries: quantiles, and medians that count runs that never got there", () => {
  assert.equal(quantile([3, 1, 2], 0.5), 2);
  assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
  assert.equal(quantile([1, Infinity, Infinity], 0.5), Infinity);
  assert.ok(Number.isNaN(quantile([], 0.5)));
  const run = (fraction: number, seed: number, v: number | null) =>
    ({
      params: { "data.trainFraction": fraction, "training.seed": seed },
      variant: "",
      firstVal99: v,
    }) as unknown as SweepRunResult;
  const runs = [
    run(0.3, 0, null),
    run(0.3, 1, 900),
    run(0.3, 2, null),
    run(0.5, 0, 100),
    run(0.5, 1, 300),
    run(0.5, 2, 200),
  ];
  const plain = summarizeRuns(runs, ["data.trainFraction"], (r) => r.firstVal99);
  assert.deepEqual(
    plain.map((g) => [g.key["data.trainFraction"], g.median, g.missing]),
    [
      [0.3, 900, 2],
      [0.5, 200, 0],
    ],
  );
  const censored = summarizeRuns(runs, ["data.trainFraction"], (r) => r.firstVal99, { nullAs: Infinity });
  assert.equal(censored[0].median, Infinity);
  assert.equal(censored[1].q25, 150);
  assert.throws(() => summarizeRuns(runs, ["data.op"], (r) => r.firstVal99), /not a grid field/);
});

test("the example sweep specs in sweeps/ are valid", () => {
  const dir = path.join(__dirname, "..", "..", "sweeps");
  const files = fs.readdirSync(dir).filter((f) => /\.(json|ya?ml)$/.test(f));
  assert.ok(files.length >= 2);
  for (const f of files) assert.ok(expandSweep(loadSweepSpec(path.join(dir, f))).length > 0, f);
});

test("a run being created (config written, state not yet) reads as missing, not as an error", () => {
  const store = tempStore("sweep-creating");
  const spec = tinySweep(10, [0]);
  const [run] = expandSweep(spec);
  const s = new RunStore(store);
  fs.mkdirSync(s.dir(run.id), { recursive: true });
  fs.writeFileSync(path.join(s.dir(run.id), "config.json"), JSON.stringify(run.config));
  assert.equal(s.has(run.id), false);
  assert.deepEqual(
    sweepStatus(spec, store).runs.map((r) => r.status),
    ["missing"],
  );
});
