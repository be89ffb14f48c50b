"""The Python API: the subcommands as functions, for notebooks and scripts.

``pyrovae.train``, ``pyrovae.evaluate``, ``pyrovae.variance``, ``pyrovae.report``,
``pyrovae.sweep``, ``pyrovae.sample``, ``pyrovae.reconstruct``, ``pyrovae.encode``,
``pyrovae.interpolate`` and ``pyrovae.export`` call the same functions as the subcommands of
those names (:mod:`pyrovae.commands`) and write the same files. Their results
print as one line, not as tensors; the trained model is ``run.vae`` (``run.vae.sample(16)``,
``run.vae.encode(x)``) and the data ``run.data``. See docs/python_api.md.
"""

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

from .errors import PyrovaeError

ConfigSource = Union[str, Path, Dict[str, Any], "ExperimentSpec"]  # noqa: F821


class Run:
    """A run folder with its config, trained VAE (the best-validation parameters) and data."""

    def __init__(self, folder: Path, spec, vae, epochs_done: int, best_valid_elbo: float,
                 stopped_early: bool, data=None):
        self.folder = Path(folder)
        self.spec = spec
        self.vae = vae
        self.epochs_done = epochs_done
        self.best_valid_elbo = best_valid_elbo
        self.stopped_early = stopped_early
        self._data = data

    @property
    def data(self):
        """The run's dataset (train, valid and test splits), loaded on first use."""
        if self._data is None:
            from .components.datasets import load_data

            self._data = load_data(self.spec.data)
        return self._data

    @property
    def report(self) -> Path:
        """The run's ``report.md``."""
        from .reports.markdown import REPORT

        return self.folder / REPORT

    def __repr__(self) -> str:
        ending = ", stopped early" if self.stopped_early else ""
        return (f"Run('{self.folder}': {self.spec.name}, {self.epochs_done} of {self.spec.train.epochs} "
                f"epochs{ending}, best valid ELBO {self.best_valid_elbo:.2f} nats)")


class Evaluation:
    """What ``pyrovae evaluate`` measured on one split; ``summary`` is the dict saved in
    ``evaluation.json`` (also readable as ``evaluation["log_marginal"]``)."""

    def __init__(self, folder: Path, summary: dict):
        self.folder = Path(folder)
        self.summary = summary

    def __getitem__(self, key: str):
        return self.summary[key]

    @property
    def log_px(self) -> float:
        """The estimated log p(x) (importance sampling or AIS), averaged over the evaluated
        points (nats); BDMC gives bounds instead (``evaluation["lower"]``, ``["upper"]``)."""
        return self.summary["log_marginal"]["mean"]

    def __repr__(self) -> str:
        from .reports.evaluation_report import headline, points_phrase

        s = self.summary
        method = s.get("method", "is")
        if method == "is":
            how = f"K = {s['num_samples']}"
        else:
            how = f"{method.upper()}, {s['steps']} steps x {s['chains']} chains"
        return f"Evaluation('{self.folder}': {s['split']} split, {points_phrase(s)}, {how}: {headline(s)})"

    @property
    def per_point(self) -> dict:
        """The per-point results (the CSV file beside evaluation.json) as NumPy arrays by column."""
        import numpy as np

        path = self.folder / self.summary["per_point_file"]
        table = np.genfromtxt(path, delimiter=",", names=True)
        return {name: np.atleast_1d(table[name]) for name in table.dtype.names}


class VarianceResult:
    """What ``pyrovae variance`` measured; ``results`` is the dict saved in ``variance.json``."""

    def __init__(self, folder: Path, results: dict):
        self.folder = Path(folder)
        self.results = results

    def encoder_variance(self, estimator: str, snapshot: int = -1) -> float:
        """The trace of the encoder gradient's covariance of ``estimator`` at a snapshot."""
        return self.results["snapshots"][snapshot]["estimators"][estimator]["groups"]["encoder"]["trace"]

    def __repr__(self) -> str:
        snapshots = self.results["snapshots"]
        estimators = ", ".join(snapshots[0]["estimators"]) if snapshots else "none"
        epochs = ", ".join(str(s["epoch"]) for s in snapshots)
        return f"VarianceResult('{self.folder}': {estimators} at epoch(s) {epochs})"


# ----------------------------------------------------------------------------- the commands

