"""Feature networks for the Fréchet distance and precision/recall.

Inception weights cannot be downloaded offline, so the default feature network is one pyrovae
trains itself: a small convolutional classifier (two stride-2 convolutions, a 128-unit layer
whose activations are the features, a linear read-out), trained once per dataset on labelled
images and cached. Which labelled images (the *protocol*, stated in every result):

- a dataset with labels (Fashion-MNIST, a labelled image folder): its own training split;
  accuracy on its test split;
- binarized MNIST (no labels; the MNIST training images are not available offline): the
  labelled MNIST test split (``mnist_test/`` in the data root), the classifier trained on its
  first 5000 images and its accuracy measured on the other 5000;
- any other dataset without labels (Frey Face, CelebA, a folder of faces): the Fashion-MNIST
  classifier, used as a transfer feature network as Inception is on faces. Images go to it in
  grey and resized to 28 x 28.

The cache is ``$PYROVAE_CACHE`` (default ``~/.cache/pyrovae``) ``/feature_networks/``, one file per
network named by the dataset and a digest of :data:`CLASSIFIER_VERSION` (raised whenever the
classifier or its training changes) and of the training images and labels, so a change of
either trains a new one; it is written atomically.

With an Inception v3 weights file (a torchvision ``inception_v3`` state dict) the features are
its 2048 pooled activations on images resized to 299 x 299: the standard FID network.
Nothing is downloaded for it; a missing file is a one-line error.
"""

import dataclasses
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..components.datasets import DATASETS, Dataset, data_root, find_file, load_data, read_idx
from ..errors import PyrovaeError
from ..runs.files import make_folder, write_atomic
from ..runs.random_state import private_random

CLASSIFIER_VERSION = 1  # raise on any change to Classifier or train_classifier
CLASSIFIER_SHAPE = (1, 28, 28)
FEATURE_DIM = 128
EPOCHS = 4
BATCH = 128
MNIST_HALF = 5000
TRANSFER_DATASET = "fashion_mnist"
LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights: RGB to grey
INCEPTION_SIZE = 299


class Classifier(nn.Module):
    """The feature classifier: (N, 1, 28, 28) images to 128 features to class scores."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class FeatureNetwork:
    """A network mapping images to feature vectors, and what is known of it."""

    network: nn.Module
    description: str  # the protocol, stated wherever a score is
    accuracy: Optional[float]  # the classifier's held-out accuracy (None for Inception)
    input_size: Tuple[int, int]
    inception: bool = False

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
        """Features ``(N, D)`` of images ``(N, C, H, W)`` with values in [0, 1] (float32, CPU)."""
        self.network.eval()
        out = [self.network(self._prepare(images[i:i + batch].detach().float().cpu()))
               for i in range(0, images.shape[0], batch)]
        return torch.cat(out)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if not self.inception:
            return classifier_input(x)
        x = x.clamp(0, 1)
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return resized(x, self.input_size) * 2 - 1  # Inception takes values in [-1, 1]


def resized(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Images ``(N, C, H, W)`` resized to ``size`` (bilinear, antialiased when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def classifier_input(x: torch.Tensor) -> torch.Tensor:
    """Images ``(N, 1 or 3, H, W)`` in [0, 1] as the classifier takes them: grey, 28 x 28."""
    x = x.clamp(0, 1)
    if x.shape[1] == 3:
        x = torch.einsum("nchw,c->nhw", x, x.new_tensor(LUMINANCE)).unsqueeze(1)
    return resized(x, CLASSIFIER_SHAPE[1:])


def check_images(data_shape) -> None:
    """Refuse data that are not grey or colour images."""
    if len(data_shape) != 3 or data_shape[0] not in (1, 3):
        raise PyrovaeError(f"sample quality needs grey or colour images shaped (1 or 3, height, width), but the "
                           f"data have shape {tuple(data_shape)}")


def whole_data(spec_data, dataset: Dataset) -> Dataset:
    """``dataset`` with its whole training split: ``data.train_size`` limits what a model is
    trained on, not the data its samples are compared with or the classifier learns from."""
    if spec_data.train_size is None:
        return dataset
    return load_data(dataclasses.replace(spec_data, train_size=None))


# ----------------------------------------------------------------------------- the classifier

def cache_root() -> Path:
    return Path(os.environ.get("PYROVAE_CACHE") or Path.home() / ".cache" / "pyrovae").expanduser()


def classifier_network(spec_data, dataset: Dataset, progress: bool = False) -> FeatureNetwork:
    """The cached classifier for the dataset ``spec_data`` names (trained first if need be)."""
    check_images(dataset.data_shape)
    name, (train, test), protocol = labelled_images(spec_data, dataset)
    digest = hashlib.sha256(f"classifier {CLASSIFIER_VERSION}".encode())
    for t in (*train, *test):
        digest.update(np.ascontiguousarray(t.numpy()).tobytes())
    path = cache_root() / "feature_networks" / f"{name}-{digest.hexdigest()[:16]}.pt"
    stored = _read_cached(path)
    if stored is None:
        stored = train_classifier(train, test, progress)
        buffer = io.BytesIO()
        torch.save(stored, buffer)
        make_folder(path.parent)
        write_atomic(path, buffer.getvalue())
    classifier = Classifier(stored["num_classes"])
    classifier.load_state_dict(stored["state"])
    # the protocol is this dataset's (the Fashion-MNIST classifier serves datasets without labels too)
    return FeatureNetwork(classifier.body, protocol, stored["accuracy"], CLASSIFIER_SHAPE[1:])


def _read_cached(path: Path) -> Optional[dict]:
    """The stored classifier, or None when absent or unreadable (then it is trained again)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged cache file is replaced, whatever torch raises for it
        return None


