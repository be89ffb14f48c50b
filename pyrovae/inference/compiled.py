"""A compiled training step: the Pyro model, guide and loss recorded once per minibatch shape
as one graph of tensor operations (forward and backward), compiled by inductor, stepped with
the run's optimizer.

Why: Pyro interprets the model and guide anew at every step (effect handlers, one
distribution object per site, trace bookkeeping, ``pyro.module`` registering parameters), a
fixed cost per step that dominates small networks. The graph keeps the arithmetic and drops
the interpretation.

How (:class:`CompiledStep`):

* The step's loss is written as a pure tensor function of the traces Pyro records
  (:func:`~pyrovae.inference.particles.particle_traces`), with no ``.item()`` or NaN check
  inside: Pyro's own ``Trace_ELBO.differentiable_loss`` converts every site's log-density
  to a Python number, which a recorded graph would freeze at its recording-time value.
  Supported: ``pathwise`` (Trace_ELBO), ``analytic_kl`` (TraceMeanField_ELBO) and the
  reparameterized, stateless surrogate estimators (``stl``, ``iwae``, ``iwae_dreg``), each
  the same estimator as the interpreted one. Score-function estimators, estimators with
  state carried between steps (baselines) and the others are refused in one line.
* The guide's Gaussian noise is drawn outside the graph and passed in: at each latent guide
  site (a ``Normal``, possibly inside ``to_event``, or a ``MultivariateNormal``) the handler
  :class:`_GuideNoise` sets z = loc + eps * scale (``loc + scale_tril @ eps``) with eps from
  the step's list, drawn exactly as torch's ``rsample`` draws it, so the same random state
  gives the same numbers as the interpreted step. A guide site of another family, or one sampled without
  reparameterization, is refused; a graph that would draw random numbers of its own is
  refused too (its numbers would not be the interpreted step's).
* ``make_fx`` runs ``vae.model`` and ``vae.guide`` under Pyro's handlers once, with the
  VAE's parameters swapped for graph inputs (``torch.func.functional_call``), and records
  the loss and its gradient (``torch.autograd.grad``) as ATen operations: Pyro's Python
  runs at recording time only. Inductor compiles that joint graph; a step then draws the
  noise, calls the graph, hands the gradients to the optimizer (fused Adam by default) and
  returns the loss.

The KL weight is a graph input (a 0-dimensional tensor), so warm-up does not recompile. A
new minibatch shape (an epoch's smaller last minibatch) records and compiles a new graph.
Recording runs the program twice without drawing from the global generator (the first run,
which also registers the parameters with Pyro and applies Pyro's validation when it is
enabled, draws on a forked generator), so exact resume holds.
"""

from typing import Callable, List, Optional, Sequence

import pyro
import torch
from pyro import poutine
from pyro.distributions import MultivariateNormal, Normal
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from torch import nn
from torch.distributions import Independent, kl_divergence
from torch.fx.experimental.proxy_tensor import make_fx
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from ..errors import PyrovaeError
from .particles import particle_traces, trace_particles
from .surrogates import ParticleELBO

SET_FALSE = "set train.compile=false"

Objective = Callable[[Callable, Callable, Sequence], torch.Tensor]


# z from standard normal noise eps, as each family's rsample computes it
_GAUSSIANS = {
    Normal: lambda fn, eps: fn.loc + eps * fn.scale,
    MultivariateNormal: lambda fn, eps: fn.loc + torch.matmul(fn.scale_tril, eps.unsqueeze(-1)).squeeze(-1),
}


class _GuideNoise(Messenger):
    """Reparameterized guide sites with given (or freshly drawn) standard normal noise.

    Entered outside every plate, so it sees each site's distribution fully expanded; it
    acts only while :meth:`guide` runs (the model's latent sites are replayed from the
    guide's trace). With ``noise=None`` it draws eps as ``Normal.rsample`` does and records
    each site's (shape, dtype)."""

    def __init__(self, noise: Optional[Sequence[torch.Tensor]] = None):
        super().__init__()
        self.noise = noise
        self.drawn: List[tuple] = []
        self._active = False

    def guide(self, guide: Callable) -> Callable:
        def noised_guide(*args, **kwargs):
            self._active = True
            try:
                return guide(*args, **kwargs)
            finally:
                self._active = False
        return noised_guide

    def _pyro_sample(self, msg):
        if not self._active or msg["is_observed"] or msg["value"] is not None or isinstance(msg["fn"], _Subsample):
            return
        fn = msg["fn"]
        while isinstance(fn, Independent):
            fn = fn.base_dist
        if type(fn) not in _GAUSSIANS or msg["args"] or msg["kwargs"] or msg["infer"].get("enumerate"):
            kind = type(fn).__name__ if fn.has_rsample else f"{type(fn).__name__} without reparameterization"
            raise PyrovaeError(f"train.compile captures Gaussian (Normal, MultivariateNormal) guide sites drawn by "
                               f"reparameterization; guide site '{msg['name']}' is a {kind}; {SET_FALSE}")
        shape = fn.batch_shape + fn.event_shape
        if self.noise is None:  # as torch's rsample draws it
            eps = torch.empty(shape, dtype=fn.loc.dtype, device=fn.loc.device).normal_()
        else:
            eps = self.noise[len(self.drawn)]
        self.drawn.append((tuple(shape), fn.loc.dtype))
        msg["value"] = _GAUSSIANS[type(fn)](fn, eps)


