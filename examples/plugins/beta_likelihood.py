"""A Beta likelihood for data strictly inside (0, 1)."""

import pyro.distributions as dist
from torch.nn import functional as F

import pyrovae


@pyrovae.register("likelihood", "beta")
class Beta(pyrovae.Likelihood):
    """Beta with both concentrations from the decoder, for data inside (0, 1)."""

    num_params = 2  # the decoder gives two numbers per pixel
    data_kind = "open_unit_interval"

    def __init__(self, *, min_concentration=0.01):
        self.floor = min_concentration

    def distribution(self, raw_a, raw_b):
        return dist.Beta(self.floor + F.softplus(raw_a), self.floor + F.softplus(raw_b))
