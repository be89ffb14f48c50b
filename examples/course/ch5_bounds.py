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
# Independent sets of draws per digit. IWAE_K and the bias of log p-hat are expectations: one set of
# draws can land above log p(x) where the weights are heavy-tailed, so the figure shows their means.
REPEATS, QUICK_REPEATS = 3, 50  # 3.8 s and 0.02 s of CPU time a set at full and quick settings
DIGIT_REPEATS = 30  # sets of draws for the one digit whose single estimate lies highest (0.1 s a set at full)


def khat_threshold(samples: int) -> float:
    """The sample-size dependent PSIS threshold min(1 - 1 / log10 S, 0.7) of Vehtari et al.:
    above it, S draws are too few for a reliable estimate."""
    return min(1 - 1 / math.log10(samples), 0.7)


def repeated_bounds(vae, x, samples, ks, repeats):
    """IWAE_K per set of draws, K in ``ks``, and digit: shape ``(repeats, len(ks), digits)``,
    from ``repeats`` independent sets of ``samples`` draws each (seeds 0, 1, ...). With K =
    ``samples`` it is the importance-sampled log p-hat itself. The first set, with its Pareto
    k-hat, is returned too: the single estimate a user gets."""
    sets, first = [], None
    for seed in range(repeats):
        torch.manual_seed(seed)
        result = importance_sample(vae, x, num_samples=samples, bounds=ks, khat=seed == 0)
        if seed == 0:
            first = result
        sets.append(torch.stack([result.iwae[k].value for k in ks]))
    return torch.stack(sets), first


def mean_errors(values, truth):
    """The mean over sets of draws and digits of ``values - truth`` (for each K) and its
    standard error, from the spread between sets of draws of the same digit (pooled over
    digits): ``(means, std_errors)``, one value per K."""
    error = values - truth
    repeats, _, digits = error.shape
    return error.mean((0, 2)), (error.var(0).mean(-1) / (repeats * digits)).sqrt()


def bound_errors(values, truth, ks):
    """For each K: the mean of IWAE_K - log p(x) over sets of draws and digits, and its standard error."""
    means, errors = mean_errors(values, truth)
    return {k: (m.item(), e.item()) for k, m, e in zip(ks, means, errors)}


def bounds_figure(ks, values, truth, out):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    means, errors = mean_errors(values, truth)
    ax.errorbar(ks, (means + truth.mean()).tolist(), yerr=(3 * errors).tolist(), fmt="o-", capsize=3,
                label=f"IWAE_K, mean over digits and {values.shape[0]} sets of draws (± 3 s.e.)")
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
    repeats = QUICK_REPEATS if args.quick else REPEATS
    ks = [k for k in (1, 10, 100, 1000, 5000) if k < samples] + [samples]
    spec, vae, _, data = model_2d(args)
    x = data.test.x[:digits]
    truth = quadrature_log_marginal(vae, x).value
    values, result = repeated_bounds(vae, x, samples, ks, repeats)
    bounds_figure(ks, values, truth, args.out)
    diagnostics_figure(result, truth, args.out)

    means, std_errors = mean_errors(values, truth)
    rows = [[k, f"{m.item() + truth.mean().item():.3f}", f"{-m.item():.3f}", f"{e.item():.3f}"]
            for k, m, e in zip(ks, means, std_errors)]
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
        ["K", "IWAE_K, mean (nats)", "log p(x) − IWAE_K, mean (nats)", "its s.e. (nats)"], rows))
    write_numbers(args.out, "diagnostics", markdown_table(
        ["Pareto k̂", "digits", "mean error (nats)", "worst error (nats)", "reported s.e., mean", "ESS / K, mean"],
        classes))
    largest = error.argmax().item()  # the digit whose single estimate lies highest relative to its truth
    again, _ = repeated_bounds(vae, x[largest:largest + 1], samples, [samples], DIGIT_REPEATS)
    again = again[:, 0, 0] - truth[largest]  # its log p-hat - log p(x) over further independent sets of draws
    write_numbers(args.out, "summary", f"""
Over the first {digits} test digits, with $K = {samples}$ samples from the guide per digit, one set of
draws gives importance-sampled $\\log \\hat p(x)$ minus the quadrature value averaging
{error.mean().item():+.3f} nats, ranging from {error.min().item():+.3f} to {error.max().item():+.3f} nats, while the
estimate's own reported standard error averages {result.log_marginal.std_error.mean().item():.3f} nats. The
highest is test digit {largest}'s, {error[largest].item():+.3f} nats at $\\hat k$ = {result.khat[largest].item():.2f};
over {DIGIT_REPEATS} further independent sets of draws its estimate minus the truth averages
{again.mean().item():+.3f} ± {again.std().item() / DIGIT_REPEATS ** 0.5:.3f} nats (± one standard error), the highest
of them {again.max().item():+.3f} nats.
""")
    claims = Claims(args)
    errors = bound_errors(values, truth, ks)
    above = {k: m / e for k, (m, e) in errors.items() if e > 0}
    claims.check("below", all(m < 0 for m, _ in errors.values()),
                 "Every IWAE_K in the figure, a mean over digits and sets of draws, lies below the quadrature line: "
                 "biased low, as Jensen's inequality says.",
                 "IWAE_K - log p(x) in Monte Carlo standard errors: "
                 + ", ".join(f"K={k}: {v:+.1f}" for k, v in above.items()), full_only=True)
    steps = [errors[b][0] - errors[a][0] + 3 * max(errors[a][1], errors[b][1]) for a, b in zip(ks, ks[1:])]
    gap_first, gap_last = -errors[ks[0]][0], -errors[ks[-1]][0]
    claims.check("climb", all(v >= 0 for v in steps) and 0 <= gap_last < gap_first / 2,
                 f"The bound climbs with $K$: from {gap_first:.2f} nats below $\\log p(x)$ at $K = {ks[0]}$ to "
                 f"{gap_last:.3f} at $K = {ks[-1]}$.",
                 f"gap {gap_first:.3f} nats at K = {ks[0]}, {gap_last:.3f} at K = {ks[-1]}", full_only=True,
                 general="The bound climbs with K and closes most of the gap to log p(x).")
    mean, se = errors[samples]
    claims.check("expectation", mean < 3 * se,
                 f"Averaged over {repeats} independent sets of draws, the estimate lies "
                 + (f"{-mean:.3f} ± {se:.3f} nats below the quadrature value: biased low in expectation, "
                    if mean < 0 else f"within {3 * se:.3f} nats (three standard errors) of the quadrature value, "
                    "as an estimate biased low in expectation can, ")
                 + "though one set of draws can land above it.",
                 f"mean of log p-hat - log p(x) {mean:+.3f} ± {se:.3f} nats over {repeats} sets of draws")
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
