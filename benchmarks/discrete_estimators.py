"""The estimators for discrete latents: the tables of docs/benchmarks_estimators.md.

    PYROVAE_DATA=../shared/data python benchmarks/discrete_estimators.py --out runs/discrete-lab
    PYROVAE_DATA=../shared/data python benchmarks/discrete_estimators.py --quick --out /tmp/quick   # seconds

1. Bias against the exact gradient on the small sigmoid belief nets of pyrovae.lab.discrete
   (6 binary latents; 2 groups of 4 classes), ``--chunks x --per-chunk`` draws per estimator.
2. The variance laboratory (``variance.json``, ``variance.csv``, report) on the binary one, one
   draw at a time, so the cost per draw is a training step's.
3. The laboratory on a linear sigmoid belief net with 200 binary latents on static binarized
   MNIST (784-200), at initialization and after ``--train-steps`` DisARM steps, references by the
   score function with leave-one-out baselines (VIMCO for the 5-sample bound) over
   ``--reference-draws`` draws (no enumeration at this size).
4. ``--step-times``: the CPU time of one training step (``TrainingSVI.step``: loss, backward,
   baseline or control-variate update, Adam) of each estimator on the ``sbn_mnist`` config, so
   that a training budget can be set in steps (``benchmarks/discrete/reproduce.py``), and the
   wall-clock and CPU time of NVIL's step with one torch thread and with two.

Prints markdown tables; ``--quick`` runs tiny settings (CI).
"""

import argparse
import statistics
import time
from pathlib import Path

import pyro
import torch

from pyrovae.components.datasets import load_data
from pyrovae.inference.estimators import ESTIMATORS
from pyrovae.inference.optim import OPTIMIZERS
from pyrovae.inference.sigmoid_belief_net import SigmoidBeliefNet
from pyrovae.inference.svi import TrainingSVI
from pyrovae.lab.discrete import bias_table, run_discrete_variance, small_discrete_model
from pyrovae.lab.variance import ADAPT_BATCHES, measure_batches, parse_estimators, write_results
from pyrovae.reports.markdown import markdown_table
from pyrovae.reports.variance_report import write_variance_report
from pyrovae.runs.loading import build_vae
from pyrovae.spec import load_config

BIAS = {
    "bernoulli": "score,score_avg_baseline,score_nn_baseline,nvil,score_loo,vimco:num_particles=2,"
                 "reweighted_wake_sleep:num_particles=2,arm,disarm,rebar,relax,enum,gumbel_softmax:temperature=1.0,"
                 "gumbel_softmax:temperature=0.5,gumbel_softmax:temperature=0.25,gumbel_softmax:temperature=0.1,"
                 "gumbel_st:temperature=1.0,gumbel_st:temperature=0.5,gumbel_st:temperature=0.1",
    "categorical": "score,score_avg_baseline,score_nn_baseline,nvil,score_loo,vimco:num_particles=2,enum,"
                   "gumbel_softmax:temperature=1.0,gumbel_softmax:temperature=0.5,gumbel_softmax:temperature=0.25,"
                   "gumbel_softmax:temperature=0.1,gumbel_st:temperature=1.0,gumbel_st:temperature=0.5,"
                   "gumbel_st:temperature=0.1",
}
LAB = "score,score_avg_baseline,nvil,score_loo,vimco,arm,disarm,rebar,relax,gumbel_softmax,gumbel_st"
STEP_TIMES = "score,score_nn_baseline,nvil,score_loo,vimco,reweighted_wake_sleep,arm,disarm,rebar,relax," \
             "gumbel_softmax,gumbel_st"


def bias_rows(family: str, chunks: int, per_chunk: int):
    model, args, others = small_discrete_model(family)
    results = bias_table(model, args, others, parse_estimators(BIAS[family]), chunks, per_chunk, seed=0)
    rows = []
    for label, r in results.items():
        every, enc = r["groups"]["all"], r["groups"]["encoder"]
        rows.append([label, r["reference"].kind.split(" by ")[0].replace("exact (", ""), f"{r['t'].abs().max():.2f}",
                     f"{every['relative_bias']:.4f}", f"{every['relative_noise']:.4f}", f"{every['cosine']:.5f}",
                     f"{enc['trace']:.3g}"])
    return rows


