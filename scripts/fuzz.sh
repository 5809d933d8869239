#!/usr/bin/env bash
# Fuzzes genzoo's file readers (issue 15) one target after the other, as fuzz/RESULTS.md records:
# each target for SECONDS (600 unless given) from its kept corpus, in one process (one fuzzer at
# a time), under libFuzzer's limits: no single allocation of 1 GiB or more, 2 GiB resident,
# 10 s per input. Then each corpus is minimised again (cargo fuzz cmin, on edge coverage
# only, -use_counters=0, which keeps it a few hundred KB). Needs the nightly
# toolchain and cargo-fuzz 0.13 (`cargo install cargo-fuzz`).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      targets: idx_raw idx_gzip checkpoint config
#
# A finding stops its target with the input in fuzz/artifacts/<target>/ (the log in
# fuzz/logs/<target>.log) and makes the script fail: minimise it with
# `cargo +nightly fuzz tmin <target> <file>`, fix the reader, and add the result to
# fuzz/corpus/<target>/ so that models/tests/fuzz_corpus.rs guards it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
if [ $# -gt 0 ]; then shift; fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx_raw idx_gzip checkpoint config)
mkdir -p fuzz/logs
cargo +nightly fuzz build
failed=0
for t in "${targets[@]}"; do
    echo "== $t: $seconds s"
    status=0
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
        -print_final_stats=1 > "fuzz/logs/$t.log" 2>&1 || status=$?
    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::' "fuzz/logs/$t.log" || true
    if [ "$status" -ne 0 ]; then
        echo "$t: a finding (exit $status), in fuzz/artifacts/$t/:"
        grep -E 'panicked|ERROR|SUMMARY' "fuzz/logs/$t.log" | head -5 || true
        failed=1
        continue
    fi
    cargo +nightly fuzz cmin "$t" "fuzz/corpus/$t" -- -use_counters=0 > "fuzz/logs/$t.cmin.log" 2>&1
    echo "   corpus after cmin: $(find "fuzz/corpus/$t" -type f | wc -l) files," \
        "$(cat "fuzz/corpus/$t"/* | wc -c) bytes"
done
exit "$failed"
