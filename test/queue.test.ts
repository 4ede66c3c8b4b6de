// Sweeps on a real queue: Debian's redis-server on a free loopback port, real `grok worker` processes, real
// (tiny) training. Skipped without redis-server, unless CI=true or GROK_REQUIRE_REDIS=1 say it must be there.

import assert from "node:assert/strict";
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { test } from "node:test";
import { Queue } from "bullmq";
import { RunStore } from "../src/store/run-store";
import { runSweep } from "../src/sweeps/runner";
import { maskQueueUrls, parseQueueUrl, QUEUE_NAME, queueStatus } from "../src/sweeps/queue";
import { expandSweep, SweepSpec } from "../src/sweeps/spec";
import { UserError } from "../src/util/errors";
import { filesUnder, GROK_BIN, REPO_ROOT, takeOverLock, tempStore, withoutTime } from "./helpers";
import { webGpuForTests } from "./webgpu-device";

const deviceFor = webGpuForTests();

const hasRedis = spawnSync("redis-server", ["--version"]).status === 0;
const skip =
  hasRedis || process.env.CI === "true" || process.env.GROK_REQUIRE_REDIS === "1"
    ? false
    : "redis-server is not installed (Debian: apt-get install redis-server)";

/** A redis-server of our own: AOF on (fsync on every write), no RDB, noeviction, in its own directory. */
class RedisServer {
  private process: ChildProcess | null = null;
  readonly dir = tempStore("redis");

  constructor(
    readonly port: number,
    readonly password?: string,
    /** TLS only, with a self-signed certificate for 127.0.0.1 (cert.pem in dir, for NODE_EXTRA_CA_CERTS). */
    readonly tls = false,
  ) {}

