"""Chapter 4, amortized inference, seen: for a VAE with a 2-D latent space trained on
binarized MNIST, the true posterior p(z|x) on a grid beside the guide q(z|x), with NUTS
samples overlaid, for typical and for multimodal digits; and for every measured test digit
the grid log p(x), the ELBO and their gap.

    python3 examples/course/ch4_amortized_inference.py --out runs/course/ch4_amortized_inference
"""

import math

import torch
from _course import Claims, arguments, binarized_mnist, finish, markdown_table, plt, save, trained, write_numbers
from matplotlib.patches import Patch

from pyrovae.evaluation.posterior import (
    gap_decomposition,
    grid_posterior,
    guide_gaussians,
    mcmc_posterior,
    optimal_gaussian,
)
from pyrovae.reports.plots import manifold

MODEL_2D = ("quickstart", ["model.latent_dim=2", "train.epochs=10"])  # chapters 4 and 5 share it
QUICK_2D = ("quickstart", ["model.latent_dim=2", "train.epochs=1", "data.train_size=1000"])


def model_2d(args):
    config, overrides = QUICK_2D if args.quick else MODEL_2D
    data = binarized_mnist(args.cache)
    if args.quick:
        data = data.limited(1000)
    return trained(config, overrides, data, args.cache) + (data,)


Q_REGION = 9.21  # squared Mahalanobis radius holding 99 % of a 2-D Gaussian (chi-square, 2 dof)


def missed_mass(grid, q_loc: torch.Tensor, q_tril: torch.Tensor) -> float:
    """The posterior mass outside the ellipse that holds 99 % of q(z|x): what the guide
    leaves out, whether it sits offset inside one mode or on the wrong mode."""
    zz = torch.stack(torch.meshgrid(grid.z1, grid.z2, indexing="ij"), -1)  # indexed like log_density
    u = torch.linalg.solve_triangular(q_tril, (zz - q_loc).reshape(-1, 2).T, upper=False)
    inside = (u.pow(2).sum(0) <= Q_REGION).reshape(zz.shape[:2])
    log_mass = grid.log_density + grid.log_weight
    mass = (log_mass - torch.logsumexp(log_mass.flatten(), 0)).exp()
    return max(0.0, 1.0 - mass[inside].sum().item())


def least_cost(missed: float, q_share: float = 0.99) -> float:
    """A lower bound on log p(x) - ELBO(q) when q puts ``q_share`` of its mass in a region
    holding 1 - ``missed`` of the posterior: KL(q || p) is at least the KL between the two
    Bernoulli distributions of 'inside the region' (the data-processing inequality)."""
    p_in = min(max(1.0 - missed, 1e-300), 1.0 - 1e-300)
    return q_share * math.log(q_share / p_in) + (1 - q_share) * math.log((1 - q_share) / (1 - p_in))


def posterior_figure(cases, out, samples):
    fig, axes = plt.subplots(len(cases), 2, figsize=(9, 4.2 * len(cases)), gridspec_kw={"width_ratios": [1, 2.6]},
                             squeeze=False, layout="constrained")
    for (title, index, x, grid, q, chain, gap, missed), (ax_img, ax) in zip(cases, axes):
        ax_img.imshow(x[0], cmap="gray_r")
        ax_img.set_title(f"test digit {index}")
        ax_img.axis("off")
        density = grid.log_density.T.exp()  # rows along z[1], columns along z[0]
        ax.contourf(grid.z1, grid.z2, density / density.max(), levels=[0.001, 0.01, 0.05, 0.2, 0.5, 1.0], cmap="Blues")
        zz = torch.stack(torch.meshgrid(grid.z1, grid.z2, indexing="xy"), -1)
        q_log = torch.distributions.MultivariateNormal(q[0], scale_tril=q[1]).log_prob(zz)
        ax.contour(grid.z1, grid.z2, (q_log - q_log.max()).exp(), levels=[0.01, 0.2, 0.6], colors="tab:red",
                   linewidths=1.2)
        ax.plot(chain[:, 0], chain[:, 1], ".", color="black", markersize=2, alpha=0.5)
        seen = (density > 1e-4 * density.max()).nonzero()  # (row: z[1], col: z[0]) nodes worth showing
        sd = q[1].diagonal()
        lo = torch.minimum(torch.stack([grid.z1[seen[:, 1]].min(), grid.z2[seen[:, 0]].min()]), q[0] - 3.5 * sd)
        hi = torch.maximum(torch.stack([grid.z1[seen[:, 1]].max(), grid.z2[seen[:, 0]].max()]), q[0] + 3.5 * sd)
        ax.set_xlim(lo[0].item(), hi[0].item())
        ax.set_ylim(lo[1].item(), hi[1].item())
        ax.set_xlabel("z[0] (latent units)")
        ax.set_ylabel("z[1] (latent units)")
        ax.set_title(f"{title}: log p(x) − ELBO = {gap:.2f} nats,\n"
                     f"{len(grid.modes)} mode(s) with ≥ 5 % of the mass; posterior mass outside q's 99 % ellipse "
                     f"{100 * missed:.1f} %",
                     fontsize=10)
        ax.grid(alpha=0.2)
    handles = [plt.Rectangle((0, 0), 1, 1, color="tab:blue"), plt.Line2D([], [], color="tab:red"),
               plt.Line2D([], [], marker=".", linestyle="none", color="black")]
    fig.legend(handles, ["true posterior p(z|x), grid (filled: 0.1, 1, 5, 20, 50 % of its peak)",
                         "guide q(z|x) (lines: 1, 20, 60 % of its peak)", f"NUTS samples from p(z|x) ({samples})"],
               loc="outside upper center", fontsize=9, ncols=1)
    return save(fig, out, "posteriors")


