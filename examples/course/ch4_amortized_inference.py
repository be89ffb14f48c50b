"""Chapter 4, amortized inference, seen: for a VAE with a 2-D latent space trained on
binarized MNIST, the true posterior p(z|x) on a grid beside the guide q(z|x), with NUTS
samples overlaid, for typical and for multimodal digits; and for every measured test digit
the grid log p(x), the ELBO and their gap.

    python3 examples/course/ch4_amortized_inference.py --out runs/course/ch4_amortized_inference
"""

import math

import pyro
import pyro.distributions as dist
import torch
from _course import arguments, binarized_mnist, markdown_table, plt, save, trained, write_numbers
from pyro.infer import MCMC, NUTS
from pyrovae.evaluation.marginal import quadrature_log_marginal

from pyrovae.reports.plots import manifold

MODEL_2D = ("quickstart", ["model.latent_dim=2", "train.epochs=10"])  # chapters 4 and 5 share it
QUICK_2D = ("quickstart", ["model.latent_dim=2", "train.epochs=1", "data.train_size=1000"])
SEARCH_HALF_WIDTH = 6.0  # the search grid spans at least [-6, 6]^2: the prior's mass and more
SECOND_BASIN = 0.05      # a posterior is multimodal when a second basin holds this much mass


def model_2d(args):
    config, overrides = QUICK_2D if args.quick else MODEL_2D
    data = binarized_mnist(args.cache)
    if args.quick:
        data = data.limited(1000)
    return trained(config, overrides, data, args.cache) + (data,)


# --8<-- [start:grid]
@torch.no_grad()
def log_joint_on_grid(vae, x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, nodes: int):
    """log p(x, z) = log p(z) + log p(x|z) on a ``nodes x nodes`` grid spanning the box
    [lower, upper] (one digit ``x``). Returns the two axes and the values, shaped (nodes, nodes)
    with z[0] along the columns and z[1] along the rows."""
    a0 = torch.linspace(lower[0].item(), upper[0].item(), nodes)
    a1 = torch.linspace(lower[1].item(), upper[1].item(), nodes)
    z = torch.stack(torch.meshgrid(a0, a1, indexing="xy"), -1).reshape(-1, 2)
    values = torch.cat([vae.prior().log_prob(chunk) + vae.decode(chunk).log_prob(x.expand(len(chunk), *x.shape))
                        for chunk in z.split(8192)])
    return a0, a1, values.reshape(nodes, nodes).double()


def posterior_grid(vae, x: torch.Tensor, nodes: int):
    """Locate the posterior on a wide grid (the prior's bulk and q's mean +- 8 standard
    deviations), then resolve it on a grid around every node within 30 nats of the highest.
    Returns the axes, log p(x, z) and the grid's log p(x) (the sum of p(x, z) times the cell
    area)."""
    with torch.no_grad():
        loc, scale = (t[0] for t in vae.encode(x[None]))
    lower = torch.minimum(loc - 8 * scale, torch.full((2,), -SEARCH_HALF_WIDTH))
    upper = torch.maximum(loc + 8 * scale, torch.full((2,), SEARCH_HALF_WIDTH))
    a0, a1, log_f = log_joint_on_grid(vae, x, lower, upper, 241)
    keep = log_f > log_f.max() - 30
    rows, cols = keep.nonzero(as_tuple=True)
    step = torch.stack([a0[1] - a0[0], a1[1] - a1[0]])
    lower = torch.stack([a0[cols].min(), a1[rows].min()]) - 2 * step
    upper = torch.stack([a0[cols].max(), a1[rows].max()]) + 2 * step
    a0, a1, log_f = log_joint_on_grid(vae, x, lower, upper, nodes)
    cell = (a0[1] - a0[0]) * (a1[1] - a1[0])
    return a0, a1, log_f, (torch.logsumexp(log_f.reshape(-1), 0) + math.log(cell)).item()
# --8<-- [end:grid]


