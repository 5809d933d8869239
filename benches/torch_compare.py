#!/usr/bin/env python3
"""PyTorch's side of the benchmark contract: the same cases as `compare`, same JSON lines.

    python3 benches/torch_compare.py --device cpu --threads 2 --out torch.jsonl [--filter S] [--reps N]

Timing follows ../shared/bench/README.md: warm-up runs, then the median of the timed runs.
"""
import argparse
import json
import pathlib
import platform
import statistics
import time

import torch

SHAPES = json.loads((pathlib.Path(__file__).parent / "shapes.json").read_text())


def median_ms(fn, warmup, reps, sync):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def matmul_cases(dev):
    for c in SHAPES["matmul"]:
        m, k, n = c["m"], c["k"], c["n"]
        a = torch.randn(m, k, device=dev, requires_grad=True)
        b = torch.randn(k, n, device=dev, requires_grad=True)
        g = torch.randn(m, n, device=dev)

        def fwd(a=a, b=b):
            with torch.no_grad():
                a @ b

        def fwdbwd(a=a, b=b, g=g):
            a.grad = None
            b.grad = None
            (a @ b).backward(g)

        yield "matmul", c, 2 * m * n * k, fwd, fwdbwd


def causal_mask(kh, kw, kind, dev):
    """PixelCNN's mask for one colour channel: A hides the centre, B keeps it."""
    m = torch.zeros(kh, kw, device=dev)
    ci, cj = kh // 2, kw // 2
    m[:ci, :] = 1
    m[ci, :cj] = 1
    if kind == "B":
        m[ci, cj] = 1
    return m


def conv_cases(dev):
    """conv2d, conv_transpose2d and masked_conv2d. The masked convolution is PyTorch's usual
    one: the weight multiplied by the mask in every forward, then a full conv2d."""
    F = torch.nn.functional
    for group in ("conv2d", "conv_transpose2d", "masked_conv2d"):
        for c in SHAPES[group]:
            if c.get("gpu_only") and dev.type != "cuda":
                continue
            x = torch.randn(*c["x"], device=dev, requires_grad=True)
            w = torch.randn(*c["w"], device=dev, requires_grad=True)
            stride, pad = c.get("stride", 1), c["pad"]
            if group == "conv2d":
                op = lambda x, w, s=stride, p=pad: F.conv2d(x, w, stride=s, padding=p)  # noqa: E731
            elif group == "conv_transpose2d":
                op = lambda x, w, s=stride, p=pad: F.conv_transpose2d(x, w, stride=s, padding=p)  # noqa: E731
            else:
                m = causal_mask(c["w"][2], c["w"][3], c["mask"], dev)
                op = lambda x, w, s=stride, p=pad, m=m: F.conv2d(x, w * m, stride=s, padding=p)  # noqa: E731
            with torch.no_grad():
                y = op(x, w)
            g = torch.randn_like(y)
            kh, kw = c["w"][2], c["w"][3]
            if group == "conv_transpose2d":
                flops = 2 * x.numel() * c["w"][1] * kh * kw
            else:
                flops = 2 * y.numel() * c["w"][1] * kh * kw

            def fwd(op=op, x=x, w=w):
                with torch.no_grad():
                    op(x, w)

            def fwdbwd(op=op, x=x, w=w, g=g):
                x.grad = None
                w.grad = None
                op(x, w).backward(g)

            yield group, c, flops, fwd, fwdbwd


def lstm_cases(dev):
    """One LSTMCell step from (x, h, c), or a whole single-layer LSTM from a zero state; the
    backward starts from random upstream gradients on the outputs (cell: h' and c'; sequence:
    the [T, B, H] outputs) and reaches every parameter and the inputs (as benches/src/lstm.rs)."""
    for c in SHAPES["lstm"]:
        b, i, h = c["batch"], c["input"], c["hidden"]
        if c["kind"] == "cell":
            m = torch.nn.LSTMCell(i, h).to(dev)
            x, h0, c0 = (torch.randn(b, n, device=dev, requires_grad=True) for n in (i, h, h))
            up = (torch.randn(b, h, device=dev), torch.randn(b, h, device=dev))
            wrt = [x, h0, c0, *m.parameters()]

            def fwd(m=m, x=x, h0=h0, c0=c0):
                with torch.no_grad():
                    m(x, (h0, c0))

            def fwdbwd(m=m, x=x, h0=h0, c0=c0, up=up, wrt=wrt):
                h1, c1 = m(x, (h0, c0))
                torch.autograd.grad([h1, c1], wrt, list(up))

            flops = 2 * b * (i + h) * 4 * h
        else:
            t = c["seq"]
            m = torch.nn.LSTM(i, h).to(dev)
            x = torch.randn(t, b, i, device=dev, requires_grad=True)
            up = torch.randn(t, b, h, device=dev)
            wrt = [x, *m.parameters()]

            def fwd(m=m, x=x):
                with torch.no_grad():
                    m(x)

            def fwdbwd(m=m, x=x, up=up, wrt=wrt):
                out, _ = m(x)
                torch.autograd.grad([out], wrt, [up])

            flops = 2 * t * b * (i + h) * 4 * h
        yield "lstm", c, flops, fwd, fwdbwd


