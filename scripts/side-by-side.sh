#!/usr/bin/env bash
# Our CPU engine, PyTorch and ONNX Runtime on the same Lite0, in one run, alternating rounds,
# with ratios (scripts/side_by_side.py says what each figure times). Installs what it needs:
# the Python environment of scripts/setup-python.sh plus onnx and onnxruntime, the release
# `finetune`, the converted weights. Arguments go to side_by_side.py (--rounds, --batch, --json).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/finetune-studio/target}"
env_dir="${FINETUNE_PYENV:-$HOME/.cache/finetune-studio/pyenv}"
scripts/setup-python.sh --onnx
make --no-print-directory weights/efficientnet-lite0.int8.safetensors >/dev/null
cargo build --quiet --release --bin finetune
exec "$env_dir/bin/python" scripts/side_by_side.py "$CARGO_TARGET_DIR/release/finetune" "$@"
