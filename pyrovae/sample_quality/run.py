"""The sample quality of a finished run (``pyrovae quality RUN``), saved as ``quality.json``.

The run's best-validation parameters draw ``samples`` images once per seed of the sample draw;
the spread over seeds is the score's sampling noise at that size. The test split scored the
same way, at the same size, is the floor beside it.
"""

import json
import statistics
from pathlib import Path
from typing import Optional

from ..components.datasets import load_data
from ..errors import positive_int, seed_value
from ..runs.files import write_atomic
from ..runs.loading import load_run_and_checkpoint
from .features import feature_network, whole_data
from .score import COLUMNS, QualityScorer

QUALITY = "quality.json"


def quality_of_run(run_dir, samples: int = 10000, seeds: int = 3, seed: int = 0, inception: Optional[str] = None,
                   device: str = "auto", progress: bool = False) -> dict:
    """Score ``samples`` samples of the run in ``run_dir`` for ``seeds`` seeds of the draw (from
    ``seed``) and the test split at the same size; write ``quality.json``; return the summary."""
    positive_int(samples, "--samples", minimum=2)
    positive_int(seeds, "--seeds")
    seed_value(seed, "--seed")
    run_dir = Path(run_dir)
    spec, vae, checkpoint = load_run_and_checkpoint(run_dir, device)
    data = whole_data(spec.data, load_data(spec.data))
    network = feature_network(spec.data, data, inception, progress)
    scorer = QualityScorer(network, data, spec.seed)
    draws = [seed + i for i in range(seeds)]
    model = [scorer.score_vae(vae, samples, s) for s in draws]
    floor = [scorer.floor(samples, s) for s in draws]
    summary = {"samples": samples, "floor_samples": floor[0]["samples"], "seeds": draws,
               "features": network.description, "classifier_accuracy": network.accuracy,
               "checkpoint": checkpoint, "model": spread(model), "floor": spread(floor)}
    write_atomic(run_dir / QUALITY, json.dumps(summary, indent=2))
    return summary


def spread(scores: list) -> dict:
    """Each score's values over the seeds, their mean and standard deviation (None for one seed)."""
    out = {}
    for key in COLUMNS:
        values = [s[key] for s in scores]
        out[key] = {"values": values, "mean": statistics.fmean(values),
                    "sd": statistics.stdev(values) if len(values) > 1 else None}
    return out
