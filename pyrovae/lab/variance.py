"""The estimator-variance laboratory: ``pyrovae variance``.

At frozen parameter snapshots, every estimator draws N fresh gradients on the same
minibatch; :mod:`pyrovae.lab.gradient_stats` turns them into variance, SNR, cosine and bias
against a reference gradient, and cost, per parameter group. The estimators are built by
name from the same registry training uses, so what is measured is what is trained with.

A snapshot is either a run folder's latest checkpoint, or, given a config and
``--snapshots``, the epochs at which this command stops training (``pyrovae.training.train.train``,
which resumes exactly) to measure. Epoch 0 is the initialization training starts from.
Estimators that learn a baseline are first fitted to the frozen parameters on other
training minibatches, as training would have fitted them by then.

Results go to ``variance.json`` and ``variance.csv``; the figure of variance and SNR against
training step and the "Variance" section of ``report.md`` are the variance report's
(:mod:`pyrovae.reports.variance_report`), which ``pyrovae variance``
(:mod:`pyrovae.commands.variance`) writes next.
"""

import json
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pyro
import yaml

from ..components.datasets import Dataset, load_data
from ..errors import PyrovaeError
from ..inference.estimators import ESTIMATORS, bound_particles, handles
from ..model import VAE
from ..plugins import load_plugins
from ..runs.checkpoint import CHECKPOINT, load_checkpoint
from ..runs.csvlog import csv_text
from ..runs.files import make_folder, write_atomic
from ..runs.folder import check_output_folder
from ..runs.loading import build_vae, load_run, resolve_device
from ..spec import load_config
from ..training.train import train
from .gradient_stats import gradient_moments, parameter_groups, reference_gradient, summarize

ADAPT_BATCHES = 10  # training minibatches a baseline is fitted on before measuring
ADAPT_STEPS = 20  # passes over them
VARIANCE = "variance.json"
CSV_COLUMNS = ["epoch", "step", "estimator", "group", "bound_particles", "reference", "params",
               "mean_variance", "max_variance", "trace", "snr", "cosine", "mean_t_squared", "max_abs_t",
               "bias_threshold", "biased", "seconds_per_draw", "variance_x_seconds", "relative_bias", "relative_noise"]


@dataclass
class EstimatorChoice:
    """One measured estimator: a registry name with options, labelled as the user wrote it
    (``iwae:num_particles=10``)."""

    label: str
    name: str
    options: dict

    def build(self):
        return ESTIMATORS.build(self.name, options=self.options, where=f"--estimators {self.label}")


def measurable_estimators(family: str = "continuous") -> List[str]:
    """Names of the estimators whose gradients can be drawn (not mcem, whose E-step samples) on a
    guide of latent ``family`` (continuous, bernoulli, categorical), each built with its default
    options; one that cannot be built so (a required option, a broken plugin) is left out."""
    names = []
    for entry in ESTIMATORS:
        try:
            estimator = ESTIMATORS.build(entry.name)
            if getattr(estimator, "measurable", True) and handles(estimator, family):
                names.append(entry.name)
        except PyrovaeError:
            continue
    return names


def parse_estimators(text: str) -> List[EstimatorChoice]:
    """``name[:key=value...]`` items separated by commas, each validated by the registry."""
    choices = []
    for label in (item.strip() for item in text.split(",")):
        if not label:
            continue
        name, *pairs = label.split(":")
        options = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise PyrovaeError(f"--estimators item '{label}': options are written name:key=value "
                                   f"(e.g. iwae:num_particles=10)")
            options[key] = yaml.safe_load(value)
        ESTIMATORS.check_options(name, options, f"--estimators {label}")
        choices.append(EstimatorChoice(label, name, options))
    if not choices:
        raise PyrovaeError(f"--estimators is empty; name some of: {', '.join(ESTIMATORS.names())}")
    return choices


