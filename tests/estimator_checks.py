"""Checks the estimator tests share: t-statistics of a mean gradient against a reference, and
a training run interrupted by a checkpoint file that must continue exactly as if it had not been."""

import torch

from pyrovae.inference.estimators import estimator_state, load_estimator_state
from pyrovae.runs.checkpoint import load_checkpoint, save_checkpoint


def t_statistics(mean: torch.Tensor, var_of_mean: torch.Tensor, ref_mean: torch.Tensor,
                 ref_var_of_mean=0.0) -> torch.Tensor:
    """Per parameter, (mean - reference) over the standard error of the difference: the two
    variances of the means added (an exact reference has none); a zero error (a parameter both
    leave untouched) gives 0 or +-inf, not NaN."""
    return (mean - ref_mean) / (var_of_mean + ref_var_of_mean).sqrt().clamp_min(1e-300)


def assert_resumes_exactly(start, args, folder, steps: int = 3) -> dict:
    """``start()`` builds a fresh (module, optimizer, estimator, svi); run it ``2 * steps`` SVI
    steps on ``args`` straight, and again with a stop after ``steps``: the model, the optimizer
    state, the torch RNG and ``estimator_state`` written to a checkpoint file in ``folder`` and
    read back into a fresh start, other random draws in between. The parameters and the
    estimator's state must come out identical; returns that state."""
    module, _, loss, svi = start()
    for _ in range(2 * steps):
        svi.step(*args)
    straight = {k: v.clone() for k, v in module.state_dict().items()}
    straight_state = estimator_state(loss)

    module, optimizer, loss, svi = start()
    for _ in range(steps):
        svi.step(*args)
    save_checkpoint({"model": module.state_dict(), "optim": optimizer.get_state(), "rng": torch.get_rng_state(),
                     "estimator": estimator_state(loss)}, folder / "checkpoint.pt")
    torch.randn(1000)  # whatever happens in between must not matter
    saved = load_checkpoint(folder)
    module, optimizer, loss, svi = start()
    module.load_state_dict(saved["model"])
    optimizer.set_state(saved["optim"])
    load_estimator_state(loss, saved["estimator"])
    torch.set_rng_state(saved["rng"])
    for _ in range(steps):
        svi.step(*args)
    for key, value in module.state_dict().items():
        assert torch.equal(value, straight[key]), key
    assert repr(estimator_state(loss)) == repr(straight_state)
    return straight_state
