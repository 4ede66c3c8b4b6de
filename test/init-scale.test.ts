import assert from "node:assert/strict";
import { test } from "node:test";
import { initParams, PAPER_TRANSFORMER, DEFAULT_MLP } from "../src/model/config";
import { normalizeConfig, paperConfig, withChanges } from "../src/config/run-config";
import { RunStore } from "../src/store/run-store";
import { SMALL_DIMS } from "./helpers";

test("model.initScale multiplies every initial weight of the transformer and the MLP", () => {
  for (const model of [PAPER_TRANSFORMER, DEFAULT_MLP]) {
    const base = initParams(model, SMALL_DIMS, 3);
    const scaled = initParams({ ...model, initScale: 2.5 }, SMALL_DIMS, 3);
    for (const [name, t] of base) {
      const s = scaled.get(name)!;
      // the same draws, scaled before rounding to f32
      for (let i = 0; i < t.data.length; i++)
        assert.ok(Math.abs(s.data[i] - 2.5 * t.data[i]) <= 1e-6 * Math.abs(2.5 * t.data[i]), `${name}[${i}]`);
    }
  }
});

test("initScale 1 is left out of a config, so old configs keep their run ids; bad values are errors", () => {
  const cfg = paperConfig();
  const one = normalizeConfig(withChanges(cfg, { "model.initScale": 1 }));
  assert.equal("initScale" in one.model, false);
  assert.equal(RunStore.idFor(one), RunStore.idFor(normalizeConfig(cfg)));
  const three = normalizeConfig(withChanges(cfg, { "model.initScale": 3 }));
  assert.equal(three.model.initScale, 3);
  assert.notEqual(RunStore.idFor(three), RunStore.idFor(normalizeConfig(cfg)));
  for (const bad of [0, -1, "big"])
    assert.throws(
      () => normalizeConfig(withChanges(cfg, { "model.initScale": bad })),
      /invalid config: model: initScale must be a positive number/,
    );
});
