"""Likelihoods p(x|z) given the decoder's output.

A likelihood says how many numbers per data element the decoder must produce
(``num_params``), turns those ``num_params`` tensors of shape ``(..., *data_shape)`` into a
distribution with that batch shape, and states which data it fits, so that ill-fitting
data (grey pixels under a Bernoulli) is refused up front.
"""

import math
from typing import Callable, List

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions import constraints
from torch.nn import functional as F

from ..errors import PyrovaeError, did_you_mean, warn
from ..registry import Contract, Registry

MEAN_ACTIVATIONS = {"sigmoid": torch.sigmoid, "identity": lambda t: t}

# What each kind of data is, as a predicate and a phrase for error messages.
DATA_KINDS = {
    "binary": (lambda x: bool(((x == 0) | (x == 1)).all()), "binary data (every value 0 or 1)"),
    "unit_interval": (lambda x: bool(((x >= 0) & (x <= 1)).all()), "data in [0, 1]"),
    "open_unit_interval": (lambda x: bool(((x > 0) & (x < 1)).all()), "data inside (0, 1), no exact 0 or 1"),
    "8bit": (lambda x: bool(((x >= 0) & (x <= 1)).all()) and bool(torch.allclose(x * 255, (x * 255).round(), atol=1e-3)),
             "8-bit data (multiples of 1/255 in [0, 1])"),
    "real": (lambda x: bool(torch.isfinite(x).all()), "finite real data"),
    "count": (lambda x: bool(((x >= 0) & (x == x.round())).all()), "count data (non-negative integers)"),
}


class Likelihood:
    """Base class of every likelihood p(x|z), and the contract a plugin's likelihood keeps.

    - ``num_params``: how many numbers per data element the decoder outputs (a Bernoulli 1,
      a Gaussian with learned variance 2); the decoder's output shape is
      ``(num_params, *data_shape)``.
    - ``data_kind``: the data it fits, one of ``binary``, ``unit_interval``,
      ``open_unit_interval``, ``8bit``, ``real``, ``count`` (see ``DATA_KINDS``); data that do
      not fit are refused before training with the list of likelihoods that fit them. Override
      :meth:`fits` (and :meth:`requirement`, its phrase in messages) for another rule.
    - :meth:`distribution`: the ``num_params`` decoder outputs, each ``(..., *data_shape)``,
      to a Pyro/torch distribution with that batch shape (the model adds ``to_event``).
    - :meth:`mean`: the expected data element, drawn as reconstructions and samples
      (default: the distribution's ``.mean``).
    - :meth:`raw_location`: the first decoder output whose mean is a given image, used by
      ``model.data_init`` (default: the logit, right for a first output that is a logit or
      goes through a sigmoid, close enough for a softplus).
    """

    num_params = 1
    data_kind = "real"

    def distribution(self, *params: torch.Tensor) -> TorchDistribution:
        """The distribution of the data given the decoder's ``num_params`` outputs."""
        raise NotImplementedError

    def mean(self, *params: torch.Tensor) -> torch.Tensor:
        """The expected data element, shown as a reconstruction or a sample's image."""
        return self.distribution(*params).mean

    def fits(self, x: torch.Tensor) -> bool:
        """Whether this likelihood can score the data ``x``."""
        if self.data_kind not in DATA_KINDS:
            raise PyrovaeError(f"likelihood {type(self).__name__} has data_kind '{self.data_kind}'; "
                               f"it must be one of: {', '.join(DATA_KINDS)} (or override fits)")
        return DATA_KINDS[self.data_kind][0](x)

    def requirement(self) -> str:
        """What :meth:`fits` asks of the data, in words for error messages."""
        return DATA_KINDS[self.data_kind][1]

    def raw_location(self, mean: torch.Tensor) -> torch.Tensor:
        """The first decoder output that puts this likelihood's mean near ``mean``: used to
        start the decoder at the data's average image instead of at 0.5 everywhere."""
        return torch.logit(mean.clamp(1e-3, 1 - 1e-3))


def _keeps_likelihood_contract(part) -> bool:
    num_params = getattr(part, "num_params", None)
    return (isinstance(part, Likelihood) and isinstance(num_params, int) and not isinstance(num_params, bool)
            and num_params >= 1)


LIKELIHOODS = Registry("likelihood", contract=Contract(
    "a pyrovae.Likelihood with num_params a positive integer (the decoder outputs per data element)",
    _keeps_likelihood_contract))