def lab_rows(estimators: dict, base: str = "score"):
    rows = []
    base_seconds = estimators[base]["groups"]["encoder"]["seconds_per_draw"]
    base_trace = estimators[base]["groups"]["encoder"]["trace"]
    for label, entry in estimators.items():
        enc, dec, every = (entry["groups"][g] for g in ("encoder", "decoder", "all"))
        rows.append([label, f"{enc['trace']:.3g}", f"{enc['trace'] / base_trace:.3g}", f"{dec['trace']:.3g}",
                     f"{enc['snr']:.3g}", f"{every['cosine']:.4f}", f"{every['relative_bias']:.3g}",
                     f"{every['relative_noise']:.2g}", f"{enc['seconds_per_draw'] / base_seconds:.2f}"])
    return rows


LAB_HEADER = ["estimator", "encoder variance", "x score", "decoder variance", "encoder SNR", "cosine",
              "norm of bias / norm of ref", "noise", "cost per draw x score"]


def mnist_sbn(out: Path, draws: int, reference_draws: int, train_steps: int, adapt_batches: int, batch: int = 100):
    """The 784-200 linear SBN at initialization and after ``train_steps`` DisARM steps, baselines and
    control variates fitted on ``adapt_batches`` minibatches."""
    data = load_data(load_config("quickstart").data)
    x = data.train.x
    batches = [(x[i:i + batch], None, 1.0) for i in range(0, (adapt_batches + 1) * batch, batch)]
    pyro.set_rng_seed(0)
    sbn = SigmoidBeliefNet(data.data_shape, 200)
    with torch.no_grad():  # the decoder starts at the data's mean, as the VAE's data_init does
        mean = x.mean(0).flatten().clamp(1e-3, 1 - 1e-3)
        sbn.decoder.head.bias.copy_(mean.log() - (-mean).log1p())
    choices = parse_estimators(LAB)
    snapshots = []
    for step in (0, train_steps):
        if step:
            pyro.clear_param_store()
            svi = pyro.infer.SVI(sbn.model, sbn.guide, pyro.optim.Adam({"lr": 1e-3}), ESTIMATORS.build("disarm"))
            order = torch.randperm(x.shape[0])
            for i in range(step):
                svi.step(x[order[(i * batch) % x.shape[0]:][:batch]], None, 1.0)
        estimators = measure_batches(sbn, batches[0], batches[1:], choices, draws, 0, reference_draws,
                                     log=lambda *_: None)
        snapshots.append({"epoch": round(step * batch / x.shape[0], 2), "step": step, "estimators": estimators})
    results = {"source": "SigmoidBeliefNet((1, 28, 28), 200) on binarized_mnist",
               "settings": {"draws": draws, "batch_size": batch, "seed": 0, "reference_draws": reference_draws},
               "snapshots": snapshots}
    write_results(out, results)
    write_variance_report(out, results)
    return results


def training_steps(config: str, choice, warmup: int = 3):
    """``steps(n)``: n training steps of ``config`` with the estimator ``choice`` (an
    ``EstimatorChoice``) on consecutive minibatches, after ``warmup`` untimed ones."""
    spec = load_config(config)
    data = load_data(spec.data)
    x, batch = data.train.x, spec.train.batch_size
    pyro.clear_param_store()
    vae = build_vae(spec, data)
    optimizer = OPTIMIZERS.build(spec.train.optimizer.name, options=spec.train.optimizer.options)
    svi = TrainingSVI(vae, optimizer, ESTIMATORS.build(choice.name, options=choice.options))
    done = 0

    def steps(n: int) -> None:
        nonlocal done
        for i in range(done, done + n):
            svi.step(x[(i * batch) % x.shape[0]:][:batch], None, 1.0)
        done += n

    steps(warmup)
    return steps


