"""Chapter 8, the paper's experiments: Kingma & Welling's Fig. 2 setup in miniature. The
paper's MNIST architecture (500 tanh units, Adagrad, weight decay from the N(0, I) prior on
the parameters) trained for a few epochs per latent size, the lower bound plotted against
the number of training points evaluated, as in the paper.

    python3 examples/course/ch8_paper_experiments.py --out runs/course/ch8_paper_experiments
"""

from pathlib import Path

from _course import arguments, binarized_mnist, markdown_table, plt, save, trained, write_numbers

ROOT = Path(__file__).resolve().parents[2]
PAPER_PAGE = ROOT / "docs" / "paper.md"


def main():
    args = arguments(__doc__, "ch8_paper_experiments")
    sizes, epochs = ([3, 10], 1) if args.quick else ([3, 5, 10, 20], 3)
    data = binarized_mnist(args.cache)
    if args.quick:
        data = data.limited(1000)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows = []
    for size in sizes:
        spec, _, metrics = trained("mnist_aevb", [f"model.latent_dim={size}", f"train.epochs={epochs}"], data, args.cache)
        header, *lines = [line.split(",") for line in metrics]
        step, valid = header.index("step"), header.index("valid_elbo")
        seen = [int(line[step]) * spec.train.batch_size for line in lines]
        bound = [float(line[valid]) for line in lines]
        ax.plot(seen, bound, "o-", label=f"N_z = {size}")
        rows.append([size, f"{seen[-1]:,}", f"{bound[-1]:.2f}"])
    ax.set_xscale("log")
    ax.set_xlabel("training points evaluated (images)")
    ax.set_ylabel("validation ELBO (nats per image)")
    ax.set_title("AEVB on binarized MNIST, the paper's architecture")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    save(fig, args.out, "fig2_miniature")
    write_numbers(args.out, "numbers", markdown_table(
        ["latent size N_z", "training points evaluated", "validation ELBO (nats per image)"], rows))
    link = ("The full reproduction, with the paper's budgets, is on its own page: [the paper's "
            "experiments, reproduced](../paper.md)." if PAPER_PAGE.is_file() else
            "The full-length runs use the same configs with the paper's budgets: "
            "`pyrovae train mnist_aevb --set model.latent_dim=N --out runs/aevb-N`.")
    write_numbers(args.out, "link", link)


if __name__ == "__main__":
    main()
