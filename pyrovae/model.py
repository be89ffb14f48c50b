"""The VAE as a Pyro model and guide (Kingma & Welling 2014, eq. 9-12).

    model:  z_i ~ p(z),            x_i ~ p(x | z_i) = likelihood(decoder(z_i))
    guide:  z_i ~ q(z | x_i) = N(mu(x_i), diag sigma(x_i)^2),  (mu, log sigma) = encoder(x_i)

for every data point i in a plate over the minibatch. With ``model.conditional`` the
one-hot label y_i enters encoder and decoder (a conditional VAE, p(x | y)).
"""

import math
from typing import Optional, Tuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from torch.nn import functional as F

from .components import LIKELIHOODS, NETWORKS, PRIORS
from .components.likelihoods import check_data_fits
from .errors import PyrovaeError


class VAE(nn.Module):
    """Encoder, decoder, prior and likelihood, with Pyro ``model`` and ``guide`` methods.

    The model registers the decoder and prior with Pyro (theta), the guide the encoder
    (phi), each time they run, so SVI optimizes exactly ``self.parameters()``.
    """

    def __init__(self, data_shape: Tuple[int, ...], latent_dim: int, encoder: nn.Module,
                 decoder: nn.Module, likelihood, likelihood_name: str,
                 prior_name: str = "standard_normal", prior_options: Optional[dict] = None,
                 num_classes: int = 0, encoder_name: str = "mlp", decoder_name: str = "mlp"):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.likelihood_name = likelihood_name
        self.prior_name = prior_name
        self.encoder_name, self.decoder_name = encoder_name, decoder_name  # registered names, for messages
        encode = None if num_classes else (lambda u: self.encode(u))
        self.prior = PRIORS.build(prior_name, {"latent_dim": latent_dim, "encode": encode, "data_shape": self.data_shape},
                                  options=prior_options, where="model.prior")

    @classmethod
    def from_config(cls, spec, data_shape: Optional[Tuple[int, ...]] = None,
                    num_classes: Optional[int] = None) -> "VAE":
        """Build the VAE an :class:`~pyrovae.spec.ExperimentSpec` describes. The data's
        shape and number of classes come from the dataset named in the spec unless given."""
        from .components.datasets import data_info

        if data_shape is None or num_classes is None:
            info_shape, info_classes = data_info(spec.data)
            data_shape = info_shape if data_shape is None else data_shape
            num_classes = info_classes if num_classes is None else num_classes
        m = spec.model
        cond_dim = 0
        if m.conditional:
            if not num_classes:
                raise PyrovaeError(f"model.conditional needs labels, and dataset "
                                   f"'{spec.data.name}' has none; set model.conditional=false")
            cond_dim = num_classes
        likelihood = LIKELIHOODS.build(m.likelihood.name, options=m.likelihood.options,
                                       where="model.likelihood")
        encoder = NETWORKS.build(m.encoder.name, {"in_shape": tuple(data_shape), "out_shape": (2, m.latent_dim),
                                                  "cond_dim": cond_dim},
                                 options=m.encoder.options, where="model.encoder")
        decoder = NETWORKS.build(m.decoder.name, {"in_shape": (m.latent_dim,), "out_shape": (likelihood.num_params,
                                                  *data_shape), "cond_dim": cond_dim},
                                 options=m.decoder.options, where="model.decoder")
        return cls(data_shape, m.latent_dim, encoder, decoder, likelihood, m.likelihood.name,
                   m.prior.name, m.prior.options, cond_dim, m.encoder.name, m.decoder.name)

    # ------------------------------------------------------------------ the networks

    def condition(self, y: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """One-hot encoding of integer labels ``y`` (``None`` for unconditional models)."""
        if not self.num_classes:
            return None
        if y is None:
            raise PyrovaeError("this is a conditional VAE: pass the labels y as well")
        return F.one_hot(y.long(), self.num_classes).to(self.decoder_dtype)

    @property
    def decoder_dtype(self) -> torch.dtype:
        return next(self.decoder.parameters()).dtype

    def encode(self, x: torch.Tensor, y: Optional[torch.Tensor] = None):
        """The guide's parameters: loc and scale of q(z|x), each ``(..., latent_dim)``."""
        loc, log_scale = self.encoder(x, self.condition(y)).unbind(-2)
        return loc, log_scale.exp()

    def decode(self, z: torch.Tensor, y: Optional[torch.Tensor] = None):
        """p(x|z) as a distribution whose event shape is the data's shape."""
        params = self.decoder(z, self.condition(y)).unbind(-len(self.data_shape) - 1)
        return self.likelihood.distribution(*params).to_event(len(self.data_shape))

    # ------------------------------------------------------------------ Pyro programs

    def model(self, x: torch.Tensor, y: Optional[torch.Tensor] = None, kl_weight: float = 1.0):
        """p(z) p(x|z) over a plate of data points; ``kl_weight`` < 1 anneals the KL term."""
        pyro.module("decoder", self.decoder)  # theta: the generative model's parameters
        pyro.module("prior", self.prior)
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=kl_weight):
                z = pyro.sample("z", self.prior())
            pyro.sample("x", self.decode(z, y), obs=x)

    def guide(self, x: torch.Tensor, y: Optional[torch.Tensor] = None, kl_weight: float = 1.0):
        """The amortized posterior q(z|x) = N(mu(x), diag sigma(x)^2)."""
        pyro.module("encoder", self.encoder)  # phi: the recognition model's parameters
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encode(x, y)
            with poutine.scale(scale=kl_weight):
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # ------------------------------------------------------------------ conveniences

    def check_data(self, x: torch.Tensor, what: str = "the data") -> None:
        """Refuse data of the wrong shape, with NaNs, or not fitting the likelihood."""
        if tuple(x.shape[1:]) != self.data_shape:
            raise PyrovaeError(f"{what} has shape {tuple(x.shape[1:])} per item but the model "
                               f"expects {self.data_shape}; check data.name and the model config")
        if not torch.isfinite(x).all():
            raise PyrovaeError(f"{what} contains NaN or infinite values; clean or re-download it")
        check_data_fits(self.likelihood_name, self.likelihood, x, what)

    def initialize_from_data(self, x: torch.Tensor) -> None:
        """Start the decoder at the data's mean: its output bias becomes the likelihood's
        raw location for the average training example (the IWAE paper's initialisation),
        which spares the first epochs the work of learning the background."""
        if not callable(getattr(self.decoder, "set_output_bias", None)):
            raise PyrovaeError(f"model.decoder: {NETWORKS.label(self.decoder_name)} has no set_output_bias(index, "
                               f"value), which model.data_init needs; add it (see the built-in mlp) or set "
                               f"model.data_init=false")
        self.decoder.set_output_bias(0, self.likelihood.raw_location(x.mean(0)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The likelihood's mean at the guide's mean: E[x | z = mu(x)]."""
        loc, _ = self.encode(x, y)
        return self.decode_mean(loc, y)

    @torch.no_grad()
    def sample(self, num_samples: int, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Means of p(x|z) for z drawn from the prior (the usual picture of 'samples')."""
        z = self.prior().sample((num_samples,))
        return self.decode_mean(z, y)

    def decode_mean(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The mean of p(x|z): what a decoded latent point looks like."""
        params = self.decoder(z, self.condition(y)).unbind(-len(self.data_shape) - 1)
        return self.likelihood.mean(*params)

    @property
    def num_pixels(self) -> int:
        return math.prod(self.data_shape)
