// The two remedies for Softmax Collapse (Prieto et al. 2025) as config options: model.output "stablemax" and
// optimizer.orthogonalGrad. Their defaults stay out of configs (run ids unchanged), bad values are errors,
// the CLI flags set them, the tfjs engine refuses them, and a fast-engine run with each trains.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { configFromFlags } from "../src/cli/flags";
import { normalizeConfig, paperConfig, withChanges } from "../src/config/run-config";
import { EngineSetup, packConflict } from "../src/engines/engine";
import { TfjsEngine } from "../src/engines/tfjs/engine";
import { initParams } from "../src/model/config";
import { RunStore } from "../src/store/run-store";
import { train } from "../src/training/trainer";
import { GROK_BIN, SMALL_DIMS, tempStore, tinyConfig } from "./helpers";

test("softmax and no ⊥Grad are left out of a config, so old configs keep their run ids", () => {
  const cfg = paperConfig();
  const defaults = normalizeConfig(withChanges(cfg, { "model.output": "softmax", "optimizer.orthogonalGrad": false }));
  assert.equal("output" in defaults.model, false);
  assert.equal("orthogonalGrad" in defaults.optimizer, false);
  assert.equal(RunStore.idFor(defaults), RunStore.idFor(normalizeConfig(cfg)));
  const stablemax = normalizeConfig(withChanges(cfg, { "model.output": "stablemax" }));
  assert.equal(stablemax.model.output, "stablemax");
  const orthogonal = normalizeConfig(withChanges(cfg, { "optimizer.orthogonalGrad": true }));
  assert.equal(orthogonal.optimizer.orthogonalGrad, true);
  const ids = new Set([defaults, stablemax, orthogonal].map((c) => RunStore.idFor(c)));
  assert.equal(ids.size, 3);
  // the MLP takes the output too
  const mlp = normalizeConfig(withChanges(cfg, { "model.kind": "mlp", "model.output": "stablemax" }));
  assert.equal(mlp.model.output, "stablemax");
});

test("bad output and orthogonalGrad values are errors naming the field", () => {
  const cfg = paperConfig();
  for (const bad of ["sparsemax", "", 1])
    assert.throws(
      () => normalizeConfig(withChanges(cfg, { "model.output": bad })),
      /invalid config: model: output must be softmax or stablemax/,
    );
  for (const bad of ["yes", 1, null])
    assert.throws(
      () => normalizeConfig(withChanges(cfg, { "optimizer.orthogonalGrad": bad })),
      /invalid config: optimizer: orthogonalGrad must be true or false/,
    );
});

test("--output and --orthogonal-grad set the fields; without them the config is the preset's", () => {
  const plain = configFromFlags({});
  assert.equal(plain.model.output, undefined);
  assert.equal(plain.optimizer.orthogonalGrad, undefined);
  const both = normalizeConfig(configFromFlags({ output: "stablemax", "orthogonal-grad": true }));
  assert.equal(both.model.output, "stablemax");
  assert.equal(both.optimizer.orthogonalGrad, true);
  assert.throws(
    () => normalizeConfig(configFromFlags({ output: "max" })),
    /model: output must be softmax or stablemax \(got max\)/,
  );
});

test("runs with different outputs cannot share a pack; runs with and without ⊥Grad can", () => {
  const cfg = tinyConfig();
  const setup = (over: Partial<EngineSetup>): EngineSetup => ({
    model: cfg.model,
    dims: SMALL_DIMS,
    optimizer: cfg.optimizer,
    seed: 0,
    ...over,
  });
  const plain = setup({});
  assert.match(
    packConflict(plain, setup({ model: { ...cfg.model, output: "stablemax" } })) ?? "",
    /the outputs differ \(softmax vs stablemax\)/,
  );
  assert.equal(packConflict(plain, setup({ optimizer: { ...cfg.optimizer, orthogonalGrad: true } })), null);
  assert.equal(
    packConflict(plain, setup({ model: { ...cfg.model, output: "softmax" } })),
    null,
    "softmax is the default",
  );
});

test("the tfjs engine refuses StableMax and ⊥Grad by name; the CLI exits 2 before creating the run", async () => {
  const cfg = tinyConfig();
  const tfjs = await TfjsEngine.create();
  const weights = initParams(cfg.model, SMALL_DIMS, 0);
  assert.throws(
    () =>
      tfjs.initialize(
        { model: { ...cfg.model, output: "stablemax" }, dims: SMALL_DIMS, optimizer: cfg.optimizer, seed: 0 },
        weights,
      ),
    /tfjs engine has no StableMax output \(model\.output\)/,
  );
  assert.throws(
    () =>
      tfjs.initialize(
        { model: cfg.model, dims: SMALL_DIMS, optimizer: { ...cfg.optimizer, orthogonalGrad: true }, seed: 0 },
        weights,
      ),
    /tfjs engine has no ⊥Grad \(optimizer\.orthogonalGrad\)/,
  );
  tfjs.dispose();
  const store = tempStore("collapse-tfjs");
  for (const [flag, message] of [
    [["--output", "stablemax"], /no StableMax output/],
    [["--orthogonal-grad"], /no ⊥Grad/],
  ] as const) {
    const runs = path.join(store, "runs");
    const args = ["train", "--engine", "tfjs", "--store", runs, "--op", "x+y", "-p", "11", "--steps", "1", ...flag];
    const r = spawnSync(process.execPath, [GROK_BIN, ...args], { encoding: "utf8" });
    assert.equal(r.status, 2, `${flag.join(" ")}: exit ${r.status}, stderr ${r.stderr}`);
    assert.match(r.stderr, message);
    const created = fs.existsSync(runs) ? fs.readdirSync(runs).filter((f) => !f.startsWith(".")) : [];
    assert.deepEqual(created, [], `${flag.join(" ")} created a run`);
  }
});

test("a fast-engine run with StableMax and ⊥AdamW trains: the training loss falls", async () => {
  const cfg = withChanges(tinyConfig({ steps: 40 }), {
    "model.output": "stablemax",
    "optimizer.orthogonalGrad": true,
    "optimizer.weightDecay": 0,
    "optimizer.lr": 0.01,
  });
  const result = await train(cfg, {
    store: tempStore("collapse-fast"),
    engine: "fast",
    progress: false,
    log: () => {},
  });
  const rows = result.metrics.rows;
  const first = rows[0];
  const last = rows[rows.length - 1];
  assert.ok(last.train_loss < 0.9 * first.train_loss, `train loss ${first.train_loss} → ${last.train_loss}`);
});
