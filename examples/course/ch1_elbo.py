"""Chapter 1, the ELBO: a 1-D conjugate model where log p(x), the posterior and the ELBO of
every Gaussian q are exact.

z ~ N(0, 1), x | z ~ N(z, s^2). Draws the ELBO over (mu, sigma) as contours with its maximum
at the posterior, the gap log p(x) - ELBO(q) beside KL(q || p(z|x)), and Pyro's Monte Carlo
ELBO (Trace_ELBO) beside the closed form.

    python3 examples/course/ch1_elbo.py --out runs/course/ch1_elbo
"""

import math

import pyro
import pyro.distributions as dist
import torch
from _course import Claims, arguments, finish, markdown_table, plt, save, write_numbers
from pyro.infer import Trace_ELBO

from pyrovae.evaluation.references import LinearGaussian

X, NOISE = 1.5, 0.8  # the observation and the likelihood's standard deviation s


# --8<-- [start:closed_form]
def conjugate_model(noise: float) -> LinearGaussian:
    """z ~ N(0, 1), x = 1 * z + 0 + eps, eps ~ N(0, s^2): the 1-D linear-Gaussian model."""
    return LinearGaussian(torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), noise)


def identity_terms(x: float, noise: float, mu: torch.Tensor, sigma: torch.Tensor):
    """log p(x), ELBO(q) and KL(q || p(z|x)) for q = N(mu, sigma^2), elementwise over mu, sigma."""
    model = conjugate_model(noise)
    xs = torch.full((mu.numel(), 1), x, dtype=torch.float64)
    elbo = model.elbo(xs, mu.reshape(-1, 1), (sigma.reshape(-1) ** 2)[:, None, None]).reshape(mu.shape)
    post_mean, post_cov = model.posterior(xs[:1])
    posterior = dist.Normal(post_mean[0, 0], post_cov[0, 0].sqrt())
    kl = torch.distributions.kl_divergence(dist.Normal(mu, sigma), posterior)
    return model.log_marginal(xs[:1])[0], elbo, kl
# --8<-- [end:closed_form]


# --8<-- [start:pyro]
def pyro_elbo(x: float, noise: float, mu: float, sigma: float, particles: int, repeats: int):
    """Pyro's Monte Carlo ELBO of q = N(mu, sigma^2): mean and standard error over ``repeats``
    independent Trace_ELBO estimates of ``particles`` samples each."""

    def model(x):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, noise), obs=x)

    def guide(x):
        pyro.sample("z", dist.Normal(mu, sigma))

    elbo = Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=0)
    values = torch.tensor([-elbo.loss(model, guide, torch.tensor(x)) for _ in range(repeats)])
    return values.mean().item(), values.std().item() / math.sqrt(repeats)
# --8<-- [end:pyro]


def contour_figure(mu, sigma, elbo, post_mean, post_sd, log_px, out):
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    levels = log_px - torch.tensor([8, 4, 2, 1, 0.5, 0.25, 0.1, 0.02]).double()
    filled = ax.contourf(mu, sigma, elbo.clamp_min(log_px - 12), levels=30, cmap="viridis")
    lines = ax.contour(mu, sigma, elbo, levels=levels.tolist(), colors="white", linewidths=0.8)
    ax.clabel(lines, fmt=lambda v: f"{v - log_px:+.2f}", fontsize=7)
    fig.colorbar(filled, ax=ax, label="ELBO(q) in nats")
    best = elbo.argmax()
    ax.plot(mu.reshape(-1)[best], sigma.reshape(-1)[best], "o", color="red", markersize=9,
            label="largest ELBO on the grid")
    ax.plot(post_mean, post_sd, "*", color="orange", markersize=13, label="exact posterior p(z|x)")
    ax.set_xlabel("mean μ of q (latent units)")
    ax.set_ylabel("standard deviation σ of q (latent units)")
    ax.set_title(f"ELBO of q = N(μ, σ²) for x = {X}, s = {NOISE}\n(white contours: nats below log p(x))")
    ax.legend(loc="upper right", fontsize=8)
    return save(fig, out, "elbo_contours")


def gap_figure(x_axis, elbo, kl, log_px, pyro_points, post_sd, out):
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.axhline(log_px, color="black", label="log p(x) (exact)")
    ax.plot(x_axis, elbo, color="tab:blue", label="ELBO(q), closed form")
    ax.fill_between(x_axis, elbo, log_px, color="tab:orange", alpha=0.3, label="gap = KL(q || p(z|x))")
    mus, values, errors = zip(*pyro_points)
    ax.errorbar(mus, values, yerr=[3 * e for e in errors], fmt="s", color="tab:red", capsize=3,
                label="Pyro Trace_ELBO estimate ± 3 s.e.")
    ax.set_xlabel("mean μ of q (latent units)")
    ax.set_ylabel("nats")
    ax.set_title(f"σ fixed at the posterior's {post_sd:.3f}")
    ax.legend(fontsize=8)
    return save(fig, out, "elbo_gap")


