"""Discrete latent distributions with event shape ``(latent_dim,)``, for binary and categorical codes.

A VAE's latent site ``z`` holds one vector of ``latent_dim`` numbers per data point, whatever the
family, so every estimator sees the same shapes:

- :class:`FactorizedBernoulli`: ``latent_dim`` independent binary units, parameterized by logits
  (a sigmoid belief net's layer, Neal 1992; Mnih & Gregor 2014).
- :class:`GroupedOneHotCategorical`: G groups of K classes, each group one-hot, flattened to
  ``latent_dim = G * K`` entries (the categorical VAE of Jang et al. 2017, 20 x 10).

Both are parameterized by ``logits`` of the event's shape (the discrete estimators read them),
sample without a pathwise gradient (``has_rsample`` is False), list their configurations
(``enumerate_support``, for exact enumeration), and define ``log_prob`` on the continuous
relaxation of their support too: for a value v in [0, 1]^D (or in each group's simplex),
``log_prob(v)`` is the same linear function of v as on the vertices,
sum_d v_d log sigmoid(a_d) + (1 - v_d) log sigmoid(-a_d), resp. sum_g sum_k v_gk log softmax(a_g)_k.
The relaxed estimators (Gumbel-softmax, REBAR, RELAX) evaluate the model and guide there with
Pyro's validation off; with validation on, a value off the discrete support is refused.
"""

import itertools

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.nn import functional as F

from ..errors import PyrovaeError


class FactorizedBernoulli(TorchDistribution):
    """Independent Bernoulli units, z_d ~ Bernoulli(sigmoid(logits_d)), as one event of shape (D,)."""

    arg_constraints = {"logits": constraints.real_vector}
    support = constraints.independent(constraints.boolean, 1)
    has_enumerate_support = True
    family = "bernoulli"

    def __init__(self, logits: torch.Tensor, validate_args=None):
        if logits.dim() < 1:
            raise PyrovaeError("FactorizedBernoulli needs logits with a last dimension of latent units")
        self.logits = logits
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    @property
    def probs(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    @property
    def mean(self) -> torch.Tensor:
        return self.probs

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return FactorizedBernoulli(self.logits.expand(batch_shape + self.event_shape), validate_args=False)

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            return torch.bernoulli(self.probs.expand(shape))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        logits, value = torch.broadcast_tensors(self.logits, value)
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)

    def entropy(self):
        return F.binary_cross_entropy_with_logits(self.logits, self.probs, reduction="none").sum(-1)

    def enumerate_support(self, expand=True):
        d = self.event_shape[0]
        values = torch.tensor(list(itertools.product((0.0, 1.0), repeat=d)), dtype=self.logits.dtype,
                              device=self.logits.device)
        values = values.reshape((len(values),) + (1,) * len(self.batch_shape) + (d,))
        return values.expand((len(values),) + self.batch_shape + (d,)) if expand else values


class GroupedOneHotCategorical(TorchDistribution):
    """G independent one-hot categorical groups of K classes, flattened to one event of shape (G * K,):
    entries g * K .. g * K + K - 1 are group g's one-hot vector, with class logits the same slice
    of ``logits``."""

    arg_constraints = {"logits": constraints.real_vector}
    has_enumerate_support = True
    family = "categorical"

    def __init__(self, logits: torch.Tensor, groups: int, validate_args=None):
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or logits.dim() < 1 \
                or logits.shape[-1] % groups:
            raise PyrovaeError(f"GroupedOneHotCategorical needs latent_dim ({tuple(logits.shape[-1:])}) to be "
                               f"a multiple of groups ({groups!r}): latent_dim = groups x classes")
        self.logits = logits
        self.groups = groups
        self.classes = logits.shape[-1] // groups
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    @constraints.dependent_property
    def support(self):
        return _GroupedOneHot(self.groups, self.classes)

    def grouped(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` (..., G * K) seen as (..., G, K)."""
        return value.reshape(value.shape[:-1] + (self.groups, self.classes))

    @property
    def log_class_probs(self) -> torch.Tensor:
        """log softmax of the logits within each group, shaped (..., G, K)."""
        return torch.log_softmax(self.grouped(self.logits), -1)

    @property
    def probs(self) -> torch.Tensor:
        return self.log_class_probs.exp().flatten(-2)

    @property
    def mean(self) -> torch.Tensor:
        return self.probs

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return GroupedOneHotCategorical(self.logits.expand(batch_shape + self.event_shape), self.groups,
                                        validate_args=False)

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            probs = self.grouped(self.probs.expand(shape)).reshape(-1, self.classes)
            index = torch.multinomial(probs, 1).squeeze(-1)
            return F.one_hot(index, self.classes).to(self.logits.dtype).reshape(shape)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return (self.grouped(value) * self.log_class_probs).sum((-2, -1))

    def entropy(self):
        log_p = self.log_class_probs
        return -(log_p.exp() * log_p).sum((-2, -1))

    def enumerate_support(self, expand=True):
        eye = torch.eye(self.classes, dtype=self.logits.dtype, device=self.logits.device)
        values = torch.stack([torch.cat([eye[k] for k in choice])
                              for choice in itertools.product(range(self.classes), repeat=self.groups)])
        values = values.reshape((len(values),) + (1,) * len(self.batch_shape) + self.event_shape)
        return values.expand((len(values),) + self.batch_shape + self.event_shape) if expand else values


class _GroupedOneHot(constraints.Constraint):
    """Vectors of G concatenated one-hot blocks of K entries."""

    is_discrete = True
    event_dim = 1

    def __init__(self, groups: int, classes: int):
        self.groups, self.classes = groups, classes
        super().__init__()

    def check(self, value):
        grouped = value.reshape(value.shape[:-1] + (self.groups, self.classes))
        one_hot = ((grouped == 0) | (grouped == 1)).all(-1) & (grouped.sum(-1) == 1)
        return one_hot.all(-1)


DISCRETE_LATENTS = (FactorizedBernoulli, GroupedOneHotCategorical)


def latent_family(fn) -> str:
    """``'bernoulli'`` or ``'categorical'`` for the discrete latents above, ``'continuous'`` for a
    distribution with a pathwise sample, ``'other'`` for anything else."""
    if isinstance(fn, DISCRETE_LATENTS):
        return fn.family
    return "continuous" if getattr(fn, "has_rsample", False) else "other"
