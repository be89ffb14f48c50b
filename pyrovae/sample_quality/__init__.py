"""Sample quality: how close a model's generated images are to the data, beside log p(x).

Log-likelihood and sample quality often disagree (Theis et al. 2016), so a run can be scored
both ways. The score is the Fréchet distance between Gaussians fitted to features of
generated and real images (Heusel et al. 2017), with precision and recall of the two
distributions in the same feature space (Kynkäänniemi et al. 2019):

- :mod:`.frechet`: the distance between two Gaussians, computed stably, and the moments of
  a feature set;
- :mod:`.precision_recall`: k-nearest-neighbour manifolds in feature space;
- :mod:`.features`: the feature networks: a small classifier pyrovae trains per dataset
  (offline, cached) or a user-supplied Inception v3 weights file (the standard FID network);
- :mod:`.score`: scoring a VAE's samples against a dataset, with the floor that the
  test split itself reaches at the same sample size.
"""

from .frechet import frechet_distance, gaussian_moments
from .precision_recall import precision_recall
from .score import QualityScorer

__all__ = ["frechet_distance", "gaussian_moments", "precision_recall", "QualityScorer"]
