"""The celeba dataset on a handful of synthetic JPEGs written in CelebA's layout (the real
files cannot be downloaded here), and on a plain folder of face images."""

import numpy as np
import pytest
from PIL import Image

from pyrovae import load_config
from pyrovae.cli import main
from pyrovae.components.datasets import load_data
from pyrovae.errors import PyrovaeError

pytestmark = pytest.mark.usefixtures("one_thread")

INNER = (200, 40, 90)  # the colour of each image's central 148 x 148 square
OUTER = (20, 200, 30)  # the rest of the 178 x 218 image, which the centre crop removes
PARTITION = [0, 0, 0, 0, 1, 2]
ATTRIBUTES = ["5_o_Clock_Shadow", "Smiling", "Male"]
SMILING = [1, -1, 1, -1, 1, -1]


def write_celeba(root):
    """Six 178 x 218 JPEGs in CelebA's layout with its partition and attribute files."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    for i in range(6):
        pixels = np.full((218, 178, 3), OUTER, dtype=np.uint8)
        top, left = (218 - 148) // 2, (178 - 148) // 2
        pixels[top:top + 148, left:left + 148] = INNER
        pixels[top:top + 148, left:left + 10] = (10 * i, 10 * i, 10 * i)  # tell the images apart
        Image.fromarray(pixels).save(images / f"{i + 1:06d}.jpg", quality=95)
    (root / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {s}\n" for i, s in enumerate(PARTITION)))
    rows = [f"{i + 1:06d}.jpg  -1 {SMILING[i]:2d}  1" for i in range(6)]
    (root / "list_attr_celeba.txt").write_text("6\n" + " ".join(ATTRIBUTES) + "\n" + "\n".join(rows) + "\n")
    return root


def _data(path, *overrides):
    return load_data(load_config("celeba_conv", [f"data.path={path}", *overrides]).data)


def test_the_publishers_layout_is_split_cropped_and_resized(tmp_path):
    data = _data(write_celeba(tmp_path / "celeba"))
    assert [len(s) for s in (data.train, data.valid, data.test)] == [4, 1, 1]
    assert data.data_shape == (3, 64, 64) and data.train.x.shape == (4, 3, 64, 64)
    x = data.train.x
    assert bool(((x * 255 - (x * 255).round()).abs() < 1e-3).all())  # 8-bit levels, for the discretized logistic
    # the centre crop keeps only the inner square: away from the marked strip every pixel is INNER
    inner = x[:, :, 8:-8, 8:-8].mean((0, 2, 3)) * 255
    np.testing.assert_allclose(inner.numpy(), INNER, atol=4)
    assert data.train.y is None and data.num_classes == 0


def test_an_attribute_labels_the_images(tmp_path):
    data = _data(write_celeba(tmp_path / "celeba"), "data.label_attribute=Smiling")
    assert data.train.y.tolist() == [1, 0, 1, 0] and data.valid.y.tolist() == [1] and data.test.y.tolist() == [0]
    assert data.class_names == ("without Smiling", "Smiling") and data.num_classes == 2
    with pytest.raises(PyrovaeError, match="no attribute 'Smile'.*choose one of: 5_o_Clock_Shadow, Smiling, Male"):
        _data(tmp_path / "celeba", "data.label_attribute=Smile")


def test_max_images_size_and_crop(tmp_path):
    data = _data(write_celeba(tmp_path / "celeba"), "data.max_images=2", "data.size=32", "data.crop=178")
    assert data.train.x.shape == (2, 3, 32, 32)
    edge = data.train.x[:, :, :, -1].mean((0, 2)) * 255  # a 178-pixel crop keeps the outer colour at the sides
    np.testing.assert_allclose(edge.numpy(), OUTER, atol=12)


def test_a_missing_listed_image_or_folder_is_a_one_line_error(tmp_path):
    root = write_celeba(tmp_path / "celeba")
    (root / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(PyrovaeError, match="000003.jpg.*is missing, 1 in all"):
        _data(root)
    with pytest.raises(PyrovaeError, match="no folder .*set data.path"):
        _data(tmp_path / "absent")


def test_any_folder_of_face_images_is_read_by_the_same_loader(tmp_path):
    folder = tmp_path / "faces" / "person"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8)).save(folder / f"{i}.png")
    data = _data(tmp_path / "faces")
    assert [len(s) for s in (data.train, data.valid, data.test)] == [8, 1, 1]
    assert data.train.x.shape == (8, 3, 64, 64)  # grey files read in colour: three equal channels
    assert bool((data.train.x[:, 0] == data.train.x[:, 2]).all())
    grey = _data(tmp_path / "faces", "data.channels=1")
    assert grey.train.x.shape == (8, 1, 64, 64)


def test_a_conv_vae_trains_on_the_layout_from_the_command_line(tmp_path):
    root = write_celeba(tmp_path / "celeba")
    status = main(["train", "celeba_conv", "--out", str(tmp_path / "run"), "--quiet", "--set", f"data.path={root}",
                   "--set", "model.encoder.channels=[8,16]", "--set", "model.decoder.channels=[8,16]",
                   "--set", "model.latent_dim=3", "--set", "train.epochs=1", "--set", "train.device=cpu",
                   "--set", "data.label_attribute=Smiling"])
    assert status == 0
    figures = tmp_path / "run" / "figures"
    assert {p.name for p in figures.iterdir()} >= {"samples.png", "reconstructions.png", "latent_space.png"}
    picture = np.asarray(Image.open(figures / "reconstructions.png").convert("RGB")).astype(int)
    assert (abs(picture[..., 0] - picture[..., 1]) > 40).any()  # drawn in colour, not grey
