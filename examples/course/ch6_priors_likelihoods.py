"""Chapter 6, priors and likelihoods: the same 2-D VAE on binarized MNIST under a standard
normal, a mixture-of-Gaussians and a VampPrior, drawn in latent space with the mixture's
components and the pseudo-inputs' encodings; then four likelihoods on grey digits, their
ELBOs (which cannot be compared) and bits per dimension (which can, for 8-bit data).

    python3 examples/course/ch6_priors_likelihoods.py --out runs/course/ch6_priors_likelihoods
"""

import math

import torch
import torch.nn.functional as F
from _course import Claims, arguments, binarized_mnist, finish, labelled_digits, markdown_table, plt, save, trained, write_numbers
from ch4_amortized_inference import MODEL_2D, QUICK_2D

from pyrovae.evaluation.importance import importance_sample
from pyrovae.inference.elbo import split_elbo

PRIORS = {"standard normal": [],
          "mixture of 10 Gaussians": ["model.prior.name=mog", "model.prior.num_components=10"],
          "VampPrior, 50 pseudo-inputs": ["model.prior.name=vamp", "model.prior.num_pseudo_inputs=50"]}
LIKELIHOODS = {"bernoulli": "binarized digits", "continuous_bernoulli": "grey digits", "gaussian": "grey digits",
               "discretized_logistic": "grey digits"}
LIKELIHOOD_MODEL = ["model.latent_dim=20"]


def prior_panel(ax, vae, means, name):
    """Test-set means of q(z|x), the prior's density as contours, and its components, over a
    square that holds 99 % of the codes (the flexible priors let them spread far)."""
    lim = max(4.0, means.abs().max(1).values.quantile(0.99).item())
    grid = torch.linspace(-lim, lim, 200)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        prior = vae.prior()
        density = prior.log_prob(zz).exp().reshape(200, 200)
    ax.scatter(means[:, 0], means[:, 1], s=1, color="0.6", alpha=0.4, label="means of q(z|x), test digits")
    ax.contour(grid, grid, density, levels=6, colors="tab:blue", linewidths=0.8)
    ax.plot([], [], color="tab:blue", label="prior density p(z)")
    with torch.no_grad():
        if hasattr(vae.prior, "locs"):
            weights = vae.prior.logits.softmax(0)
            ax.scatter(*vae.prior.locs.T, s=400 * weights, color="tab:red", marker="X",
                       label="mixture components (size ∝ weight)")
        if hasattr(vae.prior, "pseudo_inputs"):
            loc, _ = vae.encode(F.hardtanh(vae.prior.pseudo_inputs, 0.0, 1.0))
            ax.scatter(*loc.T, s=18, color="tab:red", marker="^", label="encodings of the pseudo-inputs")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xlabel("z[0] (latent units)")
    ax.set_ylabel("z[1] (latent units)")
    ax.set_title(name)


def priors_part(args, claims):
    data = binarized_mnist(args.cache)
    config, base = QUICK_2D if args.quick else MODEL_2D
    if args.quick:
        data = data.limited(1000)
    points, samples = (50, 100) if args.quick else (500, 1000)
    x = data.test.x[:points]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6), layout="constrained")
    rows, measured = [], {}
    for ax, (name, overrides) in zip(axes, PRIORS.items()):
        _, vae, _ = trained(config, base + overrides, data, args.cache)
        with torch.no_grad():
            means, _ = vae.encode(data.test.x[:3000])
        with torch.no_grad():
            prior_panel(ax, vae, means, name)
        torch.manual_seed(0)
        result = importance_sample(vae, x, num_samples=samples)
        rows.append([name, f"{split_elbo(vae, x):.2f}", f"{result.log_marginal.value.mean().item():.2f}",
                     f"{result.kl.mean().item():.2f}"])
        measured[name] = (result.log_marginal.value.mean().item(), result.kl.mean().item())
    handles = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=len(handles), fontsize=10)
    save(fig, args.out, "priors")
    (log_p, rate), flexible = measured["standard normal"], {k: v for k, v in measured.items() if k != "standard normal"}
    claims.check("priors_follow", all(v[0] > log_p and v[1] < rate for v in flexible.values()),
                 "The flexible priors fit the codes better than the standard normal: their rate is lower ("
                 + ", ".join(f"{v[1]:.2f}" for v in flexible.values()) + f" nats against {rate:.2f}) and their "
                 "$\\log p(x)$ higher (" + ", ".join(f"{v[0]:.2f}" for v in flexible.values())
                 + f" against {log_p:.2f}).",
                 "; ".join(f"{k}: log p(x) {v[0]:.2f}, rate {v[1]:.2f}" for k, v in measured.items()), full_only=True,
                 general="The flexible priors fit the codes better than the standard normal: a lower rate and a "
                 "higher log p(x).")
    write_numbers(args.out, "priors", markdown_table(
        ["prior", f"test ELBO ({points} digits, nats)", f"log p(x), K = {samples} (nats)", "rate KL(q ‖ p(z)) (nats)"],
        rows))


