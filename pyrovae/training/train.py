"""The SVI loop: optimizer, KL warm-up, early stopping, checkpoints, resume, progress, metrics.

One epoch is a pass over a fresh permutation of the training set in minibatches sliced
straight from the in-memory tensor (no per-item data loading). After every epoch the
train and validation ELBO are appended to ``metrics.csv`` and an atomic checkpoint
holds everything needed to continue exactly: parameters, optimizer state, the torch RNG
state, the epoch, the early-stopping record and the metrics history.

The run folder stays consistent (see :mod:`pyrovae.runs.folder`): the checkpoint, the
metrics and, on a resume, the config are replaced together after each epoch, each file
atomically (:mod:`pyrovae.runs.files`); a resumed run's config is written only once the
checkpoint has been checked against it and an epoch has finished with it.
"""

import math
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import pyro
import torch
from tqdm.auto import tqdm

from ..components.datasets import Dataset, load_data
from ..components.likelihoods import warn_if_binary_data_fits_better
from ..errors import PyrovaeError
from ..inference.elbo import split_elbo
from ..inference.estimators import bound_particles, build_estimator, estimator_state, load_estimator_state
from ..inference.optim import LR_SCHEDULES, OPTIMIZERS
from ..inference.svi import TrainingSVI
from ..runs.checkpoint import CHECKPOINT, checkpoint_bytes, exclusive_run, load_checkpoint
from ..runs.failed_start import nothing_left_on_failure
from ..runs.files import WriteFailed, check_writable, make_folder, remove_stale_temp_files, staged_writes
from ..runs.folder import (
    METRICS,
    TRAINING_FILES,
    check_new_run_folder,
    check_resumable,
    metrics_history,
    metrics_text,
    stage_run_files,
)
from ..runs.inputs import check_inputs_unchanged
from ..runs.loading import TrainResult, build_vae, resolve_device
from ..runs.random_state import random_state, restore_random_state
from ..sample_quality.score import epoch_quality
from ..spec import ExperimentSpec
from .first_batch import check_first_batch
from .progress import progress_bar
from .tensorboard_log import open_log

MIN_KL_WEIGHT = 1e-3  # Pyro refuses a scale of exactly zero


