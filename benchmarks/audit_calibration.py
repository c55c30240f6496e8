"""Calibrating `audit`'s near-duplicate threshold on real photos (docs/audit.md).

`python -m benchmarks.audit_calibration OUT [--data ../shared/data]` copies the cats-vs-dogs sample
to OUT and adds 7 edited copies of 40 of its photos (`<stem>__<variant>.jpg`); extract OUT, then
`python -m benchmarks.audit_calibration OUT --cache CACHE` prints, per variant, the share of copies
at or above each threshold, and the highest similarity between two different photos.
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pipeline.audit.features import load_audit_features

SEED = 0
EDITED = 40
VARIANTS = {"resize50": ("resize", 0.5), "resize25": ("resize", 0.25), "q25": ("quality", 25),
            "q10": ("quality", 10), "crop8": ("crop", 0.08), "crop15": ("crop", 0.15), "mirror": ("mirror", None)}
THRESHOLDS = (0.85, 0.88, 0.90)
_SEPARATOR = "__"


def _edited(image: Image.Image, how: str, amount) -> tuple[Image.Image, int]:
    if how == "resize":
        return image.resize((int(image.width * amount), int(image.height * amount)), Image.BILINEAR), 90
    if how == "quality":
        return image, amount
    if how == "crop":
        dx, dy = int(image.width * amount), int(image.height * amount)
        return image.crop((dx, dy, image.width - dx, image.height - dy)), 90
    return ImageOps.mirror(image), 90


def build(out: Path, data: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(data / "catsdogs", out)
    photos = sorted(p for p in out.rglob("*.jpg") if Image.open(p).format == "JPEG")
    random.Random(SEED).shuffle(photos)
    for path in photos[:EDITED]:
        image = Image.open(path).convert("RGB")
        for name, (how, amount) in VARIANTS.items():
            edited, quality = _edited(image, how, amount)
            edited.save(path.with_name(f"{path.stem}{_SEPARATOR}{name}.jpg"), "JPEG", quality=quality)


def measure(cache: Path) -> None:
    features = load_audit_features(cache)
    index = {path: i for i, path in enumerate(features.relpaths)}
    similarity = features.units @ features.units.T
    copies: dict[str, list[float]] = {}
    for path, i in index.items():
        if _SEPARATOR in path:
            stem, variant = Path(path).stem.split(_SEPARATOR)
            original = str(Path(path).with_name(stem + ".jpg"))
            copies.setdefault(variant, []).append(float(similarity[i, index[original]]))
    originals = np.array([_SEPARATOR not in path for path in features.relpaths])
    among = similarity[np.ix_(originals, originals)][np.triu_indices(int(originals.sum()), 1)]
    print(f"{len(among)} pairs of different photos: highest similarity {among.max():.3f}")
    for variant, values in copies.items():
        shares = "  ".join(f">={t}: {np.mean(np.array(values) >= t):.2f}" for t in THRESHOLDS)
        print(f"{variant:9s} {len(values)} copies, lowest {min(values):.3f}  {shares}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=None, help="the cache of OUT: measure instead of building")
    args = parser.parse_args()
    if args.cache is None:
        build(args.out, args.data)
    else:
        measure(args.cache)


if __name__ == "__main__":
    main()
