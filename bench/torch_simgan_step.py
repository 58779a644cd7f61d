#!/usr/bin/env python3
"""SimGAN's Algorithm 1 in PyTorch eager: the reference `bench.train_speed` compares with.

What `bench.tf_simgan_step` times through simgan-tf, written the way a PyTorch user
would write it: the same networks (from `--spec`, which `bench.train_speed` builds from
the simgan-tf preset, so both frameworks train the same layer stacks), the per-patch
cross-entropy summed over patches and averaged over the batch, lambda times the L1
self-regularization, a history buffer of earlier refined images from which half of each
discriminator batch is drawn and half a batch replaced at random, K_g refiner updates then
K_d discriminator updates per iteration, plain SGD at 1e-3, and one fixed random batch
of synthetic and real images (compute, not data loading). After every update the loss
is read back to the host (`.item()`), as simgan-tf's loop does to check it is finite.

Needs only torch and NumPy (`bench/requirements-torch.txt`), not simgan-tf:

    python3.11 -m venv /tmp/torch-venv
    /tmp/torch-venv/bin/pip install -r bench/requirements-torch.txt
    /tmp/torch-venv/bin/python bench/torch_simgan_step.py --batch 64 --rounds 10

Prints one line (`bench.common.field` reads it):
    torch_eager batch=B k_g=.. k_d=.. rounds=R seconds=S img_per_s=X best_img_per_s=Y
Throughput is synthetic images per second through refiner updates,
K_g * batch * rounds / seconds; `best_img_per_s` is the fastest single iteration.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn
from torch.nn import functional as F

# The paper's gaze networks (simgan-tf's `gaze` preset), used when no --spec is given:
# refiner conv3x3 64, 4 ResNet blocks, conv1x1, tanh; discriminator layers as
# (kind, filters, kernel, stride).
GAZE_SPEC = {
    "image_shape": [35, 55, 1],
    "refiner": {"filters": 64, "kernel_size": 3, "num_blocks": 4},
    "discriminator": [["conv", 96, 3, 2], ["conv", 64, 3, 2], ["maxpool", 0, 3, 1],
                      ["conv", 32, 3, 1], ["conv", 32, 1, 1], ["conv", 2, 1, 1]],
}


class Residual(nn.Module):
    """conv, ReLU, conv, plus the input, ReLU (the paper's ResNet block)."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.first = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.second = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)

    def forward(self, x):
        return torch.relu(x + self.second(torch.relu(self.first(x))))


def make_refiner(channels: int, filters: int, kernel_size: int, num_blocks: int) -> nn.Module:
    layers = [nn.Conv2d(channels, filters, kernel_size, padding=kernel_size // 2), nn.ReLU()]
    layers += [Residual(filters, kernel_size) for _ in range(num_blocks)]
    layers += [nn.Conv2d(filters, channels, 1), nn.Tanh()]
    return nn.Sequential(*layers)


def make_discriminator(channels: int, stack: list) -> nn.Module:
    """The layer stack; `same` padding of odd kernels is `kernel // 2` on both sides
    (the output sizes equal TensorFlow's `ceil(n / stride)`); the last conv is linear."""
    layers, width = [], channels
    for i, (kind, filters, kernel, stride) in enumerate(stack):
        if kind == "maxpool":
            layers.append(nn.MaxPool2d(kernel, stride, padding=kernel // 2))
            continue
        layers.append(nn.Conv2d(width, filters, kernel, stride, padding=kernel // 2))
        width = filters
        if i < len(stack) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def patch_loss(logits: torch.Tensor, target: int) -> torch.Tensor:
    """Cross-entropy of each patch of `[b, 2, h, w]` logits against `target` (0 refined,
    1 real), summed over the patches of an image and averaged over the batch."""
    labels = torch.full((logits.shape[0], *logits.shape[2:]), target, dtype=torch.long)
    return F.cross_entropy(logits, labels, reduction="sum") / logits.shape[0]


class HistoryBuffer:
    """Refined images of earlier refiners: filled in order, then half a batch replaced
    at random positions per discriminator update."""

    def __init__(self, size: int, shape: tuple, generator: torch.Generator):
        self.images = torch.zeros(size, *shape)
        self.filled = 0
        self.generator = generator

    def sample(self, count: int, fresh: torch.Tensor) -> torch.Tensor:
        if self.filled < count:  # not enough history yet: fresh images stand in
            return fresh[:count]
        index = torch.randint(0, self.filled, (count,), generator=self.generator)
        return self.images[index]

    def add(self, images: torch.Tensor) -> None:
        size = len(self.images)
        free = min(len(images), size - self.filled)
        self.images[self.filled:self.filled + free] = images[:free]
        self.filled += free
        if free < len(images):
            index = torch.randint(0, size, (len(images) - free,), generator=self.generator)
            self.images[index] = images[free:]


def build(spec: dict, batch: int, buffer: int, learning_rate: float):
    height, width, channels = spec["image_shape"]
    refiner = make_refiner(channels, **spec["refiner"])
    discriminator = make_discriminator(channels, spec["discriminator"])
    generator = torch.Generator().manual_seed(0)
    images = {name: torch.rand(batch, channels, height, width, generator=generator) * 2 - 1
              for name in ("synthetic", "real")}
    optimizers = (torch.optim.SGD(refiner.parameters(), lr=learning_rate),
                  torch.optim.SGD(discriminator.parameters(), lr=learning_rate))
    history = HistoryBuffer(buffer, (channels, height, width), generator)
    return refiner, discriminator, optimizers, images, history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=10, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--k_g", type=int, default=2)
    parser.add_argument("--k_d", type=int, default=1)
    parser.add_argument("--buffer", type=int, default=2560, help="history buffer, images")
    parser.add_argument("--lam", type=float, default=1e-4, help="lambda")
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--spec", default=None, help="networks as JSON (see GAZE_SPEC)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = json.loads(args.spec) if args.spec else GAZE_SPEC
    refiner, discriminator, (r_opt, d_opt), images, history = build(
        spec, args.batch, args.buffer, 1e-3)
    synthetic, real, half = images["synthetic"], images["real"], args.batch // 2

    def refiner_update():
        refined = refiner(synthetic)
        loss = (patch_loss(discriminator(refined), 1)
                + args.lam * (refined - synthetic).abs().sum() / args.batch)
        r_opt.zero_grad(set_to_none=True)
        loss.backward()
        r_opt.step()
        return loss.item()

    def discriminator_update():
        with torch.no_grad():
            refined = refiner(synthetic)
        mixed = torch.cat([refined[:half], history.sample(args.batch - half, refined[half:])])
        loss = patch_loss(discriminator(mixed), 0) + patch_loss(discriminator(real), 1)
        d_opt.zero_grad(set_to_none=True)
        loss.backward()
        d_opt.step()
        history.add(refined[:half])
        return loss.item()

    def iteration() -> float:
        start = time.perf_counter()
        for _ in range(args.k_g):
            refiner_update()
        for _ in range(args.k_d):
            discriminator_update()
        return time.perf_counter() - start

    for _ in range(args.warmup):
        iteration()
    durations = [iteration() for _ in range(args.rounds)]
    per_round = args.k_g * args.batch
    seconds = sum(durations)
    print(f"torch_eager batch={args.batch} k_g={args.k_g} k_d={args.k_d} "
          f"rounds={args.rounds} seconds={seconds:.3f} "
          f"img_per_s={per_round * args.rounds / seconds:.1f} "
          f"best_img_per_s={per_round / min(durations):.1f}", flush=True)


if __name__ == "__main__":
    main()
