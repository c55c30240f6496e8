"""The perceptual hash of the pixels (`pipeline.data.phash`) and its place in the near-duplicate finder: heavy
resizing, re-compression and mirroring keep a picture's hash, another picture's differs; unhashed files never match.
(On real photos: benchmarks/audit_phash.py, docs/audit.md.)"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps
from samples import write_pattern

from pipeline.cache.near_duplicates import MAX_HASH_DISTANCE, find_near_duplicates
from pipeline.data.phash import HASH_BITS, PixelHashes, hash_files, image_hash
from pipeline.data.synthetic import SHAPES, render_shape


def _distance(first, second) -> int:
    (bits, _), (other, other_mirrored) = image_hash(first), image_hash(second)
    return int(min((bits != other).sum(), (bits != other_mirrored).sum()))


def test_heavy_edits_and_mirrors_keep_the_hash_and_other_pictures_do_not(tmp_path):
    rng = np.random.default_rng(0)
    photo, *others = (render_shape(shape, 160, rng) for shape in ("circle", *SHAPES, "circle", "circle"))
    photo.save(tmp_path / "q10.jpg", quality=10)
    edits = {"quarter size": photo.resize((40, 40), Image.BILINEAR), "quality 10": Image.open(tmp_path / "q10.jpg"),
             "mirrored": ImageOps.mirror(photo)}
    for name, edited in edits.items():
        assert _distance(photo, edited) <= MAX_HASH_DISTANCE, name
    assert (image_hash(ImageOps.mirror(photo))[0] == image_hash(photo)[1]).all(), "the mirror hash, from one DCT"
    assert min(_distance(photo, other) for other in others) > 2 * MAX_HASH_DISTANCE  # other circles too


def test_files_that_are_gone_or_not_images_are_not_hashed(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    hashes = hash_files([write_pattern(tmp_path / "a.jpg", 1), None, tmp_path / "missing.jpg", tmp_path / "broken.jpg"],
                        workers=2)
    assert hashes.ok.tolist() == [True, False, False, False] and hashes.hashed == 1
    assert hashes.bits.shape == (4, HASH_BITS) and not hashes.bits[1:].any()


def test_the_finder_adds_hash_pairs_that_the_features_miss_and_never_matches_unhashed_files():
    units = np.eye(4, dtype=np.float32)  # every pair of feature rows at cosine 0
    rng = np.random.default_rng(0)
    bits = rng.random((4, HASH_BITS)) > 0.5
    bits[1] = bits[0]
    bits[1, :MAX_HASH_DISTANCE] ^= True  # image 1: image 0's hash with 8 bits flipped
    bits[3] = bits[2]  # image 3 repeats image 2's bits, but its file could not be hashed
    hashes = PixelHashes(bits, ~bits, np.array([True, True, True, False]))
    found = find_near_duplicates(units, ["a", "b", "c", "d"], ["train", "test", "train", "test"], hashes=hashes)
    assert [(pair.a, pair.b, pair.hash_distance, pair.similarity) for pair in found] == [("a", "b", 8, 0.0)]
    assert find_near_duplicates(units, ["a", "b", "c", "d"], ["train"] * 4, hashes=hashes, max_distance=7) == []
    assert found[0].to_dict()["hash_distance"] == 8 and "pixel hash distance 8 of 64" in found[0].describe()
