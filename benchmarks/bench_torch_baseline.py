"""The same DCGAN / WGAN-GP training steps in PyTorch eager, as a speed baseline (not a test).

Mirrors paddle_gan_kit's nets (models/dcgan.py: widths base*2^i capped at 512, BatchNorm in the
DCGAN discriminator, per-sample layer norm in the critic) and steps (trainer.py; with
``--augment``, DiffAugment before every D call as Zhao et al.'s PyTorch code writes it), so that
``bench_train.py`` and this script print comparable JSON lines in one session (training, sampling,
and a 4-key x 8-frame slerp walk generated and encoded as a GIF with the same Pillow calls):

    pip install torch==2.13.0        # not a dependency of the project
    python benchmarks/bench_torch_baseline.py --model dcgan --size 64 --batch-size 64
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time

import numpy as np
import torch
from PIL import Image
from torch import nn


def widths(k, base, cap=512):
    return [min(base * 2**i, cap) for i in range(k)]


def split(size):
    s0, k = size, 0
    while s0 % 2 == 0 and s0 > 7:
        s0, k = s0 // 2, k + 1
    return s0, k


class LayerNorm2d(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, c, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=(1, 2, 3), keepdim=True)
        return centred * torch.rsqrt(var + 1e-5) * self.weight + self.bias


def upsample_conv(a, b, upsample, bias):
    """Double the side: DCGAN's 4x4 stride-2 transposed conv, or nearest upsampling + a 3x3 conv."""
    if upsample == "transposed":
        return [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=bias)]
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, 1, 1, bias=bias)]


def generator(size, z_dim=100, base=64, channels=3, upsample="transposed"):
    s0, k = split(size)
    w = widths(k, base)[::-1]
    layers = [nn.ConvTranspose2d(z_dim, w[0], s0, 1, 0, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(True)]
    for a, b in zip(w[:-1], w[1:]):
        layers += [*upsample_conv(a, b, upsample, False), nn.BatchNorm2d(b), nn.ReLU(True)]
    layers += [*upsample_conv(w[-1], channels, upsample, True), nn.Tanh()]
    return nn.Sequential(*layers)


def discriminator(size, base=64, norm="batch", channels=3):
    s0, k = split(size)
    w = widths(k, base)
    layers = [nn.Conv2d(channels, w[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
    for a, b in zip(w[:-1], w[1:]):
        layer_norm = {"batch": nn.BatchNorm2d, "layer": LayerNorm2d, "none": lambda c: nn.Identity()}[norm]
        layers += [nn.Conv2d(a, b, 4, 2, 1, bias=norm == "none"), layer_norm(b), nn.LeakyReLU(0.2, True)]
    layers += [nn.Conv2d(w[-1], 1, s0, 1, 0), nn.Flatten(0)]
    return nn.Sequential(*layers)


def color(x):
    """DiffAugment's colour transform as Zhao et al.'s PyTorch code writes it: brightness,
    saturation (colour images) and contrast, one random factor per image."""
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1) + 0.5) + mean


def translation(x, ratio=0.125):
    """DiffAugment's translation as their PyTorch code writes it: zero-pad by one, then gather
    every pixel from its shifted, clamped position."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n, 1, 1))
    tx = torch.randint(-sw, sw + 1, (n, 1, 1))
    gb, gy, gx = torch.meshgrid(torch.arange(n), torch.arange(h), torch.arange(w), indexing="ij")
    gy = torch.clamp(gy + ty + 1, 0, h + 1)
    gx = torch.clamp(gx + tx + 1, 0, w + 1)
    padded = nn.functional.pad(x, [1, 1, 1, 1])
    return padded.permute(0, 2, 3, 1).contiguous()[gb, gy, gx].permute(0, 3, 1, 2)


AUGMENTS = {"color": color, "translation": translation}


def augmenter(names):
    """The transforms in ``names`` ("translation,color"), applied in paddle_gan_kit's order."""
    chosen = [AUGMENTS[name] for name in AUGMENTS if name in (names or "").split(",")]

    def augment(x):
        for transform in chosen:
            x = transform(x)
        return x
    return augment


def slerp_walk(z_dim=100, keys=4, frames=8):
    """The closed slerp walk bench_train.py times (interpolate.walk_latents): (keys*frames, z_dim)."""
    key_z = np.stack([np.random.default_rng(s).standard_normal((1, z_dim)).astype(np.float32)[0] for s in range(keys)])
    t = (np.arange(frames) / frames)[:, None]
    path = []
    for k in range(keys):
        a, b = key_z[k].astype(np.float64), key_z[(k + 1) % keys].astype(np.float64)
        omega = np.arccos(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1.0, 1.0))
        path.append((np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega))
    return np.concatenate(path).astype(np.float32)


def walk_frames(G, walk, batch):
    """G(walk) in batches as uint8 (T, H, W, C), as latent.generate_images makes them."""
    frames = []
    with torch.no_grad():
        for start in range(0, len(walk), batch):
            x = G(torch.from_numpy(walk[start:start + batch]).view(-1, walk.shape[1], 1, 1)).numpy()
            frames.append(np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1))
    return np.concatenate(frames)


