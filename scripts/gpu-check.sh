#!/usr/bin/env bash
# The webgpu engine on a bare Linux GPU machine, in under 8 minutes: no Node, no npm, no internet needed.
# It needs the repository tree and gpu-kit/ (filled by scripts/gpu-kit.sh on a machine with Node), and
# prints, and writes to $OUT when that is set:
#   1. the Vulkan drivers (ICDs) found and the WebGPU adapter (vendor, architecture, software or hardware);
#   2. the webgpu parity tests (dist/test/webgpu*.test.js, GROK_REQUIRE_WEBGPU=1: no adapter is a failure);
#   3. grok bench --engine webgpu: ms per step of one run, then packs of 1, 16, 32 and 64 runs (run-steps/s).
# On a software adapter (lavapipe) the packs are 1 and 2 runs, timed for one step, to stay within the time.
# Exit status: 0 when the tests and every bench passed.
set -uo pipefail
cd "$(dirname "$0")/.."
KIT=gpu-kit
OUT_DIR=${OUT:-}
LOG=${OUT_DIR:+$OUT_DIR/gpu-check.log}
if [ -n "$LOG" ]; then exec > >(tee -a "$LOG") 2>&1; fi
START=$SECONDS
say() { echo "gpu-check [$((SECONDS - START))s]: $*"; }
die() { say "FAILED: $*"; exit 1; }

[ -f "$KIT/MANIFEST" ] || die "$KIT/ is missing: run scripts/gpu-kit.sh where Node is installed and carry $KIT/"
say "kit: $(head -3 "$KIT/MANIFEST" | tr '\n' ' ')"
(cd "$KIT" && grep -E '^[0-9a-f]{64} ' MANIFEST | sha256sum -c --quiet) || die "$KIT/ does not match its MANIFEST"

WORK=$(mktemp -d /tmp/gpu-check.XXXXXX)
# xz, else Python's lzma (a bare image may lack xz-utils)
unxz_to() {
  if command -v xz >/dev/null; then xz -dc "$1" >"$2"; else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
  fi
}

mkdir -p "$WORK/bin" "$WORK/vulkan"
unxz_to "$KIT/node.xz" "$WORK/bin/node" && chmod +x "$WORK/bin/node" || die "cannot unpack node"
NODE=$WORK/bin/node
say "node $("$NODE" --version) (carried, at $NODE)" || die "the carried node does not run"

# The Vulkan loader: the machine's own where it has one (it matches its driver, often newer than ours), else
# the carried one, unpacked into a private directory.
system_loader=$( (ldconfig -p 2>/dev/null || true) | awk '/libvulkan\.so\.1 / {print $NF; exit}')
if [ -n "$system_loader" ]; then
  say "Vulkan loader: the machine's own ($system_loader)"
else
  deb=$(ls "$KIT"/libvulkan1_*.deb)
  if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$deb" "$WORK/vulkan"; else
    (cd "$WORK" && ar x "$OLDPWD/$deb" && data=$(ls data.tar.*) && unxz_to "$data" data.tar && tar -xf data.tar -C vulkan)
  fi || die "cannot unpack $deb"
  libdir=$(dirname "$(find "$WORK/vulkan" -name 'libvulkan.so.1' | head -1)")
  [ -f "$libdir/libvulkan.so.1" ] || die "no libvulkan.so.1 in $deb"
  export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  say "Vulkan loader: $(basename "$deb") (carried, at $libdir)"
fi

unxz_to "$KIT/app.tar.xz" "$WORK/app.tar" && tar -xf "$WORK/app.tar" || die "cannot unpack dist/ and node_modules/webgpu"
say "dist/ and node_modules/webgpu unpacked into $(pwd)"

# The Vulkan drivers. NVIDIA's comes with the driver on the machine; a container may mount it outside the
# loader's search path (e.g. /usr/local/nvidia), where the loader is pointed at it explicitly.
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader |
  sed 's/^/gpu-check: nvidia-smi: /'
