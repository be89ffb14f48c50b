"""``pyrovae quality RUN``: the sample quality of a finished run (Fréchet distance, precision and
recall; :mod:`pyrovae.sample_quality.run`), saved to ``quality.json`` and the report's Sample
quality section (:mod:`pyrovae.reports.sample_quality_report`)."""

import sys
from pathlib import Path
from typing import Optional, Sequence

from ..errors import PyrovaeError
from ..plugins import load_plugins
from ..reports.sample_quality_report import SECTION, write_quality_report
from ..sample_quality.run import QUALITY, quality_of_run
from .options import add_changed_inputs_option, add_plugin_option


def quality(run_dir, samples: int = 10000, seeds: int = 3, seed: int = 0, inception: Optional[str] = None,
            device: str = "auto", progress: bool = False, plugins: Sequence[str] = ()) -> dict:
    """Score the run in ``run_dir`` (see :func:`~pyrovae.sample_quality.run.quality_of_run`), with
    extra ``plugins`` loaded first, then rewrite its report's Sample quality section; return the
    summary."""
    if not Path(run_dir).is_dir():
        raise PyrovaeError(f"no run folder {run_dir}; give the folder of a run 'pyrovae train' wrote")
    load_plugins(plugins)
    summary = quality_of_run(run_dir, samples, seeds, seed, inception, device, progress)
    write_quality_report(run_dir, summary)
    return summary


def _command(args) -> None:
    s = quality(args.run, args.samples, args.seeds, args.seed, args.inception, args.device,
                progress=sys.stderr.isatty(), plugins=args.plugin)
    for key in ("frechet", "precision", "recall"):
        model, floor = s["model"][key], s["floor"][key]
        sd = "" if model["sd"] is None else f" (sd {model['sd']:.3g} over {len(s['seeds'])} draws)"
        print(f"{key}: {model['mean']:.4g}{sd}; test split {floor['mean']:.4g}")
    print(f"features: {s['features']}")
    print(f"saved {Path(args.run) / QUALITY} and the {SECTION} section of {Path(args.run) / 'report.md'}")


def add_command(subparsers) -> None:
    """Add ``pyrovae quality`` to the command line."""
    p = subparsers.add_parser(
        "quality", help="sample quality of a run: Fréchet distance, precision and recall",
        description="Score samples of a trained run against its training split: the Fréchet distance between "
                    "Gaussians fitted to features of samples and data, and k-NN precision and recall, beside the "
                    "floor the test split reaches at the same size. Features come from a classifier pyrovae trains "
                    "once per dataset and caches, or from Inception v3 given its weights file (standard FID).")
    p.add_argument("run", help="a run folder written by 'pyrovae train'")
    p.add_argument("--samples", type=int, default=10000, metavar="N", help="samples per draw (default 10000)")
    p.add_argument("--seeds", type=int, default=3, metavar="S",
                   help="independent draws, for the score's standard deviation (default 3)")
    p.add_argument("--seed", type=int, default=0, help="the first draw's seed (default 0)")
    p.add_argument("--inception", metavar="WEIGHTS",
                   help="a torchvision inception_v3 state dict file: standard FID features (nothing is downloaded)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto: a GPU where there is one)")
    add_plugin_option(p)
    add_changed_inputs_option(p)
    p.set_defaults(func=_command)
