"""The array dataset: your own data from .npy, .npz or a folder of images."""

import numpy as np
import pytest
import torch
from conftest import mnist_test_images
from PIL import Image

from pyrovae.components.datasets import load_data
from pyrovae.errors import PyrovaeError
from pyrovae.spec import load_config


def _data(**options):
    overrides = ["data.name=array"] + [f"data.{k}={v}" for k, v in options.items()]
    return load_data(load_config("quickstart", overrides).data)


def test_an_npz_of_grey_images_with_labels_is_split_by_seeded_fractions(tmp_path):
    images, labels = mnist_test_images(200)
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    data = _data(path=tmp_path / "d.npz", x="images", y="labels", valid_fraction=0.1, test_fraction=0.2)
    assert data.data_shape == (1, 28, 28) and data.num_classes == 10
    assert (len(data.train), len(data.valid), len(data.test)) == (140, 20, 40)
    # uint8 pixels become k / 255; every image is in exactly one split, with its own label
    everything = torch.cat([data.train.x, data.valid.x, data.test.x]).flatten(1)
    original = torch.from_numpy(images).float().div(255).flatten(1)
    order = torch.cdist(everything, original).argmin(1)
    assert torch.equal(order.sort().values, torch.arange(200))
    assert torch.equal(torch.cat([data.train.y, data.valid.y, data.test.y]), torch.from_numpy(labels)[order])
    again = _data(path=tmp_path / "d.npz", x="images", y="labels", valid_fraction=0.1, test_fraction=0.2)
    assert torch.equal(again.valid.x, data.valid.x)
    other_seed = _data(path=tmp_path / "d.npz", x="images", valid_fraction=0.1, test_fraction=0.2,
                       split_seed=1)
    assert not torch.equal(other_seed.valid.x, data.valid.x) and other_seed.num_classes == 0


def test_vectors_and_channel_images_keep_their_shapes_and_float_values(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float64)
    np.save(tmp_path / "v.npy", vectors)
    data = _data(path=tmp_path / "v.npy")
    assert data.data_shape == (7,)
    assert torch.allclose(torch.cat([data.train.x, data.valid.x, data.test.x]).sum(0),
                          torch.from_numpy(vectors).float().sum(0), atol=1e-4)
    np.save(tmp_path / "c.npy", np.zeros((30, 3, 4, 5), dtype=np.float32))
    assert _data(path=tmp_path / "c.npy").data_shape == (3, 4, 5)


def test_explicit_split_files(tmp_path):
    images, _ = mnist_test_images(60)
    for name, part in (("tr", images[:40]), ("va", images[40:50]), ("te", images[50:])):
        np.save(tmp_path / f"{name}.npy", part)
    data = _data(path=tmp_path / "tr.npy", valid_path=tmp_path / "va.npy", test_path=tmp_path / "te.npy")
    assert torch.equal(data.test.x.squeeze(1) * 255, torch.from_numpy(images[50:]).float())
    assert (len(data.train), len(data.valid)) == (40, 10)


def test_a_folder_of_pngs_is_labelled_by_its_sub_folders(tmp_path):
    images, labels = mnist_test_images(30)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "digits" / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    data = _data(path=tmp_path / "digits", valid_fraction=0.2, test_fraction=0.2)
    present = sorted(set(labels.tolist()))
    assert data.data_shape == (1, 28, 28) and data.num_classes == len(present)
    x = torch.cat([data.train.x, data.valid.x, data.test.x]).flatten(1)
    y = torch.cat([data.train.y, data.valid.y, data.test.y])
    match = torch.cdist(x, torch.from_numpy(images).float().div(255).flatten(1)).argmin(1)
    assert torch.equal(y, torch.tensor([present.index(v) for v in labels[match.numpy()]]))  # sorted folder names


def test_rgb_images_give_three_channels(tmp_path):
    folder = tmp_path / "colour"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    data = _data(path=folder, valid_fraction=0.2, test_fraction=0.2)
    assert data.data_shape == (3, 6, 5) and data.num_classes == 0