icd_dirs=(/usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d)
icds=()
for d in "${icd_dirs[@]}"; do
  if [ -d "$d" ]; then echo "gpu-check: $d: $(ls "$d" | tr '\n' ' ')"; else echo "gpu-check: $d: (no such directory)"; fi
  for f in "$d"/*.json; do [ -f "$f" ] && icds+=("$f"); done
done
if [ ${#icds[@]} -eq 0 ]; then
  say "NO Vulkan ICD found in ${icd_dirs[*]}: no Vulkan driver, so no WebGPU adapter (NVIDIA: the driver's Vulkan" \
    "part; in a container, NVIDIA_DRIVER_CAPABILITIES must include graphics; see environment.md)"
elif ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1 &&
  [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json VK_ICD_FILENAMES=$VK_DRIVER_FILES
  say "NVIDIA's ICD is outside the loader's search path: VK_DRIVER_FILES=$VK_DRIVER_FILES"
fi

# The adapter, as the engine sees it
adapter_json=$(timeout 60 "$NODE" -e '
  const d = require("./dist/src/engines/webgpu/device.js");
  d.openWebGpu().then((o) => {
    if (!o.ok) { console.log(JSON.stringify({ ok: false, reason: o.reason })); return; }
    console.log(JSON.stringify({ ok: true, adapter: d.formatAdapter(o.gpu.adapter), ...o.gpu.adapter, limits: o.gpu.limits }));
    o.gpu.device.destroy();
  });' 2>"$WORK/adapter.err")
echo "$adapter_json" | sed 's/^/gpu-check: adapter: /'
grep -v 'artificially reduced' "$WORK/adapter.err" | sed 's/^/gpu-check: adapter (stderr): /'
[ -n "$OUT_DIR" ] && echo "$adapter_json" >"$OUT_DIR/adapter.json"
software=0
case "$adapter_json" in
  *'"ok":false'* | '') say "NO WebGPU adapter: the tests below fail and the bench is skipped" ;;
  *'"software":true'*) software=1 ;;
esac

status=0
say "webgpu parity tests (GROK_REQUIRE_WEBGPU=1)"
GROK_REQUIRE_WEBGPU=1 timeout 300 "$NODE" --test dist/test/webgpu*.test.js \
  >"$WORK/tests.log" 2>&1
tests_rc=$?
grep -v 'artificially reduced' "$WORK/tests.log"
if [ $tests_rc -eq 0 ]; then say "tests passed"; else say "TESTS FAILED (exit $tests_rc)" && status=1; fi

if [[ "$adapter_json" == *'"ok":true'* ]]; then
  if [ $software -eq 1 ]; then packs=(1 2) timing=(--steps 1 --warmup 1); else packs=(1 16 32 64) timing=(--steps auto --seconds 5); fi
  bench() {
    say "grok bench --engine webgpu $*"
    if timeout 150 "$NODE" bin/grok.js bench --engine webgpu "${timing[@]}" --json "$@" >"$WORK/bench.json" \
      2> >(grep -v 'artificially reduced' >&2); then
      "$NODE" -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); const m = r.msPerPackStep ?? r.msPerStep;
        const what = r.runs ? `pack of ${r.runs}` : "one run (no pack)";
        console.log(`gpu-check: ${what}, batch ${r.batchSize}: ${m.median.toFixed(2)} ms/step median` +
          (r.runStepsPerSecond ? `, ${r.runStepsPerSecond.toPrecision(4)} run-steps/s` : "") + `, ${r.steps} steps, ${r.backend}`);' \
        "$WORK/bench.json"
      [ -n "$OUT_DIR" ] && { tr -d '\n' <"$WORK/bench.json"; echo; } >>"$OUT_DIR/bench.jsonl"
    else
      say "BENCH FAILED: $*"
      status=1
    fi
  }
  bench
  for r in "${packs[@]}"; do bench --pack "$r"; done
else
  status=1
fi
rm -rf "$WORK"
say "done in $((SECONDS - START)) s: $([ $status -eq 0 ] && echo PASSED || echo FAILED)"
exit $status
