"""Optimizers for SVI, by name.

Pyro's ``PyroOptim`` keeps one torch optimizer per parameter tensor, so that parameters
may appear at any step; every SVI step then pays an optimizer's Python overhead once per
tensor (a fifth of a step's time for a small MLP VAE). :class:`JointOptim` keeps that
contract, parameters appearing at any step and state keyed by param-store names, with a
single torch optimizer: parameters first seen together form one param group, and a step is
one optimizer call. After the step it sets the gradients to None rather than leaving Pyro to
fill them with zeros: the next backward pass then stores its gradients instead of adding
them to zeros (two passes over every parameter saved per step).

Adam and Adagrad use torch's fused implementation (one kernel for all parameters of a group)
on the devices torch has it for: on the CPU it makes a whole training step of a small MLP VAE
about a quarter cheaper than the default implementation. Its arithmetic differs from the
default's in rounding only.

Learning-rate schedules are registered here too: each maps an epoch to a factor on the
optimizer's ``lr``, so a resumed run picks up the rate its epoch calls for.
"""

import math
from typing import Callable, Dict

import pyro
import pyro.optim
import torch
from pyro.optim.clipped_adam import ClippedAdam

from ..errors import PyrovaeError, positive_int
from ..registry import Contract, Registry

OPTIMIZERS = Registry("optimizer", contract=Contract(
    "a pyro.optim optimizer (a pyro.optim.PyroOptim, e.g. pyro.optim.Adam({'lr': lr}))",
    lambda part: isinstance(part, pyro.optim.PyroOptim)))


class JointOptim(pyro.optim.PyroOptim):
    """One torch optimizer for every parameter SVI hands over (a drop-in ``PyroOptim``)."""

    def __init__(self, constructor, args: Dict):
        super().__init__(constructor, args)
        self.optimizer = None
        self._seen = set()

    def __call__(self, params, *args, **kwargs) -> None:
        new = [p for p in params if p not in self._seen]
        if new:
            self._add(new)
        self.optimizer.step(*args, **kwargs)
        for p in params:
            p.grad = None

    def _add(self, params) -> None:
        store = pyro.get_param_store()
        params.sort(key=store.param_name)  # a stable order, whatever the set's order
        if self.optimizer is None:
            args = dict(self.pt_optim_args)
            if args.get("fused") and not all(p.device.type in FUSED_DEVICES for p in params):
                args["fused"] = None  # torch's choice for this device
            self.optimizer = self.pt_optim_constructor([{"params": params}], **args)
        else:
            self.optimizer.add_param_group({"params": params})
        self._seen.update(params)
        group = self.optimizer.param_groups[-1]
        step_on_device = bool(group.get("fused") or group.get("capturable"))
        for p in params:
            state = self._state_waiting_to_be_consumed.pop(store.param_name(p), None)
            if state is not None:
                self.optimizer.state[p] = {k: _to_device(v, p, k, step_on_device) for k, v in state.items()}

    def set_lr(self, lr: float) -> None:
        """Use step size ``lr`` from now on, for parameters seen so far and those to come."""
        self.pt_optim_args["lr"] = lr
        if self.optimizer is not None:
            self.optimizer.defaults["lr"] = lr
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def get_state(self) -> Dict:
        """Per-parameter optimizer state keyed by param-store name (tensors and numbers only,
        so checkpoints load with ``weights_only=True``)."""
        if self.optimizer is None:
            return dict(self._state_waiting_to_be_consumed)
        store = pyro.get_param_store()
        return {store.param_name(p): dict(s) for p, s in self.optimizer.state.items()}


FUSED_DEVICES = ("cpu", "cuda")  # where torch's fused Adam and Adagrad kernels run


def _to_device(value, param: torch.Tensor, key: str, step_on_device: bool):
    """A saved state entry placed as torch places it: the step counter stays a CPU float
    unless the optimizer is fused or "capturable" (then a float32 on the parameter's
    device); every other tensor lives with its parameter."""
    if not torch.is_tensor(value):
        return value
    if key == "step":
        return value.to(param.device, torch.float32) if step_on_device else value
    return value.to(param.device)


