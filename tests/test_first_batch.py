"""The first-batch check: data a likelihood cannot score stop training before it starts,
with a message about the data, not the learning rate."""

import numpy as np
import pytest
from conftest import mnist_test_images

from pyrovae.errors import PyrovaeError
from pyrovae.spec import load_config
from pyrovae.training.train import train

# The Beta of examples/plugins, but claiming to fit all of [0, 1], as a first attempt might.
CLOSED_BETA = '''
import pyro.distributions as dist
from torch.nn import functional as F
import pyrovae

@pyrovae.register("likelihood", "closed_beta")
class ClosedBeta(pyrovae.Likelihood):
    """Beta that claims exact 0 and 1 too."""
    num_params = 2
    data_kind = "unit_interval"

    def distribution(self, a, b):
        return dist.Beta(0.01 + F.softplus(a), 0.01 + F.softplus(b))
'''


def _spec(tmp_path, images):
    np.save(tmp_path / "digits.npy", images)
    (tmp_path / "closed_beta.py").write_text(CLOSED_BETA)
    return load_config("quickstart", [
        "data.name=array", f"data.path={tmp_path / 'digits.npy'}", "model.likelihood.name=closed_beta",
        "model.latent_dim=2", "model.encoder.hidden=[16]", "model.decoder.hidden=[16]", "train.epochs=1",
        "train.progress=false", "train.device=cpu"], plugins=[str(tmp_path / "closed_beta.py")])


def test_exact_zeros_and_ones_under_a_beta_name_the_likelihood_and_the_values(tmp_path):
    images, _ = mnist_test_images(200)
    with pytest.raises(PyrovaeError) as err:
        train(_spec(tmp_path, images), tmp_path / "run")
    message = str(err.value)
    assert "likelihood 'closed_beta' gives a non-finite log p(x|z)" in message
    assert "first training batch" in message and "\n" not in message
    # MNIST's background is exactly 0 and its strokes often exactly 1 (k = 255)
    assert "at the values 0 (" in message and "keep the data inside (0, 1)" in message
    assert "lr" not in message
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_the_same_digits_squeezed_into_the_open_interval_train(tmp_path):
    images, _ = mnist_test_images(200)
    result = train(_spec(tmp_path, (images.astype(np.float32) + 0.5) / 256), tmp_path / "run")
    assert np.isfinite(result.best_valid_elbo)
