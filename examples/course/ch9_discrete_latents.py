"""Chapter 9, discrete latent variables: why a binary z has no pathwise gradient, and what the
estimators that replace it cost in bias, variance and time.

First one Bernoulli latent, where the exact gradient is a sum of two terms: the reparameterized
sample is a step function of the logit (its derivative is zero), and the naive straight-through
derivative points the wrong way for part of the range. Then the small sigmoid belief net of
``pyrovae.lab.discrete`` (pooled MNIST digits, 6 binary latents, 64 configurations), whose
gradient is exact by enumeration: every registered estimator's mean gradient is tested against
it (``bias_table``), as ``benchmarks/discrete_estimators.py`` does at its own settings.

    python3 examples/course/ch9_discrete_latents.py --out runs/course/ch9_discrete_latents
"""

import math

import torch
from _course import Claims, arguments, finish, markdown_table, plt, save, write_numbers

from pyrovae.lab.discrete import bias_table, small_discrete_model
from pyrovae.lab.variance import parse_estimators

T = 0.45  # the one-latent toy's f(z) = (z - T)^2
UNBIASED = ["score", "score_avg_baseline", "score_loo", "vimco:num_particles=2", "arm", "disarm", "rebar", "relax",
            "enum"]
TEMPERATURES = [1.0, 0.5, 0.25, 0.1]
RELAXED = [f"{name}:temperature={t}" for name in ("gumbel_softmax", "gumbel_st") for t in TEMPERATURES]


# --8<-- [start:one_latent]
def f(z: torch.Tensor) -> torch.Tensor:
    return (z - T) ** 2


def one_latent_gradients(phi: torch.Tensor) -> dict:
    """d/dphi E[f(z)] for z ~ Bernoulli(sigmoid(phi)), three ways, at every phi.

    exact: the expectation is a sum over z in {0, 1}, differentiated by autograd.
    pathwise: z = H(u < sigmoid(phi)) is a step function of phi, so df/dz dz/dphi = 0.
    straight-through: the sample's derivative replaced by that of its mean sigmoid(phi),
    E_z[f'(z)] sigmoid'(phi), exact over z (no sampling)."""
    phi = phi.detach().requires_grad_(True)
    p = torch.sigmoid(phi)
    expectation = p * f(torch.tensor(1.0)) + (1 - p) * f(torch.tensor(0.0))
    (exact,) = torch.autograd.grad(expectation.sum(), phi)
    p = p.detach()
    slope = 2 * (torch.stack([torch.zeros_like(p), torch.ones_like(p)]) - T)  # f'(0), f'(1)
    straight = (p * slope[1] + (1 - p) * slope[0]) * p * (1 - p)
    return {"exact": exact, "pathwise": torch.zeros_like(exact), "straight-through": straight}
# --8<-- [end:one_latent]


def score_check(phi: float, draws: int, seed: int = 0):
    """The score-function estimator's mean and standard error at one phi: f(z) (z - p)."""
    generator = torch.Generator().manual_seed(seed)
    p = torch.sigmoid(torch.tensor(phi, dtype=torch.float64))
    z = torch.bernoulli(p.expand(draws), generator=generator)
    g = f(z) * (z - p)  # d log q(z) / dphi = z - sigmoid(phi)
    return g.mean().item(), (g.std() / math.sqrt(draws)).item()