def train(config: ConfigSource = "quickstart", out=None, overrides: Sequence[str] = (),
          plugins: Sequence[str] = (), resume: bool = False, quiet: bool = False, data=None, labels=None) -> Run:
    """``pyrovae train``: train the VAE ``config`` describes (a built-in name, a YAML/JSON
    file, a dict or an :class:`~pyrovae.spec.ExperimentSpec`; with ``resume`` a run folder)
    into the run folder ``out`` (default ``runs/<config name>``), with ``key=value``
    ``overrides`` and extra ``plugins``; write its figures and report; return the :class:`Run`.

    ``data`` trains on data in memory instead of the config's dataset: a tensor or array shaped
    like the ``array`` dataset's (with integer ``labels``, or a pair ``(x, y)``), a torch
    ``Dataset`` whose items are ``x`` or ``(x, y)``, or a ``DataLoader`` (its dataset). The run
    folder keeps them (``data.npz``) and its config names that file, so the run resumes,
    evaluates and reports from the folder alone; the config's ``array`` options (split
    fractions, ``scale``) apply."""
    from .commands import train as command

    if data is not None and resume:
        raise PyrovaeError("a resumed run trains on the data its folder keeps; leave out data=")
    _refuse_data_in_config(config)
    spec, folder = command.resolve_run(config, out, _as_list(overrides, "overrides"), _as_list(plugins, "plugins"),
                                       resume, quiet)
    if data is not None:
        spec = command.keep_data(spec, folder, data, labels)
    result = command.train(spec, folder, resume=resume)
    return Run(folder, spec, result.vae, result.epochs_done, result.best_valid_elbo, result.stopped_early,
               result.data)


def load(run, plugins: Sequence[str] = ()) -> Run:
    """The :class:`Run` in the folder ``run``, its VAE with the best-validation parameters; extra
    ``plugins`` are loaded first (a run folder carries copies of its own plugin files, but one
    trained before it did may need its moved plugin named here)."""
    from .plugins import load_plugins
    from .runs.checkpoint import CHECKPOINT, load_checkpoint
    from .runs.folder import stopped_early
    from .runs.loading import load_run

    folder = _folder(run)
    load_plugins(_as_list(plugins, "plugins"))
    spec, vae = load_run(folder)
    state = load_checkpoint(folder / CHECKPOINT)
    return Run(folder, spec, vae, state["epoch"], state["best_valid_elbo"], stopped_early=stopped_early(state, spec))


def evaluate(run, split: str = "test", num_samples: int = 5000, max_points: Optional[int] = None,
             seed: int = 0, plugins: Sequence[str] = (), **options) -> Evaluation:
    """``pyrovae evaluate``: log p(x) of the run (a folder or a :class:`Run`) on ``split`` with
    its diagnostics, by importance sampling with IWAE bounds (the default), AIS or BDMC;
    ``max_points`` evaluates a random subset chosen with ``seed``; extra ``plugins`` are loaded
    first. The per-point results are ``evaluation.per_point``. Other ``options`` as the
    command's flags, see :func:`pyrovae.evaluation.evaluate.evaluate_run` (``method`` "is",
    "ais" or "bdmc", ``steps``, ``chains``, ``leapfrog``, ``ais_start``, ``simulated``,
    ``proposal_scale``, ``proposal_df``, ``max_memory``, ``elbo_particles``, ``quadrature``,
    ``device``, ``progress``, ``gap_points``: the inference gaps of the first N evaluated points,
    in ``evaluation.summary["gaps"]``)."""
    from .commands.evaluate import evaluate as command

    folder = _folder(run)
    return Evaluation(folder, command(folder, plugins=_as_list(plugins, "plugins"), split=split,
                                      num_samples=num_samples, max_points=max_points, seed=seed, **options))


def variance(source, estimators: Union[str, Sequence[str]] = "pathwise,analytic_kl", draws: int = 1000,
             snapshots: Union[None, str, Sequence[int]] = None, out=None, overrides: Sequence[str] = (),
             progress: bool = False, plugins: Sequence[str] = (), **options) -> VarianceResult:
    """``pyrovae variance``: gradient variance, SNR, bias and cost of ``estimators`` (names,
    optionally ``name:key=value``) on a run (folder or :class:`Run`, at its latest checkpoint)
    or a config (at the epochs ``snapshots``, training in ``out``). Other ``options`` as the
    command's flags (``batch_size``, ``seed``, ``reference_draws``)."""
    import json

    from .commands.variance import variance as command
    from .lab.variance import VARIANCE

    if isinstance(source, Run):
        source = source.folder
    if not isinstance(estimators, str):
        estimators = ",".join(estimators)
    if snapshots is not None and not isinstance(snapshots, str):
        snapshots = ",".join(str(s) for s in snapshots)
    folder, _ = command(source, estimators, snapshots, draws=draws, out=out,
                        overrides=_as_list(overrides, "overrides"), progress=progress,
                        plugins=_as_list(plugins, "plugins"), **options)
    return VarianceResult(folder, json.loads((folder / VARIANCE).read_text()))  # as saved: NaN is null


def quality(run, samples: int = 10000, seeds: int = 3, seed: int = 0, inception: Optional[str] = None,
            device: str = "auto", plugins: Sequence[str] = ()) -> dict:
    """``pyrovae quality``: Fréchet distance, precision and recall of ``samples`` samples of the
    run (a folder or a :class:`Run`) for ``seeds`` draws, beside the test split's floor; saved to
    ``quality.json`` and the report. ``inception``: an Inception v3 weights file (standard FID)."""
    from .commands.quality import quality as command

    return command(_folder(run), samples, seeds, seed, inception, device, plugins=plugins)


