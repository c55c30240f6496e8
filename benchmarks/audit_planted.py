"""A real-photo dataset with planted problems, for measuring `audit` (docs/audit.md).

`python -m benchmarks.audit_planted OUT [--data ../shared/data]` writes a generic-layout dataset
(`OUT/{train,valid,test}/<breed>/`) from the Oxford-IIIT Pet and dogImages samples, plus
`OUT.truth.json`: what was planted, so the finders' recall and precision can be scored.

Planted, all from fixed seeds:
- near-duplicates: copies of training photos, resized to half size, re-compressed at JPEG quality
  25, cropped by 8% on every side, or mirrored; most go to test or valid (leakage), a few stay in
  train (within-split duplicates);
- mislabels: training photos moved to another breed's folder;
- outliers: photos that are not pets (scikit-learn's sample photos, a chart, a flat texture) filed
  under a breed.
Different photos of the same breed are the negatives a near-duplicate finder must not report.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SEED = 24
TRANSFORMS = ("resized", "recompressed", "cropped", "mirrored")
COPIES_PER_TRANSFORM = {"test": 4, "valid": 2, "train": 1}
MISLABELS = 10
RESIZE_FACTOR = 0.5
RECOMPRESS_QUALITY = 25
CROP_FRACTION = 0.08


def _oxford(data: Path) -> list[tuple[str, str, Path]]:
    """(breed, split, path): 3 train, 1 valid, 1 test of every trainval breed; official test images to test."""
    root = data / "oxford-pets-mini"
    listed = {}
    for name in ("trainval", "test"):
        for line in (root / "annotations" / f"{name}.txt").read_text().splitlines():
            if line and not line.startswith("#"):
                listed[line.split()[0]] = name
    by_breed: dict[str, list[Path]] = {}
    items = []
    for stem, official in sorted(listed.items()):
        path = root / "images" / f"{stem}.jpg"
        if not path.is_file():
            continue
        breed = stem.rsplit("_", 1)[0]
        if official == "test":
            items.append((breed, "test", path))
        else:
            by_breed.setdefault(breed, []).append(path)
    for breed, paths in by_breed.items():
        for index, path in enumerate(paths):
            items.append((breed, ("train", "train", "train", "valid", "test")[index % 5], path))
    return items


def _dogimages(data: Path) -> list[tuple[str, str, Path]]:
    root = data / "dogimages-mini"
    return [(folder.name.split(".", 1)[1], split, path) for split in ("train", "valid", "test")
            for folder in sorted((root / split).iterdir()) for path in sorted(folder.glob("*.jpg"))]


def _transformed(image: Image.Image, transform: str) -> tuple[Image.Image, int]:
    if transform == "resized":
        return image.resize((max(1, int(image.width * RESIZE_FACTOR)), max(1, int(image.height * RESIZE_FACTOR))),
                            Image.BILINEAR), 90
    if transform == "recompressed":
        return image, RECOMPRESS_QUALITY
    if transform == "cropped":
        dx, dy = int(image.width * CROP_FRACTION), int(image.height * CROP_FRACTION)
        return image.crop((dx, dy, image.width - dx, image.height - dy)), 90
    return ImageOps.mirror(image), 90


def _not_pets(count: int) -> list[Image.Image]:
    from sklearn.datasets import load_sample_image

    rng = np.random.default_rng(SEED)
    images = [Image.fromarray(load_sample_image(name)) for name in ("china.jpg", "flower.jpg")]
    chart = np.full((300, 400, 3), 255, np.uint8)
    for k in range(8):
        chart[300 - 30 * (k + 1):, 40 + 45 * k:70 + 45 * k] = (40, 90, 200)
    images.append(Image.fromarray(chart))
    images.append(Image.fromarray(rng.integers(90, 110, (300, 400, 3), dtype=np.uint8)))
    return images[:count]


def build(out: Path, data: Path) -> dict:
    """Write the planted dataset to `out`; returns the truth (relpaths of what was planted)."""
    rng = random.Random(SEED)
    if out.exists():
        shutil.rmtree(out)
    items = _oxford(data) + _dogimages(data)
    breeds = sorted({breed for breed, _, _ in items})
    placed = []  # (relpath, breed, split, source)
    for breed, split, path in items:
        relpath = f"{split}/{breed}/{path.name}"
        (out / split / breed).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out / relpath)
        placed.append((relpath, breed, split, path))
    train = [p for p in placed if p[2] == "train" and Image.open(p[3]).format == "JPEG"]
    rng.shuffle(train)
    duplicates, mislabels, outliers = [], [], []
    cursor = 0
    for transform in TRANSFORMS:
        for split, count in COPIES_PER_TRANSFORM.items():
            for _ in range(count):
                relpath, breed, _, source = train[cursor]
                cursor += 1
                image, quality = _transformed(Image.open(source).convert("RGB"), transform)
                copy = f"{split}/{breed}/{Path(relpath).stem}_{transform}.jpg"
                (out / copy).parent.mkdir(parents=True, exist_ok=True)
                image.save(out / copy, "JPEG", quality=quality)
                duplicates.append({"original": relpath, "copy": copy, "transform": transform})
    for relpath, breed, _, _ in train[cursor:cursor + MISLABELS]:
        wrong = rng.choice([b for b in breeds if b != breed])
        moved = f"train/{wrong}/{Path(relpath).name}"
        (out / moved).parent.mkdir(parents=True, exist_ok=True)
        (out / relpath).rename(out / moved)
        mislabels.append({"path": moved, "given": wrong, "true": breed})
    for index, image in enumerate(_not_pets(4)):
        breed = rng.choice(breeds)
        relpath = f"train/{breed}/not_a_pet_{index}.jpg"
        image.convert("RGB").save(out / relpath, "JPEG", quality=90)
        outliers.append(relpath)
    truth = {"near_duplicates": duplicates, "mislabels": mislabels, "outliers": outliers,
             "images": sum(1 for p in out.rglob("*") if p.is_file()), "breeds": len(breeds)}
    out.with_name(out.name + ".truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    args = parser.parse_args()
    truth = build(args.out, args.data)
    print(f"{truth['images']} images, {truth['breeds']} breeds: {len(truth['near_duplicates'])} near-duplicates, "
          f"{len(truth['mislabels'])} mislabels, {len(truth['outliers'])} outliers planted")


if __name__ == "__main__":
    main()
