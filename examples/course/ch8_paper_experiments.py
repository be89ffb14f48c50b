"""Chapter 8, the paper's experiments: Kingma & Welling's Fig. 2 setup in miniature. The
paper's MNIST architecture (500 tanh units, Adagrad, weight decay from the N(0, I) prior on
the parameters) trained for a few epochs per latent size, the lower bound plotted against
the number of training points evaluated, as in the paper. Then Fig. 4 (the learned 2-D
manifolds of MNIST and Frey Face) and Fig. 5 (samples for N_z in {2, 5, 10, 20}) from models
trained here at build-time budgets, drawn by the same code as ``pyrovae reproduce``.

    python3 examples/course/ch8_paper_experiments.py --out runs/course/ch8_paper_experiments
"""

from pathlib import Path

import pyro
import torch
from _course import Claims, arguments, binarized_mnist, finish, markdown_table, plt, save, trained, write_numbers

from pyrovae.components.datasets import load_data
from pyrovae.reports.paper_figures import figure_4, figure_5, tile
from pyrovae.spec import load_config

ROOT = Path(__file__).resolve().parents[2]
PAPER_PAGE = ROOT / "docs" / "paper.md"
FREY_EPOCHS = 300  # 4.7 x 10^5 training points: half a minute on one core
FREY_COLUMNS, FREY_ROWS = 8, 4  # each panel of the Frey Face figure: 4 rows of 8 faces
SPREAD_SAMPLES = 1000  # samples whose spread is compared with the test faces'


def main():
    args = arguments(__doc__, "ch8_paper_experiments")
    sizes, epochs = ([3, 10], 3) if args.quick else ([3, 5, 10, 20], 3)  # three evaluations per curve
    data = binarized_mnist(args.cache)
    if args.quick:
        data = data.limited(1000)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows, curves = [], {}
    mnist_models = {}
    for size in sorted({2, *sizes}):
        spec, vae, metrics = trained("mnist_aevb", [f"model.latent_dim={size}", f"train.epochs={epochs}"], data, args.cache)
        mnist_models[size] = (vae, metrics)
        if size not in sizes:  # N_z = 2 is for Fig. 4 and 5 only
            continue
        header, *lines = [line.split(",") for line in metrics]
        step, valid = header.index("step"), header.index("valid_elbo")
        seen = [int(line[step]) * spec.train.batch_size for line in lines]
        bound = [float(line[valid]) for line in lines]
        ax.plot(seen, bound, "o-", label=f"N_z = {size}")
        rows.append([size, f"{seen[-1]:,}", f"{bound[-1]:.2f}"])
        curves[size] = bound
    ax.set_xscale("log")
    ax.set_xlabel("training points evaluated (images)")
    ax.set_ylabel("validation ELBO (nats per image)")
    ax.set_title("AEVB on binarized MNIST, the paper's architecture")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=10)
    save(fig, args.out, "fig2_miniature")
    claims = Claims(args)
    steady = all(len(b) >= 3 and all(later > earlier for earlier, later in zip(b, b[1:])) for b in curves.values())
    claims.check("steady", steady,
                 "Even this short run shows the paper's first observation in its early part: for every latent size the "
                 "bound improves at every evaluation, and it is still improving at the last one.",
                 "; ".join(f"N_z = {k}: " + ", ".join(f"{v:.1f}" for v in b) for k, b in curves.items()), full_only=True)
    write_numbers(args.out, "numbers", markdown_table(
        ["latent size N_z", "training points evaluated", "validation ELBO (nats per image)"], rows))
    link = ("The full reproduction, with the paper's budgets, is on its own page: [the paper's "
            "experiments, reproduced](../paper.md)." if PAPER_PAGE.is_file() else
            "The full-length runs use the same configs with the paper's budgets: "
            "`pyrovae train mnist_aevb --set model.latent_dim=N --out runs/aevb-N`.")
    write_numbers(args.out, "link", link)
    manifolds_and_samples(args, mnist_models, epochs * len(data.train), claims)
    finish(args, claims)
    return {"mnist_models": {size: vae for size, (vae, _) in mnist_models.items()}}  # for the exercises


def _last_bound(metrics) -> float:
    header, *lines = [line.split(",") for line in metrics]
    return float(lines[-1][header.index("valid_elbo")])