  static async start(password?: string, tls = false): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), password, tls);
    if (tls) {
      const cert = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"];
      cert.push("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", "key.pem", "-out", "cert.pem");
      const made = spawnSync("openssl", cert, { cwd: server.dir, encoding: "utf8" });
      assert.equal(made.status, 0, `openssl: ${made.stderr ?? made.error}`);
    }
    await server.start();
    return server;
  }

  url(password = this.password): string {
    const auth = password !== undefined ? `:${password}@` : "";
    return `${this.tls ? "rediss" : "redis"}://${auth}127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.dir, "--save", ""];
    args.push("--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction");
    if (this.password) args.push("--requirepass", this.password);
    if (this.tls) {
      args.splice(0, 2, "--port", "0", "--tls-port", String(this.port), "--tls-auth-clients", "no");
      const pem = (name: string) => path.join(this.dir, name);
      args.push("--tls-cert-file", pem("cert.pem"), "--tls-key-file", pem("key.pem"));
      args.push("--tls-ca-cert-file", pem("cert.pem"));
    }
    const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "inherit"] });
    this.process = child;
    await waitForOutput(child, "stdout", /Ready to accept connections/);
  }

  /** SIGTERM: Redis writes its AOF and exits. */
  async stop(): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null) return;
    this.process = null;
    await new Promise((resolve) => {
      child.once("exit", resolve);
      child.kill("SIGTERM");
    });
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves with the first match of `pattern` in what a child writes to a stream (kept in `text` too). */
function waitForOutput(child: ChildProcess, stream: "stdout" | "stderr", pattern: RegExp): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (chunk: Buffer) => {
      text += chunk.toString();
      const m = text.match(pattern);
      if (m) {
        child[stream]!.off("data", onData);
        resolve(m);
      }
    };
    child[stream]!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`exited (${code}) before printing ${pattern}:\n${text}`)));
    child.once("error", (err) => reject(new Error(`${err.message} (is redis-server installed? see environment.md)`)));
  });
}

/** A `grok worker` process with short BullMQ timings; its stderr gathers in `log`. */
class WorkerProcess {
  readonly child: ChildProcess;
  log = "";

  constructor(args: string[], env: NodeJS.ProcessEnv = process.env) {
    const timing = ["--lock-seconds", "2", "--stalled-seconds", "1"];
    if (!args.includes("--engine")) timing.push("--engine", "fast", "--kernels", "auto");
    this.child = spawn(process.execPath, [GROK_BIN, "worker", ...timing, ...args], {
      stdio: ["ignore", "ignore", "pipe"],
      env,
    });
    this.child.stderr!.on("data", (chunk: Buffer) => (this.log += chunk.toString()));
  }

  async waitFor(pattern: RegExp): Promise<RegExpMatchArray> {
    for (;;) {
      const m = this.log.match(pattern);
      if (m) return m;
      if (this.child.exitCode !== null) assert.fail(`the worker exited before ${pattern}:\n${this.log}`);
      await sleep(50);
    }
  }

  /** SIGTERM (a graceful stop) and its exit code. */
  stop(): Promise<number | null> {
    if (this.child.exitCode !== null) return Promise.resolve(this.child.exitCode);
    return new Promise((resolve) => {
      this.child.once("exit", (code) => resolve(code));
      this.child.kill("SIGTERM");
    });
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Tiny real runs (x+y mod 11, width 16, full batch), long enough to be killed after a checkpoint. */
function tinySweep(name: string, steps: number, seeds: number[]): SweepSpec {
  return {
    name,
    base: "paper",
    set: {
      "data.op": "add",
      "data.modulus": 11,
      "data.splitSeed": 1,
      "data.trainFraction": 0.5,
      "model.layers": 1,
      "model.width": 16,
      "model.heads": 2,
      "training.batchSize": "full",
      "training.steps": steps,
    },
    grid: { "training.seed": seeds },
  };
}

/** Per run id: how many times a worker started it at step 0 (a resume is not a start). */
function startsPerRun(logs: string[]): Map<string, number> {
  const starts = new Map<string, number>();
  for (const m of logs.join("\n").matchAll(/run (\w+) \(sweep [^)]*\): started at step 0/g))
    starts.set(m[1], (starts.get(m[1]) ?? 0) + 1);
  return starts;
}

/** Every run finished once: its metrics complete and in order (no step twice), one final checkpoint. */
function assertTrainedOnce(store: string, ids: string[], logs: string[]): void {
  const s = new RunStore(store);
  const starts = startsPerRun(logs);
  for (const id of ids) {
    const state = s.readState(id);
    assert.equal(state.status, "finished", `run ${id}`);
    const steps = s.readMetrics(id).rows.map((r) => r.step);
    assert.equal(steps[steps.length - 1], s.readConfig(id).training.steps, `run ${id} metrics end at its budget`);
    assert.ok(
      steps.every((step, i) => i === 0 || step > steps[i - 1]),
      `run ${id} metrics in order, each step once`,
    );
    assert.deepEqual(
      fs.readdirSync(path.join(s.dir(id), "checkpoints")).filter((f) => f.startsWith("final")),
      ["final.safetensors"],
    );
    assert.equal(starts.get(id), 1, `run ${id} started at step 0 once:\n${logs.join("\n")}`);
  }
}

async function queuedJobs(url: string): Promise<number> {
  const queue = new Queue(QUEUE_NAME, { connection: parseQueueUrl(url).options });
  try {
    const counts = await queue.getJobCounts();
    return Object.values(counts).reduce((a, b) => a + b, 0);
  } finally {
    await queue.close();
  }
}

test("queue URLs with a user, password, database or TLS; shown masked; bad ones are UserErrors", () => {
  const c = parseQueueUrl("redis://:p%40ss@redis.lab:6380/2");
  assert.deepEqual([c.options.host, c.options.port, c.options.db, c.options.password], ["redis.lab", 6380, 2, "p@ss"]);
  assert.equal(c.options.tls, undefined);
  assert.equal(c.display, "redis://:***@redis.lab:6380/2");
  const tls = parseQueueUrl("rediss://alice:secret@10.0.0.5");
  assert.deepEqual([tls.options.port, tls.options.username, tls.options.tls], [6379, "alice", {}]);
  assert.equal(tls.display, "rediss://alice:***@10.0.0.5");
  assert.equal(
    maskQueueUrls("at redis://:secret@h:1 and rediss://u:pw@h2"),
    "at redis://:***@h:1 and rediss://u:***@h2",
  );
  for (const [url, message] of [
    ["http://:secret@host:6379", /unknown scheme "http:"/],
    ["redis://:secret@host:6379/db1", /the database must be a number/],
    ["redis://:secret@host:99999", /needs a Redis URL/],
    ["host:6379", /unknown scheme/],
  ] as const) {
    assert.throws(
      () => parseQueueUrl(url),
      (err: Error) => err instanceof UserError && message.test(err.message) && !err.message.includes("secret"),
      url,
    );
  }
});

test("bad input exits 2 with a clear error before anything is enqueued", { skip }, async () => {
  const redis = await RedisServer.start();
  try {
    const store = tempStore("queue-bad");
    const spec = path.join(store, "tiny.json");
    fs.writeFileSync(spec, JSON.stringify(tinySweep("bad", 20, [0])));
    const grok = (args: string[]) =>
      spawnSync(process.execPath, [GROK_BIN, ...args], { encoding: "utf8", env: { ...process.env, GROK_QUEUE: "" } });
    const closed = await freePort();
    const cases: [string[], RegExp][] = [
      [["sweep", spec, "--store", store, "--queue", "redis//:secret@localhost"], /--queue needs a Redis URL/],
      [
        ["sweep", spec, "--store", store, "--queue", `redis://:secret@127.0.0.1:${closed}`, "--connect-seconds", "1"],
        /cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ \(waited 1 s\): .*ECONNREFUSED/,
      ],
      [["sweep", spec, "--store", store, "--queue", redis.url(), "--engine", "nope"], /--engine must be one of/],
      [
        ["sweep", spec, "--store", store, "--queue", redis.url(), "--workers", "2"],
        /--workers and --threads are for a/,
      ],
      [["worker", "--store", store], /give the queue: --queue URL, or \$GROK_QUEUE/],
      [["worker", "--queue", redis.url(), "--store", path.join(store, "missing")], /no such directory/],
      [["worker", "--queue", redis.url(), "--store", spec], /not a directory/],
    ];
    // a directory this process cannot write to (root writes anywhere but sysfs)
    const readOnly = process.getuid?.() === 0 ? "/sys" : tempStore("queue-ro");
    if (readOnly !== "/sys") fs.chmodSync(readOnly, 0o555);
    cases.push([["worker", "--queue", redis.url(), "--store", readOnly], /not writable here/]);
    for (const [args, message] of cases) {
      const r = grok(args);
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(" "));
      assert.doesNotMatch(r.stderr + r.stdout, /secret/);
    }
    assert.equal(await queuedJobs(redis.url()), 0);
  } finally {
    await redis.stop();
  }
});

