"""Chapter 2, gradients of expectations: pathwise against score-function gradients on a
Gaussian toy whose variances are known in closed form, then the quickstart VAE measured by
``pyrovae variance``.

The toy: z ~ N(0, 1), x | z ~ N(z, 1), q = N(m, s^2), one data point. pyrovae's estimators
are measured by the variance laboratory (``gradient_moments``) on a VAE that is exactly this
model, and each measured variance of d(loss)/dm is set beside its closed form.

    python3 examples/course/ch2_gradients.py --out runs/course/ch2_gradients
"""

import itertools
import json
import math
import shutil

import numpy as np
import pyro
import torch
from _course import Claims, arguments, finish, markdown_table, plt, save, write_numbers
from matplotlib.ticker import LogLocator, NullFormatter

from pyrovae.lab.gradient_stats import gradient_moments
from pyrovae.lab.variance import parse_estimators, run_variance
from pyrovae.model import VAE
from pyrovae.spec import load_config

M, S, X = 0.3, 0.6, 1.0  # q's mean and standard deviation, the observation
LOO_K = 5
TOY_ESTIMATORS = ["pathwise", "stl", "score", "score_avg_baseline", f"score_loo:num_particles={LOO_K}"]
VAE_ESTIMATORS = ("pathwise,analytic_kl,stl,score,score_avg_baseline,score_nn_baseline,score_loo,"
                  "iwae:num_particles=5,iwae_dreg:num_particles=5,vimco:num_particles=5")


def toy_vae(m: float = M, s: float = S) -> VAE:
    """The toy as a pyrovae VAE: a linear decoder x = z with unit noise, an encoder whose
    output ignores x and is (m, log s). Encoder bias index 0 is m."""
    spec = load_config("linear_gaussian", ["model.latent_dim=1", "model.likelihood.sigma=1.0"])
    vae = VAE.from_config(spec, (1,), 0)
    with torch.no_grad():
        vae.decoder.head.weight.fill_(1.0)
        vae.decoder.head.bias.zero_()
        vae.encoder.head.weight.zero_()
        vae.encoder.head.bias.copy_(torch.tensor([m, math.log(s)]))
    return vae


# --8<-- [start:closed_forms]
def signal_coefficients(x: float, m: float, s: float):
    """f = log p(x, z) - log q(z) at z = m + s eps is a + b eps + c eps^2 with these a, b, c."""
    a = -0.5 * math.log(2 * math.pi) + math.log(s) - (x - m) ** 2 / 2 - m ** 2 / 2
    return a, s * (x - 2 * m), (1 - 2 * s ** 2) / 2


def closed_form_variance(name: str, x: float, m: float, s: float, baseline: float = 0.0) -> float:
    """Variance of one draw of d(ELBO)/dm.

    pathwise: x - 2z, variance 4 s^2.  STL: x - 2z + (z - m)/s^2 = (x - 2m) + (1/s - 2s) eps.
    score with a constant baseline beta: (f - beta) eps / s; with alpha = a - beta and
    E eps^2 = 1, E eps^4 = 3, E eps^6 = 15 its variance is (alpha^2 + 2b^2 + 15c^2 + 6 alpha c) / s^2.
    """
    a, b, c = signal_coefficients(x, m, s)
    if name == "pathwise":
        return 4 * s ** 2
    if name == "stl":
        return (1 / s - 2 * s) ** 2
    alpha = a - baseline
    return (alpha ** 2 + 2 * b ** 2 + 15 * c ** 2 + 6 * alpha * c) / s ** 2


def draw(name: str, eps: np.ndarray, x: float, m: float, s: float, baseline: float = 0.0) -> np.ndarray:
    """One draw of d(ELBO)/dm as a function of the standard normal draws ``eps`` (shape
    ``(..., K)``; K = 1 except for the leave-one-out estimator, whose draw is
    (1/K) sum_k (f_k - mean_{j != k} f_j) eps_k / s)."""
    a, b, c = signal_coefficients(x, m, s)
    f = a + b * eps + c * eps ** 2
    if name == "pathwise":
        return (x - 2 * (m + s * eps)).mean(-1)
    if name == "stl":
        return (x - 2 * m + (1 / s - 2 * s) * eps).mean(-1)
    if name == "score_loo":
        k = eps.shape[-1]
        others = (f.sum(-1, keepdims=True) - f) / (k - 1)
        return ((f - others) * eps / s).mean(-1)
    return ((f - baseline) * eps / s).mean(-1)


