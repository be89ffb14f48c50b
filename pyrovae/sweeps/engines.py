"""Engines: where a sweep's runs are carried out.

An engine takes a module-level ``function`` and a list of tasks (plain dictionaries: runs of
a sweep for the sweep command's job, blocks of a data-parallel evaluation) and calls
``on_done(task, outcome)`` as each ends.
Every engine treats a task the same way: a worker that dies mid-run (killed, out of
memory, its machine gone) ends that task as ``interrupted``, its run folder left with its
last checkpoint for the next sitting, and the other tasks go on. No new task starts after
the sitting's deadline.

- ``local``: worker processes on this machine, no service to start; by default as many
  at a time as there are cores, each with its share of the cores as torch threads.
- ``ray``: the tasks of a Ray cluster (``pip install 'pyrovae[ray]'``), one CPU each;
  ``address`` names an existing cluster (``auto``: the one ``ray start`` made here),
  ``None`` starts a private one on this machine; one torch thread per run by default. Every node must see the sweep folder
  at the same path (shared storage) and have pyrovae installed.
"""

import multiprocessing
import os
import pickle
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from ..errors import PyrovaeError, positive_int
from ..registry import Registry

OnDone = Callable[[Dict[str, Any], Dict[str, Any]], None]
ENGINES = Registry("sweep engine")
POLL_SECONDS = 0.2


def default_workers() -> int:
    return os.cpu_count() or 1


def _interrupted(reason: str) -> Dict[str, Any]:
    """The outcome of a task whose worker died; what to do next is the caller's to say (a
    sweep resumes the run, a split evaluation is run again)."""
    return {"state": "interrupted", "error": reason}


def _past(deadline: Optional[float]) -> bool:
    return deadline is not None and time.time() >= deadline


