// Elementwise activations (the kernel contract's activationForward/activationBackward), one thread per
// value: ReLU, and the exact GELU x·Φ(x) with Φ from erfc, as in the TypeScript kernels.
//
// WGSL has no erf, so erfc(z), z ≥ 0, is the same Chebyshev fit the TypeScript kernel uses (Numerical
// Recipes 3rd ed., Erf::erfccheb), evaluated in f32: its coefficients past the 10th are below f32's
// resolution (each adds less than 1e-9 to the exponent) and are left out.

import { checkArray, checkSizes, GpuArray, gridFor, Recorder } from "./dispatch";

const THREADS = 256;

/** The first 14 of the TypeScript kernel's 28 erfc coefficients (the rest are below 1e-9). */
const ERFC_COF = [
  -1.3026537197817094, 6.4196979235649026e-1, 1.9476473204185836e-2, -9.561514786808631e-3, -9.46595344482036e-4,
  3.66839497852761e-4, 4.2523324806907e-5, -2.0278578112534e-5, -1.624290004647e-6, 1.30365583558e-6, 1.5626441722e-8,
  -8.5238095915e-8, 6.529054439e-9, 5.059343495e-9,
];

const KINDS = { relu: 0, gelu: 1 } as const;

const ACTIVATION_COMMON_WGSL = /* wgsl */ `
struct Params { n: u32, kind: u32 } // kind: 0 relu, 1 gelu
@group(0) @binding(0) var<uniform> P: Params;

const ERFC_COF = array<f32, ${ERFC_COF.length}>(${ERFC_COF.join(", ")});

// erfc(z) for z ≥ 0
fn erfcPos(z: f32) -> f32 {
  let t = 2.0 / (2.0 + z);
  let ty = 4.0 * t - 2.0;
  var d = 0.0;
  var dd = 0.0;
  for (var j = ${ERFC_COF.length - 1}; j > 0; j--) {
    let tmp = d;
    d = ty * d - dd + ERFC_COF[j];
    dd = tmp;
  }
  return t * exp(-z * z + 0.5 * (ERFC_COF[0] + ty * d) - dd);
}

// Φ(x) = erfc(−x/√2)/2, accurate in relative terms in both tails
fn normalCdf(x: f32) -> f32 {
  let z = -x * 0.7071067811865476;
  if (z >= 0.0) { return 0.5 * erfcPos(z); }
  return 0.5 * (2.0 - erfcPos(-z));
}

fn flatIndex(id: vec3<u32>, groups: vec3<u32>) -> u32 {
  return id.x + id.y * groups.x * ${THREADS}u;
}`;

/**
 * WGSL bindings for an elementwise kernel whose inputs may be its output array (the contract lets the
 * activations work in place, and WebGPU forbids binding one buffer both read-only and writable): each
 * input gets a loader load_<name>(i), reading its own binding or the output's. Bindings are numbered from
 * 1: the inputs that are not the output, in order, then the output.
 */
function elementwiseBindings(inputs: { name: string; isOutput: boolean }[], output: string): string {
  const lines: string[] = [];
  let binding = 1;
  for (const { name, isOutput } of inputs) {
    if (!isOutput) lines.push(`@group(0) @binding(${binding++}) var<storage, read> ${name}: array<f32>;`);
    lines.push(`fn load_${name}(i: u32) -> f32 { return ${isOutput ? output : name}[i]; }`);
  }
  lines.push(`@group(0) @binding(${binding}) var<storage, read_write> ${output}: array<f32>;`);
  return lines.join("\n");
}

export function activationForwardWgsl(inPlace: boolean): string {
  return /* wgsl */ `
${ACTIVATION_COMMON_WGSL}
${elementwiseBindings([{ name: "x", isOutput: inPlace }], "out")}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flatIndex(id, groups);
  if (i >= P.n) { return; }
  let xi = load_x(i);
  if (P.kind == 0u) { out[i] = select(xi, 0.0, xi <= 0.0); } else { out[i] = xi * normalCdf(xi); }
}`;
}

export function activationBackwardWgsl(doutIsDx: boolean, xIsDx: boolean): string {
  return /* wgsl */ `
${ACTIVATION_COMMON_WGSL}
${elementwiseBindings(
  [
    { name: "dout", isOutput: doutIsDx },
    { name: "x", isOutput: xIsDx },
  ],
  "dx",
)}

@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = flatIndex(id, groups);
  if (i >= P.n) { return; }
  let xi = load_x(i);
  let g = load_dout(i);
  if (P.kind == 0u) {
    dx[i] = select(0.0, g, xi > 0.0);
  } else {
    // d/dx x·Φ(x) = Φ(x) + x·φ(x)
    dx[i] = g * (normalCdf(xi) + xi * 0.3989422804014327 * exp(-0.5 * xi * xi));
  }
}`;
}

function checkKind(K: string, kind: string): void {
  if (kind !== "relu" && kind !== "gelu") throw new Error(`${K}: unknown activation "${kind}" (relu or gelu)`);
}

/** Records out = act(x) over n values (may be in place: out = x). */
export function activationForward(rec: Recorder, kind: "relu" | "gelu", x: GpuArray, out: GpuArray, n: number): void {
  const K = "activationForward";
  checkKind(K, kind);
  checkSizes(K, { n });
  checkArray(K, "x", x, n);
  checkArray(K, "out", out, n);
  if (n === 0) return;
  const inPlace = x === out;
  rec.dispatch(
    rec.gpu.pipeline(`activationForward${inPlace ? "InPlace" : ""}`, activationForwardWgsl(inPlace)),
    [
      ["u32", n],
      ["u32", KINDS[kind]],
    ],
    inPlace ? [out] : [x, out],
    gridFor(Math.ceil(n / THREADS)),
  );
}

/** Records dx = dout·act'(x) over n values (written, not accumulated; dx may be dout or x). */
export function activationBackward(
  rec: Recorder,
  kind: "relu" | "gelu",
  dout: GpuArray,
  x: GpuArray,
  dx: GpuArray,
  n: number,
): void {
  const K = "activationBackward";
  checkKind(K, kind);
  checkSizes(K, { n });
  checkArray(K, "dout", dout, n);
  checkArray(K, "x", x, n);
  checkArray(K, "dx", dx, n);
  if (n === 0) return;
  const [doutIsDx, xIsDx] = [dout === dx, x === dx];
  // an input that is also another input (dout = x ≠ dx) is bound once per name: both read-only, allowed
  const inputs = [doutIsDx ? null : dout, xIsDx ? null : x].filter((a): a is GpuArray => a !== null);
  rec.dispatch(
    rec.gpu.pipeline(
      `activationBackward${doutIsDx ? "DoutIsDx" : ""}${xIsDx ? "XIsDx" : ""}`,
      activationBackwardWgsl(doutIsDx, xIsDx),
    ),
    [
      ["u32", n],
      ["u32", KINDS[kind]],
    ],
    [...inputs, dx],
    gridFor(Math.ceil(n / THREADS)),
  );
}
