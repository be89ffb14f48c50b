"""CPU time per training step: pyrovae's SVI step against a hand-written PyTorch VAE.

Contenders, all fitting the same VAE (tanh MLPs, Bernoulli likelihood, standard normal
prior, single-sample pathwise ELBO with a Monte Carlo KL, Adam 1e-3) on the same minibatches
of static binarized MNIST:

* ``handwritten``: the ELBO written as formulas in plain PyTorch, Adam with ``fused=True``,
  gradients set to None between steps: the leanest fair baseline;
* ``pyrovae_before``: pyrovae's previous step: Pyro's ``SVI.step`` with ``Trace_ELBO`` and
  one torch Adam in its default (unfused) implementation, gradients zero-filled by Pyro;
* ``pyrovae_after``: the step ``pyrovae train`` takes now (:class:`pyrovae.inference.svi.TrainingSVI`
  with the default ``adam`` optimizer): Pyro's SVI with ``Trace_ELBO``, fused Adam,
  gradients set to None;
* ``handwritten_compiled``: the hand-written step with its loss compiled by ``torch.compile``
  (inductor, forward and backward, static shapes), fused Adam as above;
* ``pyrovae_compiled``: ``train.compile=true``
  (:class:`pyrovae.inference.compiled.CompiledStep`): Pyro's model, guide and loss recorded
  once as one forward-and-backward graph, compiled by inductor, fused Adam.

The compiled contenders' first step records and compiles; its cost is reported as compile
time: CPU seconds of this process and its children (the C++ compiler), inductor's caches
off, less one step. Steps to pay it off: compile time over the time a compiled step saves
against its eager twin (``pyrovae_after``, ``handwritten``).

Everything runs in one process on one torch thread. The contenders take turns in blocks of
steps (the order rotating from repeat to repeat), each block timed in process CPU time, so
load from other processes on a shared machine slows all of them alike; min and median of
the per-step times over the repeats are reported with their ratios to the hand-written step.
Each step's matrix products are counted (2 multiply-adds per weight per data point forward,
the same twice backward except the input gradient of the first layer, which nothing needs)
and divided by the machine's single-thread fp32 matmul rate, measured in the same process
(best of several 1024 x 1024 products before and after), to give each step's share of peak.

    PYROVAE_DATA=../shared/data python benchmarks/training_speed.py [--repeats 5] [--json out.json]

``--profile`` instead splits a step of the hand-written VAE and of pyrovae's into the loss
(forward pass, building the autograd graph), the backward pass, and the rest (the optimizer
and, for pyrovae, SVI's parameter collection), by timing the three prefixes of a step the
same interleaved way.

On a machine with CUDA, ``--device cuda`` times the same steps on the GPU (wall time with a
synchronisation at the end of each block; matmul peak measured on the GPU).
"""

import argparse
import json
import math
import platform
import resource
import statistics
import time

import pyro
import torch
import torch._inductor.config
from pyro.infer import SVI, Trace_ELBO
from torch import nn

from pyrovae import load_config
from pyrovae.components.datasets import load_data
from pyrovae.inference.estimators import build_estimator
from pyrovae.inference.optim import OPTIMIZERS, JointOptim
from pyrovae.inference.svi import TrainingSVI
from pyrovae.runs.loading import build_vae

# (label, latent dimension, hidden units, batch size)
SETUPS = [("784-400-50, batch 20", 50, 400, 20), ("784-400-50, batch 100", 50, 400, 100),
          ("784-400-50, batch 1000", 50, 400, 1000), ("784-200-2, batch 100", 2, 200, 100)]


