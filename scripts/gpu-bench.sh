#!/usr/bin/env bash
# On the GPU machine, from the repo root, after scripts/pack-gpu.sh carried .device there
# (.device/run-gpu-checks.sh calls this last): every case of benches/shapes.json on CUDA, ours
# and PyTorch's on the same GPU in the same run, fp32 with TF32 off on both sides (ours has no
# TF32 path), then the table of both times and their ratio. Ours is at the kernel level for now
# (kernels::cuda on device buffers): the engine does not run on the GPU yet.
set -u
out=${OUT:-/tmp}
compare=.device/bin/compare
[ -x "$compare" ] || compare="cargo run --release -p benches --bin compare --"
$compare --device cuda --out "$out/ours-cuda.jsonl" || echo "gpu-bench: our CUDA run failed"
python3 benches/torch_compare.py --device cuda --include-gpu-only --out "$out/torch-cuda.jsonl" \
  || echo "gpu-bench: PyTorch's CUDA run failed"
python3 benches/report.py "$out/ours-cuda.jsonl" "$out/torch-cuda.jsonl"