def bits_per_dim(log_p: float, likelihood: str, pixels: int) -> str:
    """Bits per dimension of 8-bit images: a probability over the 256 levels per pixel. A
    density over [0, 1] (values k / 255) becomes one by the bins' width 1/255."""
    if likelihood == "bernoulli":
        return "— (binary data: another dataset)"
    if likelihood == "discretized_logistic":
        return f"{-log_p / (pixels * math.log(2)):.3f}"
    return f"{(-log_p + pixels * math.log(255)) / (pixels * math.log(2)):.3f}"


def likelihoods_part(args, claims):
    grey = labelled_digits(args.cache, labels=False)
    binary = labelled_digits(args.cache, binarize=True, labels=False)
    epochs = 1 if args.quick else 8
    points = 100 if args.quick else 1000
    rows, recon, elbos = [], {}, {}
    for likelihood, kind in LIKELIHOODS.items():
        data = binary if likelihood == "bernoulli" else grey
        if args.quick:
            data = data.limited(500)
        _, vae, _ = trained("quickstart", LIKELIHOOD_MODEL + [f"model.likelihood.name={likelihood}",
                                                              f"train.epochs={epochs}"], data, args.cache)
        x = data.test.x[:points]
        elbo = split_elbo(vae, x)
        with torch.no_grad():
            recon[likelihood] = (data.test.x[:8], vae.decode_mean(vae.encode(data.test.x[:8])[0]))
        rows.append([f"`{likelihood}`", kind, f"{elbo:.1f}", bits_per_dim(elbo, likelihood, x[0].numel())])
        elbos[likelihood] = elbo
    fig, axes = plt.subplots(len(recon) * 2, 8, figsize=(8, 2.1 * len(recon)), layout="constrained")
    for r, (likelihood, (originals, means)) in enumerate(recon.items()):
        for c in range(8):
            for row, images in ((2 * r, originals), (2 * r + 1, means)):
                axes[row, c].imshow(images[c, 0], cmap="gray", vmin=0, vmax=1)
                axes[row, c].set_xticks([])
                axes[row, c].set_yticks([])
        axes[2 * r, 0].set_ylabel("data", fontsize=9)
        axes[2 * r + 1, 0].set_ylabel("mean of\np(x|z)", fontsize=9)
        axes[2 * r, 3].set_title(likelihood, fontsize=10)
    fig.suptitle("test digits and the decoder's mean at the guide's mean, per likelihood")
    save(fig, args.out, "likelihoods")
    write_numbers(args.out, "likelihoods", markdown_table(
        ["likelihood", "data", f"test ELBO ({points} digits, nats)", "bits per dimension (upper bound, from the ELBO)"],
        rows))
    claims.check("probabilities", elbos["bernoulli"] < 0 and elbos["discretized_logistic"] < 0,
                 "The two likelihoods that assign probabilities have negative ELBOs, as they must.",
                 f"bernoulli {elbos['bernoulli']:.1f}, discretized_logistic {elbos['discretized_logistic']:.1f}")


def continuous_bernoulli_constants(out):
    """log C(lambda) = log p(x) - [x log lambda + (1 - x) log(1 - lambda)] for exercise 4's
    two values of lambda, from torch's ContinuousBernoulli (C(1/2) = 2)."""
    rows = []
    for lam in (0.5, 0.99):
        cb = torch.distributions.ContinuousBernoulli(probs=torch.tensor(lam, dtype=torch.float64))
        at_one = cb.log_prob(torch.tensor(1.0, dtype=torch.float64)).item()
        rows.append([f"{lam}", f"{at_one:.4f}", f"{at_one - math.log(lam):.4f}", f"{math.exp(at_one - math.log(lam)):.4f}"])
    write_numbers(out, "cb_constants", markdown_table(
        ["λ", "log_prob(1.0) = log C + log λ", "log C(λ)", "C(λ)"], rows))


def main():
    args = arguments(__doc__, "ch6_priors_likelihoods")
    claims = Claims(args)
    priors_part(args, claims)
    likelihoods_part(args, claims)
    continuous_bernoulli_constants(args.out)
    finish(args, claims)


if __name__ == "__main__":
    main()