def check_data_fits(name: str, likelihood: Likelihood, x: torch.Tensor, what: str = "the data") -> None:
    """Refuse data the likelihood does not fit, naming the likelihoods that fit it."""
    if likelihood.fits(x):
        return
    fitting = _likelihoods_where(lambda candidate: candidate.fits(x))
    in_unit_interval = bool(((x >= 0) & (x <= 1)).all())
    hint = ""
    if likelihood.data_kind == "binary" and in_unit_interval:
        hint = " or set data.binarize=static or dynamic"
    elif likelihood.data_kind == "count" and in_unit_interval:
        hint = " or keep integer counts with data.scale=none (uint8 arrays are divided by 255 unless it is set)"
    raise PyrovaeError(
        f"{what} does not fit likelihood '{name}', which needs {likelihood.requirement()} "
        f"(values range over [{float(x.min()):.3g}, {float(x.max()):.3g}]); "
        f"choose model.likelihood.name from: {', '.join(fitting) or 'none'}{hint}")


def _likelihoods_where(keep: Callable[[Likelihood], bool]) -> List[str]:
    """The names of the likelihoods that ``keep`` accepts, each built with its default options;
    one that cannot be built so (a required option, a broken plugin) is not suggested."""
    names = []
    for entry in LIKELIHOODS:
        try:
            if keep(LIKELIHOODS.build(entry.name)):
                names.append(entry.name)
        except PyrovaeError:
            continue
    return names


def warn_if_binary_data_fits_better(name: str, likelihood: Likelihood, x: torch.Tensor) -> None:
    """Warn when binary data meet a likelihood made for other data: a density such as a
    Gaussian can put unbounded mass on two values, so it trains, but its numbers mean
    little and are not comparable with a Bernoulli's."""
    if likelihood.data_kind == "binary" or not DATA_KINDS["binary"][0](x):
        return
    fitting = _likelihoods_where(lambda candidate: candidate.data_kind == "binary")
    warn(f"the training data are binary (every value 0 or 1) but likelihood '{name}' is made for "
         f"{DATA_KINDS[likelihood.data_kind][1]}; binary data fit model.likelihood.name={' or '.join(fitting)}")


def _mean_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in MEAN_ACTIVATIONS:
        raise PyrovaeError(f"unknown mean_activation '{name}'{did_you_mean(name, MEAN_ACTIVATIONS)}; "
                           f"choose one of: {', '.join(MEAN_ACTIVATIONS)}")
    return MEAN_ACTIVATIONS[name]


def _positive_option(value, key: str) -> float:
    if not isinstance(value, (int, float)) or value <= 0:
        raise PyrovaeError(f"model.likelihood.{key} must be a positive number, got {value!r}")
    return float(value)


class Bernoulli(Likelihood):
    data_kind = "binary"

    def distribution(self, logits):
        return dist.Bernoulli(logits=logits)


class ContinuousBernoulli(Likelihood):
    data_kind = "unit_interval"

    def distribution(self, logits):
        return dist.ContinuousBernoulli(logits=logits)


class LocScale(Likelihood):
    """Location from the decoder through ``mean_activation``; scale either fixed or
    ``min_scale + softplus(raw)`` from a second decoder output (the floor keeps the
    density bounded, without it a pixel of constant value drives the scale to zero)."""

    data_kind = "real"

    def __init__(self, family, mean_activation: str, fixed_scale=None, min_scale=None):
        self.family = family
        self.loc_fn = _mean_activation(mean_activation)
        self.fixed_scale = fixed_scale
        self.min_scale = min_scale
        self.num_params = 1 if fixed_scale is not None else 2

    def scale(self, raw):
        return self.min_scale + F.softplus(raw)

    def distribution(self, loc, raw_scale=None):
        loc = self.loc_fn(loc)
        scale = loc.new_tensor(self.fixed_scale) if raw_scale is None else self.scale(raw_scale)
        return self.family(loc, scale.expand_as(loc))

    def mean(self, loc, raw_scale=None):
        return self.loc_fn(loc)

    def raw_location(self, mean):
        return super().raw_location(mean) if self.loc_fn is torch.sigmoid else mean