class LocalEngine:
    """Worker processes on this machine, a fresh one per run (a crash takes only its run)."""

    def __init__(self, workers: Optional[int] = None, threads: Optional[int] = None):
        self.workers = workers or default_workers()
        self.threads = threads or max(1, default_workers() // self.workers)

    def run(self, tasks: List[Dict[str, Any]], on_done: OnDone, deadline: Optional[float] = None, *,
            function: Callable[[Dict[str, Any]], Dict[str, Any]]) -> None:
        context = _worker_context(function)
        pending, active = list(tasks), {}
        stopped_by_term = _terminate_as_interrupt()
        try:
            while pending or active:
                while pending and len(active) < self.workers and not _past(deadline):
                    task = {"threads": self.threads, **pending.pop(0)}
                    receiver, sender = context.Pipe(duplex=False)
                    process = context.Process(target=_child, args=(function, task, sender), daemon=False)
                    process.start()
                    sender.close()
                    active[process] = (task, receiver)
                if _past(deadline):
                    pending.clear()
                for process in [p for p in active if not p.is_alive()]:
                    task, receiver = active.pop(process)
                    outcome = _received(receiver)
                    process.join()
                    if outcome is None:
                        outcome = _interrupted(f"worker process {process.pid} ended with {_exit_text(process.exitcode)}")
                    on_done(task, outcome)
                if active:
                    time.sleep(POLL_SECONDS)
        except BaseException:
            for process in active:
                process.terminate()
            for process in active:
                process.join()
            raise
        finally:
            stopped_by_term.restore()


# What every task imports besides its function's own module, loaded once by the fork server,
# so a task's process starts in a moment instead of importing torch and Pyro afresh.
PRELOAD = ["pyrovae.training.train", "pyrovae.evaluation.evaluate", "torch._dynamo"]


def _worker_context(function: Callable):
    """Processes forked from a server that has imported the libraries and ``function``'s module
    (with what it imports: the sweep command's brings the reports) but run no tensor operation
    (so no thread pool is forked); each task still gets a process of its own."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([function.__module__, *PRELOAD])
    return context


def _child(function, task, sender) -> None:
    # Plain pickle keeps tensors inline: the pipe's own pickler would pass them as shared
    # memory that vanishes when this process exits, before the driver reads them.
    sender.send_bytes(pickle.dumps(function(task)))
    sender.close()


class _terminate_as_interrupt:
    """While the driver runs workers, SIGTERM (how a background job is stopped; SIGINT is
    ignored there) stops it as Ctrl-C would: its workers are stopped too, leaving their runs
    resumable, instead of running on unwatched."""

    def __init__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _received(receiver) -> Optional[Dict[str, Any]]:
    """The outcome a worker sent, or ``None`` when it died first (its pipe just closed)."""
    try:
        return pickle.loads(receiver.recv_bytes()) if receiver.poll() else None
    except EOFError:
        return None


def _exit_text(code: Optional[int]) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


class RayEngine:
    """Tasks on a Ray cluster: ``threads`` CPUs per run (default one), at most ``workers`` at a
    time (default: the cluster's CPUs). Ray does not retry a task whose worker died: the run is recorded as
    interrupted, as with the local engine, and the next sitting resumes it."""

    def __init__(self, workers: Optional[int] = None, address: Optional[str] = None, threads: Optional[int] = None):
        try:
            import ray
        except ImportError:
            raise PyrovaeError("the ray engine needs Ray: pip install 'pyrovae[ray]' (or pip install ray), "
                               "or use --engine local") from None
        self.ray = ray
        if not ray.is_initialized():
            start_ray(address)
        self.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.threads = threads or 1

    def run(self, tasks: List[Dict[str, Any]], on_done: OnDone, deadline: Optional[float] = None, *,
            function: Callable[[Dict[str, Any]], Dict[str, Any]]) -> None:
        ray = self.ray
        remote = ray.remote(num_cpus=self.threads, max_retries=0)(function)
        pending, active = list(tasks), {}
        while pending or active:
            while pending and len(active) < self.workers and not _past(deadline):
                task = {"threads": self.threads, **pending.pop(0)}
                active[remote.remote(task)] = task
            if _past(deadline):
                pending.clear()
            if not active:
                continue
            ready, _ = ray.wait(list(active), num_returns=1, timeout=None)
            for ref in ready:
                task = active.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    outcome = _interrupted(f"Ray worker lost ({type(exc).__name__})")
                on_done(task, outcome)


# A private Ray instance's object store: the tasks pass small dictionaries and per-point
# tensors, and Ray's default (30% of the memory) takes long to set up on a busy machine.
PRIVATE_OBJECT_STORE_BYTES = 256 * 2**20
# Ray waits a fixed 30 s for its raylet to register; on a loaded machine it can miss that.
RAY_START_ATTEMPTS = 3


def start_ray(address: Optional[str] = None, num_cpus: Optional[int] = None, env: Optional[Dict[str, str]] = None):
    """Connect to the Ray cluster at ``address``, or start a private instance here (with
    ``num_cpus`` CPUs, default all) when it is ``None``, watched so that all its processes end
    with this one (:mod:`.ray_watchdog`); Ray's workers started on this machine
    see the driver's PYTHONPATH and ``env``. A private start that times out (the raylet missed
    Ray's fixed 30-second registration window on a loaded machine) is tried again."""
    import ray

    private = {} if address else {"num_cpus": num_cpus, "object_store_memory": PRIVATE_OBJECT_STORE_BYTES}
    for attempt in range(1, RAY_START_ATTEMPTS + 1):
        try:
            context = ray.init(address=address, include_dashboard=False, log_to_driver=False,
                               runtime_env={"env_vars": {**_python_path(), **(env or {})}}, **private)
            if not address:  # its processes end with this one, even when it is killed
                from .ray_watchdog import watch

                watch(context.address_info["session_dir"])
            return context
        except ConnectionError as exc:
            raise PyrovaeError(f"cannot reach a Ray cluster at {address}: {str(exc).splitlines()[0]}; "
                               f"start one with 'ray start --head' or leave out --address") from None
        except Exception as exc:  # Ray raises a bare Exception when its node misses the start-up window
            ray.shutdown()
            if address or "timed out during startup" not in str(exc) or attempt == RAY_START_ATTEMPTS:
                raise


def _python_path() -> Dict[str, str]:
    """Workers Ray starts on this machine see the driver's PYTHONPATH (a source checkout)."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": path} if path else {}


def _check_counts(workers: Optional[int], threads: Optional[int]) -> None:
    for value, flag in ((workers, "--workers"), (threads, "--threads")):
        if value is not None:
            positive_int(value, flag)


@ENGINES.register("local")
def local_engine(*, workers: Optional[int] = None, address: Optional[str] = None,
                 threads: Optional[int] = None) -> LocalEngine:
    """worker processes on this machine, as many as cores unless --workers says otherwise"""
    _check_counts(workers, threads)
    if address is not None:
        raise PyrovaeError("--address is for --engine ray; the local engine runs on this machine")
    return LocalEngine(workers, threads)


@ENGINES.register("ray")
def ray_engine(*, workers: Optional[int] = None, address: Optional[str] = None,
               threads: Optional[int] = None) -> RayEngine:
    """tasks on a Ray cluster (--address auto: the one 'ray start' made; none: a private one here)"""
    _check_counts(workers, threads)
    return RayEngine(workers, address, threads)
