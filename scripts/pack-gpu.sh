#!/usr/bin/env bash
# Like ../shared/device/pack, but only the test binaries that exercise the GPU (those named
# cuda_*, bf16, and the convolution and LSTM gradient checks, which scripts/gpu-bench.sh runs
# again on the GPU), so that .device stays far below the GPU machine's 64 MiB limit (all of the
# workspace's test binaries together are about 80 MiB). Then, on the device tool:
#   carry [".device"], command: bash .device/run-gpu-checks.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device && mkdir -p .device/tests .device/benches .device/bin
list() { python3 -c 'import json,sys
for l in sys.stdin:
    try: m=json.loads(l)
    except Exception: continue
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["kind"]!=["custom-build"] \
       and (m["profile"]["test"] or sys.argv[1]=="bins"):
        d=m["manifest_path"].rsplit("/",1)[0]
        print(m["target"]["kind"][0], m["target"]["name"], m["executable"], d)' "$1"; }
cargo build --release --workspace --bins --message-format=json 2>/dev/null | list bins | while read -r kind name exe dir; do cp "$exe" .device/bin/; done
cargo test --release --workspace --no-run --message-format=json 2>/dev/null | list tests | while read -r kind name exe dir; do
  case "$name" in cuda_* | bf16 | gradcheck_conv | gradcheck_lstm) ;; *) continue ;; esac
  b="${name}-$(basename "$exe" | sed 's/.*-//')"; cp "$exe" ".device/tests/$b"; echo "$b ${dir#"$root"}" >> .device/tests.txt; done
strip .device/*/* 2>/dev/null || true
cp "$root/../shared/device/run-gpu-checks.sh" .device/
du -sh .device; ls .device/*
[ "$(du -sm .device | cut -f1)" -lt 60 ] || { echo "pack-gpu: .device is over 60 MiB" >&2; exit 1; }