class DiscretizedLogistic(TorchDistribution):
    """Logistic distribution discretized to the 256 levels {0, 1/255, ..., 1}, edges
    taking the tail mass (Salimans et al. 2017, PixelCNN++), as a Pyro distribution."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.unit_interval
    has_rsample = False
    levels = 255

    def __init__(self, loc, scale, validate_args=None):
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return DiscretizedLogistic(self.loc.expand(batch_shape), self.scale.expand(batch_shape))

    @property
    def mean(self):
        return self.loc.clamp(0, 1)

    def log_prob(self, x):
        half_bin = 0.5 / self.levels
        centered = x - self.loc
        upper = (centered + half_bin) / self.scale
        lower = (centered - half_bin) / self.scale
        # The mass of the bin, computed in whichever tail keeps it accurate.
        mass = torch.where(centered > 0, torch.sigmoid(-lower) - torch.sigmoid(-upper),
                           torch.sigmoid(upper) - torch.sigmoid(lower))
        # Tiny bins (scale << bin width far from the mode): density times bin width.
        log_density = -centered.abs() / self.scale - self.scale.log() - 2 * F.softplus(-centered.abs() / self.scale)
        inner = torch.where(mass > 1e-5, mass.clamp_min(1e-30).log(), log_density - math.log(self.levels))
        return torch.where(x < half_bin, F.logsigmoid(upper),
                           torch.where(x > 1 - half_bin, F.logsigmoid(-lower), inner))

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            u = torch.rand(shape, device=self.loc.device).clamp(1e-6, 1 - 1e-6)
            x = self.loc + self.scale * (u.log() - (-u).log1p())
            return (x * self.levels).round().clamp(0, self.levels) / self.levels


class DiscretizedLogisticLikelihood(LocScale):
    data_kind = "8bit"

    def __init__(self, mean_activation: str, min_scale: float):
        super().__init__(DiscretizedLogistic, mean_activation, min_scale=min_scale)


class Poisson(Likelihood):
    """Counts with rate ``min_rate + exp(raw)`` from the decoder: the log link, so that a step on
    the decoder changes the rate in proportion, for counts of 1 and of 1000 alike (the floor
    keeps log p(x) finite where the rate would underflow to zero; ``raw`` is capped at
    :data:`MAX_LOG_RATE` so that it cannot overflow)."""

    data_kind = "count"
    MAX_LOG_RATE = 30.0

    def __init__(self, min_rate: float):
        self.min_rate = min_rate

    def distribution(self, raw):
        return dist.Poisson(self.min_rate + raw.clamp(max=self.MAX_LOG_RATE).exp())

    def raw_location(self, mean):
        return (mean - self.min_rate).clamp_min(1e-3).log()


class Binomial(Likelihood):
    """Counts out of ``total_count`` trials, each a success with probability sigmoid(logit)."""

    data_kind = "count"

    def __init__(self, total_count: int):
        self.total_count = total_count

    def distribution(self, logits):
        return dist.Binomial(total_count=self.total_count, logits=logits)

    def fits(self, x):
        return super().fits(x) and bool((x <= self.total_count).all())

    def requirement(self):
        return f"counts out of total_count={self.total_count} (integers from 0 to {self.total_count})"

    def raw_location(self, mean):
        return super().raw_location(mean / self.total_count)


@LIKELIHOODS.register("bernoulli")
def bernoulli():
    """Bernoulli with logits from the decoder, for binary data."""
    return Bernoulli()


@LIKELIHOODS.register("continuous_bernoulli")
def continuous_bernoulli():
    """Continuous Bernoulli (Loaiza-Ganem & Cunningham 2019), for data in [0, 1]."""
    return ContinuousBernoulli()


@LIKELIHOODS.register("gaussian")
def gaussian(*, mean_activation="sigmoid", min_variance=1e-4):
    """Gaussian with per-pixel mean and variance from the decoder (the paper's Frey Face model)."""
    min_scale = math.sqrt(_positive_option(min_variance, "min_variance"))
    return LocScale(dist.Normal, mean_activation, min_scale=min_scale)


@LIKELIHOODS.register("gaussian_fixed")
def gaussian_fixed(*, sigma=0.1, mean_activation="sigmoid"):
    """Gaussian with a fixed standard deviation sigma: the sum-of-squares loss."""
    return LocScale(dist.Normal, mean_activation, fixed_scale=_positive_option(sigma, "sigma"))


@LIKELIHOODS.register("laplace")
def laplace(*, mean_activation="sigmoid", min_scale=1e-2):
    """Laplace with per-pixel location and scale from the decoder (an L1 reconstruction)."""
    return LocScale(dist.Laplace, mean_activation, min_scale=_positive_option(min_scale, "min_scale"))


@LIKELIHOODS.register("discretized_logistic")
def discretized_logistic(*, mean_activation="sigmoid", min_scale=1e-3):
    """Logistic discretized to 256 levels, for 8-bit images scaled to [0, 1]."""
    return DiscretizedLogisticLikelihood(mean_activation, _positive_option(min_scale, "min_scale"))


@LIKELIHOODS.register("poisson")
def poisson(*, min_rate=1e-3):
    """Poisson counts (non-negative integers, e.g. data.scale=none), log rate from the decoder."""
    return Poisson(_positive_option(min_rate, "min_rate"))


@LIKELIHOODS.register("binomial")
def binomial(*, total_count=255):
    """Binomial counts out of total_count trials (default 255: 8-bit pixel values with data.scale=none)."""
    if isinstance(total_count, bool) or not isinstance(total_count, int) or total_count < 1:
        raise PyrovaeError(f"model.likelihood.total_count must be a positive integer, got {total_count!r}")
    return Binomial(total_count)
