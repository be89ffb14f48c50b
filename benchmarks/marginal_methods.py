"""Importance sampling, AIS and BDMC on one trained run: the numbers of
docs/marginal_likelihood.md ("Numbers on the quickstart run").

On the first ``--points`` test points: importance sampling with K = ``--num-samples``
(Pareto k-hat, and the same with heavier-tailed proposals), then AIS with each of
``--ais-steps``, compared with importance sampling point by point; then BDMC on
``--points`` points simulated from the model with each of ``--bdmc-steps``. Wall times are
of this process with one torch thread, on whatever else the machine is doing.

    pyrovae train quickstart --out runs/qs
    PYROVAE_DATA=../shared/data python benchmarks/marginal_methods.py runs/qs --ais-steps 300 --bdmc-steps 100
"""

import argparse
import json
import time

import torch

from pyrovae.components.datasets import load_data
from pyrovae.evaluation.ais import annealed_importance_sample
from pyrovae.evaluation.bdmc import bidirectional_monte_carlo
from pyrovae.evaluation.importance import Proposal, importance_sample
from pyrovae.runs.loading import load_run


def error_of_mean(std_errors: torch.Tensor) -> float:
    return float(std_errors.pow(2).sum().sqrt() / std_errors.shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--ais-steps", default="300", help="comma-separated")
    parser.add_argument("--bdmc-steps", default="100", help="comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec, vae = load_run(args.run, "cpu")
    x = load_data(spec.data).test.x[:args.points]
    n = x.shape[0]

    def emit(**row):
        print(json.dumps(row), flush=True)

    torch.manual_seed(0)
    started = time.perf_counter()
    sampled = importance_sample(vae, x, num_samples=args.num_samples, khat=True)
    emit(method="is", proposal="guide", mean=float(sampled.log_marginal.value.mean()),
         mc_error_of_mean=error_of_mean(sampled.log_marginal.std_error),
         share_khat_above_07=float((sampled.khat > 0.7).double().mean()), seconds=time.perf_counter() - started)
    for proposal in (Proposal(scale=1.5), Proposal(df=5.0)):
        started = time.perf_counter()
        other = importance_sample(vae, x, num_samples=args.num_samples, khat=True, proposal=proposal)
        emit(method="is", proposal=proposal.describe(), mean=float(other.log_marginal.value.mean()),
             share_khat_above_07=float((other.khat > 0.7).double().mean()), seconds=time.perf_counter() - started)
    for steps in [int(s) for s in args.ais_steps.split(",") if s]:
        started = time.perf_counter()
        ais = annealed_importance_sample(vae, x, steps=steps, chains=args.chains)
        diff = ais.log_marginal.value - sampled.log_marginal.value
        emit(method="ais", steps=steps, chains=args.chains, mean=float(ais.log_marginal.value.mean()),
             mc_error_of_mean=error_of_mean(ais.log_marginal.std_error), spread=float(ais.spread.mean()),
             accept=float(ais.accept_rate.mean()), ais_minus_is={
                 "mean": float(diff.mean()), "std_error": float(diff.std() / n ** 0.5), "min": float(diff.min()),
                 "max": float(diff.max()), "share_positive": float((diff > 0).double().mean())},
             seconds=time.perf_counter() - started)
    for steps in [int(s) for s in args.bdmc_steps.split(",") if s]:
        started = time.perf_counter()
        bdmc = bidirectional_monte_carlo(vae, n, steps=steps, chains=args.chains)
        emit(method="bdmc", steps=steps, chains=args.chains, points=n, lower=float(bdmc.lower.value.mean()),
             upper=float(bdmc.upper.value.mean()), gap={"mean": float(bdmc.gap.mean()),
                                                        "std_error": float(bdmc.gap.std() / n ** 0.5),
                                                        "median": float(bdmc.gap.median()), "max": float(bdmc.gap.max())},
             seconds=time.perf_counter() - started)


if __name__ == "__main__":
    main()
