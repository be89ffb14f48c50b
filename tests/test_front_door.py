"""The smaller front-door items: pyrovae config, full descriptions in pyrovae list, the progress
display, one device default, the conditional-encoder check and the cosine and step schedules."""

import math
import sys
import types

import pytest
import torch
import yaml

import pyrovae
from pyrovae.cli import build_parser, main
from pyrovae.errors import PyrovaeError
from pyrovae.inference.optim import LR_SCHEDULES
from pyrovae.registry import FAMILIES, family_registry, first_paragraph
from pyrovae.spec import TrainSpec, load_config
from pyrovae.training import progress
from tests.conftest import tiny_overrides


def test_config_prints_every_option_and_the_defaults_it_differs_from(tmp_path, capsys):
    assert main(["config", "quickstart", "--set", "train.optimizer.lr=5e-4", "--set", "model.latent_dim=2"]) == 0
    text = capsys.readouterr().out
    assert "    lr: 0.0005  # default 0.001\n" in text and "  latent_dim: 2  # default 20\n" in text
    assert "    betas: [0.9, 0.999]\n" in text and "  device: auto\n" in text  # defaults shown, uncommented
    (tmp_path / "printed.yaml").write_text(text)
    assert load_config(tmp_path / "printed.yaml").to_dict() == load_config(
        "quickstart", ["train.optimizer.lr=5e-4", "model.latent_dim=2"]).to_dict()  # a complete config
    assert main(["config", "quickstart", "--set", "model.latnt_dim=2"]) == 2
    assert "did you mean 'model.latent_dim'" in capsys.readouterr().err


def test_list_shows_whole_first_paragraphs():
    family_registry("prior")
    import pyrovae.sweeps.engines  # noqa: F401  (registers the engines)

    for registry in FAMILIES.values():
        for entry in registry:
            if entry.origin == "built-in":
                import inspect

                assert entry.description == first_paragraph(inspect.getdoc(entry.factory)), entry.name
    mlp = FAMILIES["network"].get("mlp").description
    assert mlp.endswith("(any hidden sizes, optionally gated units).")  # the docstring's second line


def test_progress_bars_in_a_terminal_or_a_notebook_and_nothing_when_off(monkeypatch):
    assert not progress.in_notebook()
    assert progress.progress_bar(range(2), shown=True).disable  # pytest's stderr is no terminal
    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert progress.in_notebook()
    assert not progress.progress_bar(range(2), shown=True).disable
    assert progress.progress_bar(range(2), shown=False).disable
    shell.config = {}  # a terminal IPython is no notebook
    assert not progress.in_notebook()


def test_progress_false_prints_nothing_and_true_one_line_per_epoch(tmp_path, capsys, one_thread):
    small = tiny_overrides(**{"data.train_size": 200, "train.epochs": 2})
    pyrovae.train("quickstart", out=tmp_path / "quiet", overrides=small)  # train.progress=false
    assert capsys.readouterr().out == ""
    pyrovae.train("quickstart", out=tmp_path / "loud", overrides=[*small, "train.progress=true"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2"]


def test_every_command_defaults_to_the_device_training_defaults_to():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    with_device = [name for name, sub in commands.items()
                   if any("--device" in action.option_strings for action in sub._actions)]
    assert {"evaluate", "posterior", "sample", "reconstruct", "encode", "interpolate"} <= set(with_device)
    for name in with_device:
        device = next(a for a in commands[name]._actions if "--device" in a.option_strings)
        assert device.default == TrainSpec().device == "auto", name


IGNORES_LABEL = '''import torch
from torch import nn
import pyrovae


class Ignores(nn.Module):
    def __init__(self, in_shape, out_shape):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.linear = nn.Linear(int(torch.tensor(in_shape).prod()), int(torch.tensor(out_shape).prod()))

    def forward(self, x, cond=None):
        lead = x.shape[:x.dim() - 3] if x.dim() >= 4 else x.shape[:-1]
        return self.linear(x.reshape(*lead, -1)).reshape(*lead, *self.out_shape)


@pyrovae.register("network", "ignores_label")
def ignores_label(in_shape, out_shape):
    """An encoder that drops its condition."""
    return Ignores(in_shape, out_shape)
'''


def test_a_conditional_model_with_an_encoder_that_ignores_the_label_is_refused(tmp_path):
    from tests.conftest import mnist_test_images

    (tmp_path / "ignores.py").write_text(IGNORES_LABEL)
    x, y = mnist_test_images(100)
    overrides = [o for o in tiny_overrides(**{"model.conditional": "true", "data.train_size": "null",
                                              "model.likelihood.name": "continuous_bernoulli"})
                 if not o.startswith("model.encoder")] + ["model.encoder.name=ignores_label"]
    with pytest.raises(PyrovaeError, match="model.conditional is set but model.encoder network 'ignores_label' "
                                           r"\(from plugin .*ignores.py\) ignores the label"):
        pyrovae.train("quickstart", out=tmp_path / "run", overrides=overrides, plugins=[str(tmp_path / "ignores.py")],
                      data=torch.from_numpy(x), labels=torch.from_numpy(y))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    from pyrovae.model import VAE
    from pyrovae.runs.loading import check_encoder_uses_label

    mlp = VAE.from_config(load_config("quickstart", ["model.conditional=true"]), (1, 28, 28), 10)
    check_encoder_uses_label(mlp, torch.rand(8, 1, 28, 28))  # the built-in mlp takes its condition


def test_cosine_and_step_schedules():
    cosine = LR_SCHEDULES.build("cosine", options={"epochs": 10, "min_factor": 0.1})
    assert cosine(0) == 1.0 and cosine(10) == pytest.approx(0.1) and cosine(25) == pytest.approx(0.1)
    assert cosine(5) == pytest.approx(0.1 + 0.9 * 0.5) and cosine(2) == pytest.approx(0.1 + 0.45 * (1 + math.cos(0.2 * math.pi)))
    step = LR_SCHEDULES.build("step", options={"every": 3, "factor": 0.5})
    assert [step(e) for e in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    # Without an epochs option the decay spans the run's train.epochs.
    spanning = LR_SCHEDULES.build("cosine", {"train_epochs": 4}, options=load_config(
        "quickstart", ["train.lr_schedule.name=cosine"]).train.lr_schedule.options)
    assert spanning(0) == 1.0 and spanning(2) == pytest.approx(0.5) and spanning(4) == pytest.approx(0.0)
    with pytest.raises(PyrovaeError, match="epochs must be a positive integer"):
        LR_SCHEDULES.build("cosine", options={"epochs": 0})
    with pytest.raises(PyrovaeError, match="every must be a positive integer"):
        LR_SCHEDULES.build("step", options={"every": 0})
    with pytest.raises(PyrovaeError, match=r"min_factor must be in \[0, 1\]"):
        LR_SCHEDULES.build("cosine", options={"epochs": 3, "min_factor": 2.0})


def test_a_step_schedule_sets_each_epochs_rate(tmp_path, one_thread):
    from pyrovae.runs.csvlog import read_rows

    run = pyrovae.train("quickstart", out=tmp_path / "run", overrides=tiny_overrides(**{
        "data.train_size": 100, "train.epochs": 3, "train.lr_schedule.name": "step",
        "train.lr_schedule.every": 1, "train.lr_schedule.factor": 0.5}))
    assert [float(r["lr"]) for r in read_rows(run.folder / "metrics.csv")] == [1e-3, 5e-4, 2.5e-4]
    assert yaml.safe_load((run.folder / "config.yaml").read_text())["train"]["lr_schedule"] == {
        "name": "step", "every": 1, "factor": 0.5}