def _check_fused(fused) -> bool:
    if not isinstance(fused, bool):
        raise PyrovaeError(f"train.optimizer.fused must be true or false, got {fused!r}")
    return fused


@OPTIMIZERS.register("adam")
def adam(*, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=True):
    """Adam (Kingma & Ba 2015); fused: torch's one-kernel implementation where it has one."""
    return JointOptim(torch.optim.Adam, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                         "weight_decay": weight_decay, "fused": _check_fused(fused)})


@OPTIMIZERS.register("adagrad")
def adagrad(*, lr=0.01, weight_decay=0.0, fused=True):
    """Adagrad, the paper's optimizer (global step size from {0.01, 0.02, 0.1}); fused as for adam."""
    return JointOptim(torch.optim.Adagrad, {"lr": lr, "weight_decay": weight_decay, "fused": _check_fused(fused)})


@OPTIMIZERS.register("clipped_adam")
def clipped_adam(*, lr=1e-3, betas=(0.9, 0.999), clip_norm=10.0, lrd=1.0):
    """Pyro's ClippedAdam: Adam with per-parameter gradient clipping and lr decay lrd per step."""
    return JointOptim(ClippedAdam, {"lr": lr, "betas": tuple(betas), "clip_norm": clip_norm, "lrd": lrd})


LR_SCHEDULES = Registry("lr schedule", inputs=("train_epochs",), contract=Contract(
    "a function of the epoch returning a factor on the learning rate", callable))


@LR_SCHEDULES.register("constant")
def constant() -> Callable[[int], float]:
    """The optimizer's lr throughout."""
    return lambda epoch: 1.0


@LR_SCHEDULES.register("iwae_stages")
def iwae_stages(*, decay_stages=7.0) -> Callable[[int], float]:
    """Burda et al. (2016): stage i lasts 3^(i-1) epochs at lr * 10^(-(i-1) / decay_stages).

    Stages 1..8 make the paper's 3280 epochs (sec. 5 and appendix D)."""
    if decay_stages <= 0:
        raise PyrovaeError(f"train.lr_schedule.decay_stages must be positive, got {decay_stages}")
    return lambda epoch: 10.0 ** (-(iwae_stage(epoch) - 1) / decay_stages)


@LR_SCHEDULES.register("cosine")
def cosine(train_epochs=None, *, epochs=0, min_factor=0.0) -> Callable[[int], float]:
    """Cosine decay from lr to lr * min_factor over epochs epochs (0, the default: train.epochs), then flat.

    The factor at epoch e is min_factor + (1 - min_factor) (1 + cos(pi min(e, epochs) / epochs)) / 2."""
    if epochs == 0 and train_epochs is not None:
        epochs = train_epochs
    epochs = positive_int(epochs, "train.lr_schedule.epochs")
    if not 0 <= min_factor <= 1:
        raise PyrovaeError(f"train.lr_schedule.min_factor must be in [0, 1], got {min_factor}")
    return lambda epoch: min_factor + (1 - min_factor) * (1 + math.cos(math.pi * min(epoch, epochs) / epochs)) / 2


@LR_SCHEDULES.register("step")
def step(*, every=10, factor=0.1) -> Callable[[int], float]:
    """lr times factor after every `every` epochs: lr * factor^(epoch // every)."""
    every = positive_int(every, "train.lr_schedule.every")
    if not 0 < factor:
        raise PyrovaeError(f"train.lr_schedule.factor must be positive, got {factor}")
    return lambda epoch: factor ** (epoch // every)


def iwae_stage(epoch: int) -> int:
    """The stage (1-based) that 0-based ``epoch`` falls in when stage i lasts 3^(i-1) epochs."""
    stage, stage_end = 1, 1
    while epoch >= stage_end:
        stage += 1
        stage_end += 3 ** (stage - 1)
    return stage