# --8<-- [start:modes]
def basins(log_f: torch.Tensor) -> torch.Tensor:
    """Each grid node's basin of attraction: the local maximum that steepest ascent over the
    8 neighbours reaches from it (node indices, flattened)."""
    n0, n1 = log_f.shape
    padded = torch.nn.functional.pad(log_f[None, None], (1, 1, 1, 1), value=-math.inf)[0, 0]
    index = torch.arange(n0 * n1).reshape(n0, n1)
    best, target = log_f.clone(), index.clone()
    for d0 in (-1, 0, 1):
        for d1 in (-1, 0, 1):
            shifted = padded[1 + d0:1 + d0 + n0, 1 + d1:1 + d1 + n1]
            better = shifted > best
            best = torch.where(better, shifted, best)
            moved = (index + d0 * n1 + d1)
            target = torch.where(better, moved, target)
    target = target.reshape(-1)
    while True:  # pointer jumping until every node points at a local maximum
        following = target[target]
        if torch.equal(following, target):
            return target
        target = following


def basin_masses(log_f: torch.Tensor):
    """Posterior mass of each basin, largest first, and the basin of every node."""
    owner = basins(log_f)
    prob = torch.softmax(log_f.reshape(-1), 0)
    roots, inverse = owner.unique(return_inverse=True)
    masses = torch.zeros(len(roots), dtype=prob.dtype).index_add_(0, inverse, prob)
    order = masses.argsort(descending=True)
    return masses[order], roots[order], owner
# --8<-- [end:modes]


def guide_elbo(vae, x: torch.Tensor, samples: int):
    """Monte Carlo ELBO of the guide for one digit: mean and standard error of
    log p(x, z) - log q(z|x) over ``samples`` draws z ~ q(z|x)."""
    with torch.no_grad():
        loc, scale = vae.encode(x[None])
        q = dist.Normal(loc[0], scale[0]).to_event(1)
        z = q.sample((samples,))
        log_w = vae.prior().log_prob(z) + vae.decode(z).log_prob(x.expand(samples, *x.shape)) - q.log_prob(z)
    return log_w.mean().item(), log_w.std().item() / math.sqrt(samples), q


def nuts_samples(vae, x: torch.Tensor, start: torch.Tensor, warmup: int, samples: int) -> torch.Tensor:
    """Posterior samples of z for one digit by Pyro's NUTS, started at the grid's mode."""

    def conditioned():
        z = pyro.sample("z", vae.prior())
        pyro.sample("x", vae.decode(z), obs=x)

    for p in vae.parameters():
        p.requires_grad_(False)
    mcmc = MCMC(NUTS(conditioned), num_samples=samples, warmup_steps=warmup,
                initial_params={"z": start.float()}, disable_progbar=True)
    mcmc.run()
    return mcmc.get_samples()["z"]


def analyse(vae, x, nodes, elbo_samples):
    a0, a1, log_f, grid_log_px = posterior_grid(vae, x, nodes)
    masses, roots, owner = basin_masses(log_f)
    elbo, elbo_se, q = guide_elbo(vae, x, elbo_samples)
    loc = q.base_dist.loc
    n0 = log_f.shape[1]
    # the basin q's mean falls in; the posterior mass outside it is what q cannot cover
    col = torch.searchsorted(a0, loc[0].clamp(a0[0], a0[-1])).clamp(max=n0 - 1)
    row = torch.searchsorted(a1, loc[1].clamp(a1[0], a1[-1])).clamp(max=log_f.shape[0] - 1)
    q_root = owner[row * n0 + col]
    missed = max(0.0, 1 - masses[roots == q_root].sum().item())
    return {"axes": (a0, a1), "log_f": log_f, "log_px": grid_log_px, "elbo": elbo, "elbo_se": elbo_se, "q": q,
            "masses": masses, "second": masses[1].item() if len(masses) > 1 else 0.0, "missed": missed,
            "modes": int((masses >= SECOND_BASIN).sum())}


