// One notebook in its own process: `node dist/src/notebooks/run-one.js NB.ipynb [--write|--no-write]
// [--timeout-ms N]`. Forked by runNotebookIsolated, it reports each cell start, each in-place progress line
// and the result over the IPC channel; run by hand, it prints the result as JSON on stdout. Exit code 0
// when every cell ran, 1 when one failed, 2 on bad arguments or an unreadable notebook.

import { NotebookRunResult, RunOneMessage, runNotebook } from "./runner";

function usage(msg: string): never {
  process.stderr.write(`run-one: ${msg}\nusage: node dist/src/notebooks/run-one.js NB.ipynb [--write|--no-write] [--timeout-ms N]\n`);
  process.exit(2);
}

async function main(argv: string[]): Promise<number> {
  let file: string | undefined;
  let write = true;
  let timeoutMs: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--write") write = true;
    else if (a === "--no-write") write = false;
    else if (a === "--timeout-ms") {
      timeoutMs = Number(argv[++i]);
      if (!(timeoutMs > 0)) usage("--timeout-ms takes a positive number");
    } else if (a.startsWith("-")) usage(`unknown flag ${a}`);
    else if (file) usage("one notebook at a time");
    else file = a;
  }
  if (!file) usage("no notebook given");
  const send = (m: RunOneMessage) => new Promise<void>((resolve) => (process.send ? process.send(m, () => resolve()) : resolve()));
  let result: NotebookRunResult;
  try {
    result = await runNotebook(file, {
      write,
      timeoutMs,
      captureAllOutput: true,
      onCell: (index, total) => void send({ type: "cell", index, total }),
      onProgress: (text) => void send({ type: "progress", text }),
    });
  } catch (e) {
    process.stderr.write(`run-one: ${file}: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
  if (process.send) await send({ type: "result", result });
  else process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  return result.ok ? 0 : 1;
}

// Exit explicitly: a notebook may leave timers or handles open, which would keep a kernel alive too.
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`run-one: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(2);
  },
);
