"""Evaluation speed and memory: importance samples x data points per second for a
784-400-50 VAE, the share of the machine's own matrix-multiply FLOP rate that reaches
(both measured in the same run, alternating), and the peak memory of K = 5000 samples
over the 10000 test points of static binarized MNIST under the default memory bound.

FLOPs are those of the matrix multiplies the evaluation actually executes, counted by
``torch.utils.flop_counter.FlopCounterMode`` on the same call: the decoder for every
sample and data point, the encoder once per data point and chunk of samples. The
reference rate is a 2048 x 2048 float32 matrix product. Peak memory is the peak resident
set size (VmHWM in /proc/self/status, Linux) of a fresh process that loads only the
model and the test images: before anything runs, after a two-point warm-up (the
libraries' one-time set-up) and after the full evaluation.

    PYROVAE_DATA=../shared/data python benchmarks/evaluation_throughput.py [--points 200] [--repeats 3]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from pyrovae import load_config
from pyrovae.components.datasets import load_data
from pyrovae.evaluation.chunking import DEFAULT_MAX_MEMORY
from pyrovae.evaluation.evaluate import bound_sizes
from pyrovae.evaluation.importance import importance_sample
from pyrovae.model import VAE

CONFIG = ["model.latent_dim=50", "model.encoder.hidden=[400]", "model.decoder.hidden=[400]"]
MATMUL_SIZE = 2048


def build_vae() -> VAE:
    torch.manual_seed(0)
    return VAE.from_config(load_config("quickstart", CONFIG)).eval()


def matmul_rate(seconds: float = 1.0) -> float:
    """FLOP/s of repeated float32 MATMUL_SIZE^3 products for about ``seconds``."""
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * MATMUL_SIZE ** 3 * count / (time.perf_counter() - start)


def evaluate(vae, x, num_samples: int, khat: bool = False):
    return importance_sample(vae, x, num_samples=num_samples, bounds=bound_sizes(num_samples), khat=khat)


def throughput(vae, x, num_samples: int, repeats: int) -> dict:
    """Samples x points per second and FLOP share, alternating evaluation and matmul runs."""
    with FlopCounterMode(display=False) as counter:
        evaluate(vae, x, num_samples)  # warms up, and counts the FLOPs of exactly the timed call
    flops_per_point = counter.get_total_flops() / x.shape[0]
    seconds, rates = [], []
    for _ in range(repeats):
        rates.append(matmul_rate())
        start = time.perf_counter()
        evaluate(vae, x, num_samples)
        seconds.append(time.perf_counter() - start)
    rates.append(matmul_rate())
    t, peak = statistics.median(seconds), statistics.median(rates)
    start = time.perf_counter()
    evaluate(vae, x, num_samples, khat=True)
    with_khat = time.perf_counter() - start
    pairs = num_samples * x.shape[0]
    return {"points": x.shape[0], "num_samples": num_samples, "seconds": seconds,
            "pairs_per_second": pairs / t, "pairs_per_second_with_khat": pairs / with_khat,
            "matmul_flops_per_pair": flops_per_point / num_samples,
            "evaluation_gflops": flops_per_point * x.shape[0] / t / 1e9,
            "matmul_gflops": [r / 1e9 for r in rates], "matmul_gflops_median": peak / 1e9,
            "fraction_of_matmul_rate": flops_per_point * x.shape[0] / t / peak}


def memory_child(model_path: str, data_path: str, num_samples: int) -> None:
    """Run in a fresh process: evaluate all test points and print peak-RSS figures as JSON."""
    vae = build_vae()
    vae.load_state_dict(torch.load(model_path, weights_only=True))
    x = torch.load(data_path, weights_only=True)
    fresh = peak_rss()
    evaluate(vae, x[:2], num_samples, khat=True)  # the libraries' one-time set-up
    warm = peak_rss()
    start = time.perf_counter()
    evaluate(vae, x, num_samples, khat=True)
    seconds = time.perf_counter() - start
    after = peak_rss()
    print(json.dumps({"points": x.shape[0], "num_samples": num_samples, "seconds": seconds,
                      "pairs_per_second": x.shape[0] * num_samples / seconds,
                      "peak_rss_before_bytes": fresh, "peak_rss_after_warmup_bytes": warm,
                      "peak_rss_after_bytes": after, "peak_increase_bytes": after - fresh,
                      "peak_increase_after_warmup_bytes": after - warm}))


def peak_rss() -> int:
    """The process's peak resident set size so far, in bytes: VmHWM from /proc/self/status.
    (``resource.getrusage`` would do elsewhere, but on Linux its ru_maxrss carries the parent's
    peak across fork and exec, which here hides everything the child does.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: this measurement needs Linux")


def peak_memory(vae, x, num_samples: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        model_path, data_path = Path(folder) / "model.pt", Path(folder) / "x.pt"
        torch.save(vae.state_dict(), model_path)
        torch.save(x.clone(), data_path)
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(model_path), str(data_path),
                              "--num-samples", str(num_samples), "--threads", str(torch.get_num_threads())],
                             check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=200, help="test points for the throughput runs")
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true", help="skip the full 10000-point memory run")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--memory-child", nargs=2, metavar=("MODEL", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child, args.num_samples)
        return

    test_x = load_data(load_config("quickstart").data).test.x
    vae = build_vae()
    results = {"machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                           "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                           "load_average_before": os.getloadavg()},
               "model": "784-400-50 tanh MLPs, Bernoulli likelihood, standard normal prior",
               "default_max_memory": DEFAULT_MAX_MEMORY}
    results["throughput"] = throughput(vae, test_x[:args.points], args.num_samples, args.repeats)
    print(json.dumps(results["throughput"], indent=2), flush=True)
    if not args.skip_memory:
        results["memory"] = peak_memory(vae, test_x, args.num_samples)
    results["machine"]["load_average_after"] = os.getloadavg()
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