def posterior_figure(vae, cases, out, warmup, samples):
    fig, axes = plt.subplots(len(cases), 2, figsize=(9, 4.2 * len(cases)), gridspec_kw={"width_ratios": [1, 2.6]},
                             squeeze=False, layout="constrained")
    for (title, index, x, r), (ax_img, ax) in zip(cases, axes):
        ax_img.imshow(x[0], cmap="gray_r")
        ax_img.set_title(f"test digit {index}")
        ax_img.axis("off")
        a0, a1 = r["axes"]
        density = torch.softmax(r["log_f"].reshape(-1), 0).reshape(r["log_f"].shape)
        ax.contourf(a0, a1, density / density.max(), levels=[0.001, 0.01, 0.05, 0.2, 0.5, 1.0], cmap="Blues")
        zz = torch.stack(torch.meshgrid(a0, a1, indexing="xy"), -1).float()
        q_density = r["q"].log_prob(zz).exp()
        ax.contour(a0, a1, q_density / q_density.max(), levels=[0.01, 0.2, 0.6], colors="tab:red", linewidths=1.2)
        mode = (r["log_f"] == r["log_f"].max()).nonzero()[0]
        start = torch.stack([a0[mode[1]], a1[mode[0]]])
        z = nuts_samples(vae, x, start, warmup, samples)
        ax.plot(z[:, 0], z[:, 1], ".", color="black", markersize=2, alpha=0.5)
        ax.set_xlabel("z[0] (latent units)")
        ax.set_ylabel("z[1] (latent units)")
        ax.set_title(f"{title}: log p(x) − ELBO = {r['log_px'] - r['elbo']:.2f} nats,\n"
                     f"posterior mass outside q's basin {100 * r['missed']:.1f} %", fontsize=10)
        ax.grid(alpha=0.2)
    handles = [plt.Rectangle((0, 0), 1, 1, color="tab:blue"), plt.Line2D([], [], color="tab:red"),
               plt.Line2D([], [], marker=".", linestyle="none", color="black")]
    fig.legend(handles, ["true posterior p(z|x), grid (filled: 0.1, 1, 5, 20, 50 % of its peak)",
                         "guide q(z|x) (lines: 1, 20, 60 % of its peak)", f"NUTS samples from p(z|x) ({samples})"],
               loc="outside upper center", fontsize=9, ncols=1)
    return save(fig, out, "posteriors")


def gap_figure(results, out):
    fig, ax = plt.subplots(figsize=(8, 3.4))
    colors = ["tab:red" if r["modes"] > 1 else "tab:blue" for r in results]
    ax.bar(range(len(results)), [r["log_px"] - r["elbo"] for r in results], color=colors)
    ax.bar([], [], color="tab:blue", label="one basin")
    ax.bar([], [], color="tab:red", label=f"a second basin with ≥ {100 * SECOND_BASIN:.0f} % of the mass")
    ax.set_xlabel("test digit (index in the test split)")
    ax.set_ylabel("log p(x) − ELBO (nats)")
    ax.set_title("what the amortized guide loses on each digit")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return save(fig, out, "gaps")


def latent_figures(vae, data, out):
    with torch.no_grad():
        loc, _ = vae.encode(data.test.x[:5000])
        coords = torch.linspace(-2.5, 2.5, 15)
        z = torch.stack(torch.meshgrid(coords, coords.flip(0), indexing="xy"), -1).reshape(-1, 2)
        images = vae.decode_mean(z)
    manifold(images, coords, out / "manifold.png", "decoded means over a 15 x 15 lattice of z")
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(loc[:, 0], loc[:, 1], s=2, alpha=0.4)
    ax.set_xlabel("z[0] (latent units)")
    ax.set_ylabel("z[1] (latent units)")
    ax.set_title("means of q(z|x) for 5000 test digits")
    ax.set_aspect("equal", adjustable="datalim")
    save(fig, out, "latent_means")


