"""Miniature inputs shared by several test modules (test modules never import from each other)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import scipy.io
from conftest import CLASS_COLOURS, write_image

from pipeline.heads.features import FeatureSet, SplitData

#: The first three breed folders of dogImages, as the classic notebook's files list them.
DOG_BREEDS = ("001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier")


def feature_set(classes=5, per_class=(40, 10, 10), dims=16, noise=1.0, seed=0, shape=None):
    """Gaussian blobs as a FeatureSet: `classes` centres, `per_class` rows per class in train/valid/test."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims)) * 3

    def split(n):
        y = np.repeat(np.arange(classes), n)
        x = (centres[y] + rng.normal(size=(len(y), dims)) * noise).astype(np.float32)
        return SplitData(x, y, tuple(str(i) for i in range(len(y))))

    info = SimpleNamespace(class_names=tuple(f"c{i}" for i in range(classes)), feature_shape=shape or (dims,))
    return FeatureSet(info, dict(zip(("train", "valid", "test"), (split(n) for n in per_class))))


# Miniatures of each dataset layout (tests/test_layouts.py, tests/test_layout_contract.py)

COLOUR = CLASS_COLOURS["cat"]


def sample_images(folder: Path, names, seed=0):
    for offset, name in enumerate(names):
        write_image(folder / name, COLOUR, seed + offset, size=(8, 8))


def dogimages_sample(root: Path) -> Path:
    seed = 0
    for split, per_class in (("train", 3), ("valid", 1), ("test", 2)):
        for folder in ("001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"):
            breed = folder.split(".", 1)[1]
            sample_images(root / split / folder, [f"{breed}_{seed + i:05d}.jpg" for i in range(per_class)], seed)
            seed += per_class
    return root


OXFORD_LIST = """#Image CLASS-ID SPECIES BREED ID
#ID: 1:37 Class ids
#SPECIES: 1:Cat 2:Dog
Abyssinian_1 1 1 1
Abyssinian_2 1 1 1
Abyssinian_5 1 1 1
Abyssinian_34 1 1 1
american_bulldog_10 2 2 1
american_bulldog_11 2 2 1
Bengal_3 6 1 3
Bengal_4 6 1 3
"""


def oxford_sample(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "list.txt").write_text(OXFORD_LIST)
    (root / "annotations" / "trainval.txt").write_text(
        "Abyssinian_1 1 1 1\nAbyssinian_5 1 1 1\nAbyssinian_34 1 1 1\namerican_bulldog_10 2 2 1\nBengal_3 6 1 3\n")
    (root / "annotations" / "test.txt").write_text("Abyssinian_2 1 1 1\namerican_bulldog_11 2 2 1\nBengal_4 6 1 3\n")
    names = ["Abyssinian_1", "Abyssinian_2", "Abyssinian_5", "Abyssinian_34", "american_bulldog_10",
             "american_bulldog_11", "Bengal_3", "Bengal_77"]  # Bengal_4 is missing, Bengal_77 is unlisted
    sample_images(root / "images", [f"{name}.jpg" for name in names])
    (root / "images" / "Abyssinian_100.mat").write_bytes(b"MATLAB 5.0")
    return root


STANFORD_FOLDERS = ("n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02086240-Shih-Tzu")


def save_stanford_list(path: Path, entries):
    """A list .mat file as the official ones are: file_list an N x 1 cell array, labels N x 1 (1-based)."""
    cells = np.empty((len(entries), 1), dtype=object)
    for i, (relpath, _) in enumerate(entries):
        cells[i, 0] = np.array([relpath])
    labels = np.array([[label] for _, label in entries], dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"file_list": cells, "annotation_list": cells, "labels": labels})


def stanford_sample(root: Path, lists_folder="lists") -> Path:
    train, test = [], []
    for label, folder in enumerate(STANFORD_FOLDERS, start=1):
        wnid = folder.split("-")[0]
        names = [f"{wnid}_{n}.jpg" for n in range(4)]
        sample_images(root / "Images" / folder, names, seed=label * 10)
        train += [(f"{folder}/{n}", label) for n in names[:2]]
        test += [(f"{folder}/{names[2]}", label)]  # names[3] is in no list
    test.append((f"{STANFORD_FOLDERS[0]}/gone.jpg", 1))
    lists = root / lists_folder if lists_folder else root
    save_stanford_list(lists / "train_list.mat", train)
    save_stanford_list(lists / "test_list.mat", test)
    return root


def petimages_sample(root: Path) -> Path:
    sample_images(root / "PetImages" / "Cat", ["0.jpg", "1.jpg", "2.jpg"])
    sample_images(root / "PetImages" / "Dog", ["0.jpg", "1.jpg"], seed=50)
    (root / "PetImages" / "Cat" / "666.jpg").write_bytes(b"")
    (root / "PetImages" / "Cat" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "readme[1].txt").write_text("Microsoft")
    return root


