#!/usr/bin/env node
// Makes the package importable by its own name from anywhere in the repo (node_modules/grokking-workbench →
// the repo). Node alone resolves a package's self-reference through "exports", but tslab compiles notebook
// cells with TypeScript 5.0's classic node resolution, which only looks in node_modules.
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const name = require(path.join(root, "package.json")).name;
const link = path.join(root, "node_modules", name);

try {
  const current = fs.readlinkSync(link);
  if (path.resolve(path.dirname(link), current) === root) process.exit(0);
  fs.unlinkSync(link);
} catch (err) {
  if (err.code === "EINVAL") {
    console.error(`link-self: ${link} exists and is not a link; leaving it alone`);
    process.exit(0);
  }
  if (err.code !== "ENOENT") throw err;
}
fs.mkdirSync(path.dirname(link), { recursive: true });
fs.symlinkSync(path.relative(path.dirname(link), root), link, "junction");
