"""Does a perceptual hash of the pixels help `audit`'s near-duplicate finder? (docs/audit.md)

`python -m benchmarks.audit_phash CACHE [--truth OUT.truth.json]` scores three finders on a cache of a
planted dataset: the cached features alone (cosine >= 0.85, the audit's finder), a 64-bit pHash
alone (Hamming distance <= D, for several D), and features OR hash. Ground truth:

- a cache of `benchmarks.audit_calibration OUT` (copies named `<stem>__<variant>.jpg`): every copy
  with its original and every two copies of one original are duplicates;
- a cache of `benchmarks.audit_planted OUT`, with `--truth OUT.truth.json`: each planted copy and
  its original.

Every other pair of images counts as different photos. Prints, per finder, the share of copies
found with their original per variant (recall) and how many flagged pairs are not duplicates.

The pHash (numpy only): the image decoded as the cache saw it (EXIF orientation applied), in grey,
resized to 32 x 32, 2-D DCT-II, the 8 x 8 lowest frequencies compared with their median -> 64
bits. A mirrored image has the same low frequencies with the odd horizontal ones negated, so each
image also gets a mirror hash from the same DCT, and two images are as close as their nearer pair.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.audit.features import load_audit_features
from pipeline.cache.near_duplicates import NEAR_DUPLICATE_SIMILARITY
from pipeline.data.images import open_rgb

HASH_SIDE = 32
LOW = 8
DISTANCES = (4, 6, 8, 10, 12)
_SEPARATOR = "__"


def _dct_matrix(n: int) -> np.ndarray:
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    return np.cos(np.pi * (2 * i + 1) * k / (2 * n))


_DCT = _dct_matrix(HASH_SIDE)
_MIRROR_SIGNS = np.where(np.arange(LOW) % 2, -1.0, 1.0)[None, :]  # odd horizontal frequencies flip sign


def _bits(low: np.ndarray) -> np.ndarray:
    return (low > np.median(low)).ravel()


def phash(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(hash, hash of the mirrored image): 64 booleans each."""
    grey = np.asarray(image.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.BILINEAR), dtype=np.float64)
    low = (_DCT @ grey @ _DCT.T)[:LOW, :LOW]
    return _bits(low), _bits(low * _MIRROR_SIGNS)


def hamming(hashes: np.ndarray, mirrors: np.ndarray) -> np.ndarray:
    """(n, n) distances: the nearer of image vs image and image vs the other's mirror."""
    h = hashes.astype(np.float32)
    m = mirrors.astype(np.float32)
    plain = h @ (1 - h).T + (1 - h) @ h.T
    mirrored = h @ (1 - m).T + (1 - h) @ m.T
    return np.minimum(plain, mirrored)


def _groups(relpaths, truth: Path | None) -> tuple[dict[str, str], dict[str, str]]:
    """(group of each planted image -> original, variant of each copy)."""
    group, variant = {}, {}
    if truth is None:
        for path in relpaths:
            if _SEPARATOR in path:
                stem, name = Path(path).stem.split(_SEPARATOR)
                original = str(Path(path).with_name(stem + ".jpg"))
                group[path], group[original], variant[path] = original, original, name
        return group, variant
    for item in json.loads(truth.read_text())["near_duplicates"]:
        group[item["copy"]] = group[item["original"]] = item["original"]
        variant[item["copy"]] = item["transform"]
    return group, variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--truth", type=Path, default=None)
    args = parser.parse_args()
    features = load_audit_features(args.cache)
    root = features.info.data_root
    paths = list(features.relpaths)
    started = time.perf_counter()
    hashed = [phash(open_rgb(root / path)) for path in paths]
    seconds = time.perf_counter() - started
    hashes, mirrors = (np.array(column) for column in zip(*hashed))
    distance = hamming(hashes, mirrors)
    similarity = features.units @ features.units.T
    group, variant = _groups(paths, args.truth)
    n = len(paths)
    upper = np.triu(np.ones((n, n), bool), 1)
    same = np.array([[group.get(a) is not None and group.get(a) == group.get(b) for b in paths] for a in paths])
    print(f"{n} images, {int((same & upper).sum())} duplicate pairs; hashing took {seconds:.1f} s "
          f"({1000 * seconds / n:.1f} ms per image, decoding included)")
    index = {path: i for i, path in enumerate(paths)}
    finders = {"features": similarity >= NEAR_DUPLICATE_SIMILARITY}
    for d in DISTANCES:
        finders[f"hash<={d}"] = distance <= d
        finders[f"features|hash<={d}"] = finders["features"] | (distance <= d)
    variants = sorted(set(variant.values()))
    print(f"{'finder':22s} " + " ".join(f"{v:>12s}" for v in variants) + "   found  false pairs")
    for name, flagged in finders.items():
        recall = defaultdict(list)
        for copy, kind in variant.items():
            recall[kind].append(bool(flagged[index[copy], index[group[copy]]]))
        found = sum(sum(values) for values in recall.values())
        false = int((flagged & upper & ~same).sum())
        print(f"{name:22s} " + " ".join(f"{np.mean(recall[v]):12.2f}" for v in variants)
              + f"   {found:3d}/{len(variant)}  {false}")


if __name__ == "__main__":
    main()
