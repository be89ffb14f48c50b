"""Chapter 4, amortized inference, seen: for a VAE with a 2-D latent space trained on
binarized MNIST, the true posterior p(z|x) on a grid beside the guide q(z|x), with NUTS
samples overlaid, for typical and for multimodal digits; and for every measured test digit
the grid log p(x), the ELBO and their gap.

    python3 examples/course/ch4_amortized_inference.py --out runs/course/ch4_amortized_inference
"""

import hashlib
import io
import json
import math
from typing import NamedTuple

import pyro
import torch
from _course import (
    Claims,
    arguments,
    binarized_mnist,
    finish,
    locked,
    markdown_table,
    plt,
    save,
    trained,
    write_numbers,
)
from matplotlib.patches import Patch

from pyrovae.evaluation.posterior import (
    FlowMembers,
    gap_decomposition,
    grid_posterior,
    guide_gaussians,
    mcmc_posterior,
    optimal_gaussian,
    optimal_in_family,
)
from pyrovae.reports.plots import manifold
from pyrovae.runs.files import write_atomic
from pyrovae.runs.loading import build_vae
from pyrovae.spec import load_config

MODEL_2D = ("quickstart", ["model.latent_dim=2", "train.epochs=10"])  # chapters 4 and 5 share it
QUICK_2D = ("quickstart", ["model.latent_dim=2", "train.epochs=1", "data.train_size=1000"])


def model_2d(args):
    config, overrides = QUICK_2D if args.quick else MODEL_2D
    data = binarized_mnist(args.cache)
    if args.quick:
        data = data.limited(1000)
    return trained(config, overrides, data, args.cache) + (data,)


FLOW_GUIDE = ["model.guide.name=iaf"]  # two IAF steps on the amortized Gaussian, a 16-number context
FLOW_EPOCHS, QUICK_FLOW_EPOCHS = 10, 2
GUIDE_PARTS = ("encoder.", "guide_family.")  # what the flow guide trains; the decoder and prior are shared


def flow_guide(args, vae, data):
    """The chapter's VAE with a new guide: an encoder and an inverse autoregressive flow
    (``model.guide.name=iaf``) trained on the pathwise ELBO with the decoder and the prior
    held fixed, so that its q(z|x) approximates the very posteriors the diagonal guide does.
    Kept in the model cache, as the trained VAEs are."""
    config, overrides = QUICK_2D if args.quick else MODEL_2D
    epochs = QUICK_FLOW_EPOCHS if args.quick else FLOW_EPOCHS
    spec = load_config(config, overrides + FLOW_GUIDE + ["train.progress=false", "train.device=cpu"])
    key = hashlib.sha256(json.dumps([config, sorted(overrides), FLOW_GUIDE, epochs, len(data.train)]).encode())
    path = args.cache / f"flow-guide-{key.hexdigest()[:12]}.pt"
    flow = build_vae(spec, data)
    shared = {k: v for k, v in vae.state_dict().items() if not k.startswith(GUIDE_PARTS)}
    missing, _ = flow.load_state_dict(shared, strict=False)
    assert all(k.startswith(GUIDE_PARTS) for k in missing), missing
    with locked(path.with_suffix(".lock")):
        if not path.is_file():
            fit_guide(flow, data.train.x, epochs)
            buffer = io.BytesIO()
            torch.save(flow.state_dict(), buffer)
            write_atomic(path, buffer.getvalue())
    flow.load_state_dict(torch.load(path))
    pyro.set_rng_seed(0)  # what follows draws the same numbers whether the guide was fitted now or loaded
    return flow.eval()


def fit_guide(vae, x: torch.Tensor, epochs: int, batch_size: int = 100, lr: float = 1e-3) -> None:
    """Train the encoder and the guide family's own weights of ``vae`` for ``epochs`` passes
    over ``x`` (Adam, the single-sample pathwise ELBO), every other parameter fixed."""
    pyro.set_rng_seed(0)
    learned = []
    for name, p in vae.named_parameters():
        p.requires_grad_(name.startswith(GUIDE_PARTS))
        learned += [p] if p.requires_grad else []
    optimizer = torch.optim.Adam(learned, lr=lr)
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(batch_size):
            q = vae.posterior(x[batch])
            z = q.rsample()
            loss = (q.log_prob(z) - vae.log_joint_of(x[batch])(z)).mean()  # - ELBO per digit
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


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


@torch.no_grad()
def member_log_density(members, i: int, z: torch.Tensor) -> torch.Tensor:
    """log q(z) of row ``i`` of ``members`` (Gaussians, or flow members: a flow has its
    density anywhere by its inverse) at the points ``z`` ``(..., 2)``, float64."""
    if isinstance(members, FlowMembers):
        encoding = members.encoding[i]
        return members.family(encoding).log_prob(z.to(encoding.dtype)).double()
    return torch.distributions.MultivariateNormal(members.loc[i], scale_tril=members.scale_tril[i]).log_prob(z)


