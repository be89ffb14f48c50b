"""``pyrovae reproduce``: the paper's experiments, each a set of built-in sweeps plus its figure.

A built-in experiment names built-in sweeps (``pyrovae/sweeps/builtin/*.yaml``) and a
function drawing its figure and table from their run folders. Running it runs each sweep
with :func:`pyrovae.commands.sweep.sweep` into ``OUT/<sweep name>`` (so every grid of runs goes
through the one sweep mechanism: budgets, resuming, failed runs recorded), then writes
``OUT/figures/<name>.png`` and the experiment's section of ``OUT/report.md``.

Resumable by construction: run the same command again and finished runs are skipped,
paused or interrupted ones continue from their checkpoints. Experiments that share a
sweep share its runs when given the same ``--out`` (Fig. 4 and 5 reuse Fig. 2's Frey Face
runs). ``--set KEY=VALUE`` adds config overrides to every run of every sweep (a smaller
version: ``--set data.train_size=5000``) and ``--only KEY=VALUES`` keeps some values of a
grid key (``--only 'model.latent_dim=[3, 20]'``); a folder started with other settings is
refused by the sweep, never silently mixed.
"""

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import PyrovaeError, did_you_mean
from .options import add_changed_inputs_option

REPORT = "report.md"


@dataclass(frozen=True)
class Experiment:
    """Built-in sweeps to run, in order, and ``draw(out) -> (figure paths, tables as Markdown)``;
    ``results(out)``, for the figures drawn from curves (Fig. 2, 3), the record they are drawn
    from (:mod:`pyrovae.reports.paper_results`); ``finish(out, deadline)``, work on the
    finished runs after the sweeps (Fig. 3's estimator comparison) that stops at the sitting's
    deadline and says whether all of it is done."""

    name: str
    description: str
    sweeps: Sequence[str]
    draw: Callable[[Path], tuple]
    results: Optional[Callable[[Path], dict]] = None
    finish: Optional[Callable[[Path, Optional[float]], bool]] = None  # work on finished runs within a deadline


# Experiments are a fixed list of this module (each draws its own figure from its own sweeps),
# not a component family users extend, so they are not a registry of pyrovae.registry.
EXPERIMENTS: Dict[str, Experiment] = {}


def _add(experiment: Experiment) -> None:
    EXPERIMENTS[experiment.name] = experiment