def overhead_cases(dev):
    for c in SHAPES["overhead"]:
        x = torch.ones(c["numel"], device=dev, requires_grad=True)
        ops = c["ops"]

        def chain(x=x, ops=ops):
            y = x
            for i in range(ops):
                y = y * 1.0001 if i % 2 == 0 else y + 0.0001
            return y.sum()

        def fwd(chain=chain):
            with torch.no_grad():
                chain()

        def fwdbwd(chain=chain, x=x):
            x.grad = None
            chain().backward()

        yield "overhead", c, None, fwd, fwdbwd


def dcgan_nets(dev, batch_norm_in_d):
    """The networks of shapes.json's dcgan_mnist_step (the critic of wgangp_mnist_step without
    the discriminator's BatchNorm), DCGAN's init: conv weights N(0, 0.02), BN gamma N(1, 0.02)."""
    nn = torch.nn
    g = nn.Sequential(
        nn.Linear(100, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(),
        nn.Unflatten(1, (128, 7, 7)),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh(),
    )
    d_layers = [nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(64, 128, 4, 2, 1)]
    if batch_norm_in_d:
        d_layers.append(nn.BatchNorm2d(128))
    d_layers += [nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(128 * 7 * 7, 1)]
    d = nn.Sequential(*d_layers)
    for m in list(g.modules()) + list(d.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return g.to(dev), d.to(dev)


def dcgan_flops(b):
    g = 100 * 6272 + 128 * 64 * 16 * 7 * 7 + 64 * 16 * 14 * 14
    d = 64 * 16 * 14 * 14 + 64 * 128 * 16 * 7 * 7 + 6272
    return 2 * b * (g + d)


def gan_step_cases(dev):
    """model_steps/dcgan_mnist_step and wgangp_mnist_step, as in shapes.json: DCGAN one D step
    (BCE with logits, real 1 and fake 0) then one G step (non-saturating), Adam 2e-4 (0.5, 0.999);
    WGAN-GP one critic step (mean C(fake) - mean C(real) + 10 (||grad_x C(x_hat)||_2 - 1)^2,
    create_graph) then one generator step (-mean C(G(z))), Adam 1e-4 (0.5, 0.9). A fixed batch
    of uniform values in [-1, 1), fresh noise every iteration."""
    F = torch.nn.functional
    for c in SHAPES["model_steps"]:
        if c["name"] not in ("dcgan_mnist_step", "wgangp_mnist_step"):
            continue
        b = c["batch"]
        x = torch.rand(b, 1, 28, 28, device=dev) * 2 - 1
        if c["name"] == "dcgan_mnist_step":
            g, d = dcgan_nets(dev, True)
            opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
            opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))

            def step(x=x, g=g, d=d, opt_g=opt_g, opt_d=opt_d):
                fake = g(torch.randn(b, 100, device=dev))
                real_logits, fake_logits = d(x), d(fake.detach())
                d_loss = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) \
                    + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
                opt_d.zero_grad()
                d_loss.backward()
                opt_d.step()
                out = d(fake)
                g_loss = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
                opt_g.zero_grad()
                g_loss.backward()
                opt_g.step()
        else:
            g, d = dcgan_nets(dev, False)
            opt_g = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.5, 0.9))
            opt_d = torch.optim.Adam(d.parameters(), lr=1e-4, betas=(0.5, 0.9))

            def step(x=x, g=g, d=d, opt_g=opt_g, opt_d=opt_d):
                with torch.no_grad():
                    fake = g(torch.randn(b, 100, device=dev))
                c_real, c_fake = d(x).mean(), d(fake).mean()
                e = torch.rand(b, 1, 1, 1, device=dev)
                x_hat = (e * x + (1 - e) * fake).requires_grad_(True)
                grad, = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
                norm = (grad.reshape(b, -1).square().sum(1) + 1e-12).sqrt()
                loss = c_fake - c_real + 10 * ((norm - 1) ** 2).mean()
                opt_d.zero_grad()
                loss.backward()
                opt_d.step()
                g_loss = -d(g(torch.randn(b, 100, device=dev))).mean()
                opt_g.zero_grad()
                g_loss.backward()
                opt_g.step()

        yield "model_steps", c, dcgan_flops(b), None, step


