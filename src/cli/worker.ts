// `grok worker`: trains the runs that `grok sweep SPEC --queue URL` put on a Redis queue, into a run store
// that every machine mounts (see sweeps/queue-worker.ts). Exit codes: 0 stopped (Ctrl-C, SIGTERM, idle),
// 2 a bad flag, a bad or unreachable queue, or a missing or read-only store.

import { maskQueueUrls } from "../sweeps/queue";
import { DEFAULT_LOCK_SECONDS, DEFAULT_STALLED_SECONDS, runQueueWorkers } from "../sweeps/queue-worker";
import { UserError } from "../util/errors";
import { ENGINE_FLAG_OPTIONS, engineFlags, intFlag, parseFlags } from "./flags";

const WORKER_USAGE =
  "usage: grok worker [--queue URL] [--store DIR] [options]\n" +
  "  Trains the runs of sweeps enqueued with grok sweep SPEC --queue URL, until stopped. Ctrl-C or SIGTERM\n" +
  "  ends the running run after its step with a checkpoint and puts it back on the queue.\n\n" +
  "  --queue URL            redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss:// for TLS\n" +
  "                         (default: $GROK_QUEUE, which keeps a password off the command line)\n" +
  "  --store DIR            the shared run store, e.g. on NFS (default: the project's data/runs, or $GROK_STORE)\n" +
  "  --workers N            worker processes, one run each (default 1)\n" +
  "  --engine, --backend, --kernels   as for grok train (a sweep that names an engine overrides them; a pack\n" +
  "                         job goes on this engine: in packs on webgpu, else one run after another)\n" +
  "  --threads N            fast engine threads per worker process (default 1)\n" +
  "  --lock-seconds N       BullMQ's lock on a running job: a killed worker's job stalls once it expires\n" +
  `                         (default ${DEFAULT_LOCK_SECONDS})\n` +
  `  --stalled-seconds N    how often stalled jobs go to another worker (default ${DEFAULT_STALLED_SECONDS})\n` +
  "  --connect-seconds N    how long to wait for Redis at start (default 10)\n" +
  "  --idle-exit N          exit after N seconds without a job (default: wait until stopped)\n";

export async function workerCommand(args: string[]): Promise<number> {
  // the process title (ps, /proc/PID/cmdline) shows the URL masked
  process.title = maskQueueUrls(["grok", "worker", ...args].join(" "));
  const { values } = parseFlags(
    args,
    {
      queue: { type: "string" },
      store: { type: "string" },
      workers: { type: "string" },
      ...ENGINE_FLAG_OPTIONS,
      "lock-seconds": { type: "string" },
      "stalled-seconds": { type: "string" },
      "connect-seconds": { type: "string" },
      "idle-exit": { type: "string" },
      help: { type: "boolean" },
    },
    0,
  );
  if (values.help) {
    process.stdout.write(WORKER_USAGE);
    return 0;
  }
  const queue = (values.queue as string | undefined) ?? process.env.GROK_QUEUE;
  if (!queue) throw new UserError(`give the queue: --queue URL, or $GROK_QUEUE\n${WORKER_USAGE}`);
  await runQueueWorkers({
    queue,
    store: (values.store as string | undefined) ?? undefined,
    workers: intFlag(values, "workers", 1),
    ...engineFlags(values),
    threads: intFlag(values, "threads", 1),
    lockSeconds: intFlag(values, "lock-seconds", 1),
    stalledSeconds: intFlag(values, "stalled-seconds", 1),
    connectSeconds: intFlag(values, "connect-seconds", 0),
    idleSeconds: intFlag(values, "idle-exit", 0),
    handleSignals: true,
  });
  return 0;
}
