"""Chapter 5, tighter bounds and honest estimates: IWAE_K against K, importance sampling,
effective sample size and Pareto k-hat, checked against quadrature on the 2-D VAE of
chapter 4 (where log p(x) is known to a thousandth of a nat).

    python3 examples/course/ch5_bounds.py --out runs/course/ch5_bounds
"""

import math

import torch
from _course import Claims, arguments, finish, markdown_table, plt, save, write_numbers
from ch4_amortized_inference import model_2d

from pyrovae.evaluation.ais import annealed_importance_sample
from pyrovae.evaluation.importance import importance_sample
from pyrovae.evaluation.references import quadrature_log_marginal

AIS_POINTS = 5  # the digits with the largest k-hat get a second opinion from annealed importance sampling


def khat_threshold(samples: int) -> float:
    """The sample-size dependent PSIS threshold min(1 - 1 / log10 S, 0.7) of Vehtari et al.:
    above it, S draws are too few for a reliable estimate."""
    return min(1 - 1 / math.log10(samples), 0.7)


def bound_errors(result, truth, ks):
    """For each K: the mean over digits of IWAE_K - log p(x) and its Monte Carlo standard error."""
    n = len(truth)
    return {k: ((result.iwae[k].value - truth).mean().item(), result.iwae[k].std_error.pow(2).mean().sqrt().item() / n ** 0.5)
            for k in ks}


