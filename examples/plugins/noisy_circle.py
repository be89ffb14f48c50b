"""A dataset: points on the unit circle with Gaussian noise, a one-dimensional manifold in 2-D."""

import math

import torch

import pyrovae
from pyrovae.components.datasets import Source, Split


@pyrovae.register("dataset", "noisy_circle")
def noisy_circle(*, num_points=2000, noise=0.05, data_seed=0):
    """Points on the unit circle plus N(0, noise^2) noise in each coordinate (90/5/5 split)."""
    if num_points < 20 or noise <= 0:
        raise pyrovae.PyrovaeError("noisy_circle needs num_points >= 20 and a positive noise")

    def load(root, allow_download):
        gen = torch.Generator().manual_seed(data_seed)
        angle = 2 * math.pi * torch.rand(num_points, generator=gen)
        x = torch.stack([angle.cos(), angle.sin()], 1) + noise * torch.randn(num_points, 2, generator=gen)
        held_out = num_points // 20
        return [Split(x[2 * held_out:]), Split(x[:held_out]), Split(x[held_out:2 * held_out])]

    return Source(data_shape=(2,), num_classes=0, load=load)
