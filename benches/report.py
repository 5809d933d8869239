#!/usr/bin/env python3
"""Joins two JSON-lines benchmark files on (group, name) and prints a Markdown table:
ours beside theirs, the ratio (ours / theirs, lower is better) and our GFLOP/s.

    python3 benches/report.py ours.jsonl torch.jsonl [--peak-gflops 0]
"""
import argparse
import json


def load(path):
    rows = {}
    for line in open(path):
        line = line.strip()
        if line:
            r = json.loads(line)
            rows[(r["group"], r["name"])] = r
    return rows


def fmt(v):
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ours")
    p.add_argument("theirs")
    p.add_argument("--peak-gflops", type=float, default=0.0, help="the machine's peak, for a % column")
    args = p.parse_args()
    ours, theirs = load(args.ours), load(args.theirs)
    print("| case | ours fwd ms | torch fwd ms | fwd ratio | ours fwd+bwd ms | torch fwd+bwd ms | fwd+bwd ratio | ours fwd GFLOP/s |" + (" % peak |" if args.peak_gflops else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if args.peak_gflops else ""))
    for key, o in ours.items():
        t = theirs.get(key)
        if t is None:
            continue
        fr = o["fwd_ms"] / t["fwd_ms"] if o.get("fwd_ms") and t.get("fwd_ms") else None
        br = o["fwdbwd_ms"] / t["fwdbwd_ms"]
        gf = o["flops"] / (o["fwd_ms"] * 1e6) if o.get("flops") and o.get("fwd_ms") else None
        row = f"| {key[0]}/{key[1]} | {fmt(o.get('fwd_ms'))} | {fmt(t.get('fwd_ms'))} | {fmt(fr)} | {fmt(o['fwdbwd_ms'])} | {fmt(t['fwdbwd_ms'])} | {fmt(br)} | {fmt(gf)} |"
        if args.peak_gflops:
            row += f" {fmt(100 * gf / args.peak_gflops) if gf else '-'} |"
        print(row)


if __name__ == "__main__":
    main()
