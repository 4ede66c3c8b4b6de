// `grok sweep SPEC`: trains every missing run of a sweep spec (JSON or YAML) on a pool of workers, or with
// --status only shows where each run stands. Exit codes: 0 every run finished, 1 a run failed or is left
// unfinished, 2 a bad flag or spec, 130 stopped by an interrupt (run the same command again to go on).

import { ENGINE_NAMES, KERNEL_CHOICES, TFJS_BACKENDS } from "../engines/index";
import { ENGINE_FLAG_OPTIONS, engineFlags, intFlag, parseFlags } from "./flags";
import { displayPath, RunStore } from "../store/run-store";
import { defaultWorkers, runSweep, SweepOptions, SweepResult, sweepStatus } from "../sweeps/runner";
import { describeRun, expandSweep, loadSweepSpec } from "../sweeps/spec";
import { maskQueueUrls, queueStatus } from "../sweeps/queue";
import { UserError } from "../util/errors";
import { formatTable } from "../util/table";

const SWEEP_USAGE =
  "usage: grok sweep SPEC.{json,yaml} [options]\n" +
  "  Trains every run of the sweep's grid that the store has not finished: finished runs are skipped,\n" +
  "  stopped ones resume. Ctrl-C stops every running run after its step, with a checkpoint.\n\n" +
  "  --status               only show where each run stands (train nothing)\n" +
  "  --workers N            worker processes (default: one per core, one on a GPU)\n" +
  "  --threads N            fast engine threads per worker (default 1)\n" +
  "  --pack N               webgpu engine: train at most N runs at once in one pack (default: as many as fit\n" +
  "                         the adapter); runs share a pack when their model, vocabulary, optimizer kind,\n" +
  "                         dropout (on or off) and every step's batch size agree; each stays an ordinary run\n" +
  "                         in the store; with --queue, one job per pack\n" +
  `  --engine E             auto, ${ENGINE_NAMES.join(", ")}\n` +
  `  --backend B            tfjs backend: ${TFJS_BACKENDS.join(", ")}\n` +
  `  --kernels K            fast engine kernels: ${KERNEL_CHOICES.join(", ")}\n` +
  "  --store DIR            run store (default: the project's data/runs, or $GROK_STORE)\n" +
  "  --checkpoint-every N, --checkpoint-seconds N, --keep-checkpoints N   as for grok train\n" +
  "  --json                 print every run's result as JSON on stdout\n" +
  "  --no-progress          no progress display\n" +
  "  --queue URL            enqueue the runs on Redis for grok worker processes on any machine sharing the\n" +
  "                         store, and follow them (Ctrl-C stops following; the jobs stay queued); with\n" +
  "                         --status, also each run's job and worker. redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]\n" +
  "  --connect-seconds N    with --queue: how long to wait for Redis (default 10)\n";

function table(result: SweepResult): string {
  const fields = [...new Set(result.runs.flatMap((r) => Object.keys(r.params)))];
  const hasVariants = result.runs.some((r) => r.variant !== "");
  const hasQueue = result.runs.some((r) => r.queue !== undefined);
  const header = [
    "#",
    "id",
    "status",
    ...(hasVariants ? ["variant"] : []),
    ...fields,
    "steps",
    "train99",
    "val99",
    "best val",
    ...(hasQueue ? ["queue", "worker"] : []),
  ];
  const rows = result.runs.map((r) => [
    String(r.index + 1),
    r.id,
    r.status,
    ...(hasVariants ? [r.variant] : []),
    ...fields.map((f) => String(r.params[f] ?? "")),
    `${r.stepsDone}/${r.steps}`,
    String(r.firstTrain99 ?? "-"),
    String(r.firstVal99 ?? "-"),
    Number.isFinite(r.bestValAcc) ? `${(100 * r.bestValAcc).toFixed(1)}%` : "-",
    ...(hasQueue ? [r.queue?.state ?? "-", r.queue?.worker ?? "-"] : []),
  ]);
  return formatTable(header, rows).join("\n") + "\n";
}

function resultJson(result: SweepResult) {
  return {
    ...result,
    runs: result.runs.map(({ config, ...r }) => ({ ...r, label: describeRun(r.variant, r.params), config })),
  };
}

export async function sweepCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    args,
    {
      status: { type: "boolean" },
      workers: { type: "string" },
      pack: { type: "string" },
      ...ENGINE_FLAG_OPTIONS,
      store: { type: "string" },
      "checkpoint-every": { type: "string" },
      "checkpoint-seconds": { type: "string" },
      "keep-checkpoints": { type: "string" },
      json: { type: "boolean" },
      "no-progress": { type: "boolean" },
      queue: { type: "string" },
      "connect-seconds": { type: "string" },
      help: { type: "boolean" },
    },
    1,
  );
  if (values.help) {
    process.stdout.write(SWEEP_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new UserError(`give one sweep spec file\n${SWEEP_USAGE}`);
  const options: SweepOptions = {
    store: values.store as string | undefined,
    ...engineFlags(values),
    threads: intFlag(values, "threads", 1),
    workers: intFlag(values, "workers", 1),
    pack: intFlag(values, "pack", 1),
    checkpointEvery: intFlag(values, "checkpoint-every", 1),
    checkpointSeconds: intFlag(values, "checkpoint-seconds", 1),
    keepCheckpoints: intFlag(values, "keep-checkpoints", 0),
    progress: !values["no-progress"],
    handleSignals: true,
    queue: values.queue as string | undefined,
    connectSeconds: intFlag(values, "connect-seconds", 0),
  };
  if (options.queue !== undefined) {
    // the process title (ps, /proc/PID/cmdline) shows a queue URL masked
    process.title = maskQueueUrls(["grok", "sweep", ...args].join(" "));
    if (options.workers !== undefined || options.threads !== undefined)
      throw new UserError("--workers and --threads are for a local sweep: with --queue, each grok worker sets its own");
  }
  const spec = loadSweepSpec(positionals[0]);
  spec.name ??= positionals[0].replace(/^.*[\\/]/, "").replace(/\.(json|ya?ml)$/i, "");
  const runs = expandSweep(spec);
  if (runs.length === 0) throw new UserError(`${positionals[0]}: the sweep has no runs`);
  const store = new RunStore(options.store as string | undefined);
  if (values.status) {
    const result = options.queue
      ? await queueStatus(spec, { store, queue: options.queue, connectSeconds: options.connectSeconds })
      : sweepStatus(spec, store);
    process.stdout.write(values.json ? JSON.stringify(resultJson(result), null, 2) + "\n" : table(result));
    // the workers of a queued sweep are the grok worker processes, wherever they run: none are "here"
    const here = options.queue ? "" : `; default workers here: ${defaultWorkers(options)}`;
    if (!values.json)
      process.stdout.write(
        `${runs.length - result.unfinished}/${runs.length} finished in ${displayPath(store.root)}${here}\n`,
      );
    return 0;
  }
  const result = await runSweep(spec, { ...options, store });
  process.stdout.write(values.json ? JSON.stringify(resultJson(result), null, 2) + "\n" : table(result));
  if (result.interrupted) return 130;
  return result.failed > 0 || result.unfinished > 0 ? 1 : 0;
}