@pytest.mark.parametrize("make,options,message", [
    (lambda d: np.save(d / "a.npy", np.zeros((10, 2, 3, 4, 5))), {}, "give \\(N, D\\), \\(N, H, W\\) or \\(N, C, H, W\\)"),
    (lambda d: np.savez(d / "a.npz", pixels=np.zeros((10, 4))), {}, "has no array 'x' \\(data.x\\); it holds: pixels"),
    (lambda d: np.savez(d / "a.npz", x=np.zeros((10, 4)), y=np.zeros(9, dtype=int)), {"y": "y"},
     "labels of shape \\(9,\\) do not match 10"),
    (lambda d: np.save(d / "a.npy", np.zeros((10, 4))), {"y": "labels"}, "save an .npz"),
    (lambda d: np.save(d / "a.npy", np.zeros((10, 4))), {"valid_fraction": 0.6, "test_fraction": 0.5},
     "sum below 1"),
    (lambda d: np.save(d / "a.npy", np.zeros((10, 4))), {"valid_path": "x.npy"}, "give both data.valid_path"),
    (lambda d: (d / "a.npy").write_text("not numpy"), {}, "cannot read"),
])
def test_bad_array_data_get_one_line_errors(tmp_path, make, options, message):
    make(tmp_path)
    path = next(tmp_path.iterdir())
    with pytest.raises(PyrovaeError, match=message) as err:
        _data(path=path, **options)
    assert "\n" not in str(err.value)


def test_a_missing_file_and_mixed_image_sizes_are_named(tmp_path):
    with pytest.raises(PyrovaeError, match="array data nowhere.npz not found"):
        _data(path="nowhere.npz")
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(folder / "b.png")
    with pytest.raises(PyrovaeError, match="differ in size .*b.png is \\(5, 4\\)"):
        _data(path=folder)


def test_the_data_range_is_checked_against_the_likelihood(tmp_path):
    images, _ = mnist_test_images(100)
    np.save(tmp_path / "grey.npy", images)
    spec = load_config("quickstart", ["data.name=array", f"data.path={tmp_path / 'grey.npy'}", "train.epochs=1"])
    from pyrovae.training.train import train

    with pytest.raises(PyrovaeError, match="does not fit likelihood 'bernoulli'.*data.binarize=static"):
        train(spec, tmp_path / "run")


# ----------------------------------------------------------------------------- images of every mode


def _items(data) -> torch.Tensor:
    """Every item of the three splits, flattened, in a fixed order (sorted rows)."""
    x = torch.cat([data.train.x, data.valid.x, data.test.x]).flatten(1)
    return x[torch.argsort(x.sum(1))]


def _save_modes(folder, images, modes):
    """``images`` (uint8 grey) saved as PNGs in the Pillow ``modes``, one file each, cycling."""
    folder.mkdir()
    for i, image in enumerate(images):
        mode = modes[i % len(modes)]
        if mode == "I;16":  # k * 257 / 65535 is k / 255 exactly
            im = Image.fromarray((image.astype(np.uint16) * 257))
        else:
            im = Image.fromarray(image).convert(mode)
        im.save(folder / f"{i}.png")


def test_sixteen_bit_grey_images_are_scaled_by_their_bit_depth(tmp_path):
    images, _ = mnist_test_images(12)
    _save_modes(tmp_path / "mixed", images, ["I;16", "L", "LA"])
    data = _data(path=tmp_path / "mixed", valid_fraction=0.2, test_fraction=0.2)
    expected = torch.from_numpy(images).float().div(255).flatten(1)
    assert data.data_shape == (1, 28, 28)
    assert torch.allclose(_items(data), expected[torch.argsort(expected.sum(1))], atol=1e-6)
    assert float(data.train.x.max()) == 1 and float((data.train.x == 1).double().mean()) < 0.05


