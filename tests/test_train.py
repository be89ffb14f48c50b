"""The SVI loop: exact resume, KL warm-up, early stopping, divergence handling and the
run folder it leaves."""

import csv
import math

import pyro
import pytest
import torch
from conftest import tiny_overrides
from pyro.infer import SVI

from pyrovae import load_config
from pyrovae.cli import main
from pyrovae.errors import PyrovaeError
from pyrovae.inference.elbo import split_elbo
from pyrovae.inference.optim import iwae_stage
from pyrovae.runs.checkpoint import exclusive_run, load_checkpoint, save_checkpoint
from pyrovae.runs.loading import load_run
from pyrovae.spec import config_text
from pyrovae.training.train import MIN_KL_WEIGHT, TrainingDiverged, kl_weight, train


def _metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_one_epoch_plus_resume_plus_one_epoch_equals_two_epochs(tmp_path, mnist_data):
    straight = load_config("quickstart", tiny_overrides(**{"train.epochs": 2}))
    train(straight, tmp_path / "straight", data=mnist_data)

    first = load_config("quickstart", tiny_overrides(**{"train.epochs": 1}))
    train(first, tmp_path / "resumed", data=mnist_data)
    pyro.set_rng_seed(999)  # whatever happens in between must not matter
    torch.randn(100)
    second = load_config(tmp_path / "resumed", ["train.epochs=2"])
    train(second, tmp_path / "resumed", resume=True, data=mnist_data)

    a = load_checkpoint(tmp_path / "straight")
    b = load_checkpoint(tmp_path / "resumed")
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert _metrics(tmp_path / "straight") == [
        {**row, "seconds": s["seconds"]} for row, s in zip(_metrics(tmp_path / "resumed"), _metrics(tmp_path / "straight"))]


def test_training_improves_the_validation_elbo_and_writes_the_run_folder(tmp_path, mnist_data):
    spec = load_config("quickstart", tiny_overrides(**{"train.epochs": 3, "data.train_size": 2000}))
    result = train(spec, tmp_path, data=mnist_data)
    rows = _metrics(tmp_path)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    valid = [float(r["valid_elbo"]) for r in rows]
    assert valid[-1] > valid[0] and result.best_valid_elbo == max(valid)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.yaml", "checkpoint.pt", "metrics.csv"}
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # loads without pickle
    assert state["epoch"] == 3 and state["step"] == 3 * 20
    _, vae = load_run(tmp_path)
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in state["best_model"].items())


def test_multi_sample_estimators_select_models_on_their_iwae_bound(tmp_path, mnist_data):
    spec = load_config("quickstart", tiny_overrides(**{"train.estimator.name": "iwae",
                                                        "train.estimator.num_particles": 20}))
    result = train(spec, tmp_path, data=mnist_data)
    logged = float(_metrics(tmp_path)[0]["valid_elbo"])
    pyro.set_rng_seed(0)
    elbo = split_elbo(result.vae, mnist_data.valid.x)
    assert logged == result.best_valid_elbo and logged > elbo + 1.0  # IWAE_20 well above the ELBO


def test_kl_warmup_rises_linearly_from_a_positive_weight_to_one():
    weights = [kl_weight(step, 10, 2.0) for step in range(30)]
    assert weights[0] == pytest.approx(1 / 20) and weights[0] > 0
    assert weights[9] == pytest.approx(0.5) and weights[19] == 1.0 and weights[29] == 1.0
    assert kl_weight(0, 10_000, 5.0) == MIN_KL_WEIGHT
    assert kl_weight(0, 10, 0.0) == 1.0


def test_warmup_is_recorded_per_epoch(tmp_path, mnist_data):
    spec = load_config("quickstart", tiny_overrides(**{"train.epochs": 2, "train.kl_warmup_epochs": 4}))
    train(spec, tmp_path, data=mnist_data)
    assert [float(r["kl_weight"]) for r in _metrics(tmp_path)] == [pytest.approx(0.25), pytest.approx(0.5)]