class HandWrittenVAE(nn.Module):
    """The same networks as pyrovae's ``mlp`` encoder and decoder, written out by hand."""

    def __init__(self, mean_image, hidden=400, latent=50):
        super().__init__()
        pixels = mean_image.numel()
        self.encoder = nn.Sequential(nn.Linear(pixels, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, pixels))
        with torch.no_grad():
            self.decoder[-1].bias.copy_(torch.logit(mean_image.flatten().clamp(1e-3, 1 - 1e-3)))

    def negative_elbo(self, x):
        """-ELBO summed over the batch, single sample, Monte Carlo KL, written as formulas
        (no distribution objects, so no argument validation: the leanest fair baseline)."""
        x = x.flatten(1)
        loc, log_scale = self.encoder(x).chunk(2, -1)
        eps = torch.randn_like(loc)
        z = loc + log_scale.exp() * eps
        log_lik = -nn.functional.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)
        log_prior = -0.5 * (z ** 2).sum(-1)
        log_q = (-0.5 * eps ** 2 - log_scale).sum(-1)  # the 2 pi terms cancel with the prior's
        return -(log_lik + log_prior - log_q).sum()


def handwritten_step(data, latent, hidden, device, compiled=False):
    vae = HandWrittenVAE(data.train.x.mean(0), hidden, latent).to(device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3, fused=True)
    negative_elbo = torch.compile(vae.negative_elbo, dynamic=False) if compiled else vae.negative_elbo

    def step(x):
        loss = negative_elbo(x)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


class ZeroFilledJointOptim(JointOptim):
    """``JointOptim`` as it was: it steps and leaves the gradients to Pyro's zero-filling."""

    def __call__(self, params, *args, **kwargs) -> None:
        new = [p for p in params if p not in self._seen]
        if new:
            self._add(new)
        self.optimizer.step(*args, **kwargs)


def pyrovae_spec(latent, hidden, device):
    return load_config("quickstart", [f"model.latent_dim={latent}", f"model.encoder.hidden=[{hidden}]",
                                      f"model.decoder.hidden=[{hidden}]", f"train.device={device}"])


def pyrovae_before_step(data, latent, hidden, device):
    spec = pyrovae_spec(latent, hidden, device)
    vae = build_vae(spec, data)
    svi = SVI(vae.model, vae.guide, ZeroFilledJointOptim(torch.optim.Adam, {"lr": 1e-3}), Trace_ELBO())
    return lambda x: svi.step(x, None, 1.0)


def pyrovae_after_step(data, latent, hidden, device, compile=False):
    spec = pyrovae_spec(latent, hidden, device)
    vae = build_vae(spec, data)
    optimizer = OPTIMIZERS.build(spec.train.optimizer.name, options=spec.train.optimizer.options)
    svi = TrainingSVI(vae, optimizer, build_estimator(spec.train.estimator), compile=compile)
    return lambda x: svi.step(x, None, 1.0)


def step_parts(data, latent, hidden, device):
    """Three functions of a minibatch for pyrovae's step: the loss alone, loss and backward
    pass, the whole step (a fresh VAE each)."""
    spec = pyrovae_spec(latent, hidden, device)
    vae = build_vae(spec, data)
    optimizer = OPTIMIZERS.build(spec.train.optimizer.name, options=spec.train.optimizer.options)
    svi = TrainingSVI(vae, optimizer, build_estimator(spec.train.estimator))
    params = list(vae.parameters())

    def loss(x):
        return svi.elbo.differentiable_loss(vae.model, vae.guide, x, None, 1.0)

    def backward(x):
        loss(x).backward()
        for p in params:
            p.grad = None
    return {"loss": loss, "loss + backward": backward, "step": lambda x: svi.step(x, None, 1.0)}


def handwritten_parts(data, latent, hidden, device):
    vae = HandWrittenVAE(data.train.x.mean(0), hidden, latent).to(device)
    step = handwritten_step(data, latent, hidden, device)

    def backward(x):
        vae.negative_elbo(x).backward()
        for p in vae.parameters():
            p.grad = None
    return {"loss": vae.negative_elbo, "loss + backward": backward, "step": step}