def get_experiment(name: str) -> Experiment:
    """The built-in experiment ``name``; an unknown name lists the valid ones."""
    if name not in EXPERIMENTS:
        raise PyrovaeError(f"unknown experiment '{name}'{did_you_mean(name, EXPERIMENTS)}; "
                           f"choose one of: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


# ----------------------------------------------------------------------------- reading sweeps

def sweep_runs(out: Path, sweep: str) -> List[tuple]:
    """``(grid point, run folder)`` of every run of the sweep ``sweep`` started under ``out``
    (none when it has not been started)."""
    from ..sweeps.sweep import RUNS, is_sweep_folder, open_sweep

    folder = Path(out) / sweep
    if not is_sweep_folder(folder):
        return []
    return [(plan.point, folder / RUNS / plan.folder) for plan in open_sweep(folder).runs()]


def _latent(point: dict) -> int:
    return int(point["model.latent_dim"])


# ----------------------------------------------------------------------------- the experiments

FIG2_SWEEPS = {"kingma2014-fig2-frey": "Frey Face", "kingma2014-fig2-mnist": "MNIST"}
FIG3_SWEEPS = {"kingma2014-fig3-small": "N_train = 1000", "kingma2014-fig3-large": "N_train = 50000"}
MNIST_2D_SWEEP = "kingma2014-mnist-2d"


def _settings(run: Path) -> dict:
    """What a curve's run was: the settings the docs page reports beside it."""
    from ..spec import load_config

    spec = load_config(run)
    return {"latent_dim": spec.model.latent_dim, "estimator": spec.train.estimator.name,
            "optimizer": spec.train.optimizer.name, "lr": spec.train.optimizer.options.get("lr"),
            "epochs_planned": spec.train.epochs, "train_size": spec.data.train_size}


def _fig2_results(out: Path) -> dict:
    from ..reports.paper_figures import bound_curve

    panels: Dict[str, dict] = {}
    for sweep, dataset in FIG2_SWEEPS.items():
        for point, run in sorted(sweep_runs(out, sweep), key=lambda pr: _latent(pr[0])):
            curve = bound_curve(run)
            if curve is not None:
                title = f"{dataset}, $N_z$ = {_latent(point)}"
                panels.setdefault(title, {})[point["train.estimator.name"]] = {**curve, "settings": _settings(run)}
    return {"figure": "kingma2014-fig2", "panels": panels}


MARGINALS = "kingma2014_marginals.json"  # per run: IS, appendix-D and AIS estimates of the same model
COMPARISON_POINTS = 30  # evenly spaced train and test points per estimate
COMPARISON = {"is_samples": 1000, "appendix_d_samples": 200, "appendix_d_chains": 10, "appendix_d_warmup": 100,
              "ais_steps": 1000, "ais_chains": 16}


COMPARED = [(split, name) for split in ("train", "test") for name in ("is", "appendix_d", "ais")]


def cached_comparison(run: Path, points: int = COMPARISON_POINTS) -> dict:
    """The estimates of :func:`compare_marginals` already in the run folder for its
    checkpoint's epoch and these settings (only the header when there are none)."""
    import json

    from ..runs.checkpoint import load_checkpoint

    header = {"epoch": int(load_checkpoint(run / "checkpoint.pt")["epoch"]), "points": points, "settings": COMPARISON}
    try:
        record = json.loads((run / MARGINALS).read_text())
    except (OSError, ValueError, UnicodeDecodeError):  # none yet, or damaged: computed again
        return header
    same = isinstance(record, dict) and all(record.get(key) == value for key, value in header.items())
    return record if same else header


def compare_marginals(run: Path, points: int = COMPARISON_POINTS, deadline: Optional[float] = None) -> dict:
    """Mean log p(x) on ``points`` evenly spaced train and test points of the run's current
    model by importance sampling (1000 samples from q), the appendix-D estimator (200 HMC
    samples, 10 chains, 100 warm-up transitions) and AIS (1000 steps, 16 chains, from q),
    with standard errors over the points. Each estimate (seeded on its own) is cached in the
    run folder as soon as it is made, for the checkpoint's epoch and these settings, so none
    is redone; none is started after ``deadline`` (``time.time()`` seconds), and the next
    sitting makes the rest."""
    import json

    import torch

    from ..components.datasets import load_data
    from ..evaluation.ais import annealed_importance_sample
    from ..evaluation.importance import log_marginal
    from ..evaluation.posterior_density import appendix_d_log_marginal
    from ..runs.files import write_atomic
    from ..runs.loading import load_run

    record = cached_comparison(run, points)
    c = COMPARISON
    estimators = {
        "is": lambda vae, x: log_marginal(vae, x, num_samples=c["is_samples"]).value,
        "appendix_d": lambda vae, x: appendix_d_log_marginal(vae, x, num_samples=c["appendix_d_samples"],
                                                             chains=c["appendix_d_chains"],
                                                             warmup=c["appendix_d_warmup"]).value,
        "ais": lambda vae, x: annealed_importance_sample(vae, x, steps=c["ais_steps"],
                                                         chains=c["ais_chains"]).log_marginal.value}
    model = None
    for split, name in COMPARED:
        if f"{split}_{name}" in record:
            continue
        if deadline is not None and time.time() >= deadline:
            break
        if model is None:
            spec, vae = load_run(run, best=False)
            model = (vae, load_data(spec.data).limited(spec.data.train_size))
        vae, data = model
        x = data.split(split).x
        torch.manual_seed(0)
        value = estimators[name](vae, x[torch.linspace(0, x.shape[0] - 1, points).round().long()])
        record[f"{split}_{name}"] = float(value.mean())
        record[f"{split}_{name}_se"] = float(value.std() / points ** 0.5)
        write_atomic(run / MARGINALS, json.dumps(record, indent=2) + "\n")
    return record


def finished_runs(out: Path, sweep: str) -> List[tuple]:
    """``(grid point, run folder)`` of the runs of ``sweep`` under ``out`` that are done:
    work on a paused model would be thrown away when it trains on."""
    from ..sweeps.sweep import RUNS, sweep_status

    folder = Path(out) / sweep
    if not folder.is_dir() or not sweep_runs(out, sweep):
        return []
    return [(s.plan.point, folder / RUNS / s.plan.folder) for s in sweep_status(folder) if s.state == "done"]


def _compare_fig3_models(out: Path, deadline: Optional[float]) -> bool:
    """Fig. 3's estimator comparison of each finished small-training-set model, within the
    deadline; whether every one is complete."""
    complete = True
    for _, run in finished_runs(out, "kingma2014-fig3-small"):
        record = compare_marginals(run, deadline=deadline)
        complete = complete and all(f"{split}_{name}" in record for split, name in COMPARED)
    return complete


def _fig3_results(out: Path) -> dict:
    from ..reports.paper_figures import marginal_curve

    panels: Dict[str, dict] = {}
    comparison = []
    for sweep, title in FIG3_SWEEPS.items():
        for point, run in sweep_runs(out, sweep):
            curve = marginal_curve(run)
            if curve is None:
                continue
            method = point["train.estimator.name"]
            panels.setdefault(title, {})[method] = {**curve, "settings": _settings(run)}
            if sweep == "kingma2014-fig3-small":
                made = cached_comparison(run)
                if any(f"{split}_{name}" in made for split, name in COMPARED):
                    comparison.append({"method": method, **made})
    return {"figure": "kingma2014-fig3", "panels": panels, "comparison": comparison}


def _drawn_from_results(name: str):
    """The ``draw`` of an experiment with a results record: write the record into
    ``OUT/results/``, then draw the figure and the tables from it as recorded, exactly as
    ``benchmarks/paper/report.py`` draws them from the committed record."""
    def draw(out: Path):
        from ..reports.markdown import markdown_table
        from ..reports.paper_results import draw as draw_figure
        from ..reports.paper_results import read_results, tables, write_results

        results = read_results(write_results(Path(out) / "results", EXPERIMENTS[name].results(out)).parent, name)
        figure = draw_figure(results, Path(out) / "figures" / f"{name}.png")
        return [figure], "\n\n".join(markdown_table(*table) for table in tables(results).values())
    return draw


def record(name: str, out, folder) -> Path:
    """Write the results record of experiment ``name`` from the runs in ``out`` (as far as
    they got; nothing is trained) into ``folder``, e.g. ``benchmarks/paper/results``."""
    from ..reports.paper_results import write_results

    experiment = get_experiment(name)
    if experiment.results is None:
        raise PyrovaeError(f"{name} is drawn from trained models, which are not recorded; record one of: "
                           f"{', '.join(n for n, e in EXPERIMENTS.items() if e.results is not None)}")
    if not any(sweep_runs(Path(out), sweep) for sweep in experiment.sweeps):
        raise PyrovaeError(f"{out} holds no run of {name}; give the --out folder the experiment ran in")
    if experiment.finish is not None:
        experiment.finish(Path(out), None)
    return write_results(folder, experiment.results(Path(out)))


def _trained_aevb_models(out: Path, sweeps: Dict[str, str], latent_sizes: Sequence[int]) -> Dict[str, object]:
    """Best-validation AEVB models of the given sweeps and latent sizes, titled by data set."""
    from ..runs.loading import load_run

    models = {}
    for sweep, dataset in sweeps.items():
        for point, run in sorted(sweep_runs(out, sweep), key=lambda pr: _latent(pr[0])):
            if (_latent(point) in latent_sizes and point.get("train.estimator.name", "pathwise") == "pathwise"
                    and (run / "checkpoint.pt").is_file()):
                models[f"{dataset}, $N_z$ = {_latent(point)}"] = load_run(run)[1]
    return models


def _model_rows(models: Dict[str, object], out: Path, sweeps: Dict[str, str]) -> List[list]:
    from ..runs.checkpoint import load_checkpoint

    rows = []
    for sweep, dataset in sweeps.items():
        for point, run in sweep_runs(out, sweep):
            title = f"{dataset}, $N_z$ = {_latent(point)}"
            if title in models and point.get("train.estimator.name", "pathwise") == "pathwise":
                state = load_checkpoint(run / "checkpoint.pt")
                rows.append([title.replace("$", ""), state["epoch"], f"{state['best_valid_elbo']:.2f}"])
    return rows


def _draw_fig4(out: Path):
    from ..reports.markdown import markdown_table
    from ..reports.paper_figures import figure_4

    sweeps = {MNIST_2D_SWEEP: "MNIST", "kingma2014-fig2-frey": "Frey Face"}
    models = _trained_aevb_models(out, sweeps, [2])
    if not models:
        raise PyrovaeError("no trained 2-D model to draw yet; run the experiment (or let it run longer) first")
    return ([figure_4(models, Path(out) / "figures" / "kingma2014-fig4.png")],
            markdown_table(["model", "epochs", "best held-out bound"], _model_rows(models, out, sweeps)))


def _draw_fig5(out: Path):
    from ..reports.markdown import markdown_table
    from ..reports.paper_figures import figure_5

    sweeps = {MNIST_2D_SWEEP: "MNIST", "kingma2014-fig2-mnist": "MNIST", "kingma2014-fig2-frey": "Frey Face"}
    models = _trained_aevb_models(out, sweeps, [2, 5, 10, 20])
    if not models:
        raise PyrovaeError("no trained model to sample from yet; run the experiment (or let it run longer) first")
    order = sorted(models, key=lambda t: (t.split(",")[0], int(t.rsplit("=", 1)[1])))
    models = {t: models[t] for t in order}
    return ([figure_5(models, Path(out) / "figures" / "kingma2014-fig5.png")],
            markdown_table(["model", "epochs", "best held-out bound"], _model_rows(models, out, sweeps)))


_add(Experiment("kingma2014-fig2", "Fig. 2: AEVB against wake-sleep, lower bound vs training points (MNIST and Frey Face).",
                list(FIG2_SWEEPS), _drawn_from_results("kingma2014-fig2"), _fig2_results))
_add(Experiment("kingma2014-fig3", "Fig. 3: estimated log p(x) vs training points for 1000 and 50000 training points "
                                   "(AEVB, wake-sleep, MCEM).", list(FIG3_SWEEPS), _drawn_from_results("kingma2014-fig3"),
                _fig3_results, _compare_fig3_models))
_add(Experiment("kingma2014-fig4", "Fig. 4: learned 2-D manifolds of MNIST and Frey Face (shares Fig. 2's Frey Face runs).",
                [MNIST_2D_SWEEP, "kingma2014-fig2-frey"], _draw_fig4))
_add(Experiment("kingma2014-fig5", "Fig. 5: random samples for N_z in {2, 5, 10, 20} (shares Fig. 2's runs).",
                [MNIST_2D_SWEEP, "kingma2014-fig2-mnist", "kingma2014-fig2-frey"], _draw_fig5))


# ----------------------------------------------------------------------------- running

def parse_pairs(items: Sequence[str], option: str) -> Dict[str, object]:
    """``KEY=VALUE`` items as a mapping, values read as YAML (:func:`pyrovae.spec.parse_override`)."""
    from ..spec import parse_override

    return dict(parse_override(item, option) for item in items)


def experiment_sweep(sweep: str, overrides: Dict[str, object], only: Dict[str, object]):
    """The built-in sweep ``sweep`` with ``overrides`` added to every run and its grid cut to
    the values ``only`` lists (keys the grid lacks are ignored); None when no run is left."""
    from ..sweeps.spec import load_sweep, when_condition

    spec = load_sweep(sweep)
    for key, value in overrides.items():
        if key in spec.grid:
            raise PyrovaeError(f"--set {key}: that key is the grid of sweep {sweep}; choose its values with --only")
        spec.set[key] = value
    for key, values in only.items():
        if key in spec.grid:
            wanted = values if isinstance(values, list) else [values]
            spec.grid[key] = [v for v in spec.grid[key] if v in wanted]
            if not spec.grid[key]:
                return None
            spec.when = {c: s for c, s in spec.when.items()
                         if when_condition(c)[0] != key or when_condition(c)[1] in spec.grid[key]}
    spec.runs()  # validates every run's config with the overrides
    return spec


@dataclass(frozen=True)
class Sitting:
    """What one sitting of :func:`reproduce_sitting` left: the report, and the exit status of
    ``pyrovae reproduce`` (as ``pyrovae sweep``'s: 0 all done, 3 work left for another sitting,
    4 runs failed or were interrupted)."""

    report: Optional[Path]  # None when the sitting ended before anything could be drawn
    exit_status: int


def reproduce(name: str, out, budget=None, overrides: Sequence[str] = (), only: Sequence[str] = (),
              workers: Optional[int] = None, threads: Optional[int] = None,
              log: Callable[[str], None] = print) -> Optional[Path]:
    """Run (or continue) the experiment ``name`` in ``out`` within ``budget`` (seconds or text
    like ``60m``; the sittings of all its sweeps and the work on their finished runs
    together), then draw its figure and write its section of ``out/report.md``. Returns the
    report's path (``None`` when the budget ended the sitting before anything could be drawn;
    :func:`reproduce_sitting` also says whether work is left).

    ``overrides`` (``KEY=VALUE``) change every run; ``only`` (``KEY=V`` or ``KEY=[V1, V2]``)
    keeps those values of a grid key (fewer latent sizes, say). Either makes a different
    sweep: a folder started with other settings is refused, saying what differs, not mixed."""
    return reproduce_sitting(name, out, budget, overrides, only, workers, threads, log).report


def reproduce_sitting(name: str, out, budget=None, overrides: Sequence[str] = (), only: Sequence[str] = (),
                      workers: Optional[int] = None, threads: Optional[int] = None,
                      log: Callable[[str], None] = print) -> Sitting:
    """:func:`reproduce`, returning the report and the command's exit status."""
    from ..reports.markdown import replace_section
    from ..sweeps.sweep import EXIT_DONE, EXIT_UNFINISHED, exit_status, parse_budget, prepare_sweep, sweep_status
    from .sweep import sweep

    experiment = get_experiment(name)
    out = Path(out)
    settings, kept = parse_pairs(overrides, "--set"), parse_pairs(only, "--only")
    specs = [experiment_sweep(sweep, settings, kept) for sweep in experiment.sweeps]  # every typo before any work
    specs = [spec for spec in specs if spec is not None]
    _check_only(experiment, kept, only, specs)
    check_experiment_folder(out)
    seconds = parse_budget(budget)
    deadline = None if seconds is None else time.time() + seconds
    started = time.time()
    again = command_line(name, out, overrides, only)
    statuses = []
    for spec in specs:
        left = None if deadline is None else deadline - time.time()
        if left is not None and left <= 0:  # recorded all the same, so runs already in its folder are drawn
            prepare_sweep(spec, out / spec.name)
            statuses += sweep_status(out / spec.name, spec)
            log(f"budget spent: sweep {spec.name} not run in this sitting; continue with: {again}")
            continue
        statuses += sweep(spec, out / spec.name, budget=left, workers=workers, threads=threads, log=log, again=again)
    status = exit_status(statuses)
    if experiment.finish is not None and not experiment.finish(out, deadline) and status == EXIT_DONE:
        log(f"budget spent before the work on the finished runs was done; continue with: {again}")
        status = EXIT_UNFINISHED
    try:
        figures, tables = experiment.draw(out)
    except PyrovaeError as exc:  # nothing drawable yet: with work left, that is no mistake of the user's
        if status == EXIT_DONE:
            raise
        log(f"{name}: no figure yet ({exc}); continue with: {again}")
        return Sitting(None, status)
    pictures = "\n".join(f"![{name}]({Path(f).relative_to(out)})" for f in figures)
    changes = " ".join([*(f"--set {o}" for o in overrides), *(f"--only {o}" for o in only)])
    changes = f" with `{changes}`" if changes else ""
    body = (f"{experiment.description}\n\nSweeps: {', '.join(f'`{s}`' for s in experiment.sweeps)}"
            f"{changes}; last sitting {_minutes(time.time() - started)}.\n\n{tables}\n\n{pictures}")
    report = replace_section(out / REPORT, name, body)
    log(f"{name}: figure {figures[0]}; report {report}")
    return Sitting(report, status)


def command_line(name: str, out: Path, overrides: Sequence[str], only: Sequence[str]) -> str:
    """The ``pyrovae reproduce`` command that continues this experiment (it has no --resume)."""
    import shlex

    options = [*(a for o in overrides for a in ("--set", o)), *(a for o in only for a in ("--only", o))]
    return shlex.join(["pyrovae", "reproduce", name, "--out", str(out), *options])


def _check_only(experiment: Experiment, kept: Dict[str, object], only: Sequence[str], specs: list) -> None:
    """Refuse ``--only`` that names no grid key of the experiment or leaves it no run, listing
    the values there are."""
    from ..sweeps.spec import load_sweep

    grids = [load_sweep(sweep).grid for sweep in experiment.sweeps]
    for key in kept:
        if not any(key in grid for grid in grids):
            keys = sorted({k for grid in grids for k in grid})
            raise PyrovaeError(f"--only {key}: no sweep of {experiment.name} has that grid key; "
                               f"its grid keys: {', '.join(keys)}")
    if kept and not specs:
        offered = "; ".join(f"{key} takes {', '.join(dict.fromkeys(str(v) for g in grids for v in g.get(key, [])))}"
                            for key in kept)
        raise PyrovaeError(f"--only {' --only '.join(only)} leaves no run of {experiment.name} ({offered})")


def check_experiment_folder(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or a folder holding files but no sweep of a built-in
    experiment: a folder pyrovae did not make is never written into."""
    from ..sweeps.sweep import check_new_sweep_folder, is_sweep_folder

    sweeps = {sweep for experiment in EXPERIMENTS.values() for sweep in experiment.sweeps}
    if not any(is_sweep_folder(out / sweep) for sweep in sweeps):
        check_new_sweep_folder(out)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{math.ceil(seconds)} s"


def list_experiments() -> str:
    """One line per built-in experiment: name, description, sweeps."""
    lines = []
    for entry in EXPERIMENTS.values():
        lines.append(f"{entry.name:<18} {entry.description}")
        lines.append(f"{'':<18} sweeps: {', '.join(entry.sweeps)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line

def add_command(subparsers) -> None:
    """Add ``pyrovae reproduce`` to the command line."""
    p = subparsers.add_parser(
        "reproduce", help="run a paper's experiment (built-in sweeps) under a time budget and draw its figure",
        description="Run or continue a built-in experiment: its sweeps go into OUT/<sweep>, the figure into "
                    "OUT/figures/ and a table into OUT/report.md. Run the same command again to continue; "
                    "finished runs are not redone.")
    p.add_argument("name", nargs="?", help="the experiment (see --list)")
    p.add_argument("--list", action="store_true", help="list the built-in experiments")
    p.add_argument("--out", metavar="DIR", help="the experiment folder (default: runs/NAME)")
    p.add_argument("--budget", metavar="TIME", help="end this sitting after TIME (e.g. 60m, 2h); run again to continue")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every run, e.g. --set data.train_size=5000 (repeatable)")
    p.add_argument("--only", action="append", default=[], metavar="KEY=VALUES",
                   help="keep only these grid values, e.g. --only 'model.latent_dim=[3, 20]' (repeatable)")
    p.add_argument("--workers", type=int, metavar="N", help="runs at a time (default: the cores)")
    p.add_argument("--record", metavar="DIR", help="train nothing: write the results the runs in --out have reached "
                                                  "(curves, tables) into DIR, e.g. benchmarks/paper/results")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads per run (default: the cores shared out)")
    add_changed_inputs_option(p)
    p.set_defaults(func=_command)


def _command(args) -> Optional[int]:
    if args.list:
        print(list_experiments())
        return None
    if not args.name:
        raise PyrovaeError(f"name an experiment: pyrovae reproduce NAME --out DIR; built-in: {', '.join(EXPERIMENTS)}")
    if args.record:
        if not args.out:
            raise PyrovaeError("--record needs the experiment folder: pyrovae reproduce NAME --out DIR --record RESULTS")
        print(f"recorded {record(args.name, args.out, args.record)}")
        return None
    out = args.out or Path("runs") / args.name
    try:
        return reproduce_sitting(args.name, out, budget=args.budget, overrides=args.set, only=args.only,
                                 workers=args.workers, threads=args.threads).exit_status
    except KeyboardInterrupt:  # the command line's own message would suggest --resume, which reproduce has not
        print(f"pyrovae: interrupted; finished epochs are kept, continue with: "
              f"{command_line(args.name, Path(out), args.set, args.only)}", file=sys.stderr)
        return 130