def test_early_stopping_stops_after_patience_epochs_without_improvement(tmp_path, mnist_data):
    # With a learning rate of zero only the Monte Carlo noise of the validation ELBO moves.
    spec = load_config("quickstart", tiny_overrides(**{"train.epochs": 30, "train.optimizer.lr": 0.0,
                                                        "train.early_stopping_patience": 2}))
    result = train(spec, tmp_path, data=mnist_data)
    valid = [float(r["valid_elbo"]) for r in _metrics(tmp_path)]
    best = valid.index(max(valid))
    assert result.stopped_early and result.epochs_done == len(valid) == best + 1 + 2 < 30


def test_early_stopping_waits_for_the_end_of_kl_warmup(tmp_path, mnist_data):
    spec = load_config("quickstart", tiny_overrides(**{"train.epochs": 30, "train.optimizer.lr": 0.0,
                                                        "train.early_stopping_patience": 2,
                                                        "train.kl_warmup_epochs": 6}))
    result = train(spec, tmp_path, data=mnist_data)
    valid = [float(r["valid_elbo"]) for r in _metrics(tmp_path)]
    assert result.stopped_early and len(valid) >= 6 + 2
    assert max(valid[-2:]) <= max(valid[:-2])


def test_iwae_stages_last_three_to_the_power_of_the_stage_index():
    stages = [iwae_stage(epoch) for epoch in range(3280)]
    assert [stages.count(i) for i in range(1, 9)] == [3 ** (i - 1) for i in range(1, 9)]
    assert stages == sorted(stages) and iwae_stage(3280) == 9


def test_an_lr_schedule_sets_each_epochs_rate_and_survives_resume(tmp_path, mnist_data):
    overrides = tiny_overrides(**{"train.epochs": 5, "train.lr_schedule.name": "iwae_stages",
                                  "train.optimizer.lr": 0.01})
    train(load_config("quickstart", overrides), tmp_path / "straight", data=mnist_data)
    rates = [float(r["lr"]) for r in _metrics(tmp_path / "straight")]
    assert rates == pytest.approx([0.01 * 10 ** (-(s - 1) / 7) for s in (1, 2, 2, 2, 3)], rel=1e-12)

    train(load_config("quickstart", overrides + ["train.epochs=2"]), tmp_path / "resumed", data=mnist_data)
    result = train(load_config(tmp_path / "resumed", ["train.epochs=5"]), tmp_path / "resumed",
                   resume=True, data=mnist_data)
    straight = load_checkpoint(tmp_path / "straight")["model"]
    assert all(torch.equal(straight[k], v) for k, v in load_checkpoint(tmp_path / "resumed")["model"].items())
    assert result.epochs_done == 5


def test_a_constant_schedule_leaves_clipped_adams_own_decay_alone(tmp_path, mnist_data, monkeypatch):
    spec = load_config("quickstart", tiny_overrides(**{"train.epochs": 2, "train.optimizer.name": "clipped_adam",
                                                        "train.optimizer.lrd": 0.99}))
    optimizers = []
    original = SVI.__init__

    def remember(self, model, guide, optim, loss, **kwargs):
        optimizers.append(optim)
        original(self, model, guide, optim, loss, **kwargs)

    monkeypatch.setattr(SVI, "__init__", remember)
    train(spec, tmp_path, data=mnist_data)
    steps = load_checkpoint(tmp_path)["step"]
    assert optimizers[0].optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.99 ** steps)


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, mnist_data, monkeypatch):
    spec = load_config("quickstart", tiny_overrides(**{"train.epochs": 1}))
    train(spec, tmp_path, data=mnist_data)
    good = load_checkpoint(tmp_path)
    step = SVI.step
    calls = []

    def step_that_diverges(self, *args):  # a real step, then NaN from the third on
        calls.append(step(self, *args))
        return calls[-1] if len(calls) < 3 else math.nan

    monkeypatch.setattr(SVI, "step", step_that_diverges)
    spec = load_config(tmp_path, ["train.epochs=3"])
    with pytest.raises(TrainingDiverged, match=r"the last good checkpoint \(epoch 1\) is kept") as err:
        train(spec, tmp_path, resume=True, data=mnist_data)
    assert "\n" not in str(err.value)
    kept = load_checkpoint(tmp_path)
    assert kept["epoch"] == 1
    assert all(torch.equal(kept["model"][k], v) for k, v in good["model"].items())


