import assert from "node:assert/strict";
import { test } from "node:test";
import { classifyRun, PHASE_RULES, PHASES } from "../src/analysis/phases";

test("classifyRun applies the phase rules at their boundaries", () => {
  assert.deepEqual(classifyRun(null, null), { phase: "confusion", delay: null });
  assert.deepEqual(classifyRun(null, 500), { phase: "confusion", delay: null });
  assert.deepEqual(classifyRun(300, null), { phase: "memorization", delay: null });
  assert.deepEqual(classifyRun(300, 600), { phase: "comprehension", delay: 2 });
  assert.deepEqual(classifyRun(300, 200), { phase: "comprehension", delay: 2 / 3 });
  assert.equal(classifyRun(300, 601).phase, "delayed");
  assert.equal(classifyRun(300, 2999).phase, "delayed");
  assert.deepEqual(classifyRun(300, 3000), { phase: "grokking", delay: 10 });
  assert.equal(classifyRun(0, 0).phase, "comprehension");
  for (const phase of PHASES) assert.ok(PHASE_RULES[phase].length > 10);
});