class _RecordableOps(TorchFunctionMode):
    """Operations whose checks read tensor values (which a recording cannot: it would freeze
    the values it saw) replaced, while recording, by the same arithmetic without the check.
    ``F.one_hot`` checks every label is in range; the labels were checked when loaded."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.one_hot:
            labels, num_classes = args[0], args[1] if len(args) > 1 else kwargs.get("num_classes", -1)
            if num_classes < 0:
                raise PyrovaeError(f"train.compile needs F.one_hot called with num_classes; {SET_FALSE}")
            return (labels.unsqueeze(-1) == torch.arange(num_classes, device=labels.device)).long()
        return func(*args, **kwargs)


def _sample_sites(trace):
    return [(name, site) for name, site in trace.nodes.items() if site["type"] == "sample"]


def _pathwise(num_particles: int) -> Objective:
    """Trace_ELBO's loss: -(1/K) sum over particles and data points of log p(x, z) - log q(z|x)."""
    def loss(model, guide, args):
        return -trace_particles(model, guide, args, {}, 1, num_particles).log_w.sum(-1).mean()
    return loss


def _mean_field(num_particles: int) -> Objective:
    """TraceMeanField_ELBO's loss: the KL of each latent site in closed form where torch has
    it (its scale applied), log p - log q of the sample where not, log p of observed sites."""
    def loss(model, guide, args):
        model_trace, guide_trace = particle_traces(model, guide, args, {}, 1, num_particles)
        elbo = 0.0
        for name, site in _sample_sites(model_trace):
            if site["is_observed"]:
                elbo = elbo + site["log_prob_sum"]
                continue
            guide_site = guide_trace.nodes[name]
            try:
                kl = kl_divergence(guide_site["fn"], site["fn"])
            except NotImplementedError:
                elbo = elbo + site["log_prob_sum"] - guide_site["log_prob_sum"]
                continue
            elbo = elbo - scale_and_mask(kl, guide_site["scale"], guide_site["mask"]).sum()
        return -elbo / num_particles
    return loss


def objective(estimator) -> Objective:
    """The loss of ``estimator`` as a function of (model, guide, args) free of Python-side
    numbers, or a one-line refusal."""
    name = type(estimator).__name__
    if type(estimator) is Trace_ELBO:
        return _pathwise(estimator.num_particles)
    if type(estimator) is TraceMeanField_ELBO:
        return _mean_field(estimator.num_particles)
    if isinstance(estimator, ParticleELBO):
        if not estimator.reparameterized:
            raise PyrovaeError(f"train.compile needs an estimator that reparameterizes the guide's samples; "
                               f"{name} does not (choose pathwise, analytic_kl, stl, iwae or iwae_dreg) or {SET_FALSE}")
        kind = type(estimator)
        if kind.observe is not ParticleELBO.observe or kind.state_dict is not ParticleELBO.state_dict:
            raise PyrovaeError(f"train.compile cannot compile {name}: it carries state from step to step; {SET_FALSE}")
        return lambda model, guide, args: estimator.differentiable_loss(model, guide, *args)
    raise PyrovaeError(f"train.compile compiles the estimators pathwise, analytic_kl, stl, iwae and iwae_dreg, "
                       f"not {name}; {SET_FALSE}")


class _Loss(nn.Module):
    """The step's loss as a module call, so ``functional_call`` can swap the VAE's tensors."""

    def __init__(self, vae, loss: Objective):
        super().__init__()
        self.vae, self.loss = vae, loss

    def forward(self, args, noise: _GuideNoise):
        with noise:
            return self.loss(self.vae.model, noise.guide(self.vae.guide), args)


class _Graph:
    """One minibatch shape's compiled joint graph: (tensors, data, KL weight, noise) to
    (loss, gradients of ``params``, the parameters that have one)."""

    def __init__(self, fn, noise_shapes, params: List[torch.Tensor]):
        self.fn, self.noise_shapes, self.params = fn, noise_shapes, params