def parse_snapshots(text: str) -> List[int]:
    """Comma-separated epochs, e.g. ``0,1,5,20``, as a sorted list without repeats."""
    try:
        epochs = sorted({int(item) for item in text.split(",") if item.strip()})
    except ValueError:
        raise PyrovaeError(f"--snapshots must be comma-separated epochs like 0,1,5,20, got '{text}'") from None
    if not epochs or epochs[0] < 0:
        raise PyrovaeError(f"--snapshots must list epochs >= 0, got '{text}'")
    return epochs


# ----------------------------------------------------------------------------- measuring

def measurement_batches(vae: VAE, data: Dataset, batch_size: int, seed: int):
    """The model arguments of the measured minibatch (the first ``batch_size`` training points)
    and of up to ``ADAPT_BATCHES`` following minibatches for fitting baselines."""
    device = next(vae.parameters()).device
    x, y = data.train.x, data.train.y if vae.num_classes else None
    pyro.set_rng_seed(seed)  # dynamic binarization draws from the global generator

    def args(start):
        yb = None if y is None else y[start:start + batch_size].to(device)
        return data.training_batch(x[start:start + batch_size].to(device)), yb, 1.0

    others = [args(start) for start in range(batch_size, x.shape[0], batch_size)][:ADAPT_BATCHES]
    measured = args(0)
    return measured, others or [measured]


def measure(vae: VAE, data: Dataset, choices: Sequence[EstimatorChoice], draws: int, batch_size: int,
            seed: int, reference_draws: int, log=print) -> Dict[str, dict]:
    """Every estimator's summaries per parameter group at ``vae``'s current parameters."""
    batch, others = measurement_batches(vae, data, batch_size, seed)
    return measure_batches(vae, batch, others, choices, draws, seed, reference_draws, log)


def measure_batches(vae, batch: Sequence, others: Sequence[Sequence], choices: Sequence[EstimatorChoice],
                    draws: int, seed: int, reference_draws: int, log=print) -> Dict[str, dict]:
    """:func:`measure` on the model arguments ``batch``, baselines fitted on ``others``: ``vae`` is
    anything with Pyro ``model`` and ``guide`` methods taking ``(x, y, kl_weight)`` and parameters
    grouped as encoder, decoder, prior (a VAE, or the sigmoid belief net of :mod:`pyrovae.lab.discrete`)."""
    groups = parameter_groups(vae)
    references, results = {}, {}
    pyro.clear_param_store()
    with pyro.validation_enabled(False):
        for choice in choices:
            estimator = choice.build()
            k = bound_particles(estimator)
            if k not in references:
                references[k] = reference_gradient(vae, batch, k, reference_draws, seed + 1)
            if hasattr(estimator, "adapt"):
                estimator.adapt(vae.model, vae.guide, others, ADAPT_STEPS)
            moments = gradient_moments(estimator, vae, batch, draws, seed)
            results[choice.label] = {
                "name": choice.name, "options": choice.options, "bound_particles": k,
                "reference": references[k].kind,
                "groups": {name: summarize(moments, references[k], index) for name, index in groups.items()},
            }
            log(f"  {choice.label}: encoder variance {results[choice.label]['groups']['encoder']['trace']:.3g}, "
                f"{1e3 * moments.seconds_per_draw:.2f} ms per draw")
    return results


