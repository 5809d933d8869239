#!/usr/bin/env bash
# Miri over the CPU kernels' unsafe code (issue 15): kernels/tests/unsafe_paths.rs, small
# shapes, f32 and f64, every result checked against plain loops, through
# - matmul.rs: packing (pack_sliver), full micro-tiles written through C's pointer and ragged
#   ones through the scratch tile, C bands (ldc > n) and accumulation, two k blocks,
#   PackedA / BSource::Packer / uninitialised C (matmul_packed_uninit), C rectangles written
#   by several threads (SharedRows::tile);
# - lstm_sequence.rs: blocks of batch rows on their own threads (SharedRows::rows_mut, rows);
# - conv.rs: gather tables (stride, dilation: gather_loop's unchecked reads), PixelCNN masks,
#   groups, uninitialised outputs (output_by_chunks' set_len, zero_fill's cast);
# - elementwise.rs (unary, binary, select: set_len) and strided.rs (split_outer's set_len)
#   over strided, transposed and broadcast views.
# Under Miri, cpu::parallel::worth_splitting splits every loop of 2 or more items, so that the
# data-race detector sees threads share the buffers.
#
# Miri sees only the CPU features the crate is compiled with, so the first run (plain build)
# takes the portable paths. The two more runs build with AVX2 + FMA and with AVX-512 enabled
# (in target dirs of their own) and run the matmul tests, whose AVX2 6x16 and AVX-512 8x32,
# 12x32 (f32) and 12x16 (f64) micro-kernels and transposing packer Miri then interprets,
# intrinsics and all. What Miri does not reach is checked natively (ARCHITECTURE.md, "Miri").
#
# The flags, each for rayon's dependency crossbeam-epoch, not for our code:
# -Zmiri-tree-borrows: crossbeam-epoch breaks Stacked Borrows (a retag in internal.rs,
#   Local::element_of; crossbeam-rs/crossbeam#545, rayon-rs/rayon#1185) and is checked by
#   its own CI under Tree Borrows (crossbeam-rs/crossbeam#996);
# -Zmiri-permissive-provenance: crossbeam-epoch's tagged pointers cast integers to pointers;
# -Zmiri-ignore-leaks: crossbeam-epoch's global collector keeps the records of exited threads
#   (Local, queued SealedBags) for a collection that never comes before the program ends.
#
# Needs the nightly toolchain with Miri (rustup +nightly component add miri; cargo +nightly
# miri setup). About 18 minutes on one core (the plain run about 13); the same test runs
# natively in CI in well under a second. Usage: scripts/miri.sh [all|plain|simd] [TEST-FILTER...] (all
# when not given; filters apply to the plain run).
set -euo pipefail
cd "$(dirname "$0")/.."
export MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-permissive-provenance -Zmiri-ignore-leaks"
which=${1:-all}
shift || true
run() {
    cargo +nightly miri test -p kernels --test unsafe_paths -- --test-threads=1 "$@"
}
if [ "$which" != simd ]; then
    echo "== portable paths"
    run "$@"
fi
if [ "$which" != plain ]; then
    matmul=(matmul_edges_layouts_and_thread_grids matmul_into_a_band_and_accumulate
        packed_a_packer_b_and_uninit_c)
    # the elementwise test for vector::widest's AVX2 / AVX-512 wrappers
    echo "== AVX2 + FMA (the f32 matmul kernel, widest's AVX2 wrapper)"
    CARGO_TARGET_DIR=target/miri-avx2 RUSTFLAGS="-C target-feature=+avx2,+fma" \
        run miri_sees_only "${matmul[@]/%/_f32}" elementwise_over_strided_views_f32
    echo "== AVX-512 (the f32 and f64 matmul kernels, widest's AVX-512 wrapper)"
    CARGO_TARGET_DIR=target/miri-avx512 RUSTFLAGS="-C target-feature=+avx512f,+avx2,+fma" \
        run miri_sees_only "${matmul[@]}" elementwise_over_strided_views_f32
fi