class CompiledStep:
    """``step(x, y, kl_weight)``: one optimizer step on the minibatch, from a compiled graph
    (see the module docstring). ``inductor=False`` runs the recorded graph uncompiled (the
    same operations, for quick checks of the recording)."""

    def __init__(self, vae, optimizer, estimator, inductor: bool = True):
        self.vae, self.optimizer, self.inductor = vae, optimizer, inductor
        self.loss = objective(estimator)
        self._graphs = {}
        self._params: Optional[List[torch.Tensor]] = None
        self._weight = (None, None)

    def step(self, x: torch.Tensor, y: Optional[torch.Tensor], kl_weight: float) -> float:
        """One gradient step; the loss (the negative bound summed over the minibatch)."""
        loss, params, grads = self.loss_and_grads(x, y, kl_weight)
        for p, g in zip(params, grads):
            p.grad = g
        self.optimizer(params)
        for p in params:
            p.grad = None
        return loss.item()

    def loss_and_grads(self, x: torch.Tensor, y: Optional[torch.Tensor], kl_weight: float):
        """The loss, the parameters that have a gradient, and their gradients, from the graph
        recorded for this minibatch's shape (recorded and compiled first if there is none)."""
        if self._weight[0] != kl_weight:
            self._weight = (kl_weight, torch.tensor(kl_weight, dtype=x.dtype, device=x.device))
        data = (x, self._weight[1]) if y is None else (x, y, self._weight[1])
        key = tuple((t.shape, t.dtype, t.device) for t in data)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._record(x, y, self._weight[1])
        noise = [torch.empty(shape, dtype=dtype, device=x.device).normal_() for shape, dtype in graph.noise_shapes]
        loss, *grads = graph.fn(*self._inputs, *data, *noise)
        return loss, graph.params, grads

    def _record(self, x, y, weight) -> _Graph:
        args = (x, y, weight)
        # 1. the interpreted program once: parameters registered with Pyro, validation, noise shapes
        noise = _GuideNoise()
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad(), poutine.trace(param_only=True) as params:
            _Loss(self.vae, self.loss)(args, noise)
        if self._params is None:
            self._bind([site["value"].unconstrained() for site in params.trace.nodes.values()])
        # 2. the loss and its gradient recorded as tensor operations
        names, buffers = self._names, dict(self.vae.named_buffers())
        module = _Loss(self.vae, self.loss)
        with_gradient = []

        def joint(tensors, data, eps):
            params = [t.detach().requires_grad_(True) for t in tensors[:len(names)]]
            swapped = {**{f"vae.{n}": p for n, p in zip(names, params)},
                       **{f"vae.{n}": b for n, b in zip(buffers, tensors[len(names):])}}
            loss = torch.func.functional_call(module, swapped, (data, _GuideNoise(eps)))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            with_gradient[:] = [g is not None for g in grads]
            return (loss.detach(), *[g for g in grads if g is not None])

        count = len(self._inputs)
        data = (x, weight) if y is None else (x, y, weight)
        eps = [torch.zeros(shape, dtype=dtype, device=x.device) for shape, dtype in noise.drawn]

        def flat(*tensors):
            given = tensors[count:count + len(data)]
            return joint(tensors[:count], (given[0], None, given[1]) if y is None else given, tensors[count + len(data):])

        example = [*self._inputs, *data, *eps]
        try:
            with torch.enable_grad(), pyro.validation_enabled(False), _RecordableOps():
                graph = make_fx(flat)(*example)
        except PyrovaeError:
            raise
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PyrovaeError(f"train.compile could not record this model and guide as a graph "
                               f"({type(exc).__name__}: {reason[:200]}); {SET_FALSE}") from None
        seeded = [str(n.target) for n in graph.graph.nodes
                  if n.op == "call_function" and torch.Tag.nondeterministic_seeded in getattr(n.target, "tags", ())]
        if seeded:
            raise PyrovaeError(f"train.compile: the model or guide draws random numbers besides the guide's "
                               f"Gaussian noise ({', '.join(sorted(set(seeded)))}); {SET_FALSE}")
        if self.inductor:
            from torch import _inductor  # seconds to import: only when a run compiles

            graph = _inductor.compile(graph, example)
        return _Graph(graph, noise.drawn, [p for p, has in zip(self._params, with_gradient) if has])

    def _bind(self, stored: List[torch.Tensor]) -> None:
        """The parameters Pyro registered, as named parameters of the VAE (the graph's inputs)."""
        ids = {id(p) for p in stored}
        named = [(n, p) for n, p in self.vae.named_parameters() if id(p) in ids]
        if len(named) != len(ids):
            raise PyrovaeError(f"train.compile compiles the VAE's own parameters; the model or guide registers "
                               f"{len(ids) - len(named)} other pyro.param site(s); {SET_FALSE}")
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        self._inputs = [p.detach() for p in self._params] + [b.detach() for b in self.vae.buffers()]