def run_variance(source, choices: Sequence[EstimatorChoice], draws: int = 1000,
                 snapshots: Optional[Sequence[int]] = None, out=None, batch_size: int = 100, seed: int = 0,
                 reference_draws: Optional[int] = None, overrides: Sequence[str] = (),
                 progress: bool = True, plugins: Sequence[str] = ()) -> Tuple[Path, dict]:
    """Measure ``choices`` on a run folder (its latest checkpoint) or on a config at the epochs
    ``snapshots`` (training in ``out`` between them), with extra ``plugins``; write the results
    to ``out`` and return ``(out, results)``."""
    load_plugins(plugins)
    if draws < 2:
        raise PyrovaeError(f"--draws must be at least 2 for a variance, got {draws}")
    if batch_size < 1:
        raise PyrovaeError(f"--batch-size must be a positive integer, got {batch_size}")
    log = print if progress else (lambda *_: None)
    settings = {"draws": draws, "batch_size": batch_size, "seed": seed,
                "reference_draws": reference_draws or draws}
    measure_here = partial(measure, choices=choices, draws=draws, batch_size=batch_size, seed=seed,
                           reference_draws=settings["reference_draws"], log=log)
    if Path(source).is_dir() and not (Path(source) / CHECKPOINT).is_file():
        raise PyrovaeError(f"{source} is a folder without {CHECKPOINT}, so there is no trained model to measure; "
                           f"train it first, or measure at initialization from a config with "
                           f"'pyrovae variance CONFIG --out NEW_FOLDER'")
    if Path(source).is_dir():
        if snapshots or overrides:
            raise PyrovaeError(f"{source} is a run folder, measured as trained at its latest checkpoint; "
                               f"--snapshots and --set need a config (e.g. its config.yaml) and a new --out")
        out = Path(out or source)
        if out.resolve() != Path(source).resolve():
            _check_out(out)
        spec, vae = load_run(source, best=False)
        vae.to(resolve_device(spec.train.device))
        state = load_checkpoint(Path(source) / CHECKPOINT)
        data = load_data(spec.data)
        log(f"epoch {state['epoch']}:")
        measured = [{"epoch": state["epoch"], "step": state["step"], "estimators": measure_here(vae, data)}]
    else:
        spec = load_config(source, overrides, plugins)
        spec.train.progress = progress
        out = Path(out or Path("runs") / f"{spec.name}-variance")
        if (out / CHECKPOINT).exists():
            raise PyrovaeError(f"{out} already holds a run; measure it with 'pyrovae variance {out}' "
                               f"or choose another --out")
        _check_out(out)
        measured = _measure_while_training(spec, out, snapshots or [0], measure_here, log)
    results = {"source": str(source), "settings": settings, "snapshots": measured}
    write_results(out, results)
    return out, results


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that is a file or a folder of files this laboratory did not write
    (its own earlier results, with variance.json, are measured over)."""
    check_output_folder(out, lambda folder: (folder / VARIANCE).is_file(), "pyrovae variance",
                        f"{VARIANCE}, variance.csv, figures/ and report.md")


def _measure_while_training(spec, out: Path, snapshots: Sequence[int], measure_here, log) -> List[dict]:
    data = load_data(spec.data)
    measured, trained = [], 0
    for epoch in snapshots:
        if epoch == 0:
            vae, step = build_vae(spec, data), 0
        else:
            spec.train.epochs = epoch
            train(spec, out, resume=trained > 0, data=data)
            state = load_checkpoint(out / CHECKPOINT)
            epoch = trained = state["epoch"]  # fewer than asked if training stopped early
            step = state["step"]
            vae = load_run(out, best=False)[1].to(resolve_device(spec.train.device))
        log(f"epoch {epoch}:")
        measured.append({"epoch": epoch, "step": step, "estimators": measure_here(vae, data)})
    return measured


# ----------------------------------------------------------------------------- results

def write_results(out: Path, results: dict) -> None:
    """``variance.json`` and ``variance.csv`` (the report draws its figure and section from them)."""
    make_folder(out)
    write_atomic(out / VARIANCE, json.dumps(_finite_or_null(results), indent=1))
    write_atomic(out / "variance.csv", csv_text(CSV_COLUMNS, result_rows(results)))


def _finite_or_null(value):
    """``value`` with infinite and NaN numbers replaced by None, so the JSON is standard."""
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def result_rows(results: dict) -> List[dict]:
    """One flat row per snapshot, estimator and parameter group."""
    rows = []
    for snapshot in results["snapshots"]:
        for label, entry in snapshot["estimators"].items():
            for group, numbers in entry["groups"].items():
                rows.append({"epoch": snapshot["epoch"], "step": snapshot["step"], "estimator": label,
                             "group": group, "bound_particles": entry["bound_particles"],
                             "reference": entry["reference"], **numbers})
    return rows
