// Progress lines on a terminal and in logs, with a fake stream and a fake clock. The notebook (kernel) mode
// is checked on real notebooks in notebook-runner.test.ts.

import assert from "node:assert/strict";
import { test } from "node:test";
import { formatEta, ProgressCounter, ProgressDisplay } from "../src/training/progress";

function fakeStream(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, stream: { isTTY, columns: 40, write: (text: string) => writes.push(text) } };
}

function fakeClock() {
  const clock = { ms: 0, now: () => clock.ms };
  return clock;
}

test("as lines, a progress display prints at most one line per interval, forced ones always, then the summary", () => {
  const { writes, stream } = fakeStream(false);
  const clock = fakeClock();
  const display = new ProgressDisplay({ label: "run abc", stream, now: clock.now, everyMs: 1000 });
  assert.equal(display.mode, "lines");
  display.draw("step 1");
  clock.ms = 500;
  display.draw("step 2"); // too soon
  display.draw("step 3", true);
  clock.ms = 1600;
  display.draw("step 4");
  display.log("a message");
  display.draw("step 5"); // a message does not make the next line due
  display.done("run abc: done");
  assert.deepEqual(writes, [
    "run abc: step 1\n",
    "run abc: step 3\n",
    "run abc: step 4\n",
    "a message\n",
    "run abc: done\n",
  ]);
});

test("on a terminal, a progress display redraws one line, clears it for messages and keeps it at the end", () => {
  const { writes, stream } = fakeStream(true);
  const clock = fakeClock();
  const out: string[] = [];
  const display = new ProgressDisplay({ stream, now: clock.now, out: (m) => out.push(m) });
  assert.equal(display.mode, "tty");
  display.draw("x".repeat(60)); // cut to the terminal's width
  clock.ms = 50;
  display.draw("too soon");
  display.log("between");
  display.draw("after the message"); // redrawn at once
  display.done("summary");
  assert.deepEqual(writes, [`\r${"x".repeat(39)}\x1b[K`, "\r\x1b[K", "\rafter the message\x1b[K", "\n"]);
  assert.deepEqual(out, ["between", "summary"]);
});

test("a progress counter shows done out of total, the time so far and an ETA, and ends with a summary", () => {
  const { writes, stream } = fakeStream(false);
  const clock = fakeClock();
  const counter = new ProgressCounter("sharpness", 4, { stream, now: clock.now, everyMs: 0 });
  clock.ms = 10_000;
  counter.tick("seed 0");
  clock.ms = 20_000;
  counter.tick();
  counter.done();
  assert.deepEqual(writes, [
    "sharpness: 0/4 done · 0s elapsed, ETA –\n",
    "sharpness: 1/4 done (last: seed 0) · 10s elapsed, ETA 30s\n",
    "sharpness: 2/4 done · 20s elapsed, ETA 20s\n",
    "sharpness: 2/4 done in 20s\n",
  ]);
  assert.throws(() => new ProgressCounter("bad", 1.5), /total must be an integer ≥ 0 \(got 1.5\)/);
  assert.equal(formatEta(90, 10, 5), "45s");
  assert.equal(formatEta(90, 0, 5), "–");
});
