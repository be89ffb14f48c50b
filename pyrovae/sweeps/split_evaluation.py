"""Data-parallel importance sampling: the points of a split cut into blocks, the blocks
spread over a sweep engine's workers, the per-point results put back in order.

Each block of ``block_points`` consecutive points (of the points ``pyrovae evaluate``
would choose: the whole split, or ``max_points`` of it drawn with ``seed``) is sampled with
its own random seed, derived from ``seed`` and the block's number. A point's estimate thus
depends on the seed, the block size and the memory bound (which fixes the chunking inside
a block), never on which worker sampled it or how many there were: one process and any
number of workers, local or on Ray, give bit-for-bit the same per-point numbers (with
the same number of torch threads per worker). The estimates are not the same draws as
``pyrovae evaluate``'s single stream for the whole split, but they are the same
estimator: K importance samples from the guide per point.

The importance sampling itself is :func:`pyrovae.evaluation.importance.importance_sample`
and the summary is ``pyrovae evaluate``'s; only the split and the merge are here.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ..errors import PyrovaeError
from .engines import ENGINES

BLOCK_SEED_STRIDE = 1_000_003
FIELDS = ("log_marginal", "elbo", "log_likelihood", "kl", "ess", "khat")


def block_seed(seed: int, block: int) -> int:
    return seed * BLOCK_SEED_STRIDE + block


def sample_block(task: Dict[str, Any]) -> Dict[str, Any]:
    """Importance-sample one block of points (a worker's task); per-point tensors come back."""
    import pyro

    from ..components.datasets import load_data
    from ..evaluation.evaluate import bound_sizes
    from ..evaluation.importance import importance_sample
    from ..runs.train import load_run

    if task.get("threads"):
        torch.set_num_threads(task["threads"])
    spec, vae = load_run(task["run_dir"])
    part = load_data(spec.data).split(task["split"])
    index = torch.tensor(task["indices"])
    x, y = part.x[index], part.y[index] if vae.num_classes else None
    pyro.set_rng_seed(task["seed"])
    result = importance_sample(vae, x, y, task["num_samples"], bounds=bound_sizes(task["num_samples"]),
                               max_memory=task["max_memory"], khat=True)
    out = {name: getattr(result, name) for name in FIELDS}
    out["iwae"] = result.iwae
    return {"state": "done", "block": task["block"], "result": out}


def evaluate_points_parallel(run_dir, split: str = "test", num_samples: int = 5000, max_points: Optional[int] = None,
                             seed: int = 0, block_points: int = 500, max_memory="1GB", engine: str = "local",
                             workers: Optional[int] = None, address: Optional[str] = None,
                             threads: Optional[int] = None):
    """Importance-sample ``split`` of the run in ``run_dir`` in blocks over ``engine``'s
    workers; return the merged per-point :class:`~pyrovae.evaluation.importance.ImportanceResult`,
    the indices of the points evaluated and the summary ``pyrovae evaluate`` makes of it."""
    from ..evaluation.evaluate import _importance_summary, _split_data
    from ..evaluation.importance import ImportanceResult
    from ..runs.train import load_run

    if split == "train":
        raise PyrovaeError("the data-parallel evaluation covers the valid and test splits; evaluate the train "
                           "split with 'pyrovae evaluate RUN --split train'")
    if block_points < 1:
        raise PyrovaeError(f"block_points must be a positive integer, got {block_points}")
    spec, vae = load_run(run_dir)
    _, _, subset = _split_data(spec, vae, split, max_points, seed)
    indices = list(range(subset["of"])) if subset["chosen"] == "all" else subset["indices"]
    blocks = [indices[i:i + block_points] for i in range(0, len(indices), block_points)]
    tasks = [{"run_dir": str(Path(run_dir).resolve()), "split": split, "indices": block, "block": b,
              "seed": block_seed(seed, b), "num_samples": num_samples, "max_memory": max_memory}
             for b, block in enumerate(blocks)]
    runner = ENGINES.build(engine, options={"workers": workers, "address": address, "threads": threads},
                           where="--engine")
    done: Dict[int, Dict[str, Any]] = {}

    def on_done(task: Dict[str, Any], outcome: Dict[str, Any]) -> None:
        if outcome.get("state") != "done":
            raise PyrovaeError(f"block {task['block']} of the evaluation was lost ({outcome.get('error')}); run it again")
        done[task["block"]] = outcome["result"]

    runner.run(tasks, on_done, function=sample_block)
    parts: List[Dict[str, Any]] = [done[b] for b in range(len(blocks))]
    merged = {name: _cat([p[name] for p in parts]) for name in FIELDS}
    merged["iwae"] = {k: _cat([p["iwae"][k] for p in parts]) for k in parts[0]["iwae"]}
    result = ImportanceResult(num_samples=num_samples, **merged)
    return result, indices, {"split": split, "num_points": len(indices), "num_samples": num_samples,
                             "seed": seed, "block_points": block_points, **_importance_summary(result)}


def _cat(values: list):
    """Concatenate per-point tensors, or per-point (value, error) pairs field by field."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(values)
    return type(first)(*(torch.cat([v[i] for v in values]) for i in range(len(first))))
