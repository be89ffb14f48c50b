"""Scoring a VAE's samples: the Fréchet distance and precision/recall against a dataset.

The reference is the whole training split (with ``data.train_size`` too: the data
distribution is that of all of it). A Fréchet distance
estimated from n samples is biased upwards (the sample covariance's noise adds to it), so a
score means little without the *floor*: the score of n images of the test split, real data
the model never saw, against the same reference. A model cannot be told apart from the data
by this score when it reaches the floor.

The images scored are the means of p(x|z) for z drawn from the prior (the pictures the report
shows as samples); a conditional VAE is given the labels 0, 1, ..., K-1 in turn.
"""

from typing import Optional

import torch

from ..components.datasets import Dataset
from ..errors import positive_int
from ..runs.random_state import private_random
from .features import FeatureNetwork, feature_network, whole_data
from .frechet import frechet_distance, gaussian_moments
from .precision_recall import precision_recall

CHUNK = 1000  # samples decoded at a time
COLUMNS = ("frechet", "precision", "recall")  # what a score holds, as metrics.csv names it


class QualityScorer:
    """Scores of images against ``dataset``'s training split in ``network``'s feature space."""

    def __init__(self, network: FeatureNetwork, dataset: Dataset, seed: int = 0):
        self.network, self.dataset = network, dataset
        with private_random(seed, torch.device("cpu")):  # a dynamically binarized split is drawn once
            reference = dataset.training_batch(dataset.train.x)
        self.reference = network.features(reference)
        self.moments = gaussian_moments(self.reference)

    def score_features(self, features: torch.Tensor, seed: int) -> dict:
        """Fréchet distance, precision and recall of ``features`` (k-NN manifolds against as
        many reference points, drawn with ``seed``)."""
        fd = frechet_distance(*gaussian_moments(features), *self.moments)
        n = min(features.shape[0], self.reference.shape[0])
        pick = torch.randperm(self.reference.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
        precision, recall = precision_recall(self.reference[pick], features[:n])
        return {"frechet": fd, "precision": precision, "recall": recall}

    def score_images(self, images: torch.Tensor, seed: int = 0) -> dict:
        return self.score_features(self.network.features(images), seed)

    def score_vae(self, vae, num_samples: int, seed: int = 0) -> dict:
        """The scores of ``num_samples`` samples of ``vae`` drawn from a stream started at ``seed``."""
        return self.score_images(sample_images(vae, num_samples, seed), seed)

    def floor(self, num_samples: int, seed: int = 0) -> dict:
        """The scores of ``num_samples`` test images (all if fewer), drawn with ``seed``: what
        real unseen data reach at this sample size."""
        test = self.dataset.test.x
        pick = torch.randperm(test.shape[0], generator=torch.Generator().manual_seed(seed))[:num_samples]
        return {**self.score_images(test[pick], seed), "samples": int(pick.numel())}


@torch.no_grad()
def sample_images(vae, num_samples: int, seed: int) -> torch.Tensor:
    """``num_samples`` means of p(x|z), z from the prior, from a private stream at ``seed`` (CPU)."""
    positive_int(num_samples, "the number of samples")
    device = next(vae.parameters()).device
    was_training = vae.training
    vae.eval()
    images = []
    with private_random(seed, device):
        for start in range(0, num_samples, CHUNK):
            n = min(CHUNK, num_samples - start)
            y = (torch.arange(start, start + n, device=device) % vae.num_classes) if vae.num_classes else None
            images.append(vae.sample(n, y).cpu())
    vae.train(was_training)
    return torch.cat(images)


class EpochQuality:
    """The per-epoch score of training (``train.quality``): every ``every`` epochs and at the
    last one, ``samples`` samples scored with a stream of the run's seed and the epoch, so
    switching it on changes no parameter or other metric. Each row also carries the floor
    (``frechet_floor``: the test split's Fréchet distance at the same size), for the curves."""

    def __init__(self, quality_spec, data_spec, dataset: Dataset, seed: int):
        self.every, self.samples, self.seed = quality_spec.every, quality_spec.samples, seed
        dataset = whole_data(data_spec, dataset)
        network = feature_network(data_spec, dataset, quality_spec.inception)
        self.scorer = QualityScorer(network, dataset, seed)
        self.frechet_floor = None

    def due(self, epoch: int, last_epoch: int) -> bool:
        return epoch % self.every == 0 or epoch == last_epoch

    def measure(self, vae, epoch: int) -> dict:
        if self.frechet_floor is None:
            self.frechet_floor = self.scorer.floor(self.samples, self.seed)["frechet"]
        scores = self.scorer.score_vae(vae, self.samples, self.seed * 1_000_003 + epoch)
        return {**scores, "frechet_floor": self.frechet_floor}


def epoch_quality(spec, dataset: Dataset) -> Optional[EpochQuality]:
    """The per-epoch scorer ``spec.train.quality`` asks for, or None when it is off."""
    if not spec.train.quality.every:
        return None
    return EpochQuality(spec.train.quality, spec.data, dataset, spec.seed)