def gap_figure(total, multimodal, out):
    fig, ax = plt.subplots(figsize=(8, 3.4))
    colors = ["tab:red" if i in multimodal else "tab:blue" for i in range(len(total))]
    ax.bar(range(len(total)), total, color=colors)
    ax.legend(handles=[Patch(color="tab:blue", label="one mode"),
                       Patch(color="tab:red", label="two or more modes, each with ≥ 5 % of the mass")], fontsize=9)
    ax.set_xlabel("test digit (index in the test split)")
    ax.set_ylabel("log p(x) − ELBO (nats)")
    ax.set_title("what the amortized guide loses on each digit")
    ax.grid(alpha=0.3, axis="y")
    return save(fig, out, "gaps")


def neighbour_ratio(images: torch.Tensor, side: int) -> float:
    """Mean distance between the decoded images of lattice neighbours over the mean distance
    between all pairs: small when neighbouring codes decode to similar images."""
    flat = images.reshape(side, side, -1)
    near = torch.cat([(flat[1:] - flat[:-1]).norm(dim=-1).flatten(), (flat[:, 1:] - flat[:, :-1]).norm(dim=-1).flatten()])
    return (near.mean() / torch.cdist(flat.reshape(side * side, -1), flat.reshape(side * side, -1)).mean()).item()


def latent_figures(vae, data, out, claims):
    with torch.no_grad():
        loc, _ = vae.encode(data.test.x[:5000])
        coords = torch.linspace(-2.5, 2.5, 15)
        z = torch.stack(torch.meshgrid(coords, coords.flip(0), indexing="xy"), -1).reshape(-1, 2)
        images = vae.decode_mean(z)
    manifold(images, coords, out / "manifold.png", "decoded means over a 15 x 15 lattice of z")
    spread = images.reshape(len(images), -1).std(0).mean().item()  # how much the tiles differ, per pixel
    ratio = neighbour_ratio(images, len(coords))
    claims.check("manifold", spread > 0.1 and ratio < 0.5,
                 "The tiles differ from one another (their pixels' standard deviation across the lattice averages "
                 f"{spread:.2f}), and neighbouring codes decode to similar digits: neighbours are on average "
                 f"{ratio:.2f} times as far apart as two tiles picked at random.",
                 f"pixel standard deviation across tiles {spread:.3f}, neighbour distance ratio {ratio:.2f}",
                 full_only=True, general="The tiles differ from one another (pixel standard deviation across the "
                 "lattice above 0.1), and neighbouring codes decode to similar digits (neighbours less than half as "
                 "far apart as random pairs of tiles).")
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(loc[:, 0], loc[:, 1], s=2, alpha=0.4)
    ax.set_xlabel("z[0] (latent units)")
    ax.set_ylabel("z[1] (latent units)")
    ax.set_title("means of q(z|x) for 5000 test digits")
    ax.set_aspect("equal", adjustable="datalim")
    save(fig, out, "latent_means")