def manifolds_and_samples(args, mnist_models, mnist_points, claims):
    """Fig. 4 and Fig. 5 from the MNIST models above and a 2-D Frey Face model trained here."""
    frey = load_data(load_config("frey_aevb").data)
    frey_epochs = 2 if args.quick else FREY_EPOCHS
    if args.quick:
        frey = frey.limited(200)
    _, frey_vae, frey_metrics = trained("frey_aevb", ["model.latent_dim=2", f"train.epochs={frey_epochs}"], frey,
                                        args.cache)
    figure_4({"Frey Face, $N_z$ = 2": frey_vae, "MNIST, $N_z$ = 2": mnist_models[2][0]},
             args.out / "kingma2014-fig4.png")
    frey_faces(args, frey_vae, frey, claims)
    figure_5({f"MNIST, $N_z$ = {size}": vae for size, (vae, _) in mnist_models.items() if size in (2, 5, 10, 20)},
             args.out / "kingma2014-fig5.png")
    rows = [["Frey Face, N_z = 2", f"{frey_epochs * len(frey.train):,}", f"{_last_bound(frey_metrics):.2f}"]]
    rows += [[f"MNIST, N_z = {size}", f"{mnist_points:,}", f"{_last_bound(metrics):.2f}"]
             for size, (_, metrics) in mnist_models.items() if size in (2, 5, 10, 20)]
    write_numbers(args.out, "fig45_models", markdown_table(
        ["model", "training points", "validation bound (nats per point)"], rows))


def rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Root-mean-square pixel difference between images ``a`` and ``b``, one value per image."""
    return (a - b).pow(2).flatten(1).mean(1).sqrt()


def spread(images: torch.Tensor) -> float:
    """How much images differ from one another: the root-mean-square pixel difference between
    two of them, averaged over all pairs."""
    flat = images.flatten(1)
    n = flat.shape[0]
    return (torch.cdist(flat, flat).sum() / (n * (n - 1))).item() / flat.shape[1] ** 0.5


@torch.no_grad()
def frey_faces(args, vae, frey, claims):
    """The Frey Face model's generated faces (means of p(x|z), z from the prior) beside test
    faces and their reconstructions (means of p(x|z) at the guide's code), and the claims the
    page makes of them: the reconstructions are closer to their own faces than the average
    face is, and the samples differ from one another."""
    n = FREY_COLUMNS * FREY_ROWS
    pyro.set_rng_seed(0)
    samples = vae.sample(SPREAD_SAMPLES)
    faces = frey.test.x
    reconstructions = vae.reconstruct(faces)
    shown = n // 2
    pairs = torch.cat([torch.cat([faces[i:i + FREY_COLUMNS], reconstructions[i:i + FREY_COLUMNS]])
                       for i in range(0, shown, FREY_COLUMNS)])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9), layout="constrained")
    for ax, images, title in ((axes[0], samples[:n], f"{n} samples: means of p(x | z), z ~ N(0, I)"),
                              (axes[1], pairs, "test faces (rows 1, 3) and their reconstructions (rows 2, 4)")):
        ax.imshow(tile(images, FREY_COLUMNS).clamp(0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle("Frey Face, $N_z$ = 2: generated faces and reconstructions")
    save(fig, args.out, "frey_faces")

    average = frey.train.x.mean(0, keepdim=True)
    errors, baselines = rms_distance(reconstructions, faces), rms_distance(average, faces)
    error, baseline = errors.mean().item(), baselines.mean().item()
    closer = (errors < baselines).float().mean().item()
    explained = 1 - errors.pow(2).mean().item() / baselines.pow(2).mean().item()
    claims.check("frey_reconstructions", error < baseline and closer > 0.5,
                 f"The reconstructions follow their own faces, loosely at this budget: over the {len(faces)} test faces "
                 f"their root-mean-square pixel error is {error:.3f} against the average training face's {baseline:.3f} "
                 f"(closer than the average face for {closer:.0%} of them): they account for {explained:.0%} of the "
                 "faces' pixel variance around the average face.",
                 f"root-mean-square pixel error {error:.3f}, the average face's {baseline:.3f}; closer for {closer:.0%}",
                 full_only=True, general="The reconstructions follow their own faces: closer to them than the average "
                 "face is.")
    generated, real = spread(samples), spread(faces)
    claims.check("frey_samples", generated > real / 3,
                 f"The samples are not one face: two of them differ by {generated:.3f} in root-mean-square pixel "
                 f"value on average, {generated / real:.0%} of what separates two test faces ({real:.3f}).",
                 f"samples differ by {generated:.3f}, test faces by {real:.3f}", full_only=True,
                 general="The samples vary: two of them differ by more than a third of what separates two test faces.")

if __name__ == "__main__":
    main()
