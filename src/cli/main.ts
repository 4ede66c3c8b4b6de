// `grok`: train runs, list and show them, benchmark the engine, run the demo.

import { ParseArgsConfig } from "node:util";
import { ENGINE_NAMES, KERNEL_CHOICES, TFJS_BACKENDS } from "../engines/index";
import { displayPath, RunInfo, RunStore } from "../store/run-store";
import { RunConfig } from "../config/run-config";
import { demoConfig } from "../training/presets";
import { train, TrainOptions } from "../training/trainer";
import { Interrupted, UserError } from "../util/errors";
import { formatTable } from "../util/table";
import { benchCommand } from "./bench";
import { sweepCommand } from "./sweep";
import { workerCommand } from "./worker";
import { maskQueueUrls } from "../sweeps/queue";
import {
  configFromFlags,
  ENGINE_FLAG_OPTIONS,
  engineFlags,
  FIELD_FLAGS,
  intFlag,
  parseFlags,
  SPECIAL_FLAGS,
} from "./flags";

// Exit codes: 0 done, 1 failed, 2 bad usage or config (UserError), 130 stopped by an interrupt (a stopped run
// resumes; 143 when SIGTERM stopped `grok figures`).

const RUNTIME_FLAGS = {
  store: "run store directory (default: the project's data/runs, or $GROK_STORE)",
  engine: `engine: auto, ${ENGINE_NAMES.join(", ")} (auto: webgpu on a hardware GPU, else tfjs-node-gpu, else fast)`,
  backend: `tfjs backend: ${TFJS_BACKENDS.join(", ")}`,
  kernels: `fast engine kernels: ${KERNEL_CHOICES.join(", ")} (auto: native when built)`,
  threads: "fast engine threads (default: 2, or GROK_THREADS)",
  "checkpoint-every": "checkpoint every N steps (default 1000)",
  "checkpoint-seconds": "and at least every N seconds (default 60)",
  "keep-checkpoints": "periodic checkpoints kept (default 2, 0: all)",
} as const;

const GROKFAST_HELP = "enable the Grokfast EMA gradient filter (α 0.98, λ 2 unless set)";

const BOOLEAN_FLAGS = {
  "no-progress": "no progress line",
  json: "print the finished run as JSON on stdout",
  help: "this help",
} as const;

function trainOptionsSpec(): ParseArgsConfig["options"] {
  const options: NonNullable<ParseArgsConfig["options"]> = {};
  for (const f of FIELD_FLAGS) options[f.flag] = { type: "string" };
  for (const name of Object.keys(SPECIAL_FLAGS)) options[name] = { type: "string" };
  for (const name of Object.keys(RUNTIME_FLAGS)) options[name] = { type: "string" };
  for (const name of [...Object.keys(BOOLEAN_FLAGS), "grokfast", "orthogonal-grad"])
    options[name] = { type: "boolean" };
  options.modulus.short = "p";
  return options;
}

function runtimeOptions(values: Record<string, string | boolean | undefined>): TrainOptions {
  const { engine, backend, kernels } = engineFlags(values);
  return {
    store: values.store as string | undefined,
    engine,
    backend,
    kernels,
    threads: intFlag(values, "threads", 1),
    checkpointEvery: intFlag(values, "checkpoint-every", 1),
    checkpointSeconds: intFlag(values, "checkpoint-seconds", 1),
    keepCheckpoints: intFlag(values, "keep-checkpoints", 0),
    // on a terminal the line redraws in place; in a log it is printed every few seconds
    progress: !values["no-progress"],
    handleSignals: true,
    log: (m) => process.stderr.write(m + "\n"),
  };
}

async function trainCommand(config: RunConfig, values: Record<string, string | boolean | undefined>): Promise<number> {
  const options = runtimeOptions(values);
  const result = await train(config, options);
  if (values.json) process.stdout.write(JSON.stringify(showJson(RunStore.of(options.store), result), null, 2) + "\n");
  else process.stdout.write(`${result.id}\n`);
  return result.interrupted ? 130 : 0;
}

