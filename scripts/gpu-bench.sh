#!/usr/bin/env bash
# On the GPU machine, from the repo root, after scripts/pack-gpu.sh carried .device there
# (.device/run-gpu-checks.sh calls this last): first the f64 gradient checks of the convolution
# family and the LSTM on the GPU (the harness on GRADCHECK_DEVICE=cuda); then every case of
# benches/shapes.json on CUDA, ours and PyTorch's on the same GPU in the same run, fp32 with
# TF32 off on both sides (ours has no TF32 path), and the table of both times and their ratio.
# Ours: the operator cases at the kernel level (kernels::cuda on device buffers), the model
# steps through the engine.
set -u
out=${OUT:-/tmp}
for t in .device/tests/gradcheck_conv-* .device/tests/gradcheck_lstm-*; do
  [ -x "$t" ] || continue
  if (cd tests && GRADCHECK_DEVICE=cuda PROPTEST_CASES=16 "$OLDPWD/$t" --test-threads=1) \
    >"$out/$(basename "$t").cuda.log" 2>&1; then
    echo "PASS $(basename "$t") on the GPU"
  else
    echo "FAIL $(basename "$t") on the GPU"; tail -30 "$out/$(basename "$t").cuda.log"
  fi
done
compare=.device/bin/compare
[ -x "$compare" ] || compare="cargo run --release -p benches --bin compare --"
$compare --device cuda --out "$out/ours-cuda.jsonl" || echo "gpu-bench: our CUDA run failed"
python3 benches/torch_compare.py --device cuda --include-gpu-only --out "$out/torch-cuda.jsonl" \
  || echo "gpu-bench: PyTorch's CUDA run failed"
python3 benches/report.py "$out/ours-cuda.jsonl" "$out/torch-cuda.jsonl"