def main():
    args = arguments(__doc__, "ch1_elbo")
    particles, repeats = (200, 10) if args.quick else (2000, 20)
    post_var = NOISE ** 2 / (1 + NOISE ** 2)
    post_mean, post_sd = X / (1 + NOISE ** 2), math.sqrt(post_var)

    mu, sigma = torch.meshgrid(torch.linspace(-1.0, 2.5, 281, dtype=torch.float64),
                               torch.linspace(0.05, 1.5, 291, dtype=torch.float64), indexing="xy")
    log_px, elbo, kl = identity_terms(X, NOISE, mu, sigma)
    worst = (log_px - elbo - kl).abs().max().item()
    contour_figure(mu, sigma, elbo, post_mean, post_sd, log_px.item(), args.out)

    line_mu = torch.linspace(-1.0, 2.5, 200, dtype=torch.float64)
    _, line_elbo, line_kl = identity_terms(X, NOISE, line_mu, torch.full_like(line_mu, post_sd))
    chosen = [(-0.5, 1.0), (0.0, 0.5), (post_mean, post_sd), (1.5, 0.3), (2.0, 0.62)]
    rows, pyro_points = [], []
    for m, s in chosen:
        _, e, k = identity_terms(X, NOISE, torch.tensor([m], dtype=torch.float64), torch.tensor([s], dtype=torch.float64))
        estimate, error = pyro_elbo(X, NOISE, m, s, particles, repeats)
        if abs(s - post_sd) < 1e-12:
            pyro_points.append((m, estimate, error))
        rows.append([f"{m:.3f}", f"{s:.3f}", f"{e.item():.6f}", f"{k.item():.6f}",
                     f"{(log_px - e - k).item():.1e}", f"{estimate:.4f} ± {error:.4f}"])
    for m in (-0.5, 0.5, 2.0):
        pyro_points.append((m, *pyro_elbo(X, NOISE, m, post_sd, particles, repeats)))
    gap_figure(line_mu, line_elbo, line_kl, log_px.item(), sorted(pyro_points), post_sd, args.out)

    best = elbo.argmax()
    write_numbers(args.out, "numbers", f"""
With $x = {X}$ and $s = {NOISE}$: $\\log p(x) = \\log \\mathcal N(x; 0, 1 + s^2) = {log_px.item():.6f}$ nats, and
the posterior is $\\mathcal N({post_mean:.4f}, {post_sd:.4f}^2)$. The largest ELBO on the
{mu.numel()}-point grid is {elbo.max().item():.6f} nats, at $\\mu = {mu.reshape(-1)[best].item():.4f}$,
$\\sigma = {sigma.reshape(-1)[best].item():.4f}$: the grid node nearest the posterior. Over all
grid points, $|\\log p(x) - \\mathrm{{ELBO}}(q) - \\mathrm{{KL}}(q \\,\\|\\, p(z \\mid x))|$ is at most
{worst:.1e} nats.

{markdown_table(["μ", "σ", "ELBO (closed form)", "KL to the posterior", "log p(x) − ELBO − KL",
                 f"Pyro Trace_ELBO ({repeats} × {particles} samples)"], rows)}
""")
    claims = Claims(args)
    at = sorted(pyro_points)[[m for m, _, _ in sorted(pyro_points)].index(post_mean)]
    node = (mu.reshape(-1)[best].item(), sigma.reshape(-1)[best].item())
    spacing = (3.5 / 280, 1.45 / 290)
    claims.check("maximum", abs(node[0] - post_mean) <= spacing[0] / 2 + 1e-12
                 and abs(node[1] - post_sd) <= spacing[1] / 2 + 1e-12,
                 "The surface has one maximum and it sits on the posterior: the grid's best node is the one "
                 "nearest the exact posterior.",
                 f"best node ({node[0]:.4f}, {node[1]:.4f}), posterior ({post_mean:.4f}, {post_sd:.4f})")
    claims.check("identity", worst < 1e-6, "The identity holds to rounding error at every grid point.",
                 f"largest |log p(x) - ELBO - KL| {worst:.1e}")
    claims.check("zero_variance", at[2] < 1e-6,
                 "At the posterior the table's Pyro estimate has a standard error below $10^{-6}$ nats: what is "
                 "left is the rounding of Pyro's single-precision arithmetic.",
                 f"standard error {at[2]:.2e}")
    within = [abs(e - identity_terms(X, NOISE, torch.tensor([m], dtype=torch.float64),
                                     torch.tensor([post_sd], dtype=torch.float64))[1].item()) <= 3 * se + 1e-9
              for m, e, se in pyro_points]
    claims.check("pyro_agrees", all(within), "Every red square lies within three standard errors of the closed form.",
                 f"{sum(within)} of {len(within)} within")
    finish(args, claims)
    print(f"log p(x) = {log_px.item():.6f}; largest |log p(x) - ELBO - KL| on the grid {worst:.1e}")


if __name__ == "__main__":
    main()
