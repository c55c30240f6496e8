"""What the perceptual hash of the pixels adds to `audit`'s near-duplicate finder (docs/audit.md).

`python -m benchmarks.audit_phash CACHE [--truth OUT.truth.json]` scores three finders on a cache of a
planted dataset: the cached features alone (cosine >= 0.85), the pixel hash alone (`pipeline.data.phash`,
Hamming distance <= D of 64 bits, for several D; the nearer of the hash and the mirror's hash), and
features OR hash (what `audit` and `extract --drop-cross-split-duplicates` use, with D = 8). Truth:

- a cache of `benchmarks.audit_calibration OUT` (copies named `<stem>__<variant>.jpg`): every copy
  with its original and every two copies of one original are duplicates;
- a cache of `benchmarks.audit_planted OUT`, with `--truth OUT.truth.json`: each planted copy and
  its original.

Every other pair of images counts as different photos. Prints, per finder, the share of copies
found with their original per variant (recall), and how many flagged pairs are not duplicates.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from pipeline.audit.features import load_audit_features
from pipeline.cache.near_duplicates import NEAR_DUPLICATE_SIMILARITY, find_near_duplicates
from pipeline.data.phash import PixelHashes, hash_files

DISTANCES = (4, 6, 8, 10, 12)
_SEPARATOR = "__"


def hamming(hashes: PixelHashes) -> np.ndarray:
    """(n, n) distances: the nearer of image vs image and image vs the other's mirror hash."""
    h, m = hashes.bits.astype(np.float32), hashes.mirrored.astype(np.float32)
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
    hashes = hash_files([root / path for path in paths])
    seconds = time.perf_counter() - started
    distance = hamming(hashes)
    similarity = features.units @ features.units.T
    group, variant = _groups(paths, args.truth)
    n = len(paths)
    upper = np.triu(np.ones((n, n), bool), 1)
    same = np.array([[group.get(a) is not None and group.get(a) == group.get(b) for b in paths] for a in paths])
    print(f"{n} images, {int((same & upper).sum())} duplicate pairs; hashing took {seconds:.1f} s "
          f"({1000 * seconds / n:.1f} ms per image, decoding included)")
    print(f"pairs of different photos: smallest hash distance {distance[upper & ~same].min():.0f}, highest "
          f"similarity {similarity[upper & ~same].max():.3f}")
    index = {path: i for i, path in enumerate(paths)}
    finders = {"features": similarity >= NEAR_DUPLICATE_SIMILARITY}
    for d in DISTANCES:
        finders[f"hash<={d}"] = distance <= d
        finders[f"features|hash<={d}"] = finders["features"] | (distance <= d)
    variants = sorted(set(variant.values()))
    combined = {(p.a, p.b) for p in find_near_duplicates(features.units, paths, features.splits, hashes=hashes)}
    finders["audit's finder"] = np.zeros((n, n), bool)
    for a, b in combined:
        finders["audit's finder"][index[a], index[b]] = finders["audit's finder"][index[b], index[a]] = True
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
