"""The ``pyrovae`` command.

Every user mistake (a config typo, missing data, a bad checkpoint) is one line on stderr
and exit status 2; tracebacks are kept for bugs.
"""

import argparse
import sys
import warnings
from typing import List, Optional

from . import __version__
from .commands import (
    config,
    encode,
    evaluate,
    export,
    interpolate,
    listing,
    posterior,
    quality,
    reconstruct,
    report,
    reproduce,
    sample,
    sweep,
    train,
    variance,
)
from .errors import PyrovaeError, PyrovaeWarning
from .runs.inputs import changed_inputs_allowed

# The subcommands in the order ``pyrovae --help`` lists them; each module adds its own.
COMMANDS = [listing, config, train, evaluate, variance, sweep, report, reproduce, posterior, sample, reconstruct, encode,
            interpolate, export, quality]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyrovae", description="Variational autoencoders as Pyro programs (Kingma & Welling, AEVB).")
    parser.add_argument("--version", action="version", version=f"pyrovae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_command(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """pyrovae's own warnings as one line, like its errors; others as Python shows them."""
    if issubclass(category, PyrovaeWarning):
        print(f"pyrovae: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings(), changed_inputs_allowed(getattr(args, "allow_changed_inputs", False)):
            warnings.showwarning = _show_warning
            status = args.func(args)  # a command may return its exit status
    except PyrovaeError as exc:
        print(f"pyrovae: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head and the like
        return 0
    except KeyboardInterrupt:
        print("pyrovae: interrupted; the last checkpoint is kept, continue with --resume", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