def report(run, plugins: Sequence[str] = ()) -> Path:
    """``pyrovae report``: (re)write the run folder's figures and ``report.md``; return its path."""
    from .commands.report import report as command

    return command(_folder(run), _as_list(plugins, "plugins"))


def sweep(source, out=None, resume: bool = False, **options) -> list:
    """``pyrovae sweep``: one sitting of the sweep ``source`` (a file, a built-in sweep name, a
    mapping or a :class:`~pyrovae.sweeps.SweepSpec`) in the folder ``out``; with ``resume``,
    ``source`` is a sweep folder to continue. Finished runs are skipped, interrupted and paused
    ones resumed, failed ones tried again; each run gets its report, the folder the sweep report.
    ``options`` as the command's flags (``budget``, ``engine``, ``workers``, ``address``,
    ``threads``, and ``log``, a function of one line). Returns each run's
    :class:`~pyrovae.sweeps.RunStatus`."""
    from .commands import sweep as command

    if resume:
        if out is not None and Path(out) != Path(source):
            raise PyrovaeError("with resume=True give the sweep folder only: pyrovae.sweep(DIR, resume=True)")
        return command.resume(source, **options)
    if out is None:
        raise PyrovaeError("say where the sweep's runs go: pyrovae.sweep(source, out=DIR)")
    return command.sweep(source, out, **options)


# ----------------------------------------------------------------------------- using a trained model

def sample(run, n: int = 64, seed: int = 0, label: Optional[int] = None, out=None, device: str = "auto",
           plugins: Sequence[str] = ()):
    """``pyrovae sample``: ``n`` draws from the prior decoded to the means of p(x|z) (arrays
    ``z``, ``mean``; for a conditional model ``y``), written to ``out`` (default RUN/outputs)
    as ``samples.npz`` and, for images, ``samples.png``. Returns the
    :class:`~pyrovae.commands.model_outputs.Outputs`."""
    from .commands.sample import sample as command

    return command(_folder(run), n, seed, label, out, device, _as_list(plugins, "plugins"))


def reconstruct(run, split: str = "test", n: int = 64, points: Optional[Sequence[int]] = None, input_file=None,
                out=None, device: str = "auto", plugins: Sequence[str] = ()):
    """``pyrovae reconstruct``: the first ``n`` points of ``split`` (or ``points``, or the items of
    ``input_file``) and their reconstructions (arrays ``x``, ``reconstruction``, ``index``)."""
    from .commands.reconstruct import reconstruct as command

    return command(_folder(run), split, n, None if points is None else list(points), input_file, out, device,
                   _as_list(plugins, "plugins"))


def encode(run, split: str = "test", n: Optional[int] = None, out=None, device: str = "auto",
           plugins: Sequence[str] = ()):
    """``pyrovae encode``: the location and scale of q(z|x) of every point of ``split`` (or the
    first ``n``), arrays ``loc``, ``scale``, ``index`` and the labels ``y`` where there are any."""
    from .commands.encode import encode as command

    return command(_folder(run), split, n, out, device, _as_list(plugins, "plugins"))


def interpolate(run, points: Sequence[int], split: str = "test", steps: int = 10, out=None, device: str = "auto",
                plugins: Sequence[str] = ()):
    """``pyrovae interpolate``: ``steps`` decoded points on the line between the means of q(z|x)
    of each of ``points`` of ``split`` and the next (arrays ``z``, ``mean``, ``points``)."""
    from .commands.interpolate import interpolate as command

    return command(_folder(run), list(points), split, steps, out, device, _as_list(plugins, "plugins"))


def export(run, out=None, plugins: Sequence[str] = ()) -> Path:
    """``pyrovae export``: the encoder and decoder as TorchScript (``encoder.pt``, ``decoder.pt``)
    with ``model.json``, loadable with ``torch.jit.load`` alone; returns the folder."""
    from .commands.export import export as command

    return command(_folder(run), out, _as_list(plugins, "plugins"))


def _refuse_data_in_config(config) -> None:
    """A tensor or array put in a config's ``data.path``: one line saying where data in memory go."""
    path = (config.get("data") or {}).get("path", "") if isinstance(config, dict) else ""
    if not isinstance(path, (str, Path)):
        raise PyrovaeError(f"data.path names a file, got a {type(path).__name__}; give data in memory as "
                           f"pyrovae.train(config, data=x, labels=y)")


def _folder(run) -> Path:
    folder = run.folder if isinstance(run, Run) else Path(run)
    if not folder.is_dir():
        raise PyrovaeError(f"no run folder {folder}; train one with pyrovae.train(config, out='{folder}')")
    return folder


def _as_list(value, what: str) -> list:
    if isinstance(value, (str, Path)):
        return [str(value)]
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise PyrovaeError(f"{what} must be a list of strings, got {value!r}")
    return [str(v) for v in value]