test(
  "2 workers, one killed with kill -9 mid-run: each run trained once, resumed from a checkpoint, as a local sweep",
  { skip },
  async () => {
    const redis = await RedisServer.start();
    const store = tempStore("queue-kill");
    const spec = tinySweep("kill", 2000, [0, 1, 2, 3, 4, 5]);
    const workers = [0, 1].map(() => new WorkerProcess(["--queue", redis.url(), "--store", store]));
    try {
      const lines: string[] = [];
      // from a notebook's point of view: runSweep with a queue enqueues, then follows
      const sweep = runSweep(spec, {
        queue: redis.url(),
        store,
        checkpointEvery: 50,
        progress: false,
        log: (m) => lines.push(m),
      });
      // the victim: the first worker, once its run has a periodic checkpoint and is not finished
      const victim = workers[0];
      const id = (await victim.waitFor(/run (\w+) \(sweep kill #\d\): started at step 0/))[1];
      const checkpoints = path.join(store, id, "checkpoints");
      let checkpointStep = 0;
      while (checkpointStep === 0) {
        const periodic = fs.existsSync(checkpoints)
          ? fs.readdirSync(checkpoints).filter((f) => /^step-\d+\.safetensors$/.test(f))
          : [];
        if (periodic.length) checkpointStep = Math.min(...periodic.map((f) => Number(f.slice(5, 14))));
        else await sleep(20);
      }
      victim.child.kill("SIGKILL");
      await new Promise((resolve) => victim.child.once("exit", resolve));
      assert.notEqual(new RunStore(store).readState(id).status, "finished", "killed mid-run");
      const result = await sweep;
      assert.deepEqual([result.trained, result.failed, result.unfinished], [6, 0, 0], lines.join("\n"));
      // the other worker took the job over after the stalled-job check and resumed it from a checkpoint
      const resumed = workers[1].log.match(
        new RegExp(`run ${id} \\(sweep kill #\\d\\): resumed from the checkpoint at step (\\d+)`),
      );
      assert.ok(resumed, workers[1].log);
      assert.ok(Number(resumed[1]) >= checkpointStep, `resumed at ${resumed[1]}, checkpoint at ${checkpointStep}`);
      assertTrainedOnce(
        store,
        result.runs.map((r) => r.id),
        [victim.log, workers[1].log],
      );
      // the same spec as a local sweep: identical metrics
      const localStore = tempStore("queue-local");
      const local = await runSweep(spec, {
        store: localStore,
        workers: 2,
        engine: "fast",
        progress: false,
        log: () => {},
      });
      assert.equal(local.trained, 6);
      for (const run of local.runs) {
        assert.deepEqual(
          withoutTime(new RunStore(store).readMetrics(run.id).rows),
          withoutTime(new RunStore(localStore).readMetrics(run.id).rows),
          `run ${run.id}`,
        );
      }
      assert.equal(await workers[1].stop(), 0);
    } finally {
      for (const w of workers) w.child.kill("SIGKILL");
      await redis.stop();
    }
  },
);

/** Every file under a directory, as text. */
function allText(dir: string): string {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => fs.readFileSync(path.join(e.parentPath, e.name), "latin1"))
    .join("\n");
}

test(
  "Redis restarts mid-sweep: workers and sweep reconnect, each run trained once; the password never shows",
  { skip },
  async () => {
    const password = "s3cret-pw";
    const redis = await RedisServer.start(password);
    const store = tempStore("queue-restart");
    const spec = tinySweep("restart", 1500, [0, 1, 2, 3]);
    const specFile = path.join(tempStore("queue-restart-spec"), "restart.json");
    fs.writeFileSync(specFile, JSON.stringify(spec));
    // one grok worker of two processes, the URL with its password on the command line
    const worker = new WorkerProcess(["--queue", redis.url(), "--store", store, "--workers", "2"]);
    const sweepArgs = ["sweep", specFile, "--queue", redis.url(), "--store", store, "--checkpoint-every", "50"];
    const sweep = spawn(process.execPath, [GROK_BIN, ...sweepArgs, "--no-progress"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let sweepOut = "";
    sweep.stdout!.on("data", (c: Buffer) => (sweepOut += c.toString()));
    sweep.stderr!.on("data", (c: Buffer) => (sweepOut += c.toString()));
    const sweepExit = new Promise<number | null>((resolve) => sweep.once("exit", resolve));
    try {
      const [, holder, id] = await worker.waitFor(/worker (\S+): run (\w+) \(sweep restart #\d\): started at step 0/);
      // --status names each run's job and the worker that holds it
      const status = await queueStatus(spec, { store, queue: redis.url() });
      const held = status.runs.find((r) => r.id === id)!;
      assert.ok(held.queue, "the status has the queue's view");
      if (held.queue.state === "active") assert.equal(held.queue.worker, holder);
      else assert.equal(held.queue.state, "completed");
      // the process titles show the URL masked
      for (const pid of [worker.child.pid, sweep.pid]) {
        const title = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
        assert.match(title, /redis:\/\/:\*\*\*@127\.0\.0\.1/);
        assert.doesNotMatch(title, new RegExp(password));
      }
      await redis.stop();
      await sleep(1000);
      await redis.start();
      assert.equal(await sweepExit, 0, sweepOut);
      assertTrainedOnce(
        store,
        status.runs.map((r) => r.id),
        [worker.log],
      );
      const after = spawnSync(
        process.execPath,
        [GROK_BIN, "sweep", specFile, "--status", "--queue", redis.url(), "--store", store],
        {
          encoding: "utf8",
        },
      );
      assert.equal(after.status, 0, after.stderr);
      assert.equal((after.stdout.match(/ finished .* completed /g) ?? []).length, 4, after.stdout);
      // the workers of a queued sweep are not "here"
      assert.doesNotMatch(after.stdout, /default workers here/);
      assert.equal(await worker.stop(), 0, worker.log);
      for (const text of [sweepOut, worker.log, after.stdout + after.stderr, allText(store)]) {
        assert.doesNotMatch(text, new RegExp(password));
      }
    } finally {
      worker.child.kill("SIGKILL");
      sweep.kill("SIGKILL");
      await redis.stop();
    }
  },
);

test(
  "rediss:// with a password: a sweep and a worker over TLS; an untrusted certificate is a clear error",
  { skip },
  async () => {
    const redis = await RedisServer.start("tls-pw", true);
    const store = tempStore("queue-tls");
    const specFile = path.join(store, "tls.json");
    fs.writeFileSync(specFile, JSON.stringify(tinySweep("tls", 30, [0, 1])));
    const sweepArgs = [GROK_BIN, "sweep", specFile, "--queue", redis.url(), "--store", store, "--no-progress"];
    // the server's certificate is self-signed: a client that does not trust it says so
    const untrusted = spawnSync(process.execPath, [...sweepArgs, "--connect-seconds", "1"], { encoding: "utf8" });
    assert.equal(untrusted.status, 2, untrusted.stderr);
    assert.match(
      untrusted.stderr,
      /cannot reach Redis at rediss:\/\/:\*\*\*@127\.0\.0\.1:\d+ .*self-signed certificate/,
    );
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: path.join(redis.dir, "cert.pem") };
    const worker = new WorkerProcess(["--queue", redis.url(), "--store", store], env);
    try {
      const sweep = spawnSync(process.execPath, sweepArgs, { encoding: "utf8", env });
      assert.equal(sweep.status, 0, sweep.stderr);
      assert.match(sweep.stderr, /sweep tls: 2\/2 runs finished \(2 trained now/);
      // the worker's lines, which arrive once this process reads its pipe again
      await worker.waitFor(/finished at step 30[^]*finished at step 30/);
      assertTrainedOnce(
        store,
        expandSweep(tinySweep("tls", 30, [0, 1])).map((r) => r.id),
        [worker.log],
      );
      assert.equal(await worker.stop(), 0);
      assert.doesNotMatch(untrusted.stderr + sweep.stderr + sweep.stdout + worker.log, /tls-pw/);
    } finally {
      worker.child.kill("SIGKILL");
      await redis.stop();
    }
  },
);

test(
  "a run whose lock another live process holds waits on the queue, and is trained once the lock is free",
  { skip },
  async () => {
    const redis = await RedisServer.start();
    const store = tempStore("queue-locked");
    const spec = tinySweep("locked", 30, [0]);
    // this process holds the run's lock, as a worker would that BullMQ lost touch with
    const { lock } = new RunStore(store).openForTraining(expandSweep(spec)[0].config);
    const worker = new WorkerProcess(["--queue", redis.url(), "--store", store]);
    try {
      const sweep = runSweep(spec, { queue: redis.url(), store, progress: false, log: () => {} });
      await worker.waitFor(new RegExp(`locked by process ${process.pid} on \\S+; back to the queue for 2 s`));
      assert.doesNotMatch(worker.log, /started at step 0/);
      lock.release();
      const result = await sweep;
      assert.deepEqual([result.trained, result.failed], [1, 0]);
      assertTrainedOnce(store, [result.runs[0].id], [worker.log]);
      assert.equal(await worker.stop(), 0);
    } finally {
      lock.release();
      worker.child.kill("SIGKILL");
      await redis.stop();
    }
  },
);

test(
  "a worker whose run another host took over stops it at once, writing nothing more, and delays its job",
  { skip },
  async () => {
    const redis = await RedisServer.start();
    const store = tempStore("queue-lost");
    const worker = new WorkerProcess(["--queue", redis.url(), "--store", store]);
    const abort = new AbortController();
    try {
      const spec = tinySweep("lost", 100_000, [0]);
      const sweep = runSweep(spec, { queue: redis.url(), store, progress: false, log: () => {}, signal: abort.signal });
      const id = (await worker.waitFor(/run (\w+) \(sweep lost #1\): started at step 0/))[1];
      // another host's lock, as after our lease expired there
      takeOverLock(path.join(store, id));
      await worker.waitFor(
        /run \w+ \(sweep lost #1\): taken over by process 4242 on another-host after this worker's lease expired: stopped without writing more; back to the queue for 61 s/,
      );
      const taken = filesUnder(path.join(store, id));
      assert.match(worker.log, /lost the lock .*: another process took it over after our lease expired/);
      // the worker goes on taking jobs; stopped, it has written nothing more to the run
      assert.equal(await worker.stop(), 0, worker.log);
      assert.deepEqual(filesUnder(path.join(store, id)), taken);
      assert.equal(JSON.parse(fs.readFileSync(path.join(store, id, "lock"), "utf8")).host, "another-host");
      assert.notEqual(new RunStore(store).readState(id).status, "finished");
      abort.abort();
      assert.equal((await sweep).interrupted, true);
    } finally {
      worker.child.kill("SIGKILL");
      await redis.stop();
    }
  },
);

/** 4 tiny runs for packs of 2 on the webgpu engine. */
const PACKS_SPEC = tinySweep("packs", 120, [0, 1, 2, 3]);
const PACKS_OPTIONS = { engine: "webgpu" as const, pack: 2, progress: false };

/** The runs of PACKS_SPEC in a local sweep on the webgpu engine, once for the file: what the queue's must match. */
let localPacks: Promise<string> | null = null;
function localPacksStore(): Promise<string> {
  localPacks ??= (async () => {
    const store = tempStore("queue-packs-local");
    const local = await runSweep(PACKS_SPEC, { ...PACKS_OPTIONS, store, log: () => {} });
    assert.equal(local.trained, 4);
    return store;
  })();
  return localPacks;
}

/** Each run has the metrics (without wall-clock time) of the same run in the local webgpu sweep. */
async function assertSameAsLocal(store: string, ids: string[]): Promise<void> {
  const local = new RunStore(await localPacksStore());
  for (const id of ids)
    assert.deepEqual(
      withoutTime(new RunStore(store).readMetrics(id).rows),
      withoutTime(local.readMetrics(id).rows),
      `run ${id}`,
    );
}

test(
  "a sweep on the webgpu engine goes on the queue as packs, which a webgpu worker trains as a local sweep",
  { skip },
  async (t) => {
    if (!(await deviceFor(t))) return;
    const redis = await RedisServer.start();
    const store = tempStore("queue-packs");
    const worker = new WorkerProcess(["--queue", redis.url(), "--store", store, "--engine", "webgpu"]);
    try {
      const lines: string[] = [];
      const result = await runSweep(PACKS_SPEC, {
        ...PACKS_OPTIONS,
        queue: redis.url(),
        store,
        log: (m) => lines.push(m),
      });
      assert.deepEqual([result.trained, result.failed, result.unfinished], [4, 0, 0], lines.join("\n"));
      assert.match(lines[0], /4 runs, 0 finished, 2 packs of 4 runs on the queue .* \(2 jobs enqueued now/);
      await worker.waitFor(/pack of 2 runs: 2 finished[^]*pack of 2 runs: 2 finished/);
      assert.equal((worker.log.match(/pack of 2 runs on webgpu/g) ?? []).length, 2, worker.log);
      // train()'s own lines reach the worker's log: each run's summary
      assert.equal((worker.log.match(/run \w+: finished \(budget\) at step 120; first step/g) ?? []).length, 4);
      const ids = result.runs.map((r) => r.id);
      assertTrainedOnce(store, ids, [worker.log]);
      // --status finds each run's pack job
      const status = await queueStatus(PACKS_SPEC, { store, queue: redis.url() });
      assert.deepEqual(
        status.runs.map((r) => r.queue?.state),
        ["completed", "completed", "completed", "completed"],
      );
      await assertSameAsLocal(store, ids);
      assert.equal(await worker.stop(), 0);
    } finally {
      worker.child.kill("SIGKILL");
      await redis.stop();
    }
  },
);

test(
  "a webgpu worker killed with kill -9 mid-pack: a second one resumes the pack to the uninterrupted metrics",
  { skip },
  async (t) => {
    if (!(await deviceFor(t))) return;
    const redis = await RedisServer.start();
    const store = tempStore("queue-packs-kill");
    const args = ["--queue", redis.url(), "--store", store, "--engine", "webgpu"];
    const victim = new WorkerProcess(args);
    let second: WorkerProcess | undefined;
    try {
      const lines: string[] = [];
      const sweep = runSweep(PACKS_SPEC, {
        ...PACKS_OPTIONS,
        queue: redis.url(),
        store,
        checkpointEvery: 20,
        log: (m) => lines.push(m),
      });
      // the first pack's runs, once each has a periodic checkpoint
      await victim.waitFor(/started at step 0[^]*started at step 0/);
      const ids = [...victim.log.matchAll(/run (\w+) \(sweep packs #\d\): started at step 0/g)].map((m) => m[1]);
      const periodic = (id: string) => new RunStore(store).checkpoints(id).filter((c) => !c.final);
      while (!ids.every((id) => periodic(id).length > 0)) await sleep(20);
      victim.child.kill("SIGKILL");
      await new Promise((resolve) => victim.child.once("exit", resolve));
      for (const id of ids) assert.notEqual(new RunStore(store).readState(id).status, "finished", "killed mid-pack");
      second = new WorkerProcess(args);
      const result = await sweep;
      assert.deepEqual([result.trained, result.failed, result.unfinished], [4, 0, 0], lines.join("\n"));
      for (const id of ids)
        assert.match(
          second.log,
          new RegExp(`run ${id} \\(sweep packs #\\d\\): resumed from the checkpoint at step [1-9]`),
        );
      assertTrainedOnce(
        store,
        result.runs.map((r) => r.id),
        [victim.log, second.log],
      );
      await assertSameAsLocal(
        store,
        result.runs.map((r) => r.id),
      );
      assert.equal(await second.stop(), 0);
    } finally {
      victim.child.kill("SIGKILL");
      second?.child.kill("SIGKILL");
      await redis.stop();
    }
  },
);

test("a job gone from the queue while its run is unfinished is enqueued again", { skip }, async () => {
  const redis = await RedisServer.start();
  const store = tempStore("queue-gone");
  const lines: string[] = [];
  const log = (m: string) => lines.push(m);
  const sweep = runSweep(tinySweep("gone", 30, [0, 1]), { queue: redis.url(), store, progress: false, log });
  const queue = new Queue(QUEUE_NAME, { connection: parseQueueUrl(redis.url()).options });
  let worker: WorkerProcess | undefined;
  try {
    while ((await queue.getJobCounts()).waiting < 2) await sleep(20);
    // as a Redis restarted without persistence would leave it
    await queue.obliterate({ force: true });
    while (lines.filter((l) => /its job is gone from the queue: enqueued again/.test(l)).length < 2) await sleep(20);
    worker = new WorkerProcess(["--queue", redis.url(), "--store", store]);
    const result = await sweep;
    assert.deepEqual([result.trained, result.failed], [2, 0], lines.join("\n"));
    assertTrainedOnce(
      store,
      result.runs.map((r) => r.id),
      [worker.log],
    );
    assert.equal(await worker.stop(), 0);
  } finally {
    worker?.child.kill("SIGKILL");
    await queue.close();
    await redis.stop();
  }
});

test(
  "the Slurm script is valid bash and runs one grok worker from the environment, which exits when idle",
  { skip },
  async () => {
    const script = path.join(REPO_ROOT, "scripts", "slurm-workers.sbatch");
    const check = spawnSync("bash", ["-n", script], { encoding: "utf8" });
    assert.equal(check.status, 0, check.stderr);
    assert.match(fs.readFileSync(script, "utf8"), /^#SBATCH --array=/m);
    // as one array task would run it, without Slurm
    const redis = await RedisServer.start("pw-in-env");
    try {
      const store = tempStore("queue-slurm");
      const env = {
        ...process.env,
        GROK_QUEUE: redis.url(),
        GROK_STORE: store,
        GROK_HOME: REPO_ROOT,
        GROK_IDLE_EXIT: "1",
      };
      const task = await new Promise<{ code: number | null; log: string }>((resolve) => {
        const child = spawn("bash", [script], { env, stdio: ["ignore", "ignore", "pipe"] });
        let log = "";
        child.stderr!.on("data", (c: Buffer) => (log += c.toString()));
        child.once("exit", (code) => resolve({ code, log }));
      });
      assert.equal(task.code, 0, task.log);
      assert.match(task.log, /taking jobs from redis:\/\/:\*\*\*@127\.0\.0\.1:\d+; store /);
      assert.match(task.log, /no job for 1 s: stopping/);
    } finally {
      await redis.stop();
    }
  },
);