def toy(args, claims, draws: int):
    phi = torch.linspace(-3, 3, 241, dtype=torch.float64)
    grads = one_latent_gradients(phi)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, style in (("exact", "k-"), ("straight-through", "C1--"), ("pathwise", "C0:")):
        ax.plot(phi, grads[name], style, label=name, linewidth=2)
    wrong = (grads["exact"] * grads["straight-through"]) < 0
    ax.fill_between(phi, 0, 1, where=wrong.numpy(), color="C3", alpha=0.12, transform=ax.get_xaxis_transform(),
                    label="straight-through has the wrong sign")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_xlabel(r"logit $\varphi$ of $q(z) = \mathrm{Bernoulli}(\sigma(\varphi))$")
    ax.set_ylabel(r"$\partial\, \mathbb{E}_q[(z - 0.45)^2] / \partial \varphi$")
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
    save(fig, args.out, "one_latent")
    rows = []
    for value in (-2.0, 0.0, 2.0):
        g = one_latent_gradients(torch.tensor([value], dtype=torch.float64))
        mean, se = score_check(value, draws)
        rows.append([f"{value:+.1f}", f"{torch.sigmoid(torch.tensor(value)).item():.3f}", f"{g['exact'].item():+.4f}",
                     "0", f"{g['straight-through'].item():+.4f}", f"{mean:+.4f} ± {se:.4f}"])
    write_numbers(args.out, "one_latent", markdown_table(
        ["φ", "σ(φ)", "exact", "pathwise", "straight-through", f"score function ({draws} draws) ± s.e."], rows))
    edge = phi[wrong].max().item()
    claims.check("wrong_sign", wrong.any() and abs(torch.sigmoid(torch.tensor(edge)).item() - T) < 0.02,
                 f"Straight-through points the wrong way wherever $\\sigma(\\varphi) < {T}$ (left of "
                 f"$\\varphi \\approx {edge:.2f}$, shaded): a descent step on it moves $q$ towards $z = 1$, the worse value.",
                 f"wrong sign up to phi = {edge:.2f}")


def table(args, claims, chunks: int, per_chunk: int):
    model, batch, others = small_discrete_model("bernoulli")
    choices = parse_estimators(",".join(UNBIASED + RELAXED))
    results = bias_table(model, batch, others, choices, chunks, per_chunk, seed=0)
    summary = {label: (r["groups"]["all"], r["groups"]["encoder"]) for label, r in results.items()}
    base_trace, base_seconds = summary["score"][1]["trace"], summary["score"][1]["seconds_per_draw"]
    threshold = summary["score"][0]["bias_threshold"]
    unbiased, relaxed = [], []
    for label, (every, enc) in summary.items():
        name, _, option = label.partition(":")
        # a draw is averaged in a vectorized pass of per_chunk; enum's pass is one exact gradient, its cost
        seconds = enc["seconds_per_draw"] * (per_chunk if name == "enum" else 1)
        shared = [f"{every['max_abs_t']:.2f}", f"{every['relative_bias']:.4f}", f"{every['relative_noise']:.4f}",
                  f"{enc['trace'] / base_trace:.2g}", f"{seconds / base_seconds:.2f}"]
        if label in UNBIASED:
            note = {"vimco": ", K = 2", "enum": " (cost: one exact gradient)"}.get(name, "")
            unbiased.append([f"`{name}`{note}"] + shared)
        else:
            relaxed.append([f"`{name}`", option.split("=")[1]] + shared[1:])  # the bias, measured, says more than t
    header = ["‖bias‖ / ‖exact‖", "noise level", "variance × score", "cost × score"]
    write_numbers(args.out, "table_unbiased", markdown_table(["estimator", "largest \\|t\\|"] + header, unbiased))
    write_numbers(args.out, "table_relaxed", markdown_table(["estimator", "τ"] + header, relaxed))
    params = summary["score"][0]["params"]
    write_numbers(args.out, "setting", f"{chunks} × {per_chunk} = {chunks * per_chunk:,} draws per estimator; {params} "
                  f"parameters, so the Bonferroni threshold at level 0.05 is $|t| = {threshold:.2f}$.")
    figure(args, summary, base_trace, base_seconds)
    unbiased_t = {label: summary[label][0]["max_abs_t"] for label in UNBIASED}
    worst = max(unbiased_t, key=unbiased_t.get)
    claims.check("unbiased", unbiased_t[worst] < threshold,
                 f"No unbiased estimator's mean gradient is distinguishable from the exact one: the largest $|t|$ "
                 f"among them is {unbiased_t[worst]:.2f} (`{worst}`), below the threshold {threshold:.2f}.",
                 f"largest |t| {unbiased_t[worst]:.2f} ({worst}), threshold {threshold:.2f}", full_only=True,
                 general="No unbiased estimator's mean gradient is distinguishable from the exact one: every largest "
                         "|t| is below the Bonferroni threshold.")
    biases = [summary[f"gumbel_softmax:temperature={t}"][0]["relative_bias"] for t in TEMPERATURES]
    noise = [summary[f"gumbel_softmax:temperature={t}"][0]["relative_noise"] for t in TEMPERATURES]
    claims.check("gumbel_bias", biases[0] > biases[1] > biases[2] and biases[0] > 3 * noise[0],
                 f"The relaxation's bias falls as the temperature falls, from {biases[0]:.3f} of the exact gradient's "
                 f"norm at $\\tau = 1$ to {biases[1]:.3f} at $\\tau = 0.5$ and {biases[2]:.3f} at $\\tau = 0.25$ "
                 f"(at $\\tau = 0.1$ it is {biases[3]:.3f}, beside a noise level of {noise[3]:.3f}).",
                 "relative bias " + ", ".join(f"{b:.3f}" for b in biases), full_only=True,
                 general="The relaxation's bias falls as the temperature falls.")
    variances = [summary[f"gumbel_softmax:temperature={t}"][1]["trace"] for t in TEMPERATURES]
    claims.check("gumbel_variance", variances[-1] > variances[0],
                 f"Its variance rises as it does, from {variances[0]:.3g} to {variances[-1]:.3g}: a colder "
                 "relaxation is closer to the step function and its derivative is spikier.",
                 "variance " + ", ".join(f"{v:.3g}" for v in variances))
    others = [summary[label][1]["trace"] for label in UNBIASED if label not in ("score", "enum")]
    least, most = math.log10(base_trace / max(others)), math.log10(base_trace / min(others))
    claims.check("baselines", least >= 2,
                 f"Every baseline or control variate cuts the plain score function's variance by {least:.1f} to "
                 f"{most:.1f} orders of magnitude.",
                 f"score / unbiased variances 10^{least:.1f} to 10^{most:.1f}")
    enum_cost = summary["enum"][1]["seconds_per_draw"] * per_chunk / base_seconds
    claims.check("enum_cost", enum_cost > 5,
                 f"Enumeration has no variance at all, and its cost, one pass over all 64 configurations, is that of "
                 f"{enum_cost:.0f} score-function draws here.",
                 f"one exact gradient costs {enum_cost:.1f} score draws", full_only=True,
                 general="Enumeration has no variance at all, and one exact gradient costs many score-function draws.")
    return summary


