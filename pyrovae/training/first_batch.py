"""The first-batch check: run every part of the initial model on one training batch before
training, and score the batch.

Each part is called as training will call it and its result held to its contract (see
:func:`pyrovae.register`): the encoder gives ``(batch, *encoder_out_shape)`` of the guide family
(``(batch, 2, latent_dim)`` for the diagonal Gaussian), the guide family q(z|x) with event shape
``(latent_dim,)``, the prior a
distribution with batch shape ``()`` and event shape ``(latent_dim,)``, the decoder
``(batch, num_params, *data_shape)``, the likelihood a distribution and a mean shaped like the
batch. A plugin's part that breaks it is named here in one line, instead of failing as a
traceback inside Pyro, or, worse, training an epoch and failing when the figures are drawn.
Plugin code that raises is reported the same way (:func:`~pyrovae.registry.plugin_code`).

A likelihood that cannot score some data values (a Beta density at exact 0 or 1, a
log-normal at 0) makes the very first loss infinite or NaN. Caught after the first step,
that looks like a learning-rate problem; caught here, the message names the likelihood and
the data values it cannot score, which is what needs changing.
"""

import torch
from torch.distributions import Distribution

from ..components import GUIDES, LIKELIHOODS, NETWORKS, PRIORS
from ..errors import PyrovaeError
from ..registry import plugin_code

SHOWN_VALUES = 4


@torch.no_grad()
def check_first_batch(vae, data, batch_size: int) -> None:
    """Run the parts of ``vae`` on the first ``batch_size`` training points, checking each
    result's type and shape; log p(z) at a draw of the guide and log p(x|z) per data element
    must be finite. Anything amiss is a one-line error naming the part."""
    device = next(vae.parameters()).device
    x = data.training_batch(data.train.x[:batch_size]).to(device)
    y = data.train.y[:batch_size].to(device) if vae.num_classes else None
    cond = vae.condition(y)
    encoding = _checked_encoding(vae, x, cond)
    z = _checked_guide(vae, encoding, x, y).sample()
    prior = _checked_prior(vae)
    vae.check_supports(prior)
    log_prior = _calling("model.prior", PRIORS, vae.prior_name, lambda: prior.log_prob(z))
    if not torch.isfinite(log_prior).all():
        raise PyrovaeError(f"prior '{vae.prior_name}' gives a non-finite log p(z) ({_first_bad(log_prior)}) at "
                           f"draws of the initial guide; check the prior's support and parameters")
    params = _checked_decoding(vae, z, cond)
    likelihood = _checked_likelihood(vae, params)
    name = vae.likelihood_name
    try:
        log_lik = _calling("model.likelihood", LIKELIHOODS, name, lambda: likelihood.log_prob(x))
    except ValueError as exc:  # torch's support check
        raise PyrovaeError(f"likelihood '{name}' cannot score the first training batch "
                           f"({str(exc).splitlines()[0][:160]}); the data range over "
                           f"[{float(x.min()):.3g}, {float(x.max()):.3g}]: choose a likelihood for such data") from None
    bad = ~torch.isfinite(log_lik)
    if bad.any():
        raise PyrovaeError(f"likelihood '{name}' gives a non-finite log p(x|z) ({_first_bad(log_lik)}) for "
                           f"{int(bad.sum())} of {bad.numel()} data values in the first training batch, at the "
                           f"values {_value_counts(x[bad])}; {_advice(x[bad])}")


def _calling(where: str, registry, name: str, call):
    """``call()``, run as the code of the part ``name`` of ``registry`` (see ``plugin_code``)."""
    with plugin_code(f"{where}: {registry.label(name)}", registry.get(name).origin, "on the first training batch",
                     f"a {registry.kind} must be {registry.contract.description}"):
        return call()


def _checked_encoding(vae, x: torch.Tensor, cond):
    """The encoder's output for the batch ``x``, after checking its shape against the guide family's."""
    out = _calling("model.encoder", NETWORKS, vae.encoder_name, lambda: vae.encoder(x, cond))
    expected = (x.shape[0], *vae.guide_family.encoder_out_shape)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        raise PyrovaeError(f"model.encoder: {NETWORKS.label(vae.encoder_name)} maps the first training batch "
                           f"{tuple(x.shape)} to {_shape_of(out)}; an encoder must give (batch, *encoder_out_shape) = "
                           f"{expected}: what guide '{vae.guide_name}' reads q(z|x) from")
    return out