def step_times(config: str, estimators: str, steps: int, blocks: int) -> list:
    """Rows (estimator, ms per step, x the score function's): the CPU time of a training step of
    ``config`` with each estimator, ``steps`` steps in ``blocks`` blocks: the median block per
    step, so that a burst of load on the shared machine touches one block, not the figure."""
    seconds = {}
    for choice in parse_estimators(estimators):
        run = training_steps(config, choice)
        per_block = []
        for _ in range(blocks):
            started = time.process_time()
            run(steps // blocks)
            per_block.append(time.process_time() - started)
        seconds[choice.label] = statistics.median(per_block) / (steps // blocks)
    base = seconds.get("score")
    return [[label, f"{1000 * s:.1f}", "" if base is None else f"{s / base:.2f}"] for label, s in seconds.items()]


def thread_rows(config: str, estimator: str, steps: int, rounds: int = 2) -> list:
    """Rows (torch threads, wall ms per step, CPU ms per step) of the same training run stepped
    with one thread and with two in turns, ``steps`` steps a turn, each figure the median turn: on
    a machine whose other core is busy, the second thread mostly waits for it."""
    run = training_steps(config, parse_estimators(estimator)[0])
    times = {1: [], 2: []}
    for _ in range(rounds):
        for threads in times:
            torch.set_num_threads(threads)
            wall, cpu = time.perf_counter(), time.process_time()
            run(steps)
            times[threads].append((time.perf_counter() - wall, time.process_time() - cpu))
    torch.set_num_threads(1)
    return [[threads, f"{1000 * statistics.median(w for w, _ in t) / steps:.1f}",
             f"{1000 * statistics.median(c for _, c in t) / steps:.1f}"] for threads, t in times.items()]


def small(out: Path, a) -> None:
    """Parts 1 and 2: the bias tables and the laboratory on the small exact model."""
    for family in ("bernoulli", "categorical"):
        print(f"\n### Bias against the exact gradient: {family}\n")
        print(markdown_table(["estimator", "bound", "max abs t", "norm of bias / norm of exact", "noise", "cosine",
                              "encoder variance"], bias_rows(family, a.chunks, a.per_chunk)))
    _, results = run_discrete_variance(out / "small-bernoulli", parse_estimators(LAB + ",enum"), "bernoulli", a.draws,
                                       reference_draws=a.reference_draws)
    write_variance_report(out / "small-bernoulli", results)
    print(f"\n### Variance laboratory, small binary SBN ({a.draws} draws)\n")
    print(markdown_table(LAB_HEADER, lab_rows(results["snapshots"][0]["estimators"])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/discrete-lab")
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--per-chunk", type=int, default=50)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--mnist-draws", type=int, default=200)
    parser.add_argument("--reference-draws", type=int, default=40000)
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--adapt-batches", type=int, default=ADAPT_BATCHES,
                        help="MNIST minibatches the baselines and control variates are fitted on")
    parser.add_argument("--skip-mnist", action="store_true")
    parser.add_argument("--skip-small", action="store_true", help="only the MNIST sigmoid belief net")
    parser.add_argument("--step-times", action="store_true",
                        help="only the CPU time of a training step of each estimator on sbn_mnist")
    parser.add_argument("--steps", type=int, default=100, help="timed training steps per estimator (--step-times)")
    parser.add_argument("--quick", action="store_true", help="tiny settings, to check the script runs")
    a = parser.parse_args()
    if a.quick:
        a.chunks, a.per_chunk, a.draws, a.mnist_draws, a.reference_draws, a.train_steps = 4, 5, 4, 3, 400, 2
        a.adapt_batches, a.steps = 1, 5
    torch.set_num_threads(1)
    if a.step_times:
        print(f"\n### A training step on sbn_mnist (CPU time, one thread, {a.steps} steps each)\n")
        print(markdown_table(["estimator", "ms per step", "x score"],
                             step_times("sbn_mnist", STEP_TIMES, a.steps, blocks=min(5, a.steps))))
        print(f"\n### One and two torch threads, nvil on sbn_mnist ({a.steps // 2} steps a turn, 2 turns each)\n")
        print(markdown_table(["torch threads", "wall ms per step", "CPU ms per step"],
                             thread_rows("sbn_mnist", "nvil", max(1, a.steps // 2))))
        return
    out = Path(a.out)
    if not a.skip_small:
        small(out, a)
    if not a.skip_mnist:
        results = mnist_sbn(out / "mnist-sbn", a.mnist_draws, a.reference_draws, a.train_steps, a.adapt_batches)
        for snapshot in results["snapshots"]:
            print(f"\n### Variance laboratory, MNIST SBN 784-200, step {snapshot['step']} ({a.mnist_draws} draws)\n")
            print(markdown_table(LAB_HEADER, lab_rows(snapshot["estimators"])))


if __name__ == "__main__":
    main()