def figure(args, summary, base_trace, base_seconds):
    """Variance against cost for the unbiased estimators; bias against temperature for the relaxations."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"wspace": 0.3})
    markers = iter("o s ^ v D P X *".split())
    for label in UNBIASED:
        if label == "enum":
            continue
        enc = summary[label][1]
        left.plot(enc["seconds_per_draw"] / base_seconds, enc["trace"] / base_trace, next(markers), markersize=8,
                  linestyle="none", label=label.replace(":num_particles=", ", K = "))
    left.legend(fontsize=8, loc="upper right")
    left.set_yscale("log")
    left.set_xlabel("cost per draw (× score)")
    left.set_ylabel("encoder variance (× score)")
    left.set_title("unbiased estimators")
    left.grid(alpha=0.3, which="both")
    for name, color in (("gumbel_softmax", "C2"), ("gumbel_st", "C1")):
        ts = [t for t in TEMPERATURES if f"{name}:temperature={t}" in summary]
        bias = [summary[f"{name}:temperature={t}"][0]["relative_bias"] for t in ts]
        noise = [summary[f"{name}:temperature={t}"][0]["relative_noise"] for t in ts]
        right.plot(ts, bias, "o-", color=color, label=f"{name}: ‖bias‖ / ‖exact‖")
        right.plot(ts, noise, ":", color=color, label=f"{name}: noise level")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("temperature τ")
    right.set_ylabel("relative to the exact gradient's norm")
    right.set_title("relaxations: bias against temperature")
    right.legend(fontsize=8)
    right.grid(alpha=0.3, which="both")
    save(fig, args.out, "estimators")


def main():
    args = arguments(__doc__, "ch9_discrete_latents")
    chunks, per_chunk, draws = (10, 20, 2000) if args.quick else (200, 50, 100000)
    claims = Claims(args)
    toy(args, claims, draws)
    summary = table(args, claims, chunks, per_chunk)
    finish(args, claims)
    return {"summary": summary}


if __name__ == "__main__":
    main()
