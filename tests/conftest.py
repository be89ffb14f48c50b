"""Shared fixtures: the real datasets in ../shared/data (or $PYROVAE_DATA) and small specs."""

import os
from pathlib import Path

import pyro
import pytest
import torch

from pyrovae import VAE, load_config
from pyrovae.components.datasets import load_data
from pyrovae.plugins import forget_plugins

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("PYROVAE_DATA", str(SHARED_DATA))


@pytest.fixture(autouse=True)
def fresh_pyro_state():
    """Each test starts with an empty parameter store and a fixed seed, and leaves no plugin
    registered behind it."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()
    forget_plugins()


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny models: one thread is fastest, and immune to a busy second core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mnist_data():
    """Static binarized MNIST, loaded once per test session."""
    return load_data(load_config("quickstart").data)


def tiny_overrides(**extra):
    """Overrides for a fast run: 500 training points, small networks, quiet."""
    base = {"data.train_size": 500, "model.latent_dim": 4, "model.encoder.hidden": "[32]",
            "model.decoder.hidden": "[32]", "train.epochs": 1, "train.progress": "false",
            "train.device": "cpu"}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


EXAMPLE_PLUGINS = Path(__file__).resolve().parents[1] / "examples" / "plugins"


def mnist_test_images(n: int):
    """The first ``n`` grey MNIST test digits (uint8, (n, 28, 28)) and their labels."""
    from pyrovae.components.datasets import read_idx

    folder = Path(os.environ["PYROVAE_DATA"]) / "mnist_test"
    return (read_idx(folder / "t10k-images-idx3-ubyte.gz")[:n].copy(),
            read_idx(folder / "t10k-labels-idx1-ubyte.gz")[:n].astype("int64"))


def linear_gaussian_vae(seed: int = 0) -> VAE:
    """The built-in linear_gaussian config's VAE (probabilistic PCA), freshly seeded."""
    pyro.set_rng_seed(seed)
    return VAE.from_config(load_config("linear_gaussian"), (5,), 0)
