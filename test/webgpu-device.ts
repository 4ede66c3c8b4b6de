import assert from "node:assert/strict";
import { after, TestContext } from "node:test";
import { openWebGpu, WebGpu } from "../src/engines/webgpu/device";

// The WebGPU device of a test file: opened once, destroyed after the file's tests. Without an adapter the
// tests skip with the reason, unless GROK_REQUIRE_WEBGPU=1 (CI, on lavapipe), where they fail.

export const requireWebGpu = process.env.GROK_REQUIRE_WEBGPU === "1";

/** Opens the device for this test file; the function it returns gives it to a test, or null after skipping it. */
export function webGpuForTests(): (t: TestContext) => Promise<WebGpu | null> {
  const opening = openWebGpu();
  after(async () => {
    const opened = await opening;
    if (opened.ok) opened.gpu.device.destroy();
  });
  return async (t) => {
    const opened = await opening;
    if (opened.ok) return opened.gpu;
    if (requireWebGpu) assert.fail(`GROK_REQUIRE_WEBGPU=1 but ${opened.reason}`);
    t.skip(opened.reason);
    return null;
  };
}
