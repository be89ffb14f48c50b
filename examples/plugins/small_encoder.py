"""An encoder with two ELU hidden layers."""

import math

from torch import nn

import pyrovae


class TwoLayerEncoder(nn.Module):
    def __init__(self, in_shape, out_shape, width):
        super().__init__()
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.net = nn.Sequential(nn.Linear(math.prod(in_shape), width), nn.ELU(),
                                 nn.Linear(width, width), nn.ELU(), nn.Linear(width, math.prod(out_shape)))

    def forward(self, x, cond=None):
        lead = x.shape[:x.dim() - len(self.in_shape)]
        return self.net(x.reshape(*lead, -1)).reshape(*lead, *self.out_shape)


@pyrovae.register("network", "two_layer_encoder")
def two_layer_encoder(in_shape, out_shape, *, width=256):
    """Two ELU hidden layers of the same width (an encoder: it takes no condition)."""
    return TwoLayerEncoder(in_shape, out_shape, width)
