#!/usr/bin/env bash
# GPU figures of the data path, training and inference; run it whenever a CUDA machine is at hand:
#
#     bench/gpu_check.sh              # from any folder; PYTHON=... picks the interpreter
#     GPU_CHECK_WORKERS=8 bench/gpu_check.sh
#
# 1. bench/train_step.py on CUDA: the real data path (uint8 transfer, normalised on the GPU, after
#    checking it equals the float path there) against a batch already on the GPU, train and
#    inference samples/s and their ratio; then the float transfer, to see what uint8 saves.
# 2. train() + predict() of models/network/training.py and inference.py on CUDA (the raw switch as training uses it).
# 3. bench/generate.py with [GenerateMasks] device = cuda, set through a temporary luigi config.
# Everything printed goes to bench/results/gpu_check-<UTC time>.txt; the benches append their JSON
# lines to bench/results/train_step.jsonl and bench/results/generate.jsonl.
# The pose map and prior are read from the cache: drawing them on the GPU from the joints is not
# implemented, because it could not be measured (no GPU when this was written).
# Without CUDA it writes nothing and exits 2.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -n "${PYTHON:-}" ]]; then
    py=$PYTHON
elif [[ -x .venv/bin/python ]]; then
    py=.venv/bin/python
else
    py=python3
fi
workers=${GPU_CHECK_WORKERS:-4}

if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: CUDA is not available (torch.cuda.is_available() is False for $py): nothing measured." >&2
    echo "gpu_check: run it on a machine with an NVIDIA GPU and a CUDA build of torch." >&2
    exit 2
fi

section() { printf '\n== %s\n' "$*"; }

main() {
    local tmp
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT

    echo "gpu_check $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) CPUs"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    fi
    "$py" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))'
    echo "pose map and prior: read from the cache (uint8, normalised on the GPU); drawing them on the GPU"
    echo "from the joints is not implemented: it could not be measured"

    section "1. train step on CUDA, training model (base 16): data path (uint8) vs in-memory batch; inference"
    "$py" bench/train_step.py --devices cuda --samples 256 --num-workers "$workers" --base-channels 16
    section "1b. the same with the float transfer (what the uint8 transfer saves)"
    "$py" bench/train_step.py --devices cuda --samples 256 --num-workers "$workers" --base-channels 16 --transfer float
    section "1c. the small bench model (base 8), uint8: the data path under a faster step"
    "$py" bench/train_step.py --devices cuda --samples 256 --num-workers "$workers"

    section "2. train() + predict() on CUDA (models/network)"
    "$py" - "$tmp" "$workers" <<'PY'
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, ".")
import numpy as np  # noqa: E402

from bench.synthetic import write_synthetic_cache  # noqa: E402
from models.network import ModelConfig, TrainConfig, predict, train  # noqa: E402

root, workers, samples = Path(sys.argv[1]), int(sys.argv[2]), 128
cache = write_synthetic_cache(root / "smoke.h5", samples, seed=1)
cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-3, device="cuda", num_workers=workers, progress_bar=False)
started = time.perf_counter()
result = train(ModelConfig(), cfg, [cache], [cache], root / "run")
seconds = time.perf_counter() - started
print(f"train(): {len(result['history'])} epochs of {samples} samples in {seconds:.1f} s on {result['device']}")
for row in result["history"]:
    print(f"  epoch {row['epoch']}: {row['samples_per_s']:.1f} samples/s, loss {row['train_loss']:.4f}, IoU {row['val_iou']:.3f}")
started = time.perf_counter()
gpu = predict(result["model"], [cache], batch_size=32, device="cuda")
seconds = time.perf_counter() - started
cpu = predict(result["model"], [cache], batch_size=32, device="cpu")
print(f"predict(): {len(gpu) / seconds:.1f} samples/s on CUDA (first call, cuDNN autotuning included)")
print(f"  CUDA (bf16 autocast) vs CPU (float32) probabilities: max |diff| {np.abs(gpu - cpu).max():.4f}")
finite = np.isfinite(gpu).all() and gpu.min() >= 0 and gpu.max() <= 1
if not finite or math.isnan(result["history"][-1]["train_loss"]):
    raise SystemExit("gpu_check: CUDA training or prediction gave non-finite values")
PY

    section "3. GenerateMasks on CUDA (bench/generate.py; [GenerateMasks] device = cuda)"
    local cfg=$tmp/gpu_check.cfg
    printf '[GenerateMasks]\ndevice = cuda\n' >"$cfg"
    if [[ -n "${LUIGI_CONFIG_PATH:-}" ]]; then
        echo "note: LUIGI_CONFIG_PATH=$LUIGI_CONFIG_PATH is replaced by $cfg for this step"
    fi
    local device
    device=$(LUIGI_CONFIG_PATH=$cfg "$py" -c \
        'import pipeline; print(pipeline.GenerateMasks(input_dir="", output_dir="").device)')
    if [[ $device != cuda ]]; then
        echo "gpu_check: [GenerateMasks] device is '$device', not cuda: $cfg was not read" >&2
        exit 1
    fi
    echo "note: bench/generate.py's 'U-Net forward alone' runs on the CPU, so its ratios set GenerateMasks"
    echo "on CUDA against a CPU forward; its JSON line does not name the device (this log does)"
    LUIGI_CONFIG_PATH=$cfg "$py" bench/generate.py

    section "done"
    echo "JSON lines appended to bench/results/train_step.jsonl and bench/results/generate.jsonl"
}

mkdir -p bench/results
log=bench/results/gpu_check-$(date -u +%Y%m%dT%H%M%SZ).txt
main 2>&1 | tee "$log"
echo "log: $log"
