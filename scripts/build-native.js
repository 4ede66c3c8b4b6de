#!/usr/bin/env node
// Builds the fast engine's native kernels (binding.gyp → build/Release/grok_kernels.node) with node-gyp.
// Runs during `npm install` and as `npm run build:native`. It never fails: when the addon cannot be
// built it prints one warning line and exits 0, and the fast engine uses its TypeScript kernels.
"use strict";

const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const addon = path.join(root, "build", "Release", "grok_kernels.node");

function warn(reason) {
  const oneLine = String(reason).replace(/\s+/g, " ").trim();
  console.warn(`native kernels did not build: ${oneLine}; the fast engine will use its TypeScript kernels`);
  process.exit(0);
}

/** The node-gyp that npm provides: npm's own, else the one next to this node, else on PATH. */
function findNodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && fs.existsSync(fromNpm)) return { cmd: process.execPath, args: [fromNpm], label: fromNpm };
  const prefix = path.resolve(path.dirname(process.execPath), "..");
  const candidates = [
    path.join(prefix, "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
    path.join(path.dirname(process.execPath), "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
  ];
  for (const paths of [[path.join(prefix, "lib", "node_modules", "npm")], [path.dirname(process.execPath)]]) {
    try {
      candidates.unshift(require.resolve("node-gyp/bin/node-gyp.js", { paths }));
    } catch {
      // not there
    }
  }
  for (const c of candidates) if (fs.existsSync(c)) return { cmd: process.execPath, args: [c], label: c };
  return { cmd: process.platform === "win32" ? "node-gyp.cmd" : "node-gyp", args: [], label: "node-gyp (PATH)" };
}

/**
 * Headers to build against. npm passes its `nodedir` setting as npm_config_nodedir; without one, node-gyp
 * would download headers, so when this node's own headers are installed (<prefix>/include/node), use them.
 */
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = path.resolve(path.dirname(process.execPath), "..");
  const inc = path.join(prefix, "include", "node");
  if (fs.existsSync(path.join(inc, "node_api.h")) && fs.existsSync(path.join(inc, "common.gypi")))
    return [`--nodedir=${prefix}`];
  return [];
}

/** The most telling line of a failed build: the compiler's first error, else node-gyp's own reason. */
function reasonOf(out) {
  const lines = out
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  const compiler = lines.find((l) => /(^|\s)(fatal )?error:/.test(l) && !l.startsWith("gyp"));
  if (compiler) return compiler;
  const gypSays = lines.find((l) => l.startsWith("gyp: "));
  if (gypSays) return gypSays;
  const stack = lines.find((l) => /^gyp ERR! stack (\w*Error|Error)\b/.test(l));
  if (stack) return stack.replace(/^gyp ERR! stack /, "");
  const err = lines.filter(
    (l) => l.startsWith("gyp ERR!") && !/^gyp ERR! (stack|System|command|cwd|node -v|node-gyp -v|not ok)/.test(l),
  );
  return err.length ? err[err.length - 1] : "";
}

function main() {
  if (process.env.GROK_SKIP_NATIVE === "1") warn("GROK_SKIP_NATIVE=1 is set");
  if (!fs.existsSync(path.join(root, "binding.gyp"))) warn(`no binding.gyp in ${root}`);
  const gyp = findNodeGyp();
  const started = Date.now();
  const res = spawnSync(gyp.cmd, [...gyp.args, "rebuild", ...nodedirArgs()], {
    cwd: root,
    encoding: "utf8",
    env: process.env,
    maxBuffer: 64 * 1024 * 1024,
    timeout: 15 * 60 * 1000,
  });
  if (res.error) warn(`could not run ${gyp.label} (${res.error.message})`);
  if (res.status !== 0) {
    const out = `${res.stdout || ""}\n${res.stderr || ""}`;
    // one line says most; GROK_NATIVE_VERBOSE=1 shows the whole log
    if (process.env.GROK_NATIVE_VERBOSE === "1") process.stderr.write(out);
    const reason = reasonOf(out);
    warn(
      `node-gyp rebuild ${res.status === null ? `was stopped (${res.signal})` : `exited with status ${res.status}`}${reason ? `: ${reason.slice(0, 300)}` : ""} [${gyp.label}]`,
    );
  }
  if (!fs.existsSync(addon)) warn(`${path.relative(root, addon)} is missing after the build`);
  // make sure it loads here, so a broken build is reported now rather than at run time
  try {
    const k = require(addon);
    console.log(
      `native kernels built: ${path.relative(root, addon)} (${k.isa}, ${k.threads()} thread${k.threads() === 1 ? "" : "s"}) in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  } catch (err) {
    warn(`${path.relative(root, addon)} does not load (${err && err.message ? err.message : err})`);
  }
}

try {
  main();
} catch (err) {
  warn(err && err.message ? err.message : err);
}