def labelled_images(spec_data, dataset: Dataset):
    """``(cache name, ((train x, train y), (test x, test y)), protocol)`` of the classifier for
    ``dataset``: see the module's docstring for the three cases."""
    if dataset.num_classes and dataset.train.y is not None and dataset.test.y is not None:
        protocol = (f"classifier trained on the {len(dataset.train)} labelled training images of {spec_data.name}, "
                    f"accuracy on its {len(dataset.test)} test images")
        return spec_data.name, ((dataset.train.x, dataset.train.y), (dataset.test.x, dataset.test.y)), protocol
    if spec_data.name == "binarized_mnist":
        x, y = mnist_test_split(spec_data.root)
        protocol = (f"classifier trained on the first {MNIST_HALF} labelled MNIST test images (grey; the training "
                    f"images are not available offline), accuracy on the other {len(x) - MNIST_HALF}")
        return "mnist_test", ((x[:MNIST_HALF], y[:MNIST_HALF]), (x[MNIST_HALF:], y[MNIST_HALF:])), protocol
    source = DATASETS.build(TRANSFER_DATASET, options={}, where="data")
    try:
        train, _, test = source.load(data_root(spec_data.root), False)
    except PyrovaeError as exc:
        raise PyrovaeError(f"{spec_data.name} has no labels, so its sample quality uses the Fashion-MNIST "
                           f"classifier, but {exc}; or give an Inception weights file") from None
    protocol = (f"{spec_data.name} has no labels: Fashion-MNIST classifier (trained on its {len(train)} training "
                f"images, accuracy on its {len(test)} test images) as a transfer feature network, images in "
                f"grey at 28 x 28")
    return TRANSFER_DATASET, ((train.x, train.y), (test.x, test.y)), protocol


def mnist_test_split(root: Optional[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The labelled MNIST test split (10000 grey digits in [0, 1], labels) from the data root."""
    base = data_root(root)
    folders = [base / "mnist_test", base / "mnist", base / "MNIST" / "raw"]
    found = [find_file(folders, [f"t10k-{part}-idx{d}-ubyte", f"t10k-{part}-idx{d}-ubyte.gz"])
             for part, d in (("images", 3), ("labels", 1))]
    if None in found:
        where = ", ".join(str(f) for f in folders)
        raise PyrovaeError(f"the sample quality of binarized_mnist uses a classifier trained on the labelled MNIST "
                           f"test split, which was not found (looked in {where} for t10k-images-idx3-ubyte[.gz] and "
                           f"t10k-labels-idx1-ubyte[.gz]); put the two files there")
    x = torch.from_numpy(read_idx(found[0]).copy()).float().div_(255).unsqueeze(1)
    return x, torch.from_numpy(read_idx(found[1]).astype(np.int64))


def train_classifier(train, test, progress: bool = False) -> dict:
    """Train the feature classifier (Adam, seed 0) on ``train = (x, y)`` and measure its
    accuracy on ``test``; images are brought to grey 28 x 28 as features() brings them."""
    (x, y), (tx, ty) = train, test
    num_classes = int(max(int(y.max()), int(ty.max()))) + 1
    x, tx = classifier_input(x.float()), classifier_input(tx.float())
    with private_random(0, torch.device("cpu")):
        model = Classifier(num_classes)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(EPOCHS):
            order = torch.randperm(x.shape[0])
            for i in range(0, x.shape[0], BATCH):
                idx = order[i:i + BATCH]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if progress:
                print(f"feature classifier: epoch {epoch + 1}/{EPOCHS}, last minibatch loss {loss.item():.3f}")
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(tx[i:i + 1000]).argmax(1) == ty[i:i + 1000]).sum()) for i in range(0, len(tx), 1000))
    return {"state": model.state_dict(), "num_classes": num_classes, "accuracy": correct / len(tx)}


# ----------------------------------------------------------------------------- Inception

def inception_network(weights: str) -> FeatureNetwork:
    """Inception v3 with the user's weights file (a torchvision ``inception_v3`` state dict):
    its 2048 pooled features, the standard FID network. Nothing is downloaded."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise PyrovaeError(f"Inception weights file {path} not found; give the path of a torchvision inception_v3 "
                           f"state dict (pyrovae downloads no weights), or leave it out for the offline classifier")
    from torchvision.models import inception_v3

    network = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=False)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
        network.load_state_dict(state)
    except Exception as exc:  # not a state dict, another network's, a damaged file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PyrovaeError(f"{path} is not a torchvision inception_v3 state dict ({first[:200]}); "
                           f"give the weights file of that network") from None
    network.fc = nn.Identity()
    return FeatureNetwork(network, f"Inception v3 pool features from {path.name} (standard FID)", None,
                          (INCEPTION_SIZE, INCEPTION_SIZE), inception=True)


def feature_network(spec_data, dataset: Dataset, inception: Optional[str] = None,
                    progress: bool = False) -> FeatureNetwork:
    """The Inception network when a weights file is given, else the dataset's classifier (for
    the whole dataset, see :func:`whole_data`). Built inside a private random stream: building a
    network draws initial weights, which must not move the random state of a training run that
    scores its samples."""
    check_images(dataset.data_shape)
    with private_random(0, torch.device("cpu")):
        if inception:
            return inception_network(inception)
        return classifier_network(spec_data, whole_data(spec_data, dataset), progress)

