import assert from "node:assert/strict";
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { RunStore } from "../src/store/run-store";
import { GROK_BIN, REPO_ROOT, tempStore, tempStoreInRepo, withoutTime } from "./helpers";

function grok(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [GROK_BIN, ...args], { encoding: "utf8", env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A real run that takes a few seconds: x+y mod 11, a 1-layer width-16 transformer, full batch. */
const TINY = [
  "--op",
  "x+y",
  "-p",
  "11",
  "--layers",
  "1",
  "--width",
  "16",
  "--heads",
  "2",
  "--split-seed",
  "1",
  "--seed",
  "3",
  "--batch-size",
  "full",
  "--no-progress",
];

test("bad flags and configs exit non-zero with a clear message and create no run directory", () => {
  const store = tempStore("bad");
  const badConfig = path.join(store, "bad.json");
  fs.writeFileSync(badConfig, "{ not json");
  const unknownField = path.join(store, "unknown.json");
  fs.writeFileSync(unknownField, JSON.stringify({ optimizer: { learningrate: 0.1 } }));
  const cases: [string[], RegExp][] = [
    [["--op", "x/y", "-p", "96"], /prime modulus \(got 96\)/],
    [["--op", "x%y"], /unknown operation|x%y/i],
    [["--bogus"], /Unknown option '--bogus'/],
    [["--lr", "fast"], /--lr needs a number \(got "fast"\)/],
    [["--train-fraction", "1.5"], /trainFraction must be in \(0, 1\)/],
    [["--model", "mlp", "--heads", "4"], /--heads applies to the transformer model/],
    [["--steps", "0"], /steps must be a positive integer/],
    [["--backend", "tpu"], /--backend must be one of/],
    [["--engine", "torch"], /--engine must be one of/],
    [["--kernels", "gpu"], /--kernels must be one of/],
    [["--engine", "fast", "--backend", "wasm"], /chooses a tfjs backend, but the engine is fast/],
    [["--engine", "tfjs", "--kernels", "native"], /but the engine is tfjs/],
    [["--threads", "0"], /--threads needs an integer ≥ 1/],
    [["--config", badConfig], /is not valid JSON/],
    [["--config", path.join(store, "missing.json")], /cannot read/],
    [["--config", unknownField], /unknown field "learningrate"/],
    [["--optimizer", "rmsprop"], /kind must be adamw, adam or sgd/],
    [["--batch-size=-3"], /batchSize must be a positive integer/],
    [["--batch-size", "-3"], /argument is ambiguous/],
  ];
  for (const [args, message] of cases) {
    const r = grok(["train", "--store", path.join(store, "runs"), ...args]);
    assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}, stderr ${r.stderr}`);
    assert.match(r.stderr, message, args.join(" "));
    assert.ok(!fs.existsSync(path.join(store, "runs")), `${args.join(" ")} created the store`);
  }
  assert.equal(grok(["frobnicate"]).code, 2);
  // every command's flags are checked the same way
  for (const args of [
    ["bench", "--bogus"],
    ["bench", "--engine", "torch"],
    ["sweep", "--bogus"],
    ["ls", "extra"],
  ]) {
    assert.equal(grok(args).code, 2, args.join(" "));
  }
  const missing = grok(["show", "nosuchrun", "--store", store]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no run "nosuchrun"/);
});

test("train prints the run id; ls and show report it, with --json; paths print relative to the repository", () => {
  const store = tempStoreInRepo("cli");
  const storeShown = path.relative(REPO_ROOT, store);
  assert.equal(grok(["ls", "--store", store]).stdout, `no runs in ${storeShown}\n`);
  const r = grok(["train", "--store", store, ...TINY, "--op", "x^2+xy+y^2", "--steps", "25"]);
  assert.equal(r.code, 0, r.stderr);
  const id = r.stdout.trim();
  assert.match(id, /^[0-9a-f]{12}$/);
  assert.match(r.stderr, /engine (fast \((native|typescript)|tfjs on (wasm|cpu|node|node-gpu))/);
  assert.ok(r.stderr.includes(`run ${id}: store ${storeShown}/${id}\n`), r.stderr);
  const list = JSON.parse(grok(["ls", "--json", "--store", store]).stdout);
  assert.deepEqual(
    list.map((x: { id: string }) => x.id),
    [id],
  );
  assert.match(grok(["ls", "--store", store]).stdout, new RegExp(`${id}\\s+finished\\s+quad/11`));
  const shown = JSON.parse(grok(["show", id.slice(0, 6), "--json", "--store", store]).stdout);
  assert.equal(shown.id, id);
  assert.equal(shown.status, "finished");
  assert.equal(shown.stepsDone, 25);
  assert.equal(shown.config.data.op, "quad");
  assert.equal(shown.config.model.width, 16);
  assert.ok("firstTrain99" in shown && "firstVal99" in shown);
  assert.equal(shown.last.step, 25);
  assert.ok(shown.last.val_acc >= 0 && shown.last.val_acc <= 1);
  assert.match(
    grok(["show", id, "--store", store]).stdout,
    new RegExp(`^run ${id}  \\(${storeShown}/${id}\\)\n[^]*train ≥99%`),
  );
  // the same flags in another spelling name the same run
  const again = grok(["train", "--store", store, ...TINY, "--op", "quad", "--steps", "25"]);
  assert.equal(again.stdout.trim(), id);
  assert.match(again.stderr, /already finished/);
});

function startTraining(store: string, steps: number): ChildProcess {
  return spawn(
    process.execPath,
    [GROK_BIN, "train", "--store", store, ...TINY, "--steps", String(steps), "--checkpoint-every", "20"],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 60000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const exited = (child: ChildProcess) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );

function periodicCheckpoints(store: string): number {
  const s = new RunStore(store);
  return s
    .list()
    .flatMap((r) => s.checkpoints(r.id))
    .filter((c) => !c.final).length;
}

for (const how of ["SIGINT", "SIGKILL"] as const) {
  test(`a run stopped by ${how} resumes and ends with the metrics of an uninterrupted run`, async () => {
    const steps = 300;
    const straightStore = tempStore("straight");
    const straight = grok(["train", "--store", straightStore, ...TINY, "--steps", String(steps)]);
    assert.equal(straight.code, 0, straight.stderr);
    const id = straight.stdout.trim();

    const store = tempStore(how);
    const child = startTraining(store, steps);
    const done = exited(child);
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    await waitFor(() => periodicCheckpoints(store) > 0, "the first checkpoint");
    child.kill(how);
    const { code, signal } = await done;
    const state = new RunStore(store).readState(id);
    if (how === "SIGINT") {
      assert.equal(code, 130, stderr);
      assert.equal(state.status, "stopped");
      assert.match(stderr, /stopped at step \d+ of 300/);
    } else {
      assert.equal(signal, "SIGKILL");
      assert.equal(state.status, "running");
    }
    assert.ok(state.stepsDone < steps, `the run was already done (${state.stepsDone})`);
    // whatever moment the process died at, every file of the run reads back whole (a write in flight
    // leaves only a hidden temporary file, which the next session removes)
    const killed = new RunStore(store);
    assert.ok(killed.readMetrics(id).rows.length > 0);
    for (const c of killed.checkpoints(id)) assert.ok(killed.readCheckpoint(id, c.step).tensors.size > 0);

    const resumed = grok(["train", "--store", store, ...TINY, "--steps", String(steps)]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /resuming from the checkpoint at step \d+/);
    const a = new RunStore(straightStore).readMetrics(id).rows;
    const b = new RunStore(store).readMetrics(id).rows;
    assert.deepEqual(withoutTime(b), withoutTime(a));
    assert.equal(new RunStore(store).readState(id).status, "finished");
    assert.deepEqual(
      fs.readdirSync(new RunStore(store).dir(id)).filter((f) => f.endsWith(".tmp")),
      [],
    );
  });
}

test("a second process cannot train a run that is being trained", async () => {
  const store = tempStore("twice");
  const child = startTraining(store, 2000);
  const done = exited(child);
  await waitFor(
    () => new RunStore(store).list().length > 0 && fs.existsSync(path.join(new RunStore(store).list()[0].dir, "lock")),
    "the lock",
  );
  const second = grok(["train", "--store", store, ...TINY, "--steps", "2000"]);
  child.kill("SIGKILL");
  await done;
  assert.equal(second.code, 1);
  assert.match(second.stderr, new RegExp(`locked by process ${child.pid}`));
});

test("bench reports ms per step of the paper's model", () => {
  const r = grok(["bench", "--steps", "1", "--warmup", "0", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const result = JSON.parse(r.stdout);
  assert.equal(result.batchSize, 512);
  assert.ok(result.msPerStep.mean > 0);
  assert.ok(["fast", "tfjs"].includes(result.engine), result.engine);
});
