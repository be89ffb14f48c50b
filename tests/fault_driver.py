"""Run the pyrovae command in a process that kills itself (SIGKILL, nothing cleaned up) at
a chosen point, for the fault-injection tests.

    python fault_driver.py KILL_POINT pyrovae-arguments...

KILL_POINT is one of
    step:N             just before the N-th SVI step
    write:NAME:K:B     in the K-th atomic write of a file named NAME, after B bytes of its
                       temporary file (B = -1: after all of them, before the rename)
    replace:NAME:K     right after the K-th rename of a temporary file onto NAME
    never              run to the end (a reference run in the same kind of process)
"""

import os
import signal
import sys
from collections import Counter

import torch

import pyrovae.runs.files as files


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    kind, *spec = point.split(":")
    counts = Counter()
    if kind == "step":
        from pyro.infer import SVI

        step, limit = SVI.step, int(spec[0])

        def counted_step(self, *args, **kwargs):
            counts["step"] += 1
            if counts["step"] == limit:
                die()
            return step(self, *args, **kwargs)

        SVI.step = counted_step
    elif kind == "write":
        name, nth, cut = spec[0], int(spec[1]), int(spec[2])
        write_temp = files._write_temp

        def cut_write(fd, data, target):
            if target.name == name:
                counts[name] += 1
                if counts[name] == nth:
                    os.write(fd, bytes(data[:len(data) if cut < 0 else min(cut, len(data))]))
                    os.fsync(fd)
                    die()
            write_temp(fd, data, target)

        files._write_temp = cut_write
    elif kind == "replace":
        name, nth = spec[0], int(spec[1])
        replace = os.replace

        def replace_then_die(src, dst, *args, **kwargs):
            replace(src, dst, *args, **kwargs)
            if os.path.basename(dst) == name:
                counts[name] += 1
                if counts[name] == nth:
                    die()

        files.os.replace = replace_then_die
    elif kind != "never":
        raise SystemExit(f"unknown kill point {point}")


if __name__ == "__main__":
    torch.set_num_threads(1)  # bit-identical comparisons need the same arithmetic in every process
    install(sys.argv[1])
    from pyrovae.cli import main

    sys.exit(main(sys.argv[2:]))