def test_colour_modes_make_every_image_rgb_in_the_unit_interval(tmp_path):
    images, _ = mnist_test_images(12)
    _save_modes(tmp_path / "colour", images, ["RGB", "RGBA", "P", "I;16"])
    data = _data(path=tmp_path / "colour", valid_fraction=0.2, test_fraction=0.2)
    grey = torch.from_numpy(images).float().div(255)
    expected = grey.unsqueeze(1).expand(-1, 3, -1, -1).flatten(1)  # grey images repeat in R, G and B
    assert data.data_shape == (3, 28, 28)
    assert torch.allclose(_items(data), expected[torch.argsort(expected.sum(1))], atol=1e-6)


@pytest.mark.parametrize("pixels,message", [
    (np.full((4, 4), 0.5, np.float32), "floating-point pixels \\(mode F\\)"),
    (np.full((4, 4), 70000, np.int32), "mode I.* outside 0 to 65535"),
])
def test_images_of_unknown_scale_are_refused_in_one_line(tmp_path, pixels, message):
    folder = tmp_path / "odd"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "a.png")
    Image.fromarray(pixels).save(folder / "b.png", format="TIFF")  # Pillow reads a file by its content
    with pytest.raises(PyrovaeError, match="b.png.*" + message) as err:
        _data(path=folder)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- numbers and files


def _vectors(n=50, d=4):
    return np.random.default_rng(0).normal(size=(n, d))


@pytest.mark.parametrize("value,message", [
    (np.nan, "item 37 of .*bad.npy holds NaN or infinite values \\(2 items\\); replace or remove them"),
    (np.inf, "item 37 of .*bad.npy holds NaN or infinite values \\(2 items\\); replace or remove them"),
    (1e300, "item 37 of .*bad.npy holds values beyond .*float32.*rescale"),
])
def test_values_float32_cannot_hold_are_named_by_file_and_index(tmp_path, value, message):
    x = _vectors()
    x[37, 1] = x[41, 0] = value
    np.save(tmp_path / "bad.npy", x)
    with pytest.raises(PyrovaeError, match=message) as err:
        _data(path=tmp_path / "bad.npy")
    assert "fetch" not in str(err.value) and "\n" not in str(err.value)


def test_a_huge_label_is_refused_before_any_one_hot_is_made(tmp_path):
    y = np.zeros(50, dtype=np.int64)
    y[7] = 10 ** 9
    np.savez(tmp_path / "d.npz", x=_vectors(), y=y)
    with pytest.raises(PyrovaeError, match="label 1000000000 of item 7 .*d.npz .*at most 10000 classes"):
        _data(path=tmp_path / "d.npz", y="y")
    y[7] = 9999  # the largest class number allowed
    np.savez(tmp_path / "d.npz", x=_vectors(), y=y)
    assert _data(path=tmp_path / "d.npz", y="y").num_classes == 10000


@pytest.mark.parametrize("save,name", [
    (lambda p: np.save(p, np.array([[1, "a"], [None, 2]], dtype=object), allow_pickle=True), "o.npy"),
    (lambda p: np.savez(p, x=np.array([[1, "a"], [None, 2]], dtype=object)), "o.npz"),
])
def test_object_arrays_are_refused_without_unpickling(tmp_path, save, name):
    save(tmp_path / name)
    with pytest.raises(PyrovaeError, match=f"{name} holds Python objects.*does not unpickle") as err:
        _data(path=tmp_path / name)
    assert "\n" not in str(err.value)


def test_npy_and_npz_files_are_read_by_their_content_whatever_their_suffix(tmp_path):
    x = _vectors().astype(np.float32)
    np.save(tmp_path / "one.npy", x)
    (tmp_path / "one.npy").rename(tmp_path / "named.npz")
    np.savez(tmp_path / "many.npz", x=x)
    (tmp_path / "many.npz").rename(tmp_path / "named.npy")
    for name in ("named.npz", "named.npy"):
        loaded = _items(_data(path=tmp_path / name))
        expected = torch.from_numpy(x)
        assert torch.equal(loaded, expected[torch.argsort(expected.sum(1))])
    with pytest.raises(PyrovaeError, match="named.npz holds one array, so data.y cannot name labels"):
        _data(path=tmp_path / "named.npz", y="y")
