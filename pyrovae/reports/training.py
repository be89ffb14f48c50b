"""Turn a finished training run into figures and the report's training section."""

from pathlib import Path

import torch
import yaml

from ..components.datasets import load_data
from ..runs.checkpoint import load_checkpoint
from ..runs.csvlog import read_rows
from ..runs.folder import METRICS, stopped_early
from ..runs.loading import TrainResult, load_run
from ..runs.random_state import private_random
from . import plots
from .evaluation_report import write_evaluation_report
from .markdown import markdown_table, update_section

FIGURES = "figures"
MANIFOLD_GRID = 15


@torch.no_grad()
def make_figures(result: TrainResult, seed: int) -> dict:
    """Training curves (and sample quality by epoch where measured), reconstructions, prior
    samples and the test set's latent means (coloured by label where labels exist; 2-D, 3-D or
    a PCA projection); for a 2-D continuous latent space also the manifold. Their
    draws come from a private stream started at ``seed``: the same figures whether drawn
    after training or by ``pyrovae report``, and the global random state left alone."""
    vae, data, folder = result.vae, result.data, result.out_dir / FIGURES
    device = next(vae.parameters()).device
    was_training = vae.training
    vae.eval()
    with private_random(seed, device):
        figures = _draw_figures(vae, data, folder, result.out_dir, device)
    vae.train(was_training)
    return figures


def _draw_figures(vae, data, folder: Path, run_dir: Path, device) -> dict:
    rows = read_metrics(run_dir)
    figures = {"training curves": plots.training_curves(rows, folder / "training_curves.png")}
    if any(r.get("frechet") not in (None, "") for r in rows):
        figures["sample quality"] = plots.quality_curves(rows, folder / "sample_quality.png")
    if len(data.data_shape) == 3:  # images
        test = data.test
        x = test.x[:10].to(device)
        y = None if test.y is None or not vae.num_classes else test.y[:10].to(device)
        pairs = torch.stack([x, vae.reconstruct(x, y).reshape_as(x)], 1).flatten(0, 1)
        figures["reconstructions"] = plots.image_grid(
            pairs, folder / "reconstructions.png", "test images (odd columns) and reconstructions", ncols=10)
        y_samples = torch.arange(50, device=device) % vae.num_classes if vae.num_classes else None
        figures["samples"] = plots.image_grid(vae.sample(50, y_samples).cpu(), folder / "samples.png",
                                              "means of p(x|z), z from the prior")
        figures.update(_latent_figures(vae, data, folder, device))
    return figures


def _latent_figures(vae, data, folder: Path, device) -> dict:
    """The test set's latent means (any latent size: 2-D, 3-D or a PCA projection); for a 2-D
    latent space of an unconditional model also the decoded manifold."""
    test = data.test
    y = None if test.y is None or not vae.num_classes else test.y.to(device)
    code = torch.cat([vae.latent_code(test.x[i:i + 1000].to(device), None if y is None else y[i:i + 1000])
                      for i in range(0, len(test), 1000)])
    out = {"latent space": plots.latent_scatter(code, test.y, folder / "latent_space.png", data.class_names)}
    if vae.latent_dim == 2 and not vae.num_classes and not vae.discrete_latents:
        # Prior quantiles of N(0, 1) in each coordinate, as in the paper's Fig. 4.
        q = torch.linspace(0.05, 0.95, MANIFOLD_GRID, device=device)
        coords = torch.distributions.Normal(0.0, 1.0).icdf(q)
        z = torch.stack(torch.meshgrid(coords, coords.flip(0), indexing="xy"), -1).reshape(-1, 2)
        images = vae.decode_mean(z, None)
        out["manifold"] = plots.manifold(images.cpu(), coords.cpu(), folder / "manifold.png",
                                         "decoded manifold over prior quantiles 0.05 ... 0.95")
    return out


def read_metrics(run_dir) -> list:
    return read_rows(Path(run_dir) / METRICS)


def result_of_folder(run_dir) -> tuple:
    """``(spec, TrainResult)`` of a run folder, rebuilt from its config, checkpoint and data,
    as training would have returned it (the best-validation parameters)."""
    run_dir = Path(run_dir)
    spec, vae = load_run(run_dir)
    state = load_checkpoint(run_dir)
    result = TrainResult(vae, load_data(spec.data), run_dir, state["epoch"], state["best_valid_elbo"],
                         stopped_early(state, spec))
    return spec, result


def write_training_report(result: TrainResult, spec) -> Path:
    """The run's figures and the 'Training' section of report.md: config, metrics per
    epoch and figures; and the 'Evaluation' section rewritten against the checkpoint training
    left (a resumed run's earlier evaluations are of other parameters and no longer shown)."""
    figures = make_figures(result, spec.seed)
    rows = read_metrics(result.out_dir)
    scored = any(r.get("frechet") not in (None, "") for r in rows)
    table = markdown_table(
        ["epoch", "KL weight", "train ELBO", "valid ELBO", "seconds"] + (["Fréchet distance"] if scored else []),
        [[r["epoch"], f"{float(r['kl_weight']):.3g}", f"{float(r['train_elbo']):.2f}",
          f"{float(r['valid_elbo']):.2f}", f"{float(r['seconds']):.1f}"]
         + ([f"{float(r['frechet']):.2f}" if r.get("frechet") not in (None, "") else ""] if scored else [])
         for r in rows])
    ending = "stopped early (no better validation ELBO)" if result.stopped_early else "ran all epochs"
    images = "\n".join(f"![{name}]({Path(p).relative_to(result.out_dir)})" for name, p in figures.items())
    body = (f"Run folder `{result.out_dir}` (config `{spec.name}`), seed {spec.seed}: "
            f"{result.epochs_done} epoch(s), {ending}. "
            f"Best validation ELBO **{result.best_valid_elbo:.2f}** nats per data point "
            f"(the checkpoint keeps these parameters for evaluation).\n\n"
            f"ELBOs are single-sample estimates in nats per data point; the train column is the running "
            f"mean during the epoch at that epoch's KL weight.\n\n{table}\n\n{images}\n\n"
            f"<details><summary>resolved config</summary>\n\n```yaml\n"
            f"{yaml.safe_dump(spec.to_dict(), sort_keys=False)}```\n</details>")
    report = update_section(result.out_dir, "Training", body)
    write_evaluation_report(result.out_dir, drawn=())  # earlier checkpoints' numbers leave the report
    return report
