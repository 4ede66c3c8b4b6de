#!/usr/bin/env bash
# Fills gpu-kit/ (git-ignored) with what scripts/gpu-check.sh needs on a bare Linux GPU machine that has
# neither Node nor internet access: this machine's Node binary, Debian's Vulkan loader, the built dist/ and
# the one package the webgpu engine loads at run time (`webgpu`: Dawn's dawn.node for linux-x64).
# Run it in the repository after `npm install` (or `npm run build`); carry gpu-kit/ with the tree.
#
#   gpu-kit/node.xz                 the `node` on the PATH here (xz)
#   gpu-kit/libvulkan1_*.deb        the Vulkan loader (apt-get download; unpacked by the check, not installed)
#   gpu-kit/app.tar.xz              dist/, node_modules/webgpu (package.json, index.js, linux-x64 dawn.node) and
#                                   the fast engine's kernels where built (--engine auto falls back to them)
#   gpu-kit/MANIFEST                versions and SHA-256 sums, checked by gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=gpu-kit

node_bin=$(command -v node) || { echo "gpu-kit: no node on the PATH" >&2; exit 1; }
[ -f dist/src/cli/main.js ] && [ -f dist/test/webgpu-engine.test.js ] ||
  { echo "gpu-kit: dist/ is not built (npm run build)" >&2; exit 1; }
webgpu_files=(node_modules/webgpu/package.json node_modules/webgpu/index.js node_modules/webgpu/LICENSE.md
  node_modules/webgpu/dist/linux-x64/dawn.node)
for f in "${webgpu_files[@]}"; do
  [ -f "$f" ] || { echo "gpu-kit: $f is missing (npm install installs the optional webgpu package)" >&2; exit 1; }
done

rm -rf "$KIT"
mkdir -p "$KIT"
echo "gpu-kit: node $("$node_bin" --version) from $node_bin"
xz -T0 -9 -c "$node_bin" >"$KIT/node.xz"
echo "gpu-kit: the Vulkan loader (libvulkan1)"
# apt-get download writes into the current directory; as root it warns that _apt cannot write there
(cd "$KIT" && apt-get download libvulkan1 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
ls "$KIT"/libvulkan1_*.deb >/dev/null 2>&1 || { echo "gpu-kit: apt-get download libvulkan1 failed" >&2; exit 1; }
echo "gpu-kit: dist/ and node_modules/webgpu"
addon=build/Release/grok_kernels.node
[ -f "$addon" ] || addon=
tar -cf - dist "${webgpu_files[@]}" $addon | xz -T0 -9 >"$KIT/app.tar.xz"

{
  echo "node $("$node_bin" --version) $(uname -m)"
  echo "webgpu $(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' node_modules/webgpu/package.json)"
  echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src test || echo ' (with uncommitted changes)')"
  (cd "$KIT" && sha256sum node.xz libvulkan1_*.deb app.tar.xz)
} >"$KIT/MANIFEST"
cat "$KIT/MANIFEST"
du -ch "$KIT"/* | tail -1 | sed 's/^/gpu-kit: /'
