"""Datasets are read from their publishers' files, split as documented, refused clearly
when missing or damaged, and downloads are verified."""

import gzip
import os
from pathlib import Path

import pytest
import torch

from pyrovae.components.datasets import FASHION_SYSTEM_FOLDER, download, load_data, read_idx
from pyrovae.digests import file_digest
from pyrovae.errors import PyrovaeError
from pyrovae.spec import DataSpec


def test_static_binarized_mnist_has_the_larochelle_splits(mnist_data):
    assert [len(s) for s in (mnist_data.train, mnist_data.valid, mnist_data.test)] == [50000, 10000, 10000]
    assert mnist_data.data_shape == (1, 28, 28) and mnist_data.train.y is None
    x = mnist_data.test.x
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert 0.12 < x.mean().item() < 0.14  # about 13 % of binarized MNIST pixels are on


def test_frey_faces_split_is_fixed_disjoint_and_eight_bit():
    data = load_data(DataSpec(name="frey_faces"))
    sizes = [len(s) for s in (data.train, data.valid, data.test)]
    assert sizes == [1565, 200, 200] and data.data_shape == (1, 28, 20)
    everything = torch.cat([data.train.x, data.valid.x, data.test.x]).flatten(1)
    assert torch.allclose(everything * 255, (everything * 255).round())
    assert torch.equal(load_data(DataSpec(name="frey_faces")).test.x, data.test.x)
    assert len({tuple(row.tolist()) for row in everything[:, ::7]}) == 1965  # no face used twice


@pytest.mark.skipif(not FASHION_SYSTEM_FOLDER.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_is_found_in_the_debian_package():
    data = load_data(DataSpec(name="fashion_mnist", root="/nonexistent"))
    assert [len(s) for s in (data.train, data.valid, data.test)] == [50000, 10000, 10000]
    assert data.num_classes == 10 and set(data.test.y.unique().tolist()) == set(range(10))
    assert 0 <= data.train.x.min() and data.train.x.max() <= 1 and len(data.train.x.unique()) > 200


def test_static_binarization_is_fixed_and_dynamic_binarization_draws_afresh():
    static = load_data(DataSpec(name="frey_faces", binarize="static"))
    again = load_data(DataSpec(name="frey_faces", binarize="static"))
    assert torch.equal(static.train.x, again.train.x) and set(static.train.x.unique().tolist()) == {0.0, 1.0}
    dynamic = load_data(DataSpec(name="frey_faces", binarize="dynamic"))
    grey = dynamic.train.x[:50]
    a, b = dynamic.training_batch(grey), dynamic.training_batch(grey)
    assert not torch.equal(a, b) and set(a.unique().tolist()) == {0.0, 1.0}
    assert abs(a.mean() - grey.mean()) < 0.02  # an unbiased draw around the grey values


def test_the_linear_gaussian_data_follow_their_known_model():
    data = load_data(DataSpec(name="linear_gaussian", options={"num_points": 20000, "data_dim": 3,
                                                               "latent_dim": 2, "noise": 0.3, "data_seed": 0}))
    w, b, s = data.extras["weight"], data.extras["bias"], data.extras["noise"]
    x = data.train.x
    covariance = torch.cov(x.T)
    expected = w @ w.T + s ** 2 * torch.eye(3)
    n = len(x)
    assert torch.allclose(x.mean(0), b, atol=4 * (expected.diag().max().sqrt() / n ** 0.5).item())
    assert torch.allclose(covariance, expected, atol=0.1)


def test_missing_files_name_the_folder_searched_and_how_to_get_them(tmp_path):
    for name in ("binarized_mnist", "frey_faces", "mnist"):
        with pytest.raises(PyrovaeError) as err:
            load_data(DataSpec(name=name, root=str(tmp_path)))
        message = str(err.value)
        assert str(tmp_path) in message and "data.download=true" in message and "\n" not in message


def test_a_truncated_idx_file_is_refused(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    shared = Path(os.environ.get("PYROVAE_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    source = shared / "mnist_test" / "t10k-images-idx3-ubyte.gz"
    with gzip.open(source) as f:
        raw = f.read()
    assert read_idx(source).shape == (10000, 28, 28)
    (folder / "broken-idx3-ubyte").write_bytes(raw[:5000])
    with pytest.raises(PyrovaeError, match="is truncated"):
        read_idx(folder / "broken-idx3-ubyte")


def test_downloads_are_verified_and_never_leave_a_bad_file(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"pixels" * 100)
    url = source.as_uri()
    with pytest.raises(PyrovaeError, match="has md5"):
        download(url, tmp_path / "out" / "file.bin", "0" * 32)
    assert list((tmp_path / "out").iterdir()) == []
    target = download(url, tmp_path / "out" / "file.bin", file_digest(source, "md5"))
    assert target.read_bytes() == source.read_bytes()
    with pytest.raises(PyrovaeError, match="could not download"):
        download((tmp_path / "absent").as_uri(), tmp_path / "out" / "other.bin", "0" * 32)


def test_binarizing_data_outside_the_unit_interval_is_refused():
    with pytest.raises(PyrovaeError, match="data.binarize needs values in"):
        load_data(DataSpec(name="linear_gaussian", binarize="static"))