def encode_gif(frames):
    """A GIF with a per-frame median-cut palette, no dithering (interpolate.encode_gif's Pillow calls)."""
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    pictures = [Image.fromarray(f).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
                for f in frames]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=50, loop=0)
    return buffer.getvalue()


def bench(model, size, batch, steps, critic_norm, base=64, channels=3, upsample="transposed", ema=False,
          augment_names=""):
    torch.manual_seed(0)
    aug = augmenter(augment_names)
    G = generator(size, base=base, channels=channels, upsample=upsample)
    G_ema = [p.detach().clone() for p in G.parameters()] if ema else []
    D = discriminator(size, base=base, norm="batch" if model == "dcgan" else critic_norm, channels=channels)
    betas = (0.5, 0.999) if model == "dcgan" else (0.0, 0.9)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=betas)
    n_critic = 1 if model == "dcgan" else 5
    bce = nn.BCEWithLogitsLoss()

    def step():
        for _ in range(n_critic):
            real = torch.rand(batch, channels, size, size) * 2 - 1
            z = torch.randn(batch, 100, 1, 1)
            if model == "dcgan":
                fake = G(z)
                loss_d = bce(D(aug(real)), torch.ones(batch)) + bce(D(aug(fake.detach())), torch.zeros(batch))
            else:
                with torch.no_grad():
                    fake = G(z)
                eps = torch.rand(batch, 1, 1, 1)
                x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
                (grad,) = torch.autograd.grad(D(aug(x_hat)).sum(), x_hat, create_graph=True)
                gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
                loss_d = D(aug(fake)).mean() - D(aug(real)).mean() + 10 * gp
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        for p in D.parameters():
            p.requires_grad_(False)
        fake = G(torch.randn(batch, 100, 1, 1)) if model != "dcgan" else fake
        loss_g = bce(D(aug(fake)), torch.ones(batch)) if model == "dcgan" else -D(aug(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        with torch.no_grad():  # the EMA generator's weights, as paddle_gan_kit keeps them
            for average, p in zip(G_ema, G.parameters()):
                average.lerp_(p, 0.001)
        for p in D.parameters():
            p.requires_grad_(True)
        return float(loss_g)

    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    s = statistics.median(times)
    G.eval()  # sampling: eval mode, no gradients, one batch, as bench_train.py times it
    z = torch.randn(batch, 100, 1, 1)
    with torch.no_grad():
        G(z)
        sample_times = []
        for _ in range(21):  # bench_train.py's SAMPLE_BATCHES
            start = time.perf_counter()
            G(z)
            sample_times.append(time.perf_counter() - start)
    walk = slerp_walk()
    walk_frames(G, walk[:4], batch)  # warm-up without gradients, as bench_train.py
    generate_s, encode_s = [], []
    for _ in range(3):
        start = time.perf_counter()
        frames = walk_frames(G, walk, batch)
        middle = time.perf_counter()
        encode_gif(frames)
        generate_s.append(middle - start)
        encode_s.append(time.perf_counter() - middle)
    return {"framework": f"torch {torch.__version__}", "model": model, "size": size, "batch_size": batch,
            "widths": base, "channels": channels, "g_upsample": upsample, "ema": ema, "augment": augment_names,
            "n_critic": n_critic, "d_norm": "batch" if model == "dcgan" else critic_norm,
            "threads": torch.get_num_threads(), "step_s_median": round(s, 4),
            "train_images_per_s": round(batch * n_critic / s, 2),
            "sample_images_per_s": round(batch / statistics.median(sample_times), 1),
            "walk_frames_per_s": round(len(walk) / statistics.median(map(sum, zip(generate_s, encode_s))), 1),
            "walk_generate_frames_per_s": round(len(walk) / statistics.median(generate_s), 1),
            "walk_encode_frames_per_s": round(len(walk) / statistics.median(encode_s), 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dcgan", choices=["dcgan", "wgan_gp"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--d-norm", default="layer", choices=["layer", "none"], help="the critic's norm (WGAN-GP)")
    parser.add_argument("--widths", type=int, default=64, help="g_channels = d_channels of the recipe")
    parser.add_argument("--channels", type=int, default=3, choices=[1, 3])
    parser.add_argument("--g-upsample", default="transposed", choices=["transposed", "nearest"])
    parser.add_argument("--ema", action="store_true", help="keep an EMA of G's weights (ema_decay)")
    parser.add_argument("--augment", default="", help="DiffAugment before D: any of translation,color")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    print(json.dumps(bench(args.model, args.size, args.batch_size, args.steps, args.d_norm, args.widths,
                           args.channels, args.g_upsample, args.ema, args.augment)), flush=True)


if __name__ == "__main__":
    main()
