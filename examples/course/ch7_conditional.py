"""Chapter 7, the conditional VAE: p(x | y) = integral p(z) p(x | z, y) dz with the digit's
label y given to encoder and decoder. Generates chosen digits (one column per class, one
row per draw of z shared across the row) and measures what the label is worth in nats.

    python3 examples/course/ch7_conditional.py --out runs/course/ch7_conditional
"""

import math

import torch
from _course import Claims, arguments, finish, labelled_digits, markdown_table, plt, save, trained, write_numbers

from pyrovae.evaluation.importance import importance_sample
from pyrovae.inference.elbo import split_elbo
from pyrovae.reports.plots import tile

CVAE = ["model.conditional=true", "model.latent_dim=10"]
PLAIN = ["model.latent_dim=10"]


# --8<-- [start:generate]
@torch.no_grad()
def generate(vae, rows: int, seed: int = 0) -> torch.Tensor:
    """Decoder means for ``rows`` draws z ~ p(z), each decoded with every label 0..9: row r,
    column c is the mean of p(x | z_r, y = c). Returns (rows * 10, 1, 28, 28)."""
    z = torch.randn(rows, vae.latent_dim, generator=torch.Generator().manual_seed(seed))  # p(z) = N(0, I)
    z = z.repeat_interleave(10, 0)                     # each z ten times, once per class
    y = torch.arange(10).repeat(rows)                  # labels 0..9 along every row
    return vae.decode_mean(z, y)
# --8<-- [end:generate]


def samples_figure(images, rows, out):
    picture = tile(images, 10)
    fig, ax = plt.subplots(figsize=(7, 0.7 * rows + 1.2))
    ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([(c + 0.5) * 28 - 0.5 for c in range(10)], [str(c) for c in range(10)])
    ax.set_yticks([(r + 0.5) * 28 - 0.5 for r in range(rows)], [f"z{r + 1}" for r in range(rows)])
    ax.set_xlabel("label y given to the decoder (class)")
    ax.set_ylabel("draw z ~ p(z), shared along the row")
    ax.set_title("conditional VAE: the mean of p(x | z, y)")
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    return save(fig, out, "generated")


@torch.no_grad()
def transfer_figure(vae, data, out):
    """Test digits encoded with their own label, decoded with every label: z carries style."""
    x, y = data.test.x[:6], data.test.y[:6]
    loc, _ = vae.encode(x, y)
    z = loc.repeat_interleave(10, 0)
    labels = torch.arange(10).repeat(6)
    images = torch.cat([torch.cat([x[i:i + 1], vae.decode_mean(z[10 * i:10 * i + 10], labels[10 * i:10 * i + 10])])
                        for i in range(6)])
    picture = tile(images, 11)
    fig, ax = plt.subplots(figsize=(7.7, 5))
    ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([(c + 0.5) * 28 - 0.5 for c in range(11)], ["test digit"] + [str(c) for c in range(10)])
    ax.set_yticks([(r + 0.5) * 28 - 0.5 for r in range(6)], [f"label {int(v)}" for v in y])
    ax.set_xlabel("decoded with label y (class)")
    ax.set_title("the code of a test digit, decoded as every class")
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    return save(fig, out, "style_transfer")


def main():
    args = arguments(__doc__, "ch7_conditional")
    epochs, points, samples = ("1", 100, 100) if args.quick else ("25", 1000, 1000)
    data = labelled_digits(args.cache, binarize=True)
    plain_data = labelled_digits(args.cache, binarize=True, labels=False)
    if args.quick:
        data, plain_data = data.limited(500), plain_data.limited(500)
    _, cvae, _ = trained("quickstart", CVAE + [f"train.epochs={epochs}"], data, args.cache)
    _, vae, _ = trained("quickstart", PLAIN + [f"train.epochs={epochs}"], plain_data, args.cache)
    samples_figure(generate(cvae, 6), 6, args.out)
    transfer_figure(cvae, data, args.out)

    x, y = data.test.x[:points], data.test.y[:points]
    torch.manual_seed(0)
    conditional = importance_sample(cvae, x, y, num_samples=samples).log_marginal.value.mean().item()
    plain = importance_sample(vae, x, num_samples=samples).log_marginal.value.mean().item()
    write_numbers(args.out, "numbers", markdown_table(
        ["model", f"test ELBO ({points} digits, nats)", f"importance-sampled log-likelihood, K = {samples} (nats)"],
        [["conditional VAE, log p(x ∣ y)", f"{split_elbo(cvae, x, y):.2f}", f"{conditional:.2f}"],
         ["VAE, log p(x)", f"{split_elbo(vae, x):.2f}", f"{plain:.2f}"],
         ["difference", "", f"{conditional - plain:.2f} (log 10 = {math.log(10):.2f})"]]))
    claims = Claims(args)
    gain = conditional - plain
    claims.check("label_gain", 0 < gain < 0.05 * abs(plain),
                 f"The label gains {gain:.2f} nats per digit, less than 5 % of the {abs(plain):.0f} nats of a digit: "
                 "almost all of an image's information is in *how* it is written, not *which* digit it is.",
                 f"gain {gain:.2f} nats of {abs(plain):.1f}", general="The label gains a few nats per digit, "
                 "a small share of a digit's information.")
    finish(args, claims)
    print(f"log p(x|y) {conditional:.2f}, log p(x) {plain:.2f}")
    return {"vae": cvae, "plain_vae": vae, "x": x, "y": y}  # for the exercises


if __name__ == "__main__":
    main()
