// One worker of measureFastBaseline (fast-baseline.ts): times the fast engine on native kernels with one
// thread, telling the parent when its warmup is done and starting to time when the parent says go.

import { benchmarkEngine } from "./engine-timing";
import type { FastWorkerJob } from "./fast-baseline";
import { errorLine } from "../util/errors";

async function work(job: FastWorkerJob): Promise<void> {
  const go = new Promise<void>((resolve) => process.once("message", () => resolve()));
  try {
    const result = await benchmarkEngine({
      engine: "fast",
      kernels: "native",
      threads: 1,
      ...job,
      afterWarmup: async () => {
        process.send!({ ready: true });
        await go;
      },
    });
    process.send!({ result });
  } catch (err) {
    process.send!({ error: errorLine(err) });
  }
  process.disconnect();
}

void work(JSON.parse(process.argv[2]) as FastWorkerJob);