def shown_box(grid, log_densities, floor: float = 1e-4):
    """The part of ``grid`` where the posterior or any of ``log_densities`` (on the grid's
    nodes, indexed like ``grid.log_density``) exceeds ``floor`` times its peak."""
    seen = torch.zeros_like(grid.log_density, dtype=torch.bool)
    for log_density in [grid.log_density, *log_densities]:
        seen |= log_density >= log_density.max() + math.log(floor)
    rows, cols = seen.nonzero().unbind(-1)
    return (grid.z1[rows].min().item(), grid.z1[rows].max().item()), (grid.z2[cols].min().item(), grid.z2[cols].max().item())


GUIDE_LEVELS = [0.01, 0.2, 0.6]  # q's contour lines, as shares of its peak


def guides_figure(rows, out):
    """One row per digit: the digit, then for each guide the grid posterior (filled), its
    q(z|x) (solid) and q*(z|x), the best member of its family for this digit (dashed)."""
    columns = len(rows[0][3])
    fig, axes = plt.subplots(len(rows), 1 + columns, figsize=(12, 3.9 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [0.9] + [2] * columns}, layout="constrained")
    for (title, index, x, guides, grid), (ax_img, *panels) in zip(rows, axes):
        ax_img.imshow(x[0], cmap="gray_r")
        ax_img.set_title(f"test digit {index}\n({title})", fontsize=10)
        ax_img.axis("off")
        zz = torch.stack(torch.meshgrid(grid.z1, grid.z2, indexing="ij"), -1)  # indexed like log_density
        logs = [(member_log_density(g.q, g.row, zz), member_log_density(g.qstar, g.row, zz)) for g in guides]
        (x_lo, x_hi), (y_lo, y_hi) = shown_box(grid, [d for pair in logs for d in pair])
        density = grid.log_density.exp()
        for ax, guide, (q_log, qstar_log) in zip(panels, guides, logs):
            ax.contourf(grid.z1, grid.z2, (density / density.max()).T, levels=[0.001, 0.01, 0.05, 0.2, 0.5, 1.0],
                        cmap="Blues")
            for log, color, style in ((q_log, "tab:red", "solid"), (qstar_log, "black", "dashed")):
                ax.contour(grid.z1, grid.z2, (log - log.max()).exp().T, levels=GUIDE_LEVELS, colors=color,
                           linestyles=style, linewidths=1.1)
            ax.set_xlim(x_lo, x_hi)
            ax.set_ylim(y_lo, y_hi)
            ax.set_xlabel("z[0] (latent units)")
            ax.set_ylabel("z[1] (latent units)")
            ax.set_title(f"{guide.name}: log p(x) − ELBO = {guide.gap:.2f} nats\n"
                         f"(approximation gap {guide.approximation:.2f})",
                         fontsize=10)
            ax.grid(alpha=0.2)
    handles = [plt.Rectangle((0, 0), 1, 1, color="tab:blue"), plt.Line2D([], [], color="tab:red"),
               plt.Line2D([], [], color="black", linestyle="dashed")]
    fig.legend(handles, ["true posterior p(z|x), grid (filled: 0.1, 1, 5, 20, 50 % of its peak)",
                         "the guide's q(z|x) (lines: 1, 20, 60 % of its peak)",
                         "q*(z|x): the best member of the guide's family for this digit (same levels)"],
               loc="outside upper center", fontsize=9, ncols=1)
    return save(fig, out, "guides")


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


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


class Panel(NamedTuple):
    """One guide's panel of :func:`guides_figure` for one digit."""

    name: str
    q: object            # the guide's q(z|x) for the measured digits (Gaussians or flow members)
    qstar: object        # q*(z|x), the best of its family per digit
    row: int             # the digit's row among the measured ones
    gap: float
    approximation: float


