# Sourced by .ci/run: the NVRTC library from the Python package index (no GPU or driver needed),
# so that kernels/tests/cuda_cubin.rs compiles every CUDA module for real GPUs. Installed into
# a folder of its own (pip's --target, which an externally managed system Python allows), its
# lib folder put on LD_LIBRARY_PATH, where cudarc's dynamic loading finds it; REQUIRE_NVRTC=1
# makes the test fail rather than skip if it still cannot be loaded.
NVRTC_DIR="${NVRTC_DIR:-${TMPDIR:-/tmp}/genzoo-nvrtc}"
if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get install -y -q python3-pip >/dev/null
fi
python3 -m pip install --quiet --disable-pip-version-check --target "$NVRTC_DIR" \
    'nvidia-cuda-nvrtc>=13,<14'
NVRTC_LIB="$(dirname "$(find "$NVRTC_DIR" -name 'libnvrtc.so.13' | head -n 1)")"
echo "NVRTC from $NVRTC_LIB"
export LD_LIBRARY_PATH="$NVRTC_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export REQUIRE_NVRTC=1
