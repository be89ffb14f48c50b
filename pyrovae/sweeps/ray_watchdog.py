"""A private Ray instance ends with the driver that started it, however the driver ends.

``--engine ray`` without ``--address`` starts Ray on this machine from the driver (the
``pyrovae sweep`` or ``pyrovae evaluate`` process). Ray's own services die with a driver
killed by SIGKILL, but the agents the raylet starts (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``) and any worker still busy are left running, orphaned.
:func:`watch` starts this file as a small process in a session of its own, holding a pipe
from the driver. Every half second it notes the driver's Ray processes (its children whose
command line names the Ray session) and all their descendants; when the pipe closes (the
driver is gone, whatever stopped it) or Ray's services are gone (``ray.shutdown()``), it
kills the noted processes still alive and ends. It reads ``/proc``, so it watches on Linux
only. Standard library only: it starts in a moment, without torch.
"""

import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

POLL_SECONDS = 0.5
Process = Tuple[int, int]  # pid and start time: a pid the system reuses is not the same process
_WATCHDOGS: List[subprocess.Popen] = []  # the driver holds each pipe open for its lifetime


def watch(session_dir: str) -> Optional[subprocess.Popen]:
    """Start the watchdog of the Ray session ``session_dir`` that this process started (none
    where ``/proc`` is missing), after reaping those of earlier sessions that have ended."""
    if not Path("/proc/self/stat").exists():
        return None
    for finished in [w for w in _WATCHDOGS if w.poll() is not None]:  # reaped: no zombie, no open pipe
        finished.stdin.close()
        _WATCHDOGS.remove(finished)
    watchdog = subprocess.Popen([sys.executable, __file__, str(os.getpid()), Path(session_dir).name],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    _WATCHDOGS.append(watchdog)
    return watchdog


def _process_table() -> Dict[int, Tuple[int, int]]:
    """Every process: pid -> (parent pid, start time), from ``/proc/PID/stat``."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):  # ended while being read
                continue
            table[int(entry.name)] = (int(fields[1]), int(fields[19]))
    return table


def _names_session(pid: int, session: str) -> bool:
    try:
        return session in (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def ray_processes(driver: int, session: str, table: Dict[int, Tuple[int, int]]) -> Tuple[Set[Process], Set[Process]]:
    """The driver's Ray services (its children naming ``session``, but not the watchdog, which
    names it too) and those with every descendant."""
    roots = {(pid, start) for pid, (parent, start) in table.items()
             if parent == driver and pid != os.getpid() and _names_session(pid, session)}
    children: Dict[int, List[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, stack = set(roots), [pid for pid, _ in roots]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add((child, table[child][1]))
            stack.append(child)
    return roots, found


def kill_alive(noted: Set[Process]) -> None:
    """SIGKILL each noted process that is still the same process."""
    table = _process_table()
    for pid, start in noted:
        if pid in table and table[pid][1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main(driver: int, session: str) -> None:
    noted: Set[Process] = set()
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], POLL_SECONDS)
        driver_gone = bool(readable) and not os.read(sys.stdin.fileno(), 1)  # the driver never writes: EOF
        roots, found = ray_processes(driver, session, _process_table())
        if not driver_gone:
            noted |= found
        if driver_gone or (noted and not roots):
            kill_alive(noted)
            return


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
