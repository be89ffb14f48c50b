"""Chapter 3, the VAE as a Pyro program: the quickstart VAE's model and guide traced on a
minibatch of binarized digits, the paper's estimator (eq. 10) written by hand beside Pyro's
losses, and what one ``svi.step`` changes.

    python3 examples/course/ch3_pyro_program.py --out runs/course/ch3_pyro_program
"""

import inspect
import textwrap

import pyro
import torch
from _course import arguments, binarized_mnist, finish, markdown_table, plt, save, write_numbers
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO

from pyrovae.inference.optim import OPTIMIZERS
from pyrovae.model import VAE
from pyrovae.spec import load_config

BATCH = 100


def site_rows(program: str, trace):
    rows = []
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["infer"].get("_do_not_trace") or name == "data":
            continue
        fn = site["fn"]
        kind = "observed" if site["is_observed"] else "latent"
        rows.append([program, f"`{name}`", kind, type(fn.base_dist if hasattr(fn, "base_dist") else fn).__name__,
                     f"batch {tuple(fn.batch_shape)}, event {tuple(fn.event_shape)}",
                     f"{site['fn'].log_prob(site['value']).sum().item() / BATCH:.2f}"])
    return rows


# --8<-- [start:eq10]
def paper_estimator(vae: VAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Kingma & Welling's eq. 10 per data point, L = 1: the Gaussian KL in closed form plus
    the reconstruction term at z = mu + sigma * eps (the reparameterization, eq. 4)."""
    mu, sigma = vae.encode(x)
    neg_kl = 0.5 * (1 + torch.log(sigma ** 2) - mu ** 2 - sigma ** 2).sum(-1)
    z = mu + sigma * eps
    return neg_kl + vae.decode(z).log_prob(x)
# --8<-- [end:eq10]


def main():
    args = arguments(__doc__, "ch3_pyro_program")
    steps = 20 if args.quick else 300
    data = binarized_mnist(args.cache)
    spec = load_config("quickstart", ["train.device=cpu"])
    pyro.set_rng_seed(0)
    vae = VAE.from_config(spec, data.data_shape, data.num_classes)
    vae.initialize_from_data(data.train.x)
    x = data.train.x[:BATCH]

    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    sites = site_rows("guide", guide_trace) + site_rows("model", model_trace)

    # The same eps for the hand-written estimator and for Pyro: both draw z = mu + sigma * eps.
    pyro.set_rng_seed(1)
    pyro_loss = Trace_ELBO().loss(vae.model, vae.guide, x) / BATCH
    pyro.set_rng_seed(1)
    mean_field = TraceMeanField_ELBO().loss(vae.model, vae.guide, x) / BATCH
    pyro.set_rng_seed(1)
    mu, _ = vae.encode(x)
    eps = torch.randn_like(mu)
    with torch.no_grad():
        by_hand = paper_estimator(vae, x, eps).mean().item()
        kl_part = -0.5 * (1 + torch.log(vae.encode(x)[1] ** 2) - mu ** 2 - vae.encode(x)[1] ** 2).sum(-1).mean()

    # --8<-- [start:svi_step]
    pyro.clear_param_store()
    optimizer = OPTIMIZERS.build("adam", options={"lr": 1e-3})
    svi = SVI(vae.model, vae.guide, optimizer, Trace_ELBO())
    before = {name: p.detach().clone() for name, p in vae.named_parameters()}
    loss = svi.step(x)  # one sample of -ELBO summed over the batch; backward(); one Adam update
    moved = {name: (p.detach() - before[name]).abs().max().item() for name, p in vae.named_parameters()}
    # --8<-- [end:svi_step]
    curve = [-loss / BATCH]
    for step in range(1, steps):
        start = (step * BATCH) % len(data.train)
        curve.append(-svi.step(data.train.x[start:start + BATCH]) / BATCH)

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(range(1, steps + 1), curve, color="tab:blue", linewidth=0.8)
    ax.set_xlabel("svi.step calls (minibatches of 100 digits)")
    ax.set_ylabel("ELBO estimate (nats per digit)")
    ax.set_title("the quickstart VAE's first steps with Trace_ELBO and Adam (lr 1e-3)")
    ax.grid(alpha=0.3)
    save(fig, args.out, "first_steps")

    write_numbers(args.out, "sites", markdown_table(
        ["program", "site", "kind", "distribution", "shape", "log_prob per digit (nats)"], sites))
    write_numbers(args.out, "losses", markdown_table(
        ["quantity (nats per digit, one draw of ε)", "value"],
        [["eq. 10 by hand: −KL + log p(x ∣ z)", f"{by_hand:.4f}"],
         ["− Trace_ELBO().loss / 100 (same ε)", f"{-pyro_loss:.4f}"],
         ["− TraceMeanField_ELBO().loss / 100 (same ε, KL in closed form)", f"{-mean_field:.4f}"],
         ["closed-form KL(q ‖ p(z)) alone", f"{kl_part.item():.4f}"]]))
    groups = {}
    for name, change in moved.items():
        groups.setdefault(name.split(".")[0], []).append(change)
    write_numbers(args.out, "step", f"""
`svi.step` returned {loss:.1f}: the negative ELBO estimate summed over the {BATCH} digits
({loss / BATCH:.2f} nats per digit). Largest change of any parameter in one step:
{", ".join(f"{group} {max(changes):.2e}" for group, changes in groups.items())} (Adam's first step moves
every parameter with a non-zero gradient by about the learning rate). After {steps} steps the
estimate is {curve[-1]:.1f} nats per digit.
""")
    source = "\n".join(textwrap.dedent(inspect.getsource(method)) for method in (VAE.model, VAE.guide))
    write_numbers(args.out, "model_source", f"```python\n{source}```")  # the code as it is, not a paraphrase
    finish(args)
    print(f"eq. 10 by hand {by_hand:.4f}, Pyro {-pyro_loss:.4f}, mean field {-mean_field:.4f}")
    return {"vae": vae, "x": x, "svi": svi, "data": data}  # what the exercises use (the notebook keeps it)


if __name__ == "__main__":
    main()