def main():
    args = arguments(__doc__, "ch4_amortized_inference")
    digits, nodes, elbo_samples = (4, 61, 500) if args.quick else (40, 161, 5000)
    warmup, samples = (20, 20) if args.quick else (200, 300)
    spec, vae, _, data = model_2d(args)
    latent_figures(vae, data, args.out)
    x = data.test.x[:digits]
    results = [analyse(vae, x[i], nodes, elbo_samples) for i in range(digits)]
    reference = quadrature_log_marginal(vae, x)

    by_gap = sorted(range(digits), key=lambda i: results[i]["log_px"] - results[i]["elbo"])
    multimodal = [i for i in range(digits) if results[i]["modes"] > 1]
    unimodal = [i for i in by_gap if results[i]["modes"] == 1]
    typical = unimodal[len(unimodal) // 2: len(unimodal) // 2 + 1] + unimodal[:1]
    shown = sorted(multimodal, key=lambda i: -results[i]["second"])[:2]
    if len(shown) < 2:  # too few multimodal digits: the ones closest to it
        shown += [i for i in sorted(range(digits), key=lambda i: -results[i]["second"]) if i not in shown][:2 - len(shown)]
    cases = [("typical digit", i, x[i], results[i]) for i in typical]
    cases += [("multimodal digit" if results[i]["modes"] > 1 else "nearest to multimodal", i, x[i], results[i])
              for i in shown]
    posterior_figure(vae, cases, args.out, warmup, samples)
    gap_figure(results, args.out)

    rows = []
    for i, r in enumerate(results):
        rows.append([i, f"{r['log_px']:.3f}", f"{reference.value[i].item():.3f}", f"{r['elbo']:.3f} ± {r['elbo_se']:.3f}",
                     f"{r['log_px'] - r['elbo']:.3f}", r["modes"], f"{100 * r['second']:.2f}", f"{100 * r['missed']:.2f}"])
    gaps = torch.tensor([r["log_px"] - r["elbo"] for r in results])
    agree = (torch.tensor([r["log_px"] for r in results]) - reference.value).abs().max().item()
    multi_gaps = gaps[[r["modes"] > 1 for r in results]]
    uni_gaps = gaps[[r["modes"] == 1 for r in results]]
    costs = [(r["missed"], -math.log1p(-r["missed"]) if r["missed"] < 1 else math.inf, r["log_px"] - r["elbo"])
             for r in results if r["modes"] > 1]
    write_numbers(args.out, "summary", f"""
The VAE: `quickstart` with `model.latent_dim=2` ({spec.train.epochs} epochs on
{len(data.train)} training digits). Over the first {digits} test digits:

* mean gap $\\log p(x) - \\mathrm{{ELBO}}$: **{gaps.mean().item():.2f} nats** (median {gaps.median().item():.2f},
  largest {gaps.max().item():.2f});
* **{len(multimodal)} of {digits} ({100 * len(multimodal) / digits:.0f} %)** posteriors are multimodal by the rule
  below; their mean gap is {multi_gaps.mean().item() if len(multi_gaps) else float('nan'):.2f} nats against
  {uni_gaps.mean().item() if len(uni_gaps) else float('nan'):.2f} for the others;
* the grid's $\\log p(x)$ and pyrovae's adaptive quadrature (`quadrature_log_marginal`) agree to
  {agree:.1e} nats on every digit.
""")
    write_numbers(args.out, "costs", markdown_table(
        ["posterior mass outside q's basin", "least cost −log(1 − m) (nats)", "measured gap (nats)"],
        [[f"{100 * m:.1f} %", f"{c:.2f}", f"{g:.2f}"] for m, c, g in costs]) if costs else
        "No digit among those measured has a second basin above the threshold.")
    write_numbers(args.out, "digits", markdown_table(
        ["test digit", "grid log p(x)", "quadrature log p(x)", "ELBO ± s.e.", "gap (nats)", "basins ≥ 5 %",
         "second basin mass (%)", "mass outside q's basin (%)"], rows))
    print(f"{digits} digits: mean gap {gaps.mean().item():.2f} nats, {len(multimodal)} multimodal")


if __name__ == "__main__":
    main()