def main():
    args = arguments(__doc__, "ch4_amortized_inference")
    digits, nodes, elbo_samples, svi_steps = (4, 61, 500, 100) if args.quick else (40, 161, 5000, 1000)
    warmup, samples = (20, 20) if args.quick else (200, 300)
    spec, vae, _, data = model_2d(args)
    claims = Claims(args)
    latent_figures(vae, data, args.out, claims)
    x = data.test.x[:digits]

    # --8<-- [start:inspect]
    grids = grid_posterior(vae, x, nodes=nodes)             # p(z|x) on a grid, its modes, quadrature log p(x)
    q = guide_gaussians(vae, x)                             # the amortized guide q(z|x)
    qstar = optimal_gaussian(vae, x, steps=svi_steps)      # q*(z|x): the best diagonal Gaussian per digit
    gaps = gap_decomposition(vae, x, None, q, qstar, elbo_samples)
    # --8<-- [end:inspect]
    total = gaps.total_gap.value
    multimodal = [i for i, g in enumerate(grids) if g.multimodal]
    missed = [missed_mass(grids[i], q.loc[i], q.scale_tril[i]) for i in range(digits)]
    second = [g.modes[1].mass if len(g.modes) > 1 else 0.0 for g in grids]

    unimodal = sorted((i for i in range(digits) if i not in multimodal), key=lambda i: float(total[i]))
    typical = unimodal[len(unimodal) // 2: len(unimodal) // 2 + 1] + unimodal[:1]
    shown = sorted(multimodal, key=lambda i: -second[i])[:2]
    if len(shown) < 2:  # too few multimodal digits among those measured: the least unimodal ones
        shown += [i for i in sorted(range(digits), key=lambda i: -missed[i]) if i not in shown + typical][:2 - len(shown)]
    picked = typical + shown
    chains = mcmc_posterior(vae, x[picked], num_samples=samples, warmup_steps=warmup)
    cases = []
    for n, i in enumerate(picked):
        title = "typical digit" if i in typical else ("multimodal digit" if i in multimodal else "least unimodal digit")
        cases.append((title, i, x[i], grids[i], (q.loc[i], q.scale_tril[i]), chains[n].samples, float(total[i]),
                      missed[i]))
    posterior_figure(cases, args.out, samples)
    gap_figure(total, multimodal, args.out)

    rows = []
    for i, g in enumerate(grids):
        rows.append([i, f"{g.log_marginal:.3f}", f"{gaps.elbo_q.value[i]:.3f} ± {gaps.elbo_q.std_error[i]:.3f}",
                     f"{total[i]:.3f}", f"{gaps.approximation_gap.value[i]:.3f}", f"{gaps.amortization_gap.value[i]:.3f}",
                     len(g.modes), f"{100 * missed[i]:.1f}"])
    uni = [i for i in range(digits) if i not in multimodal]
    compared = (f"their mean gap is {total[multimodal].mean().item():.2f} nats against "
                f"{total[uni].mean().item():.2f} for the others" if multimodal and uni else "")
    costs = [[i, "yes" if i in multimodal else "no", f"{100 * missed[i]:.1f} %", f"{least_cost(missed[i]):.2f}",
              f"{gaps.approximation_gap.value[i]:.2f}", f"{total[i]:.2f}"]
             for i in sorted(range(digits), key=lambda i: -missed[i])[:8]]
    rhat = max(float(c.r_hat.max()) for c in chains)
    write_numbers(args.out, "summary", f"""
The VAE: `quickstart` with `model.latent_dim=2` ({spec.train.epochs} epochs on
{len(data.train)} training digits). Over the first {digits} test digits:

* mean gap $\\log p(x) - \\mathrm{{ELBO}}(q)$: **{total.mean().item():.2f} nats** (median {total.quantile(0.5).item():.2f},
  largest {total.max().item():.2f}), of which the approximation gap (the best diagonal Gaussian's,
  $\\log p(x) - \\mathrm{{ELBO}}(q^*)$) is {gaps.approximation_gap.value.mean().item():.2f} and the amortization gap
  ($\\mathrm{{ELBO}}(q^*) - \\mathrm{{ELBO}}(q)$) {gaps.amortization_gap.value.mean().item():.2f} nats;
* **{len(multimodal)} of {digits} ({100 * len(multimodal) / digits:.0f} %)** posteriors are multimodal by the rule
  above{"; " + compared if compared else ""};
* the NUTS chains of the pictured digits have split $\\hat R \\le$ {rhat:.3f}.
""")
    claims.check("rhat", rhat <= 1.1,
                 f"The NUTS chains have mixed: split $\\hat R \\le$ {rhat:.2f} (below 1.1) on every pictured digit, "
                 "so where chain and grid agree, both are right.",
                 f"split R-hat up to {rhat:.2f}", full_only=True,
                 general="The NUTS chains have mixed (split R-hat below 1.1 on every pictured digit), so where "
                 "chain and grid agree, both are right.")
    amortization, approximation = gaps.amortization_gap.value.mean().item(), gaps.approximation_gap.value.mean().item()
    claims.check("amortization", amortization > approximation,
                 f"The amortization gap ({amortization:.2f} nats on average) is larger than the approximation gap "
                 f"({approximation:.2f}): most of what the guide loses is the price of sharing one encoder.",
                 f"amortization {amortization:.2f}, approximation {approximation:.2f} nats", full_only=True,
                 general="The amortization gap is larger than the approximation gap.")
    finish(args, claims)
    write_numbers(args.out, "costs", markdown_table(
        ["test digit", "multimodal", "posterior mass outside q's 99 % ellipse", "least cost (nats)",
         "approximation gap (nats)", "gap (nats)"], costs))
    write_numbers(args.out, "digits", markdown_table(
        ["test digit", "log p(x), quadrature", "ELBO(q) ± s.e.", "gap", "approximation gap", "amortization gap",
         "modes ≥ 5 %", "mass outside q's 99 % ellipse (%)"], rows))
    print(f"{digits} digits: mean gap {total.mean().item():.2f} nats, {len(multimodal)} multimodal")
    return {"vae": vae, "data": data, "x": x, "grids": grids, "q": q, "gaps": gaps}  # for the exercises


if __name__ == "__main__":
    main()