def _checked_guide(vae, encoding: torch.Tensor, x: torch.Tensor, y) -> Distribution:
    """q(z|x) from the guide family, after checking it is a distribution over one z per point."""
    q = _calling("model.guide", GUIDES, vae.guide_name, lambda: vae.guide_family(encoding, vae.log_joint_of(x, y)))
    expected = f"batch shape (batch,) and event shape (latent_dim,) = ({x.shape[0]},) and ({vae.latent_dim},)"
    if not isinstance(q, Distribution):
        raise PyrovaeError(f"model.guide: {GUIDES.label(vae.guide_name)} returned {_kind_of(q)}; a guide family's "
                           f"call must return q(z|x): a distribution with {expected}")
    if q.batch_shape != (x.shape[0],) or q.event_shape != (vae.latent_dim,):
        raise PyrovaeError(f"model.guide: {GUIDES.label(vae.guide_name)} returned a distribution with batch shape "
                           f"{tuple(q.batch_shape)} and event shape {tuple(q.event_shape)}; it must have {expected}")
    return q


def _checked_prior(vae) -> Distribution:
    """p(z) from the prior module, after checking it is a distribution over one z."""
    prior = _calling("model.prior", PRIORS, vae.prior_name, vae.prior)
    expected = f"batch shape () and event shape (latent_dim,) = ({vae.latent_dim},)"
    if not isinstance(prior, Distribution):
        raise PyrovaeError(f"model.prior: {PRIORS.label(vae.prior_name)} returned {_kind_of(prior)} when called; "
                           f"a prior module's call must return a distribution with {expected}")
    if prior.batch_shape != () or prior.event_shape != (vae.latent_dim,):
        raise PyrovaeError(f"model.prior: {PRIORS.label(vae.prior_name)} returned a distribution with batch shape "
                           f"{tuple(prior.batch_shape)} and event shape {tuple(prior.event_shape)}; it must have "
                           f"{expected} (.to_event(1) turns a batch of coordinates into one event)")
    return prior


def _checked_decoding(vae, z: torch.Tensor, cond):
    """The decoder's ``num_params`` outputs for ``z``, after checking their shape."""
    out = _calling("model.decoder", NETWORKS, vae.decoder_name, lambda: vae.decoder(z, cond))
    expected = (z.shape[0], vae.likelihood.num_params, *vae.data_shape)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        raise PyrovaeError(f"model.decoder: {NETWORKS.label(vae.decoder_name)} maps latent points {tuple(z.shape)} "
                           f"to {_shape_of(out)}; a decoder must give (batch, num_params, *data_shape) = {expected}")
    return out.unbind(1)


def _checked_likelihood(vae, params) -> Distribution:
    """p(x|z) of every data element given the decoder's outputs, after checking that it and
    the likelihood's mean are shaped like the batch."""
    name = vae.likelihood_name
    expected = tuple(params[0].shape)
    distribution = _calling("model.likelihood", LIKELIHOODS, name, lambda: vae.likelihood.distribution(*params))
    mean = _calling("model.likelihood", LIKELIHOODS, name, lambda: vae.likelihood.mean(*params))
    contract = (f"distribution(*params) must return a distribution with batch shape (batch, *data_shape) = "
                f"{expected} and event shape (), and mean(*params) a tensor of that shape")
    if not isinstance(distribution, Distribution):
        found = f"distribution(*params) returned {_kind_of(distribution)}"
    elif distribution.batch_shape != expected or distribution.event_shape != ():
        found = (f"distribution(*params) has batch shape {tuple(distribution.batch_shape)} and event shape "
                 f"{tuple(distribution.event_shape)}")
    elif not isinstance(mean, torch.Tensor) or tuple(mean.shape) != expected:
        found = f"mean(*params) has shape {_shape_of(mean)}"
    else:
        return distribution
    raise PyrovaeError(f"model.likelihood: {LIKELIHOODS.label(name)}: on the first training batch {found}; "
                       f"{contract}")


def _shape_of(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else _kind_of(value)


def _kind_of(value) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


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
