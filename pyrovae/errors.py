"""The one exception type for mistakes a user can fix.

Anything raised as :class:`PyrovaeError` is shown by the command line as a single line
on stderr (exit status 2) instead of a traceback, so its message must say what went
wrong *and* what to do about it.
"""

import difflib
import warnings
from typing import Iterable


class PyrovaeError(Exception):
    """A user-facing error: bad config, missing data, unusable checkpoint, ...

    Its message is one line whatever it quotes: line breaks inside user-given text (a
    key or value typed with a newline) are shown as ``\\n``."""

    def __init__(self, message: str = "", *args):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"), *args)


class PyrovaeWarning(UserWarning):
    """Something that works but is probably not what the user meant (the command line
    shows it as one line on stderr)."""


def warn(message: str) -> None:
    """Issue a :class:`PyrovaeWarning` (one line, saying what to change)."""
    warnings.warn(message, PyrovaeWarning, stacklevel=3)


def positive_int(value, what: str, minimum: int = 1) -> int:
    """``value`` if it is an integer of at least ``minimum`` (bools are not counted as
    integers), else a :class:`PyrovaeError` naming ``what``: the one check of every count a
    user sets (epochs, samples, particles, steps, grid nodes, ...)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        need = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise PyrovaeError(f"{what} must be {need}, got {value!r}")
    return value


MAX_SEED = 2 ** 32 - 1  # numpy's generators take seeds below 2^32


def seed_value(value, what: str) -> int:
    """``value`` if it is a seed that torch, numpy and Pyro all take (an integer from 0 to
    :data:`MAX_SEED`), else a :class:`PyrovaeError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise PyrovaeError(f"{what} must be an integer from 0 to {MAX_SEED}, got {value!r}")
    return value


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``" (did you mean 'x'?)"`` suffix naming the closest choice, or ``""`` if none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
