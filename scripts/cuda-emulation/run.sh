#!/usr/bin/env bash
# Compiles check.cpp (our .cu kernels with the CPU emulation of prelude.h) with g++ and runs it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
g++ -std=c++20 -O2 -fno-strict-aliasing -Wno-unknown-pragmas "$here/check.cpp" -o "$out/check"
"$out/check"