def kaggle_sample(root: Path) -> Path:
    sample_images(root / "train", ["cat.0.jpg", "cat.1.jpg", "cat.12.jpg", "dog.0.jpg", "dog.7.jpg"])
    sample_images(root / "test1", ["1.jpg", "2.jpg", "3.jpg"], seed=40)
    (root / "sampleSubmission.csv").write_text("id,label\n1,0\n")
    return root


def manifest_sample(root: Path, text: str, name="labels.csv") -> Path:
    sample_images(root / "photos", ["rex.jpg", "tom.png", "felix, the cat.jpg", "fido.jpg"])
    path = root / name
    path.write_text(text, encoding="utf-8")
    return path


def dog_images_folder(root: Path, split_sizes: dict) -> Path:
    """A tiny dogImages tree: `split_sizes[split]` 8x8 JPEGs per `DOG_BREEDS` folder, each of its own seed."""
    seed = 0
    for split, per_class in split_sizes.items():
        for folder in DOG_BREEDS:
            for _n in range(per_class):
                seed += 1
                write_image(root / split / folder / f"{folder[4:]}_{seed:05d}.jpg", (120, 90, 60), seed, size=(8, 8))
    return root


#: Validation losses planted by epoch (epoch 0 is the starting weights, which only fine-tuning scores).
#: Under PLANTED_STOPPING, epoch 3 lowers the best loss by 0.005 (not more than min_delta), epoch 4 is
#: the best and three epochs without a better one stop training after epoch 7.
PLANTED_LOSSES = (5.0, 1.0, 0.8, 0.795, 0.7, 0.75, 0.72, 0.71, 0.6, 0.5)
PLANTED_BEST, PLANTED_LAST = 4, 7


class PlantedLoop:
    """Stands in for `pipeline.heads.training.run_epochs` in a module that trains with it (monkeypatch
    that module's `run_epochs`): runs the real loop on the module's own trainee, but with validation
    losses `losses` (by epoch), a NaN training loss from epoch `nan_from` on, and a fixed stopping rule.
    Remembers the trainee's weights at every validated epoch and the weights the run ended with."""

    def __init__(self, losses=PLANTED_LOSSES, nan_from=None):
        from pipeline.heads.training import Stopping

        self.losses, self.nan_from = losses, nan_from
        self.stopping = Stopping(epochs=len(losses) - 1, patience=3, min_delta=0.01)
        self.calls, self.weights_at, self.final, self.epoch = 0, {}, None, 0

    def __call__(self, trainee, stopping, remedy, **options):
        from pipeline.heads.training import run_epochs

        self.calls += 1
        planted = SimpleNamespace(train_epoch=lambda epoch: self._train_epoch(trainee, epoch),
                                  validate=lambda: self._validate(trainee), weights=trainee.weights,
                                  set_weights=trainee.set_weights)
        state = run_epochs(planted, self.stopping, remedy, **options)
        self.final = trainee.weights()
        return state

    def _train_epoch(self, trainee, epoch):
        self.epoch = epoch
        trained = trainee.train_epoch(epoch)
        return {**trained, "loss": np.nan} if self.nan_from is not None and epoch >= self.nan_from else trained

    def _validate(self, trainee):
        self.weights_at[self.epoch] = trainee.weights()
        return {**trainee.validate(), "valid_loss": self.losses[self.epoch]}


def flat_weights(weights) -> list[np.ndarray]:
    """Nested lists/tuples of arrays (a trainee's `weights()`) as one flat list of arrays."""
    if isinstance(weights, (list, tuple)):
        return [array for part in weights for array in flat_weights(part)]
    return [np.asarray(weights)]


def same_weights(a, b) -> bool:
    flat_a, flat_b = flat_weights(a), flat_weights(b)
    return len(flat_a) == len(flat_b) and all(np.array_equal(x, y) for x, y in zip(flat_a, flat_b))


#: Random colour cells per side of `write_pattern`: distinct pictures, far apart even for random-weight features.
PATTERN_CELLS = 4


def write_pattern(path: Path, seed: int, side: int = 64) -> Path:
    """A JPEG of smoothly blended random colour cells: unlike `write_image`'s flat noisy colours, two seeds
    give pictures that random-weight features do not take for near-duplicates (centred cosine well below 0.85)."""
    from PIL import Image

    cells = np.random.default_rng(seed).integers(0, 256, (PATTERN_CELLS, PATTERN_CELLS, 3)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(cells).resize((side, side), Image.BILINEAR).save(path, quality=90)
    return path


_PR_CAPBSET_DROP = 24  # prctl option (linux/prctl.h)
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2  # the capabilities that let root ignore permissions


def drop_permission_override():
    """preexec_fn: remove root's power to ignore file permissions (for this child only)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")
