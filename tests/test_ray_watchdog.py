"""A private Ray instance ends with the sweep's driver even when the driver is killed with
SIGKILL: no Ray agent or worker runs on, orphaned (slow: it starts a real local Ray)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DRIVER = """
import time
import ray
from pyrovae.sweeps.engines import start_ray

context = start_ray(num_cpus=1)

@ray.remote(num_cpus=1)
def busy():
    time.sleep(600)

task = busy.remote()
print(context.address_info["session_dir"], flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the watchdog reads /proc (Linux)")
def test_ray_processes_end_when_the_driver_is_killed():
    pytest.importorskip("ray", reason="the ray engine needs Ray: pip install 'pyrovae[ray]'")
    from pyrovae.sweeps.ray_watchdog import _process_table, ray_processes

    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        session = Path(driver.stdout.readline().strip()).name
        assert session.startswith("session_"), "the driver did not start Ray"
        deadline = time.time() + 120
        while True:  # the agents and the busy task's worker are started after ray.init returns
            roots, processes = ray_processes(driver.pid, session, _process_table())
            names = {(Path("/proc") / str(pid) / "cmdline").read_bytes() for pid, _ in processes if _alive(pid)}
            if sum(b"Agent" in n for n in names) >= 2 and any(b"ray::busy" in n for n in names) or time.time() > deadline:
                break
            time.sleep(0.5)
        assert roots and len(processes) > len(roots)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.time() + 30
    while any(_alive(pid) for pid, _ in processes) and time.time() < deadline:
        time.sleep(0.5)
    left = [(Path("/proc") / str(pid) / "cmdline").read_bytes()[:60] for pid, _ in processes if _alive(pid)]
    assert left == []