def exact_moments(name: str, x: float, m: float, s: float, baseline: float = 0.0, k: int = 1):
    """Variance and fourth central moment of one draw, exactly: every draw is a polynomial of
    degree at most 3 in each standard normal variable, so its fourth power has degree 12, and
    Gauss-Hermite quadrature with 7 nodes per variable (exact to degree 13) integrates it."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(7)
    weights = weights / weights.sum()
    eps = np.array(list(itertools.product(nodes, repeat=k)))
    w = np.prod(np.array(list(itertools.product(weights, repeat=k))), axis=1)
    g = draw(name, eps, x, m, s, baseline)
    centred = g - (w * g).sum()
    return float((w * centred ** 2).sum()), float((w * centred ** 4).sum())
# --8<-- [end:closed_forms]


def measured_variance(label: str, blocks: int, draws: int, x: float = X, m: float = M, s: float = S):
    """pyrovae's variance of d(loss)/dm: the mean over ``blocks`` independent runs (seeds
    0, 1, ...) of the laboratory's ``gradient_moments`` with ``draws`` draws each, and the
    baseline the estimator used (0 without one)."""
    vae = toy_vae(m, s)
    (choice,) = parse_estimators(label)
    estimator = choice.build()
    batch = (torch.tensor([[x]]), None, 1.0)
    pyro.clear_param_store()
    baseline = 0.0
    with pyro.validation_enabled(False):
        if hasattr(estimator, "adapt"):
            estimator.adapt(vae.model, vae.guide, [batch] * 10, 20)
            if estimator.baseline is not None and hasattr(estimator.baseline, "average"):
                baseline = estimator.baseline.average.value
        values = [gradient_moments(estimator, vae, batch, draws, seed).var[2].item() for seed in range(blocks)]
    return sum(values) / blocks, baseline


def toy_table(blocks: int, draws: int, labels=TOY_ESTIMATORS):
    """Measured against exact variance for every toy estimator. The standard error of a
    variance measured from n draws is sqrt((mu_4 - sigma^4) / n), with the exact fourth
    central moment mu_4 (heavy-tailed draws have large ones)."""
    rows = []
    for label in labels:
        value, baseline = measured_variance(label, blocks, draws)
        name = label.split(":")[0]
        exact, fourth = exact_moments(name, X, M, S, baseline, LOO_K if name == "score_loo" else 1)
        error = math.sqrt((fourth - exact ** 2) / (blocks * draws))
        rows.append({"estimator": label, "closed": exact, "measured": value, "error": error,
                     "z": (value - exact) / error, "baseline": baseline})
    return rows


def vae_chart(results: dict, draws: int, out):
    """One row per estimator: encoder and decoder variance (log scale) and SNR, a marker per
    snapshot, with the SNR that pure noise shows at this many draws."""
    snapshots = results["snapshots"]
    labels = list(snapshots[0]["estimators"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.45 * len(labels) + 1.6), sharey=True)
    markers = ["o", "s", "^", "D"]
    panels = [("encoder", "trace", "encoder gradient variance\n(trace of covariance, nats²)"),
              ("decoder", "trace", "decoder gradient variance\n(trace of covariance, nats²)"),
              ("encoder", "snr", "encoder SNR (mean over parameters\nof |mean| / sd)")]
    for snap, marker in zip(snapshots, markers):
        for ax, (group, key, _) in zip(axes, panels):
            values = [snap["estimators"][lab]["groups"][group][key] for lab in labels]
            ax.plot(values, range(len(labels)), marker, linestyle="none", markersize=7, alpha=0.85,
                    label=f"epoch {snap['epoch']} (step {snap['step']})")
    floor = math.sqrt(2 / (math.pi * draws))
    axes[2].axvline(floor, color="gray", linestyle="--", label=f"noise floor √(2/(πN)) = {floor:.3f}")
    for ax, (_, _, title) in zip(axes, panels):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=5))
        ax.xaxis.set_minor_formatter(NullFormatter())  # labels on powers of ten only: none overlap
        ax.set_xlabel(title, fontsize=10)
        ax.grid(alpha=0.3, which="major", axis="x")
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    handles, names = axes[2].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=10, loc="lower center", ncols=len(names), bbox_to_anchor=(0.5, -0.06))
    fig.suptitle(f"quickstart VAE, one minibatch of 100 digits, N = {draws} gradient draws per estimator")
    return save(fig, out, "quickstart_variance")


def main():
    args = arguments(__doc__, "ch2_gradients")
    blocks, draws = (4, 50) if args.quick else (20, 200)
    rows = toy_table(blocks, draws)
    toy_rows = [[r["estimator"], f"{r['closed']:.4f}", f"{r['measured']:.4f} ± {r['error']:.4f}",
                 f"{r['z']:+.2f}", f"{r['baseline']:.3f}" if r["baseline"] else "none"] for r in rows]
    for r in rows:
        print(f"{r['estimator']:<28} closed {r['closed']:.4f} measured {r['measured']:.4f} ± {r['error']:.4f}")

    vae_draws = 10 if args.quick else 100
    overrides = ["data.train_size=500"] if args.quick else []
    snapshots = [0, 1]  # at initialization and after one epoch (5 steps on 500 digits in a quick run)
    folder = args.cache / f"ch2-variance-run{'-quick' if args.quick else ''}"  # measured afresh every time
    if folder.exists():
        shutil.rmtree(folder)
    run_variance("quickstart", parse_estimators(VAE_ESTIMATORS), draws=vae_draws, snapshots=snapshots, out=folder,
                 overrides=overrides, progress=False)
    results = json.loads((folder / "variance.json").read_text())
    vae_chart(results, vae_draws, args.out)
    vae_rows = []
    first = results["snapshots"][0]["estimators"]
    last = results["snapshots"][-1]["estimators"]
    for label in first:
        e0, e1 = first[label]["groups"]["encoder"], last[label]["groups"]["encoder"]
        vae_rows.append([label, f"{e0['trace']:.3g}", f"{e1['trace']:.3g}", f"{e0['snr']:.3f}", f"{e1['snr']:.3f}",
                         f"{1e3 * e1['seconds_per_draw']:.1f}"])
    write_numbers(args.out, "toy", f"""
{markdown_table(["estimator", "exact", f"measured ({blocks} × {draws} draws) ± s.e.",
                 "(measured − closed) / s.e.", "baseline b"], toy_rows)}

