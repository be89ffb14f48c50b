"""Memory-bounded chunks: how many data points and samples one traced computation may take.

Evaluation draws many samples (importance samples, grid nodes, AIS chains) for many data
points. The bytes one traced chunk allocates are measured once on tiny inputs
(:class:`Cost`), and :func:`plan_chunks` picks the largest chunks whose working memory
stays under the bound the user sets. :func:`collect` gathers the per-point results of the
batches into preallocated tensors.
"""

import re
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_leaves, tree_unflatten

from ..errors import PyrovaeError

DEFAULT_MAX_MEMORY = "1GB"

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}

# How much one chunk of traces may allocate when the memory bound allows more: longer
# chunks do not run faster (the matrix multiplies reach most of their speed at a few
# thousand rows; benchmarks/evaluation_throughput.py), they only take more memory.
TARGET_CHUNK_BYTES = 64 * 2**20
# The allocation count below cannot see temporaries inside single kernels (for example
# binary_cross_entropy_with_logits); twice the count covers them with room to spare
# (benchmarks/evaluation_throughput.py measures the peak against the bound).
SAFETY_FACTOR = 2.0
# Log-weights of one batch of points are stored (float64) and analysed with a few
# temporaries of the same size.
WEIGHT_COPIES = 4


def parse_memory(text) -> int:
    """Bytes in a size such as ``512MB``, ``2GB`` or ``1.5GiB`` (KB/MB/GB are powers of
    1000, KiB/MiB/GiB powers of 1024; a bare number is bytes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise PyrovaeError(f"memory bound '{text}' is not a size like 512MB, 2GB or 1.5GiB; "
                           f"give a positive number with one of the units B, KB, MB, GB, KiB, MiB, GiB")
    return int(float(match.group(1)) * _UNITS[unit])


def as_bytes(max_memory) -> int:
    """A memory bound given as bytes or as a size string."""
    if isinstance(max_memory, int) and not isinstance(max_memory, bool):
        return max_memory
    return parse_memory(max_memory)


def format_bytes(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


class _AllocationCounter(TorchFunctionMode):
    """Counts the bytes of every new tensor storage a torch function returns (views and
    in-place results share an input's storage and are not counted)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.bytes += t.untyped_storage().nbytes()
        return out


@dataclass(frozen=True)
class Cost:
    """Bytes a traced computation allocates: ``fixed + points * per_point +
    points * samples * per_pair``, measured by :meth:`measure`."""

    fixed: float
    per_point: float
    per_pair: float

    @classmethod
    def measure(cls, run: Callable[[int, int], object]) -> "Cost":
        """Count what ``run(points, samples)`` allocates at three tiny sizes and solve for
        the three terms. Everything the computation allocates is counted as if nothing were
        freed, so the fitted cost errs on the generous side."""
        counts = {}
        for size in [(1, 1), (1, 2), (2, 1)]:
            with _AllocationCounter() as counter:
                run(*size)
            counts[size] = counter.bytes
        per_pair = max(0, counts[1, 2] - counts[1, 1])
        per_point = max(0, counts[2, 1] - counts[1, 1] - per_pair)
        return cls(max(0, counts[1, 1] - per_point - per_pair), per_point, per_pair)

    def bytes(self, points: int, samples: int, stored_per_point: float) -> float:
        """Working memory of one chunk of ``samples`` draws for ``points`` data points, plus
        what is stored per point across chunks."""
        traced = self.fixed + points * self.per_point + points * samples * self.per_pair
        return SAFETY_FACTOR * traced + points * stored_per_point


class ChunkPlan(NamedTuple):
    points: int   # data points per batch
    samples: int  # samples (or grid points) per traced chunk


def plan_chunks(cost: Cost, num_points: int, num_samples: int, max_memory: int,
                stored_per_point: float, stored_for: str = "") -> ChunkPlan:
    """The largest chunks under ``max_memory``, aiming at :data:`TARGET_CHUNK_BYTES`.

    Samples per chunk come first: the guide's encoder runs once per chunk, so long chunks
    of samples for few points waste the least work. ``stored_for`` names the settings that
    size ``stored_per_point`` (e.g. ``"1000 annealing steps and 16 chains (--steps,
    --chains)"``): when what is stored for one point alone exceeds the bound, the error
    blames those settings.
    """
    rows = max(1, int(TARGET_CHUNK_BYTES // max(SAFETY_FACTOR * cost.per_pair, 1)))
    samples = min(num_samples, rows)
    points = min(num_points, max(1, rows // samples))
    while cost.bytes(points, samples, stored_per_point) > max_memory:
        if points > 1:
            points //= 2
        elif samples > 1:
            samples //= 2
        else:
            raise _bound_too_small(cost, num_samples, max_memory, stored_per_point, stored_for)
    return ChunkPlan(points, samples)


def _bound_too_small(cost: Cost, num_samples: int, max_memory: int, stored_per_point: float,
                     stored_for: str) -> PyrovaeError:
    """The error for a bound too small for one data point, blaming what needs the memory."""
    if stored_for and stored_per_point > max_memory:
        return PyrovaeError(f"a memory bound of {format_bytes(max_memory)} is too small for {stored_for}: they "
                            f"need {format_bytes(stored_per_point)} per data point; use fewer, or raise the bound")
    need = cost.bytes(1, 1, stored_per_point)
    return PyrovaeError(f"a memory bound of {format_bytes(max_memory)} is too small: one data point "
                        f"with {num_samples} samples needs at least {format_bytes(need)}; "
                        f"raise the memory bound or use fewer samples")


def rows(t: Optional[torch.Tensor], start: int, stop: int) -> Optional[torch.Tensor]:
    """Rows ``start:stop`` of an optional tensor (the labels of unconditional models are None)."""
    return None if t is None else t[start:stop]


def first_repeated(t: Optional[torch.Tensor], n: int) -> Optional[torch.Tensor]:
    """The first row of an optional tensor repeated ``n`` times (a view): probe inputs."""
    return None if t is None else t[:1].expand(n, *t.shape[1:])


def collect(n: int, batches, bar=None):
    """Concatenate the per-point results of successive batches (pytrees of tensors whose
    first dim is the batch's points, or None) into one tensor per leaf, allocated at the
    first batch.

    Keeping every batch's small tensors until the end would pin fragments of the heap
    between the chunks' large temporaries, and the process's memory would grow with
    the number of batches."""
    buffers, spec, start = None, None, 0
    for summary in batches:
        leaves, spec = tree_flatten(summary)
        if buffers is None:
            buffers = [None if t is None else t.new_empty((n, *t.shape[1:])) for t in leaves]
        stop = start + next(t for t in leaves if t is not None).shape[0]
        for buffer, t in zip(buffers, leaves):
            if buffer is not None:
                buffer[start:stop] = t
        if bar is not None:
            bar.update(stop - start)
        start = stop
    return tree_unflatten(buffers, spec)