def bounds_figure(ks, result, truth, out):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    means = [result.iwae[k].value.mean().item() for k in ks]
    errors = [result.iwae[k].std_error.pow(2).mean().sqrt().item() / len(truth) ** 0.5 for k in ks]
    ax.errorbar(ks, means, yerr=[3 * e for e in errors], fmt="o-", capsize=3,
                label="IWAE_K, mean over digits (± 3 Monte Carlo s.e.)")
    ax.axhline(truth.mean().item(), color="black", linestyle="--", label="log p(x) by quadrature, mean over digits")
    ax.set_xscale("log")
    ax.set_xlabel("K, importance samples per digit")
    ax.set_ylabel("nats per digit")
    ax.set_title("IWAE_K against K, and the exact log p(x)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9, loc="lower right")
    return save(fig, out, "bounds_vs_k")


def diagnostics_figure(result, truth, out):
    error = (result.log_marginal.value - truth).numpy()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    points = ax.scatter(result.khat, error, c=result.ess.log10(), cmap="viridis", s=25)
    fig.colorbar(points, ax=ax, label="log10(ESS / K)")
    threshold = khat_threshold(result.num_samples)
    for level, text in ((0.5, "0.5"), (threshold, f"{threshold:.2f}, the threshold for K = {result.num_samples}")):
        ax.axvline(level, color="gray", linestyle=":", linewidth=1)
        ax.text(level, ax.get_ylim()[0], f" k̂ = {text}", fontsize=9, va="bottom")
    ax.set_xlabel("Pareto k̂ of the importance weights")
    ax.set_ylabel("estimate − true log p(x) (nats)")
    ax.set_title(f"importance sampling with K = {result.num_samples}: when to trust it")
    ax.grid(alpha=0.3)
    return save(fig, out, "diagnostics")


def main():
    args = arguments(__doc__, "ch5_bounds")
    digits, samples, ais_steps = (4, 200, 20) if args.quick else (40, 5000, 500)
    ks = [k for k in (1, 10, 100, 1000, 5000) if k <= samples]
    spec, vae, _, data = model_2d(args)
    x = data.test.x[:digits]
    truth = quadrature_log_marginal(vae, x).value
    torch.manual_seed(0)
    result = importance_sample(vae, x, num_samples=samples, bounds=ks, khat=True)
    bounds_figure(ks, result, truth, args.out)
    diagnostics_figure(result, truth, args.out)

    rows = [[k, f"{result.iwae[k].value.mean().item():.3f}",
             f"{(truth - result.iwae[k].value).mean().item():.3f}"] for k in ks]
    error = result.log_marginal.value - truth
    classes = []
    threshold = khat_threshold(samples)
    for name, mask in (("k̂ < 0.5", result.khat < 0.5),
                       (f"0.5 ≤ k̂ ≤ {threshold:.2f}", (result.khat >= 0.5) & (result.khat <= threshold)),
                       (f"k̂ > {threshold:.2f}", result.khat > threshold)):
        if mask.any():
            classes.append([name, int(mask.sum()), f"{error[mask].mean().item():.3f}", f"{error[mask].min().item():.3f}",
                            f"{result.log_marginal.std_error[mask].mean().item():.3f}",
                            f"{result.ess[mask].mean().item():.4f}"])
        else:
            classes.append([name, 0, "", "", "", ""])
    # --8<-- [start:ais]
    worst = result.khat.argsort(descending=True)[:AIS_POINTS].tolist()   # the least trustworthy estimates
    ais = annealed_importance_sample(vae, x[worst], steps=ais_steps, chains=16, indices=worst)
    # --8<-- [end:ais]
    ais_rows = [[i, f"{result.khat[i].item():.2f}", f"{truth[i].item():.3f}",
                 f"{result.log_marginal.value[i].item() - truth[i].item():+.3f}",
                 f"{ais.log_marginal.value[n].item() - truth[i].item():+.3f} ± {ais.log_marginal.std_error[n].item():.3f}"]
                for n, i in enumerate(worst)]
    write_numbers(args.out, "ais", markdown_table(
        ["test digit", "Pareto k̂", "log p(x), quadrature", f"importance sampling (K = {samples}) − truth",
         f"AIS ({ais_steps} steps × 16 chains) − truth ± s.e."], ais_rows))
    write_numbers(args.out, "bounds", markdown_table(
        ["K", "IWAE_K, mean (nats)", "log p(x) − IWAE_K, mean (nats)"], rows))
    write_numbers(args.out, "diagnostics", markdown_table(
        ["Pareto k̂", "digits", "mean error (nats)", "worst error (nats)", "reported s.e., mean", "ESS / K, mean"],
        classes))
    write_numbers(args.out, "summary", f"""
Over the first {digits} test digits, with $K = {samples}$ samples from the guide per digit, the
importance-sampled $\\log \\hat p(x)$ minus the quadrature value averages {error.mean().item():+.3f} nats
and ranges from {error.min().item():+.3f} to {error.max().item():+.3f} nats, while the estimate's own
reported standard error averages {result.log_marginal.std_error.mean().item():.3f} nats.
""")
    claims = Claims(args)
    errors = bound_errors(result, truth, ks)
    above = {k: m / e for k, (m, e) in errors.items() if e > 0}
    claims.check("below", all(m < 0 for m, _ in errors.values()),
                 "Every IWAE_K in the figure lies below the quadrature line: biased low, as Jensen's inequality "
                 "says.",
                 "IWAE_K - log p(x) in Monte Carlo standard errors: "
                 + ", ".join(f"K={k}: {v:+.1f}" for k, v in above.items()), full_only=True)
    steps = [errors[b][0] - errors[a][0] + 3 * max(errors[a][1], errors[b][1]) for a, b in zip(ks, ks[1:])]
    gap_first, gap_last = -errors[ks[0]][0], -errors[ks[-1]][0]
    claims.check("climb", all(v >= 0 for v in steps) and 0 <= gap_last < gap_first / 2,
                 f"The bound climbs with $K$: from {gap_first:.2f} nats below $\\log p(x)$ at $K = {ks[0]}$ to "
                 f"{gap_last:.3f} at $K = {ks[-1]}$.",
                 f"gap {gap_first:.3f} nats at K = {ks[0]}, {gap_last:.3f} at K = {ks[-1]}", full_only=True,
                 general="The bound climbs with K and closes most of the gap to log p(x).")
    low, high = result.khat < 0.5, result.khat > threshold
    if high.any() and low.any():
        worse = error[high].abs().mean().item() > error[low].abs().mean().item()
        claims.check("khat", worse,
                     f"The estimates with $\\hat k$ above {threshold:.2f} are further from the truth, on average, than "
                     "those below 0.5.",
                     f"mean |error| {error[high].abs().mean().item():.3f} above, {error[low].abs().mean().item():.3f} "
                     "below", full_only=True)
    else:
        write_numbers(args.out, "claim_khat", f"""
At these settings no digit has $\\hat k$ both below 0.5 and above {threshold:.2f}, so the figure has nothing to
compare.""")
    finish(args, claims)
    print(f"IS - truth: mean {error.mean().item():.3f}, worst {error.min().item():.3f}")
    return {"vae": vae, "x": x, "truth": truth, "result": result, "ais": ais}  # for the exercises


if __name__ == "__main__":
    main()