def kl_weight(step: int, steps_per_epoch: int, warmup_epochs: float) -> float:
    """Linear KL warm-up: a positive weight rising to 1 over ``warmup_epochs`` epochs."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, max(MIN_KL_WEIGHT, (step + 1) / (warmup_epochs * steps_per_epoch)))


class TrainingDiverged(PyrovaeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def train(spec: ExperimentSpec, out_dir, resume: bool = False, data: Optional[Dataset] = None) -> TrainResult:
    """Fit the VAE ``spec`` describes with SVI, writing the run folder ``out_dir`` (config,
    checkpoint, metrics); its figures and report are the training report's to draw
    (:mod:`pyrovae.reports.training`, which ``pyrovae train`` calls next).

    ``data`` may hold the dataset already loaded (it must be the one ``spec.data`` names).

    With ``resume`` the run continues from ``out_dir/checkpoint.pt`` exactly as if it had
    not been interrupted (same minibatches, same random draws, same optimizer state); a run
    folder stopped before its first checkpoint starts again from the beginning.
    """
    out_dir = Path(out_dir)
    if resume:
        check_resumable(out_dir)
        check_inputs_unchanged(out_dir, spec)  # a changed plugin or data file is refused, not re-recorded
    else:
        check_new_run_folder(out_dir)
    existed = out_dir.exists()
    make_folder(out_dir)
    check_writable(out_dir)
    with exclusive_run(out_dir), nothing_left_on_failure(out_dir, existed), warnings.catch_warnings():
        # a non-finite loss stops training with its own one-line message; Pyro's warning would repeat it
        warnings.filterwarnings("ignore", message="Encountered (NaN|[+-]inf)", category=UserWarning)
        remove_stale_temp_files(out_dir, TRAINING_FILES)
        return _train(spec, out_dir, resume, data)


def _train(spec: ExperimentSpec, out_dir: Path, resume: bool, data: Optional[Dataset]) -> TrainResult:
    ckpt_path = out_dir / CHECKPOINT
    if not resume and ckpt_path.exists():  # another process may have trained here meanwhile
        check_new_run_folder(out_dir)
    state = load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None

    device = resolve_device(spec.train.device)
    data = load_data(spec.data) if data is None else data.limited(spec.data.train_size)
    vae = build_vae(spec, data)
    for split in ("train", "valid"):
        x = data.split(split).x
        vae.check_data(data.training_batch(x) if split == "train" else x, f"the {split} split")
    warn_if_binary_data_fits_better(spec.model.likelihood.name, vae.likelihood, data.train.x)
    check_first_batch(vae, data, spec.train.batch_size)
    optimizer = OPTIMIZERS.build(spec.train.optimizer.name, options=spec.train.optimizer.options,
                                 where="train.optimizer")
    lr_factor = LR_SCHEDULES.build(spec.train.lr_schedule.name, {"train_epochs": spec.train.epochs},
                                   options=spec.train.lr_schedule.options, where="train.lr_schedule")
    loss = build_estimator(spec.train.estimator)
    # Models are selected on the bound they are trained on: IWAE_K for the multi-sample
    # estimators (an IWAE-trained model's ELBO can fall while its IWAE bound rises).
    validation_loss = loss if bound_particles(loss) > 1 else None
    pyro.clear_param_store()  # SVI must see this VAE's parameters, not a stale module's
    svi = TrainingSVI(vae, optimizer, loss, compile=spec.train.compile or spec.train.jit)

    record = {"epoch": 0, "step": 0, "best_valid_elbo": -math.inf, "epochs_since_best": 0, "seconds": 0.0}
    best_state = None
    if state is not None:
        try:
            vae.load_state_dict(state["model"])
        except RuntimeError:
            raise PyrovaeError(f"checkpoint {ckpt_path} does not match the config in {out_dir}; "
                               f"resume with the config the run was started with") from None
        optimizer.set_state(state["optim"])
        load_estimator_state(loss, state.get("estimator", {}))
        restore_random_state(state, device)
        record.update({k: state[k] for k in record})
        best_state = state.get("best_model")
    if record["epoch"] >= spec.train.epochs:
        raise PyrovaeError(f"{out_dir} has already trained {record['epoch']} of {spec.train.epochs} epochs; "
                           f"train longer with --set train.epochs=N (N > {record['epoch']})")
    history = metrics_history(out_dir, state)
    with _kept_on_failure(ckpt_path, record["epoch"]), staged_writes() as files:
        if state is None:  # a new start: the config, and no metrics rows left from an earlier try
            stage_run_files(files, spec, out_dir)
        files.write(out_dir / METRICS, metrics_text(history))
    config_pending = state is not None  # a resumed run's config is kept once an epoch ran with it

    train_x = data.train.x.to(device)
    train_y = None if data.train.y is None or not vae.num_classes else data.train.y.to(device)
    valid_x = data.valid.x.to(device)
    valid_y = None if data.valid.y is None or not vae.num_classes else data.valid.y.to(device)
    n, batch = train_x.shape[0], spec.train.batch_size
    steps_per_epoch = math.ceil(n / batch)
    stopped_early = False
    lr_factor_in_use = 1.0  # the optimizer was built with the config's lr
    log = open_log(spec.train.log, out_dir, spec.seed)
    quality = epoch_quality(spec, data)  # None unless train.quality.every is set

    try:  # the TensorBoard log is closed however training ends
        for epoch in range(record["epoch"], spec.train.epochs):
            started = time.perf_counter()
            factor = lr_factor(epoch)
            lr = spec.train.optimizer.options["lr"] * factor
            if factor != lr_factor_in_use:  # only on a change, so clipped_adam's own decay is left alone
                optimizer.set_lr(lr)
                lr_factor_in_use = factor
            order = torch.randperm(n, generator=torch.Generator().manual_seed(spec.seed * 1_000_003 + epoch))
            order = order.to(device)
            bar = progress_bar(range(steps_per_epoch), spec.train.progress, desc=f"epoch {epoch + 1}/{spec.train.epochs}",
                               leave=False)
            epoch_loss, seen, weight = 0.0, 0, 1.0
            for i in bar:
                idx = order[i * batch:(i + 1) * batch]
                xb = data.training_batch(train_x[idx])
                yb = None if train_y is None else train_y[idx]
                weight = kl_weight(record["step"], steps_per_epoch, spec.train.kl_warmup_epochs)
                step_loss = svi.step(xb, yb, weight)
                if not math.isfinite(step_loss):
                    bar.close()
                    raise TrainingDiverged(
                        f"the loss became {step_loss} at epoch {epoch + 1}, step {i + 1}; "
                        f"{_what_is_kept(ckpt_path, record['epoch'])}; lower "
                        f"train.optimizer.lr or use a likelihood with a variance floor")
                record["step"] += 1
                epoch_loss += step_loss
                seen += idx.shape[0]
                if i % 20 == 0:
                    bar.set_postfix(elbo=f"{-epoch_loss / seen:.2f}")
            record["seconds"] += time.perf_counter() - started
            train_elbo = -epoch_loss / seen
            valid_elbo = split_elbo(vae, valid_x, valid_y, loss=validation_loss)
            if not math.isfinite(valid_elbo):
                raise TrainingDiverged(f"the validation ELBO became {valid_elbo} after epoch {epoch + 1}; "
                                       f"{_what_is_kept(ckpt_path, record['epoch'])}")
            record["epoch"] = epoch + 1
            if valid_elbo > record["best_valid_elbo"]:
                record["best_valid_elbo"], record["epochs_since_best"] = valid_elbo, 0
                best_state = {k: v.detach().clone() for k, v in vae.state_dict().items()}
            elif record["epoch"] > spec.train.kl_warmup_epochs:  # patience counts once warm-up is over
                record["epochs_since_best"] += 1
            history.append({"epoch": epoch + 1, "step": record["step"], "kl_weight": weight, "lr": lr,
                            "train_elbo": train_elbo, "valid_elbo": valid_elbo, "seconds": record["seconds"]})
            if quality is not None and quality.due(epoch + 1, spec.train.epochs):
                history[-1].update(quality.measure(vae, epoch + 1))
            with _kept_on_failure(ckpt_path, epoch), staged_writes() as files:
                if config_pending:
                    stage_run_files(files, spec, out_dir)
                files.write(ckpt_path, checkpoint_bytes({
                    **record, "model": vae.state_dict(), "best_model": best_state, "optim": optimizer.get_state(),
                    **random_state(device), "estimator": estimator_state(loss), "metrics": history}))
                files.write(out_dir / METRICS, metrics_text(history))
            config_pending = False
            if log is not None:
                log.epoch(epoch + 1, record["step"], history[-1], vae, data)
            if spec.train.progress:
                tqdm.write(f"epoch {epoch + 1}: train ELBO {train_elbo:.2f}, valid ELBO {valid_elbo:.2f} nats")
            patience = spec.train.early_stopping_patience
            if patience is not None and record["epochs_since_best"] >= patience:
                stopped_early = True
                break
    finally:
        if log is not None:
            log.close()
    if best_state is not None:
        vae.load_state_dict(best_state)
    return TrainResult(vae, data, out_dir, record["epoch"], record["best_valid_elbo"], stopped_early)


def _what_is_kept(ckpt_path: Path, epochs_done: int) -> str:
    """What an interrupted run leaves: its last checkpoint, or (before the first) nothing."""
    if epochs_done == 0:
        return "no epoch had finished, so no checkpoint was written"
    return f"the last good checkpoint (epoch {epochs_done}) is kept in {ckpt_path}"


@contextmanager
def _kept_on_failure(ckpt_path: Path, epochs_done: int) -> Iterator[None]:
    """Add to a failed write what the run folder still holds and how to go on."""
    try:
        yield
    except WriteFailed as exc:
        then = "; continue with --resume once it can be written" if epochs_done else ""
        raise WriteFailed(f"{exc}; {_what_is_kept(ckpt_path, epochs_done)}{then}") from None