def test_a_run_folder_is_not_overwritten_and_finished_runs_say_how_to_continue(tmp_path, mnist_data):
    spec = load_config("quickstart", tiny_overrides())
    train(spec, tmp_path, data=mnist_data)
    with pytest.raises(PyrovaeError, match="already holds a run; continue it with --resume"):
        train(spec, tmp_path, data=mnist_data)
    with pytest.raises(PyrovaeError, match="--set train.epochs=N"):
        train(spec, tmp_path, resume=True, data=mnist_data)


def test_a_run_folder_takes_one_trainer_at_a_time(tmp_path, mnist_data):
    spec = load_config("quickstart", tiny_overrides())
    with exclusive_run(tmp_path):  # as another process training there would
        with pytest.raises(PyrovaeError, match="another process is training in"):
            train(spec, tmp_path, data=mnist_data)
    assert not (tmp_path / "checkpoint.pt").exists()
    train(spec, tmp_path, data=mnist_data)  # the lock goes with its holder
    with pytest.raises(PyrovaeError, match="no run folder .* to resume"):
        train(spec, tmp_path / "missing", resume=True, data=mnist_data)
    assert not (tmp_path / "missing").exists()


def test_resume_refuses_a_folder_pyrovae_did_not_make_and_leaves_its_config_alone(tmp_path, capsys):
    """A hand-written config.yaml in a folder of its own is the user's file, not a run: neither
    'train DIR --resume' nor 'report DIR' (which used to recommend the former) writes there."""
    folder = tmp_path / "mine"
    folder.mkdir()
    text = "# my experiment, written by hand\n" + config_text(load_config("quickstart", tiny_overrides()))
    (folder / "config.yaml").write_text(text)
    for command in (["train", str(folder), "--resume"], ["report", str(folder)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "holds a config.yaml but no run" in err, command
        assert f"'pyrovae train {folder / 'config.yaml'} --out NEW_FOLDER'" in err
        assert "--resume" not in err
        assert [p.name for p in folder.iterdir()] == ["config.yaml"]
        assert (folder / "config.yaml").read_text() == text


def test_corrupt_and_foreign_checkpoints_are_refused_clearly(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(PyrovaeError, match="is unreadable"):
        load_checkpoint(tmp_path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    with pytest.raises(PyrovaeError, match="is not a pyrovae checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(PyrovaeError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "elsewhere")


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    save_checkpoint({"model": {"w": torch.ones(3)}}, tmp_path / "checkpoint.pt")

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint({"model": {"w": torch.zeros(3)}}, tmp_path / "checkpoint.pt")
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(tmp_path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_mismatched_config_cannot_resume_a_checkpoint(tmp_path, mnist_data):
    spec = load_config("quickstart", tiny_overrides())
    train(spec, tmp_path, data=mnist_data)
    spec = load_config(tmp_path, ["model.latent_dim=7", "train.epochs=2"])
    with pytest.raises(PyrovaeError, match="does not match the config"):
        train(spec, tmp_path, resume=True, data=mnist_data)


@pytest.mark.slow
def test_quickstart_with_50_latents_reaches_minus_125_nats_in_two_epochs(tmp_path, mnist_data):
    spec = load_config("quickstart", ["model.latent_dim=50", "train.epochs=2", "train.progress=false"])
    result = train(spec, tmp_path, data=mnist_data)
    assert result.best_valid_elbo >= -125


@pytest.mark.slow
def test_frey_aevb_trains_50_epochs_without_nan(tmp_path):
    spec = load_config("frey_aevb", ["train.progress=false"])
    result = train(spec, tmp_path)
    valid = [float(r["valid_elbo"]) for r in _metrics(tmp_path)]
    assert len(valid) == 50 and all(math.isfinite(v) for v in valid)
    assert result.best_valid_elbo > valid[0] + 100  # nats per face
