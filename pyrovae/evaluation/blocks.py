"""Importance sampling in blocks of points: the unit of work that one process, or the
workers of a sweep engine, carry out for ``pyrovae evaluate``.

The points of a split (in the order evaluated) are cut into blocks of ``block_points``
consecutive points, and each block is importance-sampled on its own, every point with
draws from its own stream seeded from the evaluation's seed and the point's index in the
split (:func:`pyrovae.evaluation.importance.importance_sample` with ``seed``). The draws
thus never depend on the blocks; and since a block's arithmetic depends only on its own
points (matrix products of other shapes may round differently in the last bit), a point's
numbers are the same bit for bit whether one process samples the blocks one after
another or many workers share them out (with the same number of torch threads each).
"""

from typing import Any, Dict, List, Optional, Sequence

import torch

from .chunking import collect
from .importance import GUIDE, ImportanceResult, Proposal, importance_sample

BLOCK_POINTS = 100  # large enough for full-speed matrix products, small enough to share out


def block_ranges(n: int, block_points: int = BLOCK_POINTS) -> List[range]:
    """The positions of the points of each block."""
    return [range(start, min(n, start + block_points)) for start in range(0, n, block_points)]


def sample_block(vae, x: torch.Tensor, y: Optional[torch.Tensor], indices: Sequence[int], num_samples: int,
                 bounds: Sequence[int], max_memory, proposal: Proposal, seed: int) -> Dict[str, Any]:
    """One block: the per-point fields of its :class:`ImportanceResult` (plain tensors, to ship
    between processes). The global random state is left as it was (measuring the memory of a
    chunk draws from it), so what the caller draws next is the same however the blocks ran."""
    with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device]):
        result = importance_sample(vae, x, y, num_samples, bounds=bounds, max_memory=max_memory, khat=True,
                                   proposal=proposal, seed=seed, indices=indices)
    return {"log_marginal": result.log_marginal, "elbo": result.elbo, "iwae": result.iwae,
            "log_likelihood": result.log_likelihood, "kl": result.kl, "ess": result.ess, "khat": result.khat}


def merge_blocks(parts: List[Dict[str, Any]], num_samples: int, proposal: Proposal = GUIDE) -> ImportanceResult:
    """The blocks' per-point results, in order, as one :class:`ImportanceResult`."""
    n = sum(part["ess"].shape[0] for part in parts)
    return ImportanceResult(num_samples=num_samples, proposal=proposal, **collect(n, iter(parts)))


def sample_in_blocks(vae, x: torch.Tensor, y: Optional[torch.Tensor], indices: Sequence[int], num_samples: int,
                     bounds: Sequence[int], max_memory, proposal: Proposal, seed: int,
                     block_points: int = BLOCK_POINTS, progress: bool = False) -> ImportanceResult:
    """Every block in this process, one after another."""
    from tqdm.auto import tqdm

    parts = []
    with tqdm(total=x.shape[0], desc="importance sampling", unit="point", disable=not progress, leave=False) as bar:
        for block in block_ranges(x.shape[0], block_points):
            rows = slice(block.start, block.stop)
            parts.append(sample_block(vae, x[rows], None if y is None else y[rows], [indices[i] for i in block],
                                      num_samples, bounds, max_memory, proposal, seed))
            bar.update(len(block))
    return merge_blocks(parts, num_samples, proposal)
