#!/usr/bin/env node
// Jupyter with the tslab TypeScript kernel, without IPython or a global install:
//   node scripts/jupyter.js kernel      writes the kernelspec to .jupyter/kernels/tslab (found through JUPYTER_PATH)
//   node scripts/jupyter.js notebook    starts Jupyter on notebooks/ with that kernel
//   node scripts/jupyter.js execute NB… executes notebooks with `jupyter nbconvert --execute` (outputs to a
//                                       temp folder, the notebooks untouched); exits 1 and prints the failing
//                                       cell's error when a cell fails
const { spawnSync, spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const jupyterPath = path.join(root, ".jupyter");
const KERNEL_NAME = "tslab";

function writeKernelSpec() {
  const tslab = path.join(root, "node_modules", "tslab", "bin", "tslab");
  if (!fs.existsSync(tslab)) {
    console.error(`tslab is not installed (${tslab} is missing): run npm install first`);
    process.exit(1);
  }
  const dir = path.join(jupyterPath, "kernels", KERNEL_NAME);
  fs.mkdirSync(dir, { recursive: true });
  const spec = {
    argv: [process.execPath, tslab, "kernel", "--config-path", "{connection_file}"],
    display_name: "TypeScript (tslab)",
    language: "typescript",
  };
  fs.writeFileSync(path.join(dir, "kernel.json"), JSON.stringify(spec, null, 2) + "\n");
  return dir;
}

/** The environment Jupyter needs to find the kernelspec. */
function jupyterEnv(extra = {}) {
  const paths = [jupyterPath, ...(process.env.JUPYTER_PATH ? process.env.JUPYTER_PATH.split(path.delimiter) : [])];
  return { ...process.env, JUPYTER_PATH: paths.join(path.delimiter), ...extra };
}

function requireJupyter(sub) {
  const probe = spawnSync("jupyter", [sub, "--version"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0) {
    console.error(
      `jupyter ${sub} is not available. Install Jupyter: on Debian/Ubuntu \`apt-get install jupyter-notebook ` +
        "jupyter-nbconvert python3-nbclient`, elsewhere `pip install notebook nbconvert` (see environment.md).",
    );
    process.exit(1);
  }
}

function nbconvert(nb, outDir, allowErrors) {
  const args = [
    "nbconvert",
    "--to",
    "notebook",
    "--execute",
    `--ExecutePreprocessor.kernel_name=${KERNEL_NAME}`,
    "--ExecutePreprocessor.timeout=1800",
    "--output-dir",
    outDir,
    nb,
  ];
  if (allowErrors) args.splice(3, 0, "--allow-errors");
  return spawnSync("jupyter", args, { encoding: "utf8", env: jupyterEnv(), cwd: root });
}

/**
 * Why a notebook failed: nbconvert names the failing cell, but tslab reports a cell's exception on stderr
 * rather than as an error output, so the message comes from a second run that keeps the outputs.
 */
function explainFailure(nb, outDir, r) {
  const text = `${r.stderr ?? ""}${r.error ?? ""}`;
  const marker = "An error occurred while executing the following cell:";
  const at = text.indexOf(marker);
  if (at < 0) return text.split("\n").slice(-30).join("\n");
  const source =
    text
      .slice(at + marker.length)
      .split("------------------")[1]
      ?.trim() ?? "";
  nbconvert(nb, outDir, true);
  let printed = "";
  try {
    const executed = JSON.parse(fs.readFileSync(path.join(outDir, path.basename(nb)), "utf8"));
    const cell = executed.cells.find((c) => [].concat(c.source).join("").trim() === source);
    printed = (cell?.outputs ?? [])
      .filter((o) => o.output_type === "stream" && o.name === "stderr")
      .map((o) => [].concat(o.text).join(""))
      .join("");
  } catch {
    // keep nbconvert's own report
  }
  return `${marker}\n${source}\n------------------\n${printed || text.slice(at)}`.trim();
}

function execute(notebooks) {
  requireJupyter("nbconvert");
  writeKernelSpec();
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), "grok-nbconvert-"));
  let failed = 0;
  for (const nb of notebooks) {
    const started = Date.now();
    const r = nbconvert(nb, outDir, false);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const name = path.relative(root, path.resolve(nb));
    if (r.status === 0) console.log(`ok      ${name} (${seconds} s)`);
    else {
      failed++;
      console.log(`FAILED  ${name} (${seconds} s)\n${explainFailure(nb, outDir, r)}`);
    }
  }
  console.log(`${notebooks.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

const [command, ...args] = process.argv.slice(2);
switch (command) {
  case "kernel": {
    const dir = writeKernelSpec();
    console.log(
      `tslab kernelspec written to ${path.relative(root, dir)}; Jupyter finds it with JUPYTER_PATH=${jupyterPath}`,
    );
    break;
  }
  case "notebook": {
    requireJupyter("notebook");
    writeKernelSpec();
    const child = spawn("jupyter", ["notebook", `--notebook-dir=${path.join(root, "notebooks")}`, ...args], {
      stdio: "inherit",
      env: jupyterEnv(),
    });
    child.on("exit", (code) => process.exit(code ?? 1));
    break;
  }
  case "execute":
    if (args.length === 0) {
      console.error("usage: node scripts/jupyter.js execute NOTEBOOK.ipynb …");
      process.exit(2);
    }
    execute(args);
    break;
  default:
    console.error("usage: node scripts/jupyter.js kernel | notebook [jupyter args] | execute NOTEBOOK.ipynb …");
    process.exit(2);
}
