"""A Student-t prior: heavier tails than N(0, I), so outlying codes cost less."""

import pyro.distributions as dist
import torch
from torch import nn

import pyrovae


class StudentT(nn.Module):
    def __init__(self, latent_dim, df):
        super().__init__()
        self.df = df
        self.register_buffer("loc", torch.zeros(latent_dim))  # a buffer follows the model's device

    def forward(self):
        return dist.StudentT(self.df, self.loc, torch.ones_like(self.loc)).to_event(1)


@pyrovae.register("prior", "student_t")
def student_t(latent_dim, *, df=5.0):
    """Student-t with df degrees of freedom in every latent coordinate."""
    if df <= 0:
        raise pyrovae.PyrovaeError(f"model.prior.df must be positive, got {df}")
    return StudentT(latent_dim, df)