function showJson(store: RunStore, info: RunInfo) {
  const metrics = store.readMetrics(info.id);
  return {
    id: info.id,
    dir: info.dir,
    status: info.status,
    stopReason: info.stopReason,
    stepsDone: info.stepsDone,
    steps: info.config.training.steps,
    firstTrain99: info.firstTrain99,
    firstVal99: info.firstVal99,
    engine: info.engine,
    backend: info.backend,
    trainSeconds: info.trainSeconds,
    createdAt: info.createdAt,
    updatedAt: info.updatedAt,
    config: info.config,
    last: metrics.rows[metrics.rows.length - 1] ?? null,
    checkpoints: store.checkpoints(info.id).map((c) => ({ step: c.step, final: c.final, path: c.path })),
  };
}

function describeData(cfg: RunConfig): string {
  return `${cfg.data.op}${cfg.data.modulus ? `/${cfg.data.modulus}` : ""} @${cfg.data.trainFraction}`;
}

function lsCommand(args: string[]): number {
  const { values } = parseFlags(args, { store: { type: "string" }, json: { type: "boolean" } }, 0);
  const store = new RunStore(values.store as string | undefined);
  const runs = store.list();
  if (values.json) {
    process.stdout.write(
      JSON.stringify(
        runs.map((r) => showJson(store, r)),
        null,
        2,
      ) + "\n",
    );
    return 0;
  }
  if (runs.length === 0) {
    process.stdout.write(`no runs in ${displayPath(store.root)}\n`);
    return 0;
  }
  const rows = runs.map((r) => [
    r.id,
    r.status,
    describeData(r.config),
    r.config.model.kind === "transformer"
      ? `tf L${r.config.model.layers} d${r.config.model.width}`
      : `mlp d${r.config.model.width}`,
    `${r.config.optimizer.kind} wd${r.config.optimizer.weightDecay}`,
    `${r.stepsDone}/${r.config.training.steps}`,
    String(r.firstTrain99 ?? "-"),
    String(r.firstVal99 ?? "-"),
  ]);
  const header = ["id", "status", "data", "model", "optimizer", "steps", "train99", "val99"];
  for (const line of formatTable(header, rows)) process.stdout.write(line + "\n");
  return 0;
}

function showCommand(args: string[]): number {
  const { values, positionals } = parseFlags(args, { store: { type: "string" }, json: { type: "boolean" } }, 1);
  if (positionals.length !== 1) throw new UserError("show needs a run id (see grok ls)");
  const store = new RunStore(values.store as string | undefined);
  const info = store.info(store.resolve(positionals[0]));
  const json = showJson(store, info);
  if (values.json) {
    process.stdout.write(JSON.stringify(json, null, 2) + "\n");
    return 0;
  }
  const pct = (x: number | undefined) => (x === undefined ? "-" : `${(100 * x).toFixed(2)}%`);
  const last = json.last;
  const lines = [
    `run ${info.id}  (${displayPath(info.dir)})`,
    `status      ${info.status}${info.stopReason ? ` (${info.stopReason})` : ""}, ${info.stepsDone}/${json.steps} steps, engine ${info.engine ?? "-"} on ${info.backend ?? "-"}`,
    `data        ${describeData(info.config)}, split seed ${info.config.data.splitSeed}, outliers ${info.config.data.outliers}`,
    `model       ${JSON.stringify(info.config.model)}`,
    `optimizer   ${JSON.stringify(info.config.optimizer)}`,
    `training    ${JSON.stringify(info.config.training)}`,
    `train ≥99%  ${info.firstTrain99 ?? "not reached"}`,
    `val ≥99%    ${info.firstVal99 ?? "not reached"}`,
    last
      ? `last        step ${last.step}: train loss ${last.train_loss.toPrecision(4)} acc ${pct(last.train_acc)}, val loss ${last.val_loss.toPrecision(4)} acc ${pct(last.val_acc)}, weight norm ${last.weight_norm.toPrecision(4)}`
      : "last        no evaluation yet",
    `checkpoints ${json.checkpoints.map((c) => (c.final ? `final@${c.step}` : c.step)).join(", ") || "none"}`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
  return 0;
}

async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseFlags(
    args,
    { store: { type: "string" }, ...ENGINE_FLAG_OPTIONS, "no-progress": { type: "boolean" } },
    0,
  );
  const options = runtimeOptions(values);
  const cfg = demoConfig();
  process.stdout.write(
    "Demo: a 1-layer transformer learns x+y mod 47 from 40% of its table (AdamW, lr 3e-3, weight decay 1).\n" +
      "Watch training accuracy reach 99% long before validation accuracy does: that delay is grokking.\n",
  );
  const result = await train(cfg, options);
  if (result.interrupted) return 130;
  const t = result.firstTrain99;
  const v = result.firstVal99;
  process.stdout.write(`\nrun ${result.id}\n`);
  process.stdout.write(`first step with training accuracy ≥ 99%:   ${t ?? "not reached"}\n`);
  process.stdout.write(`first step with validation accuracy ≥ 99%: ${v ?? "not reached"}\n`);
  if (t !== null && v !== null) {
    process.stdout.write(`validation reached 99% ${(v / t).toFixed(1)}× later than training: the network grokked.\n`);
    return 0;
  }
  process.stdout.write("the demo did not show both steps within its budget\n");
  return 1;
}

