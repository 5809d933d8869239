"""The PyTorch reference for `genzoo train dcgan`: the same networks, initialisation, loss,
optimizer, batch size and data (the embedded MNIST subset's training images in [-1, 1],
reshuffled every epoch), trained on the CPU; writes N samples in [0, 1] as a .npy that
`genzoo eval-samples` scores, and prints the wall time.

    python3 benches/reference/dcgan_torch.py --epochs 10 --out runs/dcgan-torch
    cargo run --release --bin genzoo -- eval-samples runs/dcgan-torch/samples.npy

Needs only torch (no numpy, no torchvision)."""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from torch_compare import dcgan_nets  # noqa: E402  the benchmark's networks, one definition

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def idx_images(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = struct.unpack(">IIII", data[:16])
    assert magic == 2051, f"{path}: not an idx3 image file"
    x = torch.frombuffer(bytearray(data[16:16 + n * rows * cols]), dtype=torch.uint8)
    return x.reshape(n, 1, rows, cols).float() / 127.5 - 1.0


def write_npy(path, t):
    t = t.contiguous().float()
    shape = "(" + ", ".join(str(d) for d in t.shape) + ("," if t.dim() == 1 else "") + ")"
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape
    total = (10 + len(header) + 1 + 63) // 64 * 64
    header = header + " " * (total - 10 - len(header) - 1) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%df" % t.numel(), *t.flatten().tolist()))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/dcgan-torch")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    x = idx_images(os.path.join(ROOT, "data", "mnist10k", "train-images-idx3-ubyte.gz"))
    g, d = dcgan_nets(torch.device("cpu"), True)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    b = 64
    log = []
    t0 = time.time()
    for epoch in range(a.epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), b):
            real = x[order[i:i + b]]
            fake = g(torch.randn(len(real), 100))
            rl, fl = d(real), d(fake.detach())
            d_loss = bce(rl, torch.ones_like(rl)) + bce(fl, torch.zeros_like(fl))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            out = d(fake)
            g_loss = bce(out, torch.ones_like(out))
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
        log.append({"epoch": epoch + 1, "seconds": time.time() - t0,
                    "d_loss": d_loss.item(), "g_loss": g_loss.item()})
        print(json.dumps(log[-1]), flush=True)
    g.eval()
    with torch.no_grad():
        s = (g(torch.randn(a.samples, 100)) + 1) / 2
    write_npy(os.path.join(a.out, "samples.npy"), s.clamp(0, 1))
    with open(os.path.join(a.out, "log.json"), "w") as f:
        json.dump({"epochs": a.epochs, "wall_s": time.time() - t0, "log": log}, f)
    print(f"{a.epochs} epochs in {time.time() - t0:.1f} s; samples in {a.out}/samples.npy")


if __name__ == "__main__":
    main()