At $m = {M}$, $s = {S}$, $x = {X}$; the variance is that of one draw of $\\partial(-\\mathrm{{ELBO}})/\\partial m$.
""")
    epochs = [s["epoch"] for s in results["snapshots"]]
    write_numbers(args.out, "quickstart", markdown_table(
        ["estimator", f"encoder variance, epoch {epochs[0]}", f"epoch {epochs[-1]}",
         f"encoder SNR, epoch {epochs[0]}", f"epoch {epochs[-1]}", "ms per draw"], vae_rows))
    write_numbers(args.out, "setting", f"""
at initialization and after one epoch of training ({results["snapshots"][-1]["step"]} steps on
{500 if args.quick else 50000} digits), on one minibatch of 100 digits, with $N = {vae_draws}$ gradient draws per
estimator.""")
    a, b, c = signal_coefficients(X, M, S)
    average = next(r["baseline"] for r in rows if r["estimator"] == "score_avg_baseline")
    write_numbers(args.out, "baseline_solution", markdown_table(
        ["baseline β", "value", "variance of one draw, closed form"],
        [["none (β = 0)", "0", f"{closed_form_variance('score', X, M, S, 0.0):.4f}"],
         ["the mean of f, a + c", f"{a + c:.4f}", f"{closed_form_variance('score', X, M, S, a + c):.4f}"],
         ["the optimum, a + 3c", f"{a + 3 * c:.4f}", f"{closed_form_variance('score', X, M, S, a + 3 * c):.4f}"],
         ["`score_avg_baseline`'s moving average", f"{average:.4f}",
          f"{closed_form_variance('score', X, M, S, average):.4f}"]]))
    claims = Claims(args)
    claims.check("toy", all(abs(r["z"]) < 3 for r in rows),
                 "Every measured variance in the table lies within three standard errors of the exact one.",
                 "largest |z| " + f"{max(abs(r['z']) for r in rows):.2f}")
    vae_claims(claims, results, vae_draws)
    finish(args, claims)


def vae_claims(claims, results, draws: int) -> None:
    """The chart's reading, asserted on every snapshot the run measured."""
    floor = math.sqrt(2 / (math.pi * draws))
    single = ["pathwise", "analytic_kl", "stl", "score", "score_avg_baseline", "score_nn_baseline"]
    ratios, snr, baselines, loo, decoder = [], [], [], [], []
    for snap in results["snapshots"]:
        e = {label: v["groups"]["encoder"] for label, v in snap["estimators"].items()}
        d = [snap["estimators"][label]["groups"]["decoder"]["trace"] for label in single]
        ratios.append(e["score"]["trace"] / e["pathwise"]["trace"])
        snr.append(e["score"]["snr"] / floor)
        baselines.append(min(e["score"]["trace"] / e[b]["trace"] for b in ("score_avg_baseline", "score_nn_baseline")))
        loo.append(e["score_loo"]["trace"] / e["pathwise"]["trace"])
        decoder.append(max(d) / min(d))
    orders = [math.log10(r) for r in ratios]
    claims.check("score_noisier", min(orders) >= 3,
                 f"The score function without a baseline is {min(orders):.1f} to {max(orders):.1f} orders of "
                 "magnitude noisier than the pathwise estimator in the encoder.",
                 f"score / pathwise encoder variance 10^{min(orders):.1f}", full_only=True)
    claims.check("score_snr", max(snr) < 2,
                 "Its SNR sits within a factor of two of the dashed line.",
                 f"SNR / noise floor up to {max(snr):.2f}", full_only=True)
    claims.check("baselines", min(baselines) > 1,
                 f"A moving-average or neural baseline removes a factor of {min(baselines):.3g} or more of the score "
                 "function's variance.",
                 f"smallest reduction {min(baselines):.3g}", full_only=True)
    claims.check("loo", max(loo) < min(ratios),
                 f"A leave-one-out baseline over five samples brings it within a factor of {max(loo):.3g} of the "
                 "pathwise estimator.",
                 f"score_loo / pathwise {max(loo):.3g}, score / pathwise {min(ratios):.3g}")
    claims.check("decoder", max(decoder) < 1.2,
                 "The decoder's gradient is pathwise in every single-sample estimator, so its variance is the same "
                 f"for all of them (within a factor of {max(decoder):.3f} here).",
                 f"largest ratio of decoder variances {max(decoder):.3f}")


if __name__ == "__main__":
    main()
