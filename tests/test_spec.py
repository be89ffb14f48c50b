"""The declarative config: built-ins load, overrides parse and type-check, typos are
answered with the nearest valid key, and the resolved config round-trips."""

import json

import pytest

from pyrovae import load_config
from pyrovae.errors import PyrovaeError
from pyrovae.runs.folder import save_config
from pyrovae.spec import builtin_configs


def test_the_builtin_configs_load_and_are_fully_resolved():
    assert {"quickstart", "mnist_aevb", "frey_aevb", "linear_gaussian"} <= set(builtin_configs())
    for name in builtin_configs():
        spec = load_config(name)
        assert spec.name == name
        assert "num_particles" in spec.train.estimator.options  # defaults are filled in
    frey = load_config("frey_aevb")
    assert frey.model.likelihood.name == "gaussian" and frey.model.encoder.options["hidden"] == [200]


def test_overrides_are_parsed_as_yaml_and_type_checked():
    spec = load_config("quickstart", ["model.latent_dim=2", "train.optimizer.lr=1e-4",
                                      "model.encoder.hidden=[100, 50]", "data.train_size=null",
                                      "train.kl_warmup_epochs=3"])
    assert spec.model.latent_dim == 2
    assert spec.train.optimizer.options["lr"] == 1e-4
    assert spec.model.encoder.options["hidden"] == [100, 50]
    assert spec.train.kl_warmup_epochs == 3.0 and isinstance(spec.train.kl_warmup_epochs, float)


def test_renaming_a_component_resets_its_options_to_the_new_defaults():
    spec = load_config("quickstart", ["model.prior.num_components=3", "model.prior.name=mog"])
    assert spec.model.prior.options == {"num_components": 3, "init_spread": 1.0}
    spec = load_config("frey_aevb", ["model.likelihood.name=bernoulli", "data.binarize=static"])
    assert spec.model.likelihood.options == {}


@pytest.mark.parametrize("override,message", [
    ("model.latnt_dim=3", "unknown config key 'model.latnt_dim' (did you mean 'model.latent_dim'?)"),
    ("trian.epochs=3", "did you mean 'train'?"),
    ("model.prior.name=vampp", "unknown prior 'vampp' (did you mean 'vamp'?)"),
    ("model.encoder.hiden=[3]", "network 'mlp' has no option 'hiden' (did you mean 'hidden'?)"),
    ("model.latent_dim=two", "config key 'model.latent_dim' must be int, got 'two'"),
    ("model.latent_dim=0", "model.latent_dim must be a positive integer"),
    ("data.binarize=dynamc", "did you mean 'dynamic'?"),
    ("train.device=gpu", "train.device must be auto, cpu, cuda or cuda:N"),
    ("train.estimator.name=reinforec", "unknown estimator"),
    ("data.name=mnsit", "did you mean 'mnist'?"),
    ("model.latent_dim", "is not of the form key=value"),
    ("model.latent_dim.x=1", "'model.latent_dim' is a value, not a section"),
])
def test_config_mistakes_get_one_line_errors_with_the_fix(override, message):
    with pytest.raises(PyrovaeError) as err:
        load_config("quickstart", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_config_names_and_broken_files_are_reported(tmp_path):
    with pytest.raises(PyrovaeError, match="did you mean 'quickstart'"):
        load_config("quikstart")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(PyrovaeError, match="cannot read config"):
        load_config(bad)
    bad.write_text("model:\n  latent_dim: 3\n  hiden: 4\n")
    with pytest.raises(PyrovaeError, match="unknown config key 'model.hiden'"):
        load_config(bad)


def test_the_resolved_config_round_trips_through_yaml_and_json(tmp_path):
    spec = load_config("quickstart", ["model.prior.name=mog", "model.latent_dim=3"])
    save_config(spec, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml").to_dict() == spec.to_dict()
    assert load_config(tmp_path).to_dict() == spec.to_dict()  # a run folder works too
    (tmp_path / "c.json").write_text(json.dumps(spec.to_dict()))
    assert load_config(tmp_path / "c.json").to_dict() == spec.to_dict()


def test_dataset_options_live_beside_the_dataset_name():
    spec = load_config("linear_gaussian", ["data.noise=0.25"])
    assert spec.data.options["noise"] == 0.25
    with pytest.raises(PyrovaeError, match="dataset 'linear_gaussian' has no option 'nosie'"):
        load_config("linear_gaussian", ["data.nosie=0.25"])
