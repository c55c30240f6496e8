"""Microsoft PetImages (the Kaggle "cats and dogs" download): `PetImages/Cat/`, `PetImages/Dog/`.

    kagglecatsanddogs_*/PetImages/Cat/0.jpg ... (about 12,500 each)

Pass either the download folder or `PetImages/` itself. Classes are `Cat` and `Dog`. There is no
official split: validation and test are carved by content hash. The release is messy, and this
reader says so rather than hiding it: each class folder holds a `Thumbs.db` (named in a note);
about 1,590 files are not valid JPEGs - zero-byte files, truncated data, and BMP, GIF or PSD
data behind `.jpg` names. Images are decoded by content, so the readable ones are used and the
rest are reported, with reasons, as failures of `extract` and `inspect`.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.dataset import DatasetIndex
from pipeline.data.layouts import generic
from pipeline.errors import DatasetError

NAME = "petimages"
DESCRIPTION = "Microsoft PetImages: PetImages/Cat/ and PetImages/Dog/"

FOLDER = "PetImages"
CLASS_FOLDERS = ("Cat", "Dog")


def detect(root: Path) -> bool:
    return _pet_images_dir(root) is not None


def load(root: Path) -> DatasetIndex:
    """Read `PetImages/` as one folder per class; every split is carved."""
    folder = _pet_images_dir(root)
    if folder is None:
        raise DatasetError(
            f"{root} is not a PetImages download: expected {FOLDER}/Cat/ and {FOLDER}/Dog/ "
            "(pass the folder that holds PetImages/, or PetImages/ itself)"
        )
    return generic.load(folder, layout_name=NAME)


def _pet_images_dir(root: Path) -> Path | None:
    for candidate in (root / FOLDER, root):
        if candidate.name == FOLDER and all((candidate / name).is_dir() for name in CLASS_FOLDERS):
            return candidate
    return None
