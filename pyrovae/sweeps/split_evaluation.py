"""Data-parallel evaluation: ``pyrovae evaluate RUN --workers N [--engine ray]`` shares the
blocks of importance sampling out over a sweep engine's workers.

``pyrovae evaluate`` importance-samples a split's points in blocks, each point with draws
seeded from the evaluation's seed and its index in the split
(:mod:`pyrovae.evaluation.blocks`). :class:`SplitSampler` makes each block a task of the
same engines a sweep uses (local worker processes, or a Ray cluster), runs
:func:`~pyrovae.evaluation.blocks.sample_block` there on the run folder and the split's
data, and merges the per-point results in order; everything else (the ELBOs, the summary,
evaluation.json, the report) is ``pyrovae evaluate``'s own. The result is the same bit for
bit as one process's for the same seed, with the same number of torch threads per worker
(give ``--threads`` the one process's count). Every worker needs the run folder and the
data at the same paths.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..errors import PyrovaeError
from .engines import ENGINES


def sample_task(task: Dict[str, Any]) -> Dict[str, Any]:
    """A worker's task: importance-sample one block of points of a run's split."""
    import torch

    from ..components.datasets import load_data
    from ..evaluation.blocks import sample_block
    from ..evaluation.importance import Proposal
    from ..runs.inputs import changed_inputs_allowed
    from ..runs.loading import load_run

    if task.get("threads"):
        torch.set_num_threads(task["threads"])
    try:
        with changed_inputs_allowed(task["allow_changed_inputs"]):
            spec, vae = load_run(task["run_dir"])
        part = load_data(spec.data).split(task["split"])
    except PyrovaeError as exc:  # a worker that does not see the run folder or the data
        return {"state": "failed", "error": str(exc).splitlines()[0]}
    index = torch.tensor(task["indices"])
    x, y = part.x[index], part.y[index] if vae.num_classes else None
    result = sample_block(vae, x, y, task["indices"], task["num_samples"], task["bounds"], task["max_memory"],
                          Proposal(*task["proposal"]), task["seed"])
    return {"state": "done", "result": result}


class SplitSampler:
    """Importance sampling for ``evaluate_run(..., sampler=SplitSampler(...))``: its blocks as
    tasks of ``engine`` (``local`` or ``ray``, options as ``pyrovae sweep``'s)."""

    def __init__(self, engine: str = "local", workers: Optional[int] = None, address: Optional[str] = None,
                 threads: Optional[int] = None):
        self.runner = ENGINES.build(engine, options={"workers": workers, "address": address, "threads": threads},
                                    where="--engine")

    def __call__(self, *, run_dir, split: str, indices: Sequence[int], num_samples: int, bounds: Sequence[int],
                 max_memory: int, proposal, seed: int):
        from ..evaluation.blocks import BLOCK_POINTS, block_ranges, merge_blocks
        from ..runs.inputs import changed_inputs_are_allowed

        common = {"run_dir": str(Path(run_dir).resolve()), "split": split, "num_samples": num_samples,
                  "bounds": list(bounds), "max_memory": max_memory, "proposal": (proposal.scale, proposal.df),
                  "seed": seed, "allow_changed_inputs": changed_inputs_are_allowed()}
        blocks = block_ranges(len(indices), BLOCK_POINTS)
        tasks = [{**common, "block": b, "indices": [int(indices[i]) for i in block]} for b, block in enumerate(blocks)]
        done: Dict[int, Dict[str, Any]] = {}

        def on_done(task: Dict[str, Any], outcome: Dict[str, Any]) -> None:
            if outcome.get("state") != "done":
                raise PyrovaeError(f"block {task['block']} of the evaluation was lost ({outcome.get('error')}); "
                                   f"run the evaluation again")
            done[task["block"]] = outcome["result"]

        self.runner.run(tasks, on_done, function=sample_task)
        parts: List[Dict[str, Any]] = [done[b] for b in range(len(blocks))]
        return merge_blocks(parts, num_samples, proposal)
