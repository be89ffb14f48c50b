"""The VAE as a Pyro model and guide (Kingma & Welling 2014, eq. 9-12).

    model:  z_i ~ p(z),            x_i ~ p(x | z_i) = likelihood(decoder(z_i))
    guide:  z_i ~ q(z | x_i) = guide family(encoder(x_i)),  by default N(mu(x_i), diag sigma(x_i)^2)

for every data point i in a plate over the minibatch. With ``model.conditional`` the
one-hot label y_i enters encoder and decoder (a conditional VAE, p(x | y)).

What the encoder computes is read through the guide family (``model.guide``,
:mod:`pyrovae.components.guides`):

- :meth:`VAE.posterior` is q(z|x) as a distribution, for every guide: what sampling and
  log q(z|x) use;
- :meth:`VAE.latent_code` is one latent point per data point standing for q(z|x) (its
  mean for Gaussian guides): what plots, reconstructions and chain starts use;
- :meth:`VAE.encode` is the (loc, scale) of a diagonal Gaussian guide, for the methods that
  need exactly that (the VampPrior, closed forms); other guides refuse it in one line.
"""

import math
from typing import Optional, Tuple

import pyro
import torch
from pyro import poutine
from torch import nn
from torch.nn import functional as F

from .components import GUIDES, LIKELIHOODS, NETWORKS, PRIORS
from .components.guides import DiagonalNormal, check_support, support_name
from .components.likelihoods import check_data_fits
from .errors import PyrovaeError


class VAE(nn.Module):
    """Encoder, decoder, prior, likelihood and guide family, with Pyro ``model`` and ``guide`` methods.

    The model registers the decoder and prior with Pyro (theta), the guide the encoder and
    the guide family (phi), each time they run, so SVI optimizes exactly ``self.parameters()``.
    ``guide_family`` defaults to the diagonal Gaussian (``diagonal_normal``).
    """

    def __init__(self, data_shape: Tuple[int, ...], latent_dim: int, encoder: nn.Module,
                 decoder: nn.Module, likelihood, likelihood_name: str,
                 prior_name: str = "standard_normal", prior_options: Optional[dict] = None,
                 num_classes: int = 0, encoder_name: str = "mlp", decoder_name: str = "mlp",
                 guide_family: Optional[nn.Module] = None, guide_name: str = "diagonal_normal"):
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
        self.guide_family = DiagonalNormal(latent_dim) if guide_family is None else guide_family
        self.guide_name = guide_name
        encode = None if num_classes else (lambda u: self.encode(u))
        self.prior = PRIORS.build(prior_name, {"latent_dim": latent_dim, "encode": encode, "data_shape": self.data_shape},
                                  options=prior_options, where="model.prior")
        if not PRIORS.get(prior_name).from_plugin:  # a plugin's prior is checked with its contract (first batch)
            with torch.no_grad():
                self.check_supports(self.prior())

    def check_supports(self, prior) -> None:
        """Refuse a prior p(z) and guide family on different latent spaces, in one line."""
        check_support(prior.support, self.guide_family, f"model.prior: {PRIORS.label(self.prior_name)}",
                      f"model.guide: {GUIDES.label(self.guide_name)}")

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
        guide = GUIDES.build(m.guide.name, {"latent_dim": m.latent_dim}, options=m.guide.options, where="model.guide")
        encoder = NETWORKS.build(m.encoder.name, {"in_shape": tuple(data_shape),
                                                  "out_shape": tuple(guide.encoder_out_shape), "cond_dim": cond_dim},
                                 options=m.encoder.options, where="model.encoder")
        decoder = NETWORKS.build(m.decoder.name, {"in_shape": (m.latent_dim,), "out_shape": (likelihood.num_params,
                                                  *data_shape), "cond_dim": cond_dim},
                                 options=m.decoder.options, where="model.decoder")
        return cls(data_shape, m.latent_dim, encoder, decoder, likelihood, m.likelihood.name,
                   m.prior.name, m.prior.options, cond_dim, m.encoder.name, m.decoder.name, guide, m.guide.name)

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

    def encoding(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The encoder's output, ``(..., *guide_family.encoder_out_shape)``."""
        return self.encoder(x, self.condition(y))

    def posterior(self, x: torch.Tensor, y: Optional[torch.Tensor] = None):
        """q(z|x) of every row of ``x``: a distribution with batch shape ``x.shape[:-len(data_shape)]``
        and event shape ``(latent_dim,)``, whatever the guide family."""
        return self.guide_family(self.encoding(x, y), self.log_joint_of(x, y))

    def latent_code(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One latent point per row of ``x`` standing for q(z|x) (the guide family's ``code``:
        the mean for Gaussian guides), ``(..., latent_dim)``: for plots and reconstructions."""
        return self.guide_family.code(self.encoding(x, y), self.log_joint_of(x, y))

    @property
    def discrete_latents(self) -> bool:
        """Whether z is discrete (binary or categorical codes): no density in z to move along."""
        return bool(self.guide_family.support.is_discrete)

    def require_continuous_latents(self, method: str, instead: str) -> None:
        """Refuse, in one line, a ``method`` that moves or integrates z continuously (HMC, NUTS,
        quadrature, a Gaussian fit) on a model with discrete latents, naming what to use ``instead``."""
        if self.discrete_latents:
            raise PyrovaeError(f"{method} needs continuous latents, and this model's are discrete "
                               f"({support_name(self.guide_family.support)}, model.guide: {self.guide_name}); "
                               f"use {instead}")

    def encode(self, x: torch.Tensor, y: Optional[torch.Tensor] = None):
        """loc and scale of a diagonal Gaussian q(z|x), each ``(..., latent_dim)``; refused for
        any other guide (use :meth:`posterior` or :meth:`latent_code`)."""
        if self.guide_family.gaussian_kind != "diagonal":
            raise PyrovaeError(f"this needs the (loc, scale) of a diagonal Gaussian guide, and guide "
                               f"'{self.guide_name}' is not one; set model.guide.name=diagonal_normal")
        q = self.posterior(x, y)
        return q.mean, q.stddev

    def log_joint_of(self, x: torch.Tensor, y: Optional[torch.Tensor] = None):
        """The function z -> log p(x, z) per row of ``x`` (z ``(..., points, latent_dim)``,
        result ``(..., points)``), which a semi-amortized guide family ascends. Data made in
        ``torch.inference_mode`` are copied at the call, so the function can be differentiated
        outside that mode (as the family does to refine q during an evaluation)."""

        def log_joint(z):
            xx, yy = (t.clone() if t is not None and t.is_inference() else t for t in (x, y))
            return self.prior().log_prob(z) + self.decode(z, yy).log_prob(xx)

        return log_joint

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
        """The amortized posterior q(z|x) of the guide family (by default N(mu(x), diag sigma(x)^2))."""
        pyro.module("encoder", self.encoder)  # phi: the recognition model's parameters
        pyro.module("guide", self.guide_family)  # and the family's own (none for the diagonal Gaussian)
        with pyro.plate("data", x.shape[0]):
            q = self.posterior(x, y)
            with poutine.scale(scale=kl_weight):
                pyro.sample("z", q)

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
        """The likelihood's mean at the guide's latent code: E[x | z = mu(x)] for Gaussian guides."""
        return self.decode_mean(self.latent_code(x, y), y)

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