function usage(): string {
  const section = (title: string, entries: [string, string][]) =>
    `${title}\n` + entries.map(([k, v]) => `  --${k.padEnd(20)} ${v}`).join("\n") + "\n";
  return (
    "usage: grok <command> [options]\n\n" +
    "commands:\n" +
    "  train [options]        train a run (resumes it if the store has it; finished runs return at once)\n" +
    "  sweep SPEC [options]   train every missing run of a sweep spec (JSON or YAML grid); grok sweep --help\n" +
    "  worker --queue URL     train the runs sweeps put on a Redis queue (grok sweep --queue); grok worker --help\n" +
    "  ls [--json]            list the runs in the store\n" +
    "  show RUN [--json]      one run: config, status, first steps at 99%, last metrics\n" +
    "  bench [options]        ms per training step of the paper's model (--batch-size 512|full, --steps N|auto,\n" +
    "                         --engine, --backend, --kernels, --threads, --json)\n" +
    "  bench --all            the fast and tfjs engines and PyTorch, at batch 512 and full batch, as ratios (--seconds N)\n" +
    "  demo                   train the demo run and print when train and validation accuracy reach 99%\n" +
    "  figures                execute every notebook headless, save outputs and figures (--preset, --only)\n\n" +
    section("train: the run", [
      ...FIELD_FLAGS.map((f) => [f.flag === "modulus" ? "modulus, -p" : f.flag, f.help] as [string, string]),
      ...Object.entries(SPECIAL_FLAGS),
      ["grokfast", GROKFAST_HELP],
      ["orthogonal-grad", "⊥Grad: each gradient without its component along its weights (⊥AdamW with adamw)"],
    ]) +
    "\n" +
    section("train: how it runs", [...Object.entries(RUNTIME_FLAGS), ...Object.entries(BOOLEAN_FLAGS)])
  );
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "train": {
        const { values } = parseFlags(rest, trainOptionsSpec(), 0);
        if (values.help) {
          process.stdout.write(usage());
          return 0;
        }
        return await trainCommand(configFromFlags(values), values);
      }
      case "ls":
        return lsCommand(rest);
      case "show":
        return showCommand(rest);
      case "bench":
        return await benchCommand(rest);
      case "demo":
        return await demoCommand(rest);
      case "figures":
        // loaded only here: the notebook executor brings tslab and its TypeScript, which no other command needs
        return await (await import("./figures")).figuresCommand(rest);
      case "sweep":
        return await sweepCommand(rest);
      case "worker":
        return await workerCommand(rest);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        process.stdout.write(usage());
        return command === undefined ? 2 : 0;
      default:
        throw new UserError(
          `unknown command "${command}" (commands: train, sweep, worker, ls, show, bench, demo, figures)`,
        );
    }
  } catch (err) {
    // what an interrupt had to say is said
    if (err instanceof Interrupted) return err.signal === "SIGTERM" ? 143 : 130;
    // a Redis URL in a message never shows its password
    process.stderr.write(`grok ${command ?? ""}: ${maskQueueUrls((err as Error).message)}\n`);
    return err instanceof UserError ? 2 : 1;
  }
}