def vae_step_cases(dev):
    """model_steps/vae_mnist_step: one training iteration of the VAE of PyTorch's example
    (784-400 ReLU, heads 400->20 for mu and logvar, 20-400 ReLU -784 sigmoid; BCE(sum) + KL;
    Adam lr 1e-3) on a fixed batch of uniform values in [0, 1), a fresh eps every iteration.
    The sigmoid and the BCE are computed together from the logits, as benches/src/model_steps.rs
    does. fwd is None: the case is the whole iteration."""
    F = torch.nn.functional
    for c in SHAPES["model_steps"]:
        if c["name"] != "vae_mnist_step":
            continue
        b, d, h, z = c["batch"], 784, 400, 20
        fc1, fc21, fc22 = torch.nn.Linear(d, h), torch.nn.Linear(h, z), torch.nn.Linear(h, z)
        fc3, fc4 = torch.nn.Linear(z, h), torch.nn.Linear(h, d)
        mods = torch.nn.ModuleList([fc1, fc21, fc22, fc3, fc4]).to(dev)
        opt = torch.optim.Adam(mods.parameters(), lr=1e-3)
        x = torch.rand(b, d, device=dev)

        def step(x=x, opt=opt, fc1=fc1, fc21=fc21, fc22=fc22, fc3=fc3, fc4=fc4):
            hidden = F.relu(fc1(x))
            mu, logvar = fc21(hidden), fc22(hidden)
            code = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits = fc4(F.relu(fc3(code)))
            bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            opt.zero_grad()
            (bce + kl).backward()
            opt.step()

        flops = 2 * b * (d * h + 2 * h * z + z * h + h * d)
        yield "model_steps", c, flops, None, step


def pixelcnn_step_cases(dev):
    """model_steps/pixelcnn_mnist_step: masked conv A (1->64, 7x7) -> ReLU -> 5 x [masked conv B
    (64->64, 3x3) -> ReLU] -> 1x1 (64->64) -> ReLU -> 1x1 (64->1); BCE with logits (mean); Adam
    lr 1e-3, on a fixed random binary batch. The masks multiply the weights in every forward,
    PyTorch's usual masked convolution (as in conv_cases)."""
    F = torch.nn.functional
    for c in SHAPES["model_steps"]:
        if c["name"] != "pixelcnn_mnist_step":
            continue
        b, ch = c["batch"], 64
        first = torch.nn.Conv2d(1, ch, 7, padding=3).to(dev)
        blocks = [torch.nn.Conv2d(ch, ch, 3, padding=1).to(dev) for _ in range(5)]
        head1, head2 = torch.nn.Conv2d(ch, ch, 1).to(dev), torch.nn.Conv2d(ch, 1, 1).to(dev)
        mods = torch.nn.ModuleList([first, *blocks, head1, head2])
        opt = torch.optim.Adam(mods.parameters(), lr=1e-3)
        ma, mb = causal_mask(7, 7, "A", dev), causal_mask(3, 3, "B", dev)
        x = (torch.rand(b, 1, 28, 28, device=dev) > 0.5).float()

        def step(x=x, opt=opt, first=first, blocks=blocks, head1=head1, head2=head2, ma=ma, mb=mb):
            h = F.relu(F.conv2d(x, first.weight * ma, first.bias, padding=3))
            for l in blocks:
                h = F.relu(F.conv2d(h, l.weight * mb, l.bias, padding=1))
            logits = head2(F.relu(head1(h)))
            loss = F.binary_cross_entropy_with_logits(logits, x)
            opt.zero_grad()
            loss.backward()
            opt.step()

        flops = 2 * b * 28 * 28 * (ch * 49 + 5 * ch * ch * 9 + ch * ch + ch)
        yield "model_steps", c, flops, None, step


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out")
    p.add_argument("--filter")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--include-gpu-only", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        sync = torch.cuda.synchronize
        name = torch.cuda.get_device_name()
    else:
        sync = lambda: None  # noqa: E731
        name = platform.processor() or platform.machine()
        try:
            name = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
        except (OSError, StopIteration):
            pass
    out = open(args.out, "w") if args.out else None
    for gen in (matmul_cases, conv_cases, lstm_cases, overhead_cases, gan_step_cases, vae_step_cases, pixelcnn_step_cases):
        for group, c, flops, fwd, fwdbwd in gen(dev):
            key = f"{group}/{c['name']}"
            if args.filter and args.filter not in key:
                continue
            if c.get("gpu_only") and dev.type != "cuda" and not args.include_gpu_only:
                continue
            line = {
                "suite": f"pytorch-{torch.__version__}",
                "device": dev.type,
                "device_name": name,
                "threads": torch.get_num_threads(),
                "group": group,
                "name": c["name"],
                "fwd_ms": median_ms(fwd, 3, args.reps, sync) if fwd else None,
                "fwdbwd_ms": median_ms(fwdbwd, 3, args.reps, sync),
                "flops": flops,
            }
            text = json.dumps(line)
            print(text, file=out) if out else print(text)
            print(f"{key}: fwd {line['fwd_ms']} ms, fwd+bwd {line['fwdbwd_ms']:.4f} ms", flush=True, file=__import__("sys").stderr)


if __name__ == "__main__":
    main()
