"""Property: any nested ``--set`` overrides either load into a valid spec or are refused
with a one-line PyrovaeError, never another exception."""

import dataclasses
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrovae import VAE, load_config
from pyrovae.components import LIKELIHOODS, NETWORKS, PRIORS
from pyrovae.components.datasets import DATASETS, data_info
from pyrovae.errors import PyrovaeError
from pyrovae.inference.estimators import ESTIMATORS, build_estimator
from pyrovae.inference.optim import LR_SCHEDULES, OPTIMIZERS
from pyrovae.spec import ExperimentSpec, config_text

COMPONENTS = {"model.prior": PRIORS, "model.likelihood": LIKELIHOODS, "model.encoder": NETWORKS,
              "model.decoder": NETWORKS, "train.optimizer": OPTIMIZERS, "train.lr_schedule": LR_SCHEDULES,
              "train.estimator": ESTIMATORS}


def _field_paths(cls, prefix=""):
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        yield path
        if dataclasses.is_dataclass(f.type) if isinstance(f.type, type) else False:
            yield from _field_paths(f.type, path + ".")


def _known_keys():
    keys = set(_field_paths(ExperimentSpec)) | {"data", "model", "train", *COMPONENTS}
    keys |= {f"{where}.name" for where in COMPONENTS}
    for where, registry in COMPONENTS.items():
        keys |= {f"{where}.{option}" for entry in registry for option in entry.options()}
    keys |= {f"data.{option}" for entry in DATASETS for option in entry.options()}
    return sorted(keys)


KEYS = _known_keys()
NAMES = sorted({e.name for r in [*COMPONENTS.values(), DATASETS] for e in r})
WORDS = st.sampled_from(NAMES + ["yes", "no", "on", "abc", "1e-3", "1.2.3", "", "cuda:0", "static", "[", "{a: 1}",
                                 "!!python/object:os.system", "~", "auto"])
SCALARS = (st.none() | st.booleans() | st.integers(-3, 40) | st.integers() | WORDS
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["name", "hidden", "lr", "x", "1"]) | st.text(max_size=3),
                                        inner, max_size=3), max_leaves=6)
KEY = st.sampled_from(KEYS) | st.builds(lambda k, tail: f"{k}.{tail}", st.sampled_from(KEYS), st.sampled_from(
    ["name", "x", "options", "", "lr"])) | st.text(max_size=12)


def _override(key, value, raw):
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6).strip().removesuffix("\n...")
    return f"{key}={raw}" if raw is not None else f"{key}={text}"


OVERRIDES = st.lists(st.builds(_override, KEY, VALUES, st.none() | st.text(max_size=10)), max_size=5)


def _small(spec) -> bool:
    """Small enough to build in a test: no huge sizes."""
    sizes = [spec.model.latent_dim] + [v for c in (spec.model.encoder, spec.model.decoder, spec.model.prior)
                                       for v in c.options.values() if isinstance(v, int)]
    sizes += [x for c in (spec.model.encoder, spec.model.decoder) for v in c.options.values() if isinstance(v, list)
              for x in v if isinstance(x, int)]
    sizes += [v for v in spec.data.options.values() if isinstance(v, int)]
    return all(abs(s) <= 64 for s in sizes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OVERRIDES)
def test_random_overrides_load_into_a_valid_spec_or_a_one_line_error(overrides):
    try:
        spec = load_config("quickstart", overrides)
    except PyrovaeError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    again = load_config(yaml.safe_load(config_text(spec)))  # what a run folder keeps loads back the same
    assert again.to_dict() == spec.to_dict()
    assert spec.train.epochs >= 1 and spec.train.batch_size >= 1 and spec.model.latent_dim >= 1
    assert math.isfinite(spec.train.kl_warmup_epochs) and spec.train.kl_warmup_epochs >= 0
    if _small(spec):  # the parts build, or refuse in one line
        try:
            shape, classes = data_info(spec.data)
            VAE.from_config(spec, shape, classes)
            build_estimator(spec.train.estimator)
            OPTIMIZERS.build(spec.train.optimizer.name, options=spec.train.optimizer.options)
            LR_SCHEDULES.build(spec.train.lr_schedule.name, options=spec.train.lr_schedule.options)(3)
        except PyrovaeError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize("override", ["model={prior: {name: mog, 1: 2}}", "model.prior={name: vamp, x: 1}",
                                      "seed=-1", "seed=99999999999999999999", "train.device=yes",
                                      "model.encoder.activation=5", "model.encoder.gated=3"])
def test_overrides_hypothesis_found_are_one_line_errors(override):
    with pytest.raises(PyrovaeError) as err:
        load_config("quickstart", [override])
    assert "\n" not in str(err.value)
