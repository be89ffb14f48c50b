"""Encoder and decoder networks.

Every network maps a tensor of shape ``(..., *in_shape)`` (plus an optional condition
vector of shape ``(..., cond_dim)``, e.g. a one-hot label) to ``(..., *out_shape)``.
Leading dimensions are arbitrary, so vectorized particles and importance samples pass
through unchanged. Factories take ``(in_shape, out_shape, cond_dim)`` as context and
their options as keywords.
"""

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import PyrovaeError, did_you_mean
from ..registry import Contract, Registry

NETWORKS = Registry("network", inputs=("in_shape", "out_shape", "cond_dim"), contract=Contract(
    "an nn.Module mapping (..., *in_shape) and a condition to (..., *out_shape)",
    lambda part: isinstance(part, nn.Module)))

ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name; an unknown name lists the choices."""
    if name not in ACTIVATIONS:
        raise PyrovaeError(f"unknown activation '{name}'{did_you_mean(name, ACTIVATIONS)}; "
                           f"choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _append_condition(h: torch.Tensor, cond: Optional[torch.Tensor]) -> torch.Tensor:
    """Concatenate ``cond`` (broadcast over h's leading dims) to the features ``h``."""
    if cond is None:
        return h
    return torch.cat([h, cond.expand(h.shape[:-1] + cond.shape[-1:])], dim=-1)


class GatedLinear(nn.Module):
    """A gated unit, act(W x + b) * sigmoid(V x + c) (Dauphin et al. 2017), as in the
    VampPrior paper's encoders and decoders."""

    def __init__(self, n_in: int, n_out: int, act: str):
        super().__init__()
        self.value = nn.Linear(n_in, n_out)
        self.gate = nn.Linear(n_in, n_out)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.value(x)) * torch.sigmoid(self.gate(x))


def _dense_stack(sizes: Sequence[int], act: str, gated: bool = False) -> nn.Sequential:
    """Layers between consecutive ``sizes``: linear then ``act``, or gated units."""
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [GatedLinear(n_in, n_out, act)] if gated else [nn.Linear(n_in, n_out), make_activation(act)]
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """Fully connected network: flatten, hidden layers (plain or gated), linear output."""

    def __init__(self, in_shape: Tuple[int, ...], out_shape: Tuple[int, ...], cond_dim: int,
                 hidden: Sequence[int], act: str, init_std: Optional[float], gated: bool = False):
        super().__init__()
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        n_in = math.prod(in_shape) + cond_dim
        self.body = _dense_stack([n_in, *hidden], act, gated)
        self.head = nn.Linear(hidden[-1] if hidden else n_in, math.prod(out_shape))
        if init_std is not None:
            for p in self.parameters():
                nn.init.normal_(p, 0.0, init_std)

    @torch.no_grad()
    def set_output_bias(self, index: int, value: torch.Tensor) -> None:
        """Set the bias of output slice ``index`` (along the first output dim) to ``value``."""
        self.head.bias.view(self.out_shape)[index] = value

    def forward(self, x: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        lead = x.shape[: x.dim() - len(self.in_shape)]
        h = _append_condition(x.reshape(*lead, -1), cond)
        return self.head(self.body(h)).reshape(*lead, *self.out_shape)


@NETWORKS.register("mlp")
def mlp(in_shape, out_shape, cond_dim=0, *, hidden=(500,), activation="tanh", gated=False, init_std=None):
    """Fully connected; the paper's one-hidden-layer tanh MLP by default (any hidden sizes,
    optionally gated units)."""
    hidden = [hidden] if isinstance(hidden, int) else list(hidden)
    make_activation(activation)  # validate the name early
    return MLP(in_shape, out_shape, cond_dim, hidden, activation, init_std, gated)


def _conv_sizes(size: int, layers: int) -> list:
    """Spatial sizes after each stride-2 convolution (kernel 4, padding 1)."""
    sizes = [size]
    for _ in range(layers):
        sizes.append((sizes[-1] - 2) // 2 + 1)
    return sizes


class ConvEncoder(nn.Module):
    """Stride-2 convolutions, then dense layers to the output vector."""

    def __init__(self, image_shape, out_shape, cond_dim, channels, hidden, act):
        super().__init__()
        c, h, w = image_shape
        self.image_shape, self.out_shape = tuple(image_shape), tuple(out_shape)
        convs = []
        for c_in, c_out in zip([c, *channels[:-1]], channels):
            convs += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), make_activation(act)]
        self.convs = nn.Sequential(*convs)
        n_feat = channels[-1] * _conv_sizes(h, len(channels))[-1] * _conv_sizes(w, len(channels))[-1]
        self.dense = _dense_stack([n_feat + cond_dim, *hidden], act)
        self.head = nn.Linear(hidden[-1] if hidden else n_feat + cond_dim, math.prod(out_shape))

    def forward(self, x, cond=None):
        lead = x.shape[:-3]
        h = self.convs(x.reshape(-1, *self.image_shape)).flatten(1).reshape(*lead, -1)
        return self.head(self.dense(_append_condition(h, cond))).reshape(*lead, *self.out_shape)


class ConvDecoder(nn.Module):
    """Dense layers to a small feature map, then stride-2 transposed convolutions that
    land exactly on the image size; outputs ``(..., P, C, H, W)``."""

    def __init__(self, in_dim, out_shape, cond_dim, channels, hidden, act):
        super().__init__()
        p, c, h, w = out_shape
        self.out_shape = tuple(out_shape)
        hs, ws = _conv_sizes(h, len(channels)), _conv_sizes(w, len(channels))
        self.start = (channels[-1], hs[-1], ws[-1])
        self.dense = _dense_stack([in_dim + cond_dim, *hidden, math.prod(self.start)], act)
        deconvs = []
        widths = [*reversed(channels), p * c]
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            j = len(channels) - i  # going from size index j to j-1
            pad = (hs[j - 1] - 2 * hs[j], ws[j - 1] - 2 * ws[j])
            deconvs.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, output_padding=pad))
            if i < len(channels) - 1:
                deconvs.append(make_activation(act))
        self.deconvs = nn.Sequential(*deconvs)

    @torch.no_grad()
    def set_output_bias(self, index: int, value: torch.Tensor) -> None:
        """Set output slice ``index``'s per-channel bias to ``value`` averaged over pixels."""
        p, c = self.out_shape[:2]
        self.deconvs[-1].bias.view(p, c)[index] = value.mean(dim=(-2, -1))

    def forward(self, z, cond=None):
        lead = z.shape[:-1]
        h = self.dense(_append_condition(z, cond)).reshape(-1, *self.start)
        return self.deconvs(h).reshape(*lead, *self.out_shape)


@NETWORKS.register("conv")
def conv(in_shape, out_shape, cond_dim=0, *, channels=(32, 64), hidden=(256,), activation="relu"):
    """Small convolutional encoder/decoder for image data (stride-2 convolutions)."""
    channels, hidden = list(channels), list(hidden)
    make_activation(activation)  # validate the name early
    if not channels:
        raise PyrovaeError("conv network needs at least one entry in 'channels'")
    if len(in_shape) == 3:
        return ConvEncoder(in_shape, out_shape, cond_dim, channels, hidden, activation)
    if len(out_shape) == 4:
        return ConvDecoder(in_shape[0], out_shape, cond_dim, channels, hidden, activation)
    raise PyrovaeError("the conv network needs image data shaped (channels, height, width); "
                       "for other data use model.encoder.name=mlp and model.decoder.name=mlp")
