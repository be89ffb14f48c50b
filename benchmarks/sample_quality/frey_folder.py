"""Write the Frey Face images as a folder of PNG files: a small set of real faces for the
``celeba`` dataset's "any folder of face images" path.

    PYROVAE_DATA=../shared/data python3 benchmarks/sample_quality/frey_folder.py FOLDER
    pyrovae train celeba_conv --set data.path=FOLDER --set data.crop=20 --set data.channels=1 ...

Each of the 1965 grey 28 x 20 faces (pyrovae's ``frey_faces`` dataset: its training, validation
and test images in that order) becomes ``FOLDER/frey_NNNN.png``, 8-bit grey as in the data. The
``celeba`` loader then splits the folder by its own seeded fractions.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import pyrovae
from pyrovae.components.datasets import load_data


def write_faces(folder: Path) -> int:
    """Write every Frey Face image into ``folder`` (made if absent); return how many."""
    spec = pyrovae.load_config({"name": "frey_folder", "data": {"name": "frey_faces"}})
    data = load_data(spec.data)
    images = torch.cat([data.train.x, data.valid.x, data.test.x])
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        pixels = (image[0] * 255).round().to(torch.uint8).numpy()
        Image.fromarray(np.ascontiguousarray(pixels), mode="L").save(folder / f"frey_{i:04d}.png")
    return images.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where the PNG files go")
    args = parser.parse_args()
    print(f"{write_faces(args.folder)} faces written to {args.folder}")


if __name__ == "__main__":
    main()
