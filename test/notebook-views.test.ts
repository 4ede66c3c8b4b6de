// A committed notebook as people see it without running it: opened in a real Jupyter Notebook server (the
// classic UI, Debian's jupyter-notebook) in headless Chromium, untrusted as every fresh checkout's
// notebooks are, and exported by nbconvert to HTML as nbviewer and GitHub show it. Every figure must show:
// its PNG where scripts do not run, its live plot where they do.
import assert from "node:assert/strict";
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { test } from "node:test";
import { randomBytes } from "node:crypto";
import { PLOTLY_MIME, checkFigurePage, dumpDom, findChromium } from "../src/plot/index";
import { REPO_ROOT, tempStore } from "./helpers";

// The notebook of the first report of blank figures (an untrusted classic notebook showed nothing).
const NOTEBOOK = "01-grokking-curves.ipynb";

// Skipped without these, unless GROK_REQUIRE_JUPYTER / GROK_REQUIRE_CHROMIUM say they must be there.
const jupyter = (sub: string) => spawnSync("jupyter", [sub, "--version"]).status === 0;
const requireJupyter = process.env.GROK_REQUIRE_JUPYTER === "1";
const tools = [
  { name: "jupyter-notebook", present: jupyter("notebook"), required: requireJupyter },
  { name: "jupyter-nbconvert", present: jupyter("nbconvert"), required: requireJupyter },
  { name: "Chromium", present: findChromium() !== null, required: process.env.GROK_REQUIRE_CHROMIUM === "1" },
];
const missing = tools.filter((t) => !t.present);
const skip = missing.length ? `${missing.map((t) => t.name).join(", ")} not installed (see environment.md)` : false;
if (missing.some((t) => t.required)) {
  test("Jupyter and Chromium are installed (GROK_REQUIRE_JUPYTER=1, GROK_REQUIRE_CHROMIUM=1)", () =>
    assert.fail(`not installed: ${missing.map((t) => t.name).join(", ")}`));
}

/** A copy of the committed notebook in a fresh directory (nothing may change the committed one), and its
 * figure outputs' PNGs (undefined where a figure has none), in order. */
function committedNotebook(): { dir: string; file: string; cells: number; pngs: (string | undefined)[] } {
  const dir = tempStore("notebook-views");
  const file = path.join(dir, NOTEBOOK);
  fs.copyFileSync(path.join(REPO_ROOT, "notebooks", NOTEBOOK), file);
  const nb = JSON.parse(fs.readFileSync(file, "utf8")) as {
    cells: { outputs?: { data?: Record<string, unknown> }[] }[];
  };
  const figures = nb.cells.flatMap((c) => (c.outputs ?? []).filter((o) => o.data?.[PLOTLY_MIME]).map((o) => o.data!));
  assert.ok(figures.length > 0, `${NOTEBOOK} has no figure outputs`);
  const pngs = figures.map((data) =>
    typeof data["image/png"] === "string" ? data["image/png"].replace(/\s/g, "") : undefined,
  );
  return { dir, file, cells: nb.cells.length, pngs };
}

/** Checks that a page shows one PNG image per figure, each figure's own. */
function assertShowsPngs(html: string, pngs: (string | undefined)[]): void {
  const shown = html.match(/<img src="data:image\/png;base64,/g)?.length ?? 0;
  assert.equal(shown, pngs.length, `the page shows ${shown} PNG images for ${pngs.length} figures`);
  pngs.forEach((png, i) => {
    assert.ok(png, `figure ${i + 1} has no image/png: re-run the notebook (npm run figures)`);
    assert.ok(html.includes(`<img src="data:image/png;base64,${png}"`), `figure ${i + 1} shows its own PNG`);
  });
}

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, "close");
  return port;
}

/** Starts `jupyter notebook` on dir, on a free loopback port with token auth, a temporary config, data and
 * runtime directory (so no trust database knows the notebook) and the repo's tslab kernelspec. Resolves
 * once it serves. */
async function startNotebookServer(dir: string): Promise<{ url: string; server: ChildProcess }> {
  const kernel = spawnSync(process.execPath, [path.join(REPO_ROOT, "scripts", "jupyter.js"), "kernel"], {
    encoding: "utf8",
  });
  assert.equal(kernel.status, 0, kernel.stderr);
  const home = tempStore("jupyter-home");
  const [port, token] = [await freePort(), randomBytes(16).toString("hex")];
  const config = {
    ip: "127.0.0.1",
    port,
    port_retries: 0,
    open_browser: false,
    token,
    notebook_dir: dir,
    allow_root: true,
  };
  fs.mkdirSync(path.join(home, "config"));
  fs.writeFileSync(path.join(home, "config", "jupyter_notebook_config.json"), JSON.stringify({ NotebookApp: config }));
  const env = {
    ...process.env,
    JUPYTER_CONFIG_DIR: path.join(home, "config"),
    JUPYTER_DATA_DIR: path.join(home, "data"),
    JUPYTER_RUNTIME_DIR: path.join(home, "runtime"),
    JUPYTER_PATH: path.join(REPO_ROOT, ".jupyter"),
  };
  const server = spawn("jupyter", ["notebook"], { env, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  await new Promise<void>((resolve, reject) => {
    server.stderr!.on("data", (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes("is running at")) resolve();
    });
    server.on("error", reject);
    server.on("exit", (code) => reject(new Error(`jupyter notebook exited (${code}) before serving:\n${log}`)));
  });
  return { url: `http://127.0.0.1:${port}/notebooks/${NOTEBOOK}?token=${token}`, server };
}

test(
  "a committed notebook, untrusted in the classic Jupyter Notebook, shows every figure's PNG",
  { skip },
  async () => {
    const { dir, cells, pngs } = committedNotebook();
    const { url, server } = await startNotebookServer(dir);
    try {
      const dom = await dumpDom(url);
      assert.equal(dom.match(/<div class="cell /g)?.length, cells, "the page shows every cell of the notebook");
      assert.match(dom, /id="notification_trusted"[^>]*><span[^>]*>Not Trusted</, "the notebook is untrusted");
      assertShowsPngs(dom, pngs);
    } finally {
      // SIGTERM: the server shuts its kernels down and exits
      server.kill("SIGTERM");
      await once(server, "exit");
    }
  },
);

test(
  "nbconvert's HTML of a committed notebook: each figure is its PNG when sanitized (GitHub, nbviewer) and draws live with scripts",
  { skip },
  async () => {
    const { dir, file, pngs } = committedNotebook();
    const nbconvert = (...flags: string[]) => {
      const out = path.join(dir, flags.length ? "sanitized" : "plain");
      const r = spawnSync("jupyter", ["nbconvert", "--to", "html", ...flags, "--output-dir", out, file], {
        encoding: "utf8",
      });
      assert.equal(r.status, 0, r.stderr);
      return path.join(out, NOTEBOOK.replace(/\.ipynb$/, ".html"));
    };
    const sanitized = fs.readFileSync(nbconvert("--sanitize-html"), "utf8");
    assert.doesNotMatch(sanitized, /grokPlotly|newPlot/, "the sanitized page has no figure scripts");
    assertShowsPngs(sanitized, pngs);

    const check = await checkFigurePage(nbconvert());
    assert.equal(check.plots, pngs.length, "every figure draws its live plot");
    assert.equal(check.traces, check.declared);
    // pip's nbconvert links require.js and MathJax from a CDN, unreachable offline; Debian's has them locally
    assert.deepEqual(
      check.errors.filter((e) => !/^failed to load https?:/.test(e)),
      [],
    );
  },
);
