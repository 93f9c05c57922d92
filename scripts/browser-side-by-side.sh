#!/usr/bin/env bash
# The browser's CPU path against its peer, in one run: the app's device check at batch 16 on one
# worker and with its helper workers, and ONNX Runtime Web (wasm, one thread) on the same Lite0,
# in the same headless Chromium, alternating rounds, with ratios (scripts/browser_side_by_side.mjs
# says what each figure times). Installs what it needs: the Python environment of
# scripts/setup-python.sh with onnx (to export the ONNX files, scripts/export_onnx.py), npm's
# packages (playwright-core, onnxruntime-web), the release `finetune` (it writes the PyTorch code
# the files are exported from), the converted weights and dist/ (`make dist`; `--no-build` keeps
# a dist/ already there). Other arguments go to the node script (--rounds, --batch, --runs, --json).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/finetune-studio/target}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
env_dir="${FINETUNE_PYENV:-$HOME/.cache/finetune-studio/pyenv}"
onnx_dir="${FINETUNE_ONNX:-$HOME/.cache/finetune-studio/onnx}"
build=true
args=()
for a in "$@"; do
  if [ "$a" = --no-build ]; then build=false; else args+=("$a"); fi
done
scripts/setup-python.sh --onnx
[ -d node_modules/onnxruntime-web ] && [ -d node_modules/playwright-core ] || npm install --no-audit --no-fund
cargo build --quiet --release --bin finetune
if $build || [ ! -f dist/index.html ]; then
  make --no-print-directory dist
fi
"$env_dir/bin/python" scripts/export_onnx.py "$CARGO_TARGET_DIR/release/finetune" "$onnx_dir"
exec node scripts/browser_side_by_side.mjs --onnx "$onnx_dir" "${args[@]}"