def flow_section(args, claims, vae, data, x, diagonal, settings, grids, pictured):
    """The flow guide beside the diagonal one (``diagonal``: its q, q* and gaps): fit it to
    the chapter's decoder, decompose its gaps on the same digits against the same quadrature
    log p(x), draw both guides over the grid posteriors of the ``pictured`` digits (title,
    row), tabulate the gaps and check what the page says of them."""
    svi_steps, elbo_samples = settings
    q, qstar, gaps = diagonal
    # --8<-- [start:flow]
    flow = flow_guide(args, vae, data)                          # the same decoder, an IAF guide
    q_flow = guide_gaussians(flow, x)                           # its q(z|x) for the same digits
    qstar_flow = optimal_in_family(flow, x, steps=svi_steps)    # q*: the best flow member per digit
    flow_gaps = gap_decomposition(flow, x, None, q_flow, qstar_flow, elbo_samples,
                                  log_marginal=gaps.log_marginal)  # the same quadrature log p(x)
    # --8<-- [end:flow]
    gain = flow_gaps.elbo_q.value - gaps.elbo_q.value  # = the diagonal guide's gap minus the flow's
    gain_se = flow_gaps.elbo_q.std_error.hypot(gaps.elbo_q.std_error)  # log p(x) is common: it cancels
    family_gain = flow_gaps.elbo_qstar.value - gaps.elbo_qstar.value  # = the drop in the approximation gap
    family_se = flow_gaps.elbo_qstar.std_error.hypot(gaps.elbo_qstar.std_error)
    n = len(gain)
    mean_se, family_mean_se = gain_se.norm().item() / n, family_se.norm().item() / n
    panels = []
    for title, i in pictured:
        panels.append((title, i, x[i], [
            Panel("diagonal Gaussian guide", q, qstar, i, float(gaps.total_gap.value[i]),
                  float(gaps.approximation_gap.value[i])),
            Panel("IAF guide", q_flow, qstar_flow, i, float(flow_gaps.total_gap.value[i]),
                  float(flow_gaps.approximation_gap.value[i]))], grids[i]))
    guides_figure(panels, args.out)

    rows = [[f"{i} ({title})", len(grids[i].modes), f"{gaps.total_gap.value[i]:.2f}",
             f"{flow_gaps.total_gap.value[i]:.2f}", f"{gain[i]:.2f} ± {gain_se[i]:.2g}",
             f"{gaps.approximation_gap.value[i]:.2f}", f"{flow_gaps.approximation_gap.value[i]:.2f}"]
            for title, i in pictured]
    rows.append([f"mean over the {n} digits", "", f"{gaps.total_gap.value.mean():.2f}",
                 f"{flow_gaps.total_gap.value.mean():.2f}", f"{gain.mean():.2f} ± {mean_se:.2g}",
                 f"{gaps.approximation_gap.value.mean():.2f}", f"{flow_gaps.approximation_gap.value.mean():.2f}"])
    write_numbers(args.out, "flow_gaps", markdown_table(
        ["test digit", "modes ≥ 5 %", "gap, diagonal (nats)", "gap, IAF (nats)", "diagonal − IAF ± s.e.",
         "approximation gap, diagonal", "approximation gap, IAF"], rows))
    epochs = QUICK_FLOW_EPOCHS if args.quick else FLOW_EPOCHS
    write_numbers(args.out, "flow_summary", f"""
The IAF guide's encoder and flow were trained for {plural(epochs, "epoch")} on the same
{len(data.train)} digits. Over the same {n} test digits, its mean gap is
**{flow_gaps.total_gap.value.mean():.2f} nats** against {gaps.total_gap.value.mean():.2f} for the diagonal
guide: an approximation gap of {flow_gaps.approximation_gap.value.mean():.2f} (diagonal:
{gaps.approximation_gap.value.mean():.2f}) and an amortization gap of {flow_gaps.amortization_gap.value.mean():.2f}
(diagonal: {gaps.amortization_gap.value.mean():.2f}).
""")

    kind, bent = pictured[1]  # the multimodal digit with the most mass in its second mode (or the least unimodal)
    claims.check("flow_bent", gain[bent] > 3 * gain_se[bent],
                 f"On test digit {bent}, the {kind} pictured first above, the flow's gap is "
                 f"{gain[bent]:.2f} ± {gain_se[bent]:.2g} nats smaller than the diagonal guide's "
                 f"({flow_gaps.total_gap.value[bent]:.2f} against {gaps.total_gap.value[bent]:.2f}).",
                 f"digit {bent}: diagonal gap minus IAF gap {gain[bent]:.2f} ± {gain_se[bent]:.2g} nats",
                 full_only=True, general="On the first multimodal (or least unimodal) digit pictured, the flow's "
                 "gap is smaller than the diagonal guide's (by more than three standard errors).")
    claims.check("flow_mean", gain.mean() > 3 * mean_se,
                 f"Averaged over the {n} digits, the flow guide's gap is {gain.mean():.2f} ± {mean_se:.2g} nats "
                 "below the diagonal guide's.",
                 f"mean of the diagonal gap minus the IAF gap {gain.mean():.2f} ± {mean_se:.2g} nats", full_only=True,
                 general="Averaged over the measured digits, the flow guide's gap is below the diagonal guide's.")
    claims.check("flow_family", family_gain.mean() > 3 * family_mean_se,
                 f"The flow family's best members fit better too: its approximation gap is on average "
                 f"{family_gain.mean():.2f} ± {family_mean_se:.2g} nats below the diagonal family's.",
                 f"ELBO(q*) of the flow minus the diagonal's, mean {family_gain.mean():.2f} ± "
                 f"{family_mean_se:.2g} nats", full_only=True,
                 general="The flow family's approximation gap is on average below the diagonal family's.")


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
The VAE: `quickstart` with `model.latent_dim=2` ({plural(spec.train.epochs, "epoch")} on
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
    pictured = [(cases[n][0], i) for n, i in enumerate(picked) if n != 1]  # the median typical digit, and the others
    flow_section(args, claims, vae, data, x, (q, qstar, gaps), (svi_steps, elbo_samples), grids, pictured)
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