def step_matmul_flops(latent, hidden, batch, pixels=784):
    """Floating-point operations of a step's matrix products (see the module docstring)."""
    layers = [pixels * hidden, hidden * 2 * latent, latent * hidden, hidden * pixels]
    return 2 * batch * (3 * sum(layers) - layers[0])


def matmul_peak(device, size=1024, repeats=20):
    """Best fp32 matrix-product rate (FLOP/s) of this process on ``device``."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best = math.inf
    for _ in range(repeats):
        started = clock(device)
        torch.mm(a, b)
        best = min(best, clock(device) - started)
    return 2 * size ** 3 / best


def cpu_with_children() -> float:
    """CPU seconds of this process and its finished children (inductor's C++ compiler runs)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def clock(device):
    """Process CPU time on the CPU; synchronised wall time on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


def interleaved(steps: dict, batches, repeats: int, block: int, scopes: dict) -> dict:
    """CPU time per call of each function in ``steps``: blocks of ``block`` calls, the
    functions taking turns (the order rotating from repeat to repeat), each block in its
    contender's own Pyro parameter store."""
    device = batches[0].device
    times = {name: [] for name in steps}
    names = list(steps)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            with pyro.get_param_store().scope(scopes[name]):
                started = clock(device)
                for i in range(block):
                    steps[name](batches[(r * block + i) % len(batches)])
                times[name].append((clock(device) - started) / block)
    return times


def prepared(builders: dict, data, latent, hidden, batch, device, block_seconds):
    """The built functions (warmed up), each with its contender's parameter store (Pyro
    registers parameters by name, and every contender's VAE has the same names), the
    minibatches, a block length of about ``block_seconds`` of the first function, and the
    CPU seconds (with children) of each function's first call."""
    batches = [data.train.x[i * batch:(i + 1) * batch].to(device) for i in range(data.train.x.shape[0] // batch)]
    steps, scopes, first_calls = {}, {}, {}
    for name, build in builders.items():
        torch.manual_seed(0)
        with pyro.get_param_store().scope() as scope:
            built = build(data, latent, hidden, device)
            for part, fn in (built.items() if isinstance(built, dict) else [(None, built)]):
                key = name if part is None else f"{name}: {part}"
                steps[key], scopes[key] = fn, scope
                started = cpu_with_children()
                fn(batches[0])  # the first call (and the compilers' work)
                first_calls[key] = cpu_with_children() - started
                for xb in batches[1:5]:  # warm-up
                    fn(xb)
    first = next(iter(steps.values()))
    started = clock(device)
    for xb in batches[:5]:
        first(xb)
    block = max(3, round(block_seconds / max((clock(device) - started) / 5, 1e-6)))
    return steps, batches, block, scopes, first_calls


def profile(args, data, device) -> dict:
    """Medians of the three prefixes of a step (see the module docstring), per setup."""
    builders = {"handwritten": handwritten_parts, "pyrovae": step_parts}
    results = {}
    for label, latent, hidden, batch in SETUPS:
        if batch == 1000:
            continue
        steps, batches, block, scopes, _ = prepared(builders, data, latent, hidden, batch, device, args.block_seconds / 3)
        times = interleaved(steps, batches, args.repeats, block, scopes)
        medians = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        results[label] = {}
        print(f"{label} (ms per step, medians):", flush=True)
        for name in builders:
            loss, backward, step = (medians[f"{name}: {part}"] for part in ("loss", "loss + backward", "step"))
            results[label][name] = {"loss_ms": loss, "backward_ms": backward - loss, "rest_ms": step - backward,
                                    "step_ms": step}
            print(f"  {name:<12} loss {loss:6.2f}  backward {backward - loss:6.2f}  optimizer and rest "
                  f"{step - backward:6.2f}  step {step:6.2f}", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--block-seconds", type=float, default=0.4, help="CPU seconds per timed block")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true", help="split steps into loss, backward and the rest")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch._inductor.config.force_disable_caches = True  # compile times from scratch
    torch._inductor.config.compile_threads = 1
    device = torch.device(args.device)
    data = load_data(load_config("quickstart").data)
    machine = (f"{platform.processor() or platform.machine()}, 1 torch thread, torch {torch.__version__}, "
               f"pyro {pyro.__version__}, {device}")
    with pyro.validation_enabled(False):
        if args.profile:
            result = {"machine": machine, "repeats": args.repeats, "profile": profile(args, data, device)}
        else:
            result = {"machine": machine, "repeats": args.repeats, **compare(args, data, device)}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


def compare(args, data, device) -> dict:
    """The table: per-step CPU time of every contender, ratios and shares of matmul peak."""
    peak = matmul_peak(device)
    contenders = {"handwritten": handwritten_step,
                  "handwritten_compiled": lambda *a: handwritten_step(*a, compiled=True),
                  "pyrovae_before": pyrovae_before_step, "pyrovae_after": pyrovae_after_step,
                  "pyrovae_compiled": lambda *a: pyrovae_after_step(*a, compile=True)}
    eager_twin = {"handwritten_compiled": "handwritten", "pyrovae_compiled": "pyrovae_after"}
    results = {}
    for label, latent, hidden, batch in SETUPS:
        steps, batches, block, scopes, first_calls = prepared(contenders, data, latent, hidden, batch, device,
                                                              args.block_seconds)
        times = interleaved(steps, batches, args.repeats, block, scopes)
        flops = step_matmul_flops(latent, hidden, batch)
        results[label] = {name: {"min_ms": 1e3 * min(t), "median_ms": 1e3 * statistics.median(t),
                                 **ratios(t, times["handwritten"], ""),
                                 **ratios(t, times["handwritten_compiled"], "_to_compiled"),
                                 "share_of_peak": flops / statistics.median(t) / peak}
                          for name, t in times.items()}
        for name, twin in eager_twin.items():
            compile_s = first_calls[name] - statistics.median(times[name])
            saved = statistics.median(times[twin]) - statistics.median(times[name])
            results[label][name]["compile_s"] = compile_s
            results[label][name]["steps_to_pay_off"] = math.ceil(compile_s / saved) if saved > 0 else None
        print(f"{label} ({block} steps per block, {flops / 1e9:.3f} GFLOP per step):", flush=True)
        for name, row in results[label].items():
            compiled = (f"  compile {row['compile_s']:.1f} s, pays off after {row['steps_to_pay_off']} steps"
                        if "compile_s" in row else "")
            print(f"  {name:<20} min {row['min_ms']:7.2f} ms  median {row['median_ms']:7.2f} ms  "
                  f"ratio {row['ratio_min']:.2f} / {row['ratio_median']:.2f}  to compiled "
                  f"{row['ratio_min_to_compiled']:.2f} / {row['ratio_median_to_compiled']:.2f}  "
                  f"{100 * row['share_of_peak']:.0f}% of peak{compiled}", flush=True)
    peak = max(peak, matmul_peak(device))
    for (label, latent, hidden, batch) in SETUPS:  # shares against the better of the two peak measurements
        for row in results[label].values():
            row["share_of_peak"] = step_matmul_flops(latent, hidden, batch) / (row["median_ms"] / 1e3) / peak
    return {"matmul_peak_gflops": peak / 1e9, "setups": results}


def ratios(times, base, suffix: str) -> dict:
    """Ratios to ``base``'s times: of the minima, of the medians, and the median and minimum of
    the per-repeat ratios (each block against the same repeat's block of ``base``)."""
    paired = [t / b for t, b in zip(times, base)]
    return {f"ratio_min{suffix}": min(times) / min(base),
            f"ratio_median{suffix}": statistics.median(times) / statistics.median(base),
            f"paired_ratio_median{suffix}": statistics.median(paired), f"paired_ratio_min{suffix}": min(paired)}


if __name__ == "__main__":
    main()
