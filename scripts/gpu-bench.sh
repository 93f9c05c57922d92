#!/usr/bin/env bash
# `finetune bench` on a machine with a GPU: the GPU's name, wgpu (Vulkan) and the CPU backend,
# as JSON lines. Usage: scripts/gpu-bench.sh FINETUNE_BINARY WEIGHTS [OUT_DIR]
# The binary and weights are built here and carried (the GPU machine has no network); Vulkan's
# loader comes from Debian packages unpacked to / (see the device notes in the closing note).
set -uo pipefail
bin=${1:?finetune binary}
weights=${2:?weights file}
out=${3:-.}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -z "${VK_DRIVER_FILES:-}" ] && [ -e "$icd" ]; then export VK_DRIVER_FILES=$icd; fi
done
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-none found}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$out/gpu.txt"
nproc
for batch in 16 64; do
  echo "== wgpu batch $batch"
  timeout 240 "$bin" bench --backend wgpu --weights "$weights" --batch "$batch" --iters 5 --json 2>&1 | tee -a "$out/bench-wgpu.jsonl"
done
echo "== cpu batch 16"
timeout 200 "$bin" bench --backend cpu --weights "$weights" --batch 16 --iters 2 --json 2>&1 | tee -a "$out/bench-cpu.jsonl"
