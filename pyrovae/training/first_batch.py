"""The first-batch check: score one training batch under the initial model before training.

A likelihood that cannot score some data values (a Beta density at exact 0 or 1, a
log-normal at 0) makes the very first loss infinite or NaN. Caught after the first step,
that looks like a learning-rate problem; caught here, the message names the likelihood and
the data values it cannot score, which is what needs changing.
"""

import torch

from ..errors import PyrovaeError

SHOWN_VALUES = 4


@torch.no_grad()
def check_first_batch(vae, data, batch_size: int) -> None:
    """Score the first ``batch_size`` training points under ``vae``: log p(z) at a draw of the
    guide and log p(x|z) per data element must be finite, else a one-line error."""
    device = next(vae.parameters()).device
    x = data.training_batch(data.train.x[:batch_size]).to(device)
    y = data.train.y[:batch_size].to(device) if vae.num_classes else None
    loc, scale = vae.encode(x, y)
    z = loc + scale * torch.randn_like(scale)
    log_prior = vae.prior().log_prob(z)
    if not torch.isfinite(log_prior).all():
        raise PyrovaeError(f"prior '{vae.prior_name}' gives a non-finite log p(z) ({_first_bad(log_prior)}) at "
                           f"draws of the initial guide; check the prior's support and parameters")
    params = vae.decoder(z, vae.condition(y)).unbind(-len(vae.data_shape) - 1)
    name = vae.likelihood_name
    try:
        log_lik = vae.likelihood.distribution(*params).log_prob(x)
    except ValueError as exc:  # torch's support check
        raise PyrovaeError(f"likelihood '{name}' cannot score the first training batch "
                           f"({str(exc).splitlines()[0][:160]}); the data range over "
                           f"[{float(x.min()):.3g}, {float(x.max()):.3g}]: choose a likelihood for such data") from None
    bad = ~torch.isfinite(log_lik)
    if bad.any():
        raise PyrovaeError(f"likelihood '{name}' gives a non-finite log p(x|z) ({_first_bad(log_lik)}) for "
                           f"{int(bad.sum())} of {bad.numel()} data values in the first training batch, at the "
                           f"values {_value_counts(x[bad])}; {_advice(x[bad])}")


def _first_bad(t: torch.Tensor) -> str:
    return str(float(t[~torch.isfinite(t)][0]))


def _value_counts(values: torch.Tensor) -> str:
    """The most frequent offending values with their counts, e.g. ``0 (812 times), 1 (95 times)``."""
    unique, counts = values.unique(return_counts=True)
    order = counts.argsort(descending=True)[:SHOWN_VALUES]
    shown = ", ".join(f"{float(unique[i]):.6g} ({int(counts[i])} times)" for i in order)
    return shown + (f" and {unique.numel() - SHOWN_VALUES} other values" if unique.numel() > SHOWN_VALUES else "")


def _advice(values: torch.Tensor) -> str:
    if bool(((values == 0) | (values == 1)).all()):
        return ("exact 0 and 1 lie on the edge of this likelihood's support: keep the data inside (0, 1), "
                "e.g. x * (1 - 2 * eps) + eps, or choose a likelihood that scores them "
                "(continuous_bernoulli, gaussian, bernoulli for binary data)")
    if not bool(torch.isfinite(values).all()):
        return "the data hold NaN or infinite values: clean them"
    lo, hi = float(values.min()), float(values.max())
    return (f"those values (in [{lo:.3g}, {hi:.3g}]) lie outside or on the edge of this likelihood's support: "
            f"transform the data into its support or choose another likelihood")
