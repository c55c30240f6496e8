"""Keras' own pins of its ImageNet weights files, and checking a file against them.

Every `keras.applications` module downloads its weights with `get_file(..., file_hash=...)`: an
md5 (most families) or a sha256 (ConvNeXt) of the exact file. `PINS` holds those values for every
file a registered backbone can load from the Keras cache, copied from the installed Keras 3 source
(`keras/src/applications/*.py`: the `WEIGHTS_HASHES` tables and the `file_hash` arguments), never
computed here; `tests/test_keras_pins.py` checks every pin against what the installed Keras passes
to `get_file`. Keras publishes no hash for MobileNet and MobileNetV2 (it downloads them unchecked):
those files are absent from `PINS`, and `pin_for` says so.

`file_digest` hashes a file in blocks (memory stays flat on 500 MB files); `check_pin` compares it
with the pin and returns the refusal, naming the expected and found digests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

#: Where Keras downloads every weights file from: `<STORAGE><folder>/<file name>`.
STORAGE = "https://storage.googleapis.com/"
#: The folder (under `STORAGE`) of most families' files.
_KA = "tensorflow/keras-applications/"
HASH_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class WeightsPin:
    """One official Keras weights file: its name in the Keras cache, where it is downloaded from,
    and the digest Keras pins it with (`algorithm` is "md5" or "sha256")."""

    file_name: str
    folder: str
    algorithm: str
    digest: str

    @property
    def origin(self) -> str:
        """The URL Keras downloads the file from."""
        return f"{STORAGE}{self.folder}/{self.file_name}"

    def describe(self) -> str:
        """e.g. "md5 6d6bbae143d832006294945121d1f1fc"."""
        return f"{self.algorithm} {self.digest}"


PINS: dict[str, WeightsPin] = {pin.file_name: pin for pin in (
    WeightsPin("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", _KA + "vgg16", "md5",
               "6d6bbae143d832006294945121d1f1fc"),
    WeightsPin("vgg16_weights_tf_dim_ordering_tf_kernels.h5", _KA + "vgg16", "md5",
               "64373286793e3c8b2b4e3219cbf3544b"),
    WeightsPin("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", _KA + "vgg19", "md5",
               "253f8cb515780f3b799900260a226db6"),
    WeightsPin("vgg19_weights_tf_dim_ordering_tf_kernels.h5", _KA + "vgg19", "md5",
               "cbe5617147190e668d6c5d5026f83318"),
    WeightsPin("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", _KA + "resnet", "md5",
               "4d473c1dd8becc155b73f8504c6f6626"),
    WeightsPin("resnet50_weights_tf_dim_ordering_tf_kernels.h5", _KA + "resnet", "md5",
               "2cb95161c43110f7111970584f804107"),
    WeightsPin("resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5", _KA + "resnet", "md5",
               "88cf7a10940856eca736dc7b7e228a21"),
    WeightsPin("resnet101_weights_tf_dim_ordering_tf_kernels.h5", _KA + "resnet", "md5",
               "f1aeb4b969a6efcfb50fad2f0c20cfc5"),
    WeightsPin("resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5", _KA + "resnet", "md5",
               "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    WeightsPin("resnet152_weights_tf_dim_ordering_tf_kernels.h5", _KA + "resnet", "md5",
               "100835be76be38e30d865e96f2aaae62"),
    WeightsPin("resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5", _KA + "resnet", "md5",
               "fac2f116257151a9d068a22e544a4917"),
    WeightsPin("resnet50v2_weights_tf_dim_ordering_tf_kernels.h5", _KA + "resnet", "md5",
               "3ef43a0b657b3be2300d5770ece849e0"),
    WeightsPin("resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5", _KA + "resnet", "md5",
               "c0ed64b8031c3730f411d2eb4eea35b5"),
    WeightsPin("resnet101v2_weights_tf_dim_ordering_tf_kernels.h5", _KA + "resnet", "md5",
               "6343647c601c52e1368623803854d971"),
    WeightsPin("resnet152v2_weights_tf_dim_ordering_tf_kernels_notop.h5", _KA + "resnet", "md5",
               "ed17cf2e0169df9d443503ef94b23b33"),
    WeightsPin("resnet152v2_weights_tf_dim_ordering_tf_kernels.h5", _KA + "resnet", "md5",
               "a49b44d1979771252814e80f8ec446f9"),
    WeightsPin("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", _KA + "inception_v3", "md5",
               "bcbd6486424b2319ff4ef7d526e38f63"),
    WeightsPin("inception_v3_weights_tf_dim_ordering_tf_kernels.h5", _KA + "inception_v3", "md5",
               "9a0d58056eeedaa3f26cb7ebd46da564"),
    WeightsPin("xception_weights_tf_dim_ordering_tf_kernels_notop.h5", _KA + "xception", "md5",
               "b0042744bf5b25fce3cb969f33bebb97"),
    WeightsPin("xception_weights_tf_dim_ordering_tf_kernels.h5", _KA + "xception", "md5",
               "0a58e3b7378bc2990ea3b43d5981f1f6"),
    WeightsPin("inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5", _KA + "inception_resnet_v2", "md5",
               "d19885ff4a710c122648d3b5c3b684e4"),
    WeightsPin("inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5", _KA + "inception_resnet_v2", "md5",
               "e693bd0210a403b3192acc6073ad2e96"),
    WeightsPin("densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", _KA + "densenet", "md5",
               "30ee3e1110167f948a6b9946edeeb738"),
    WeightsPin("densenet121_weights_tf_dim_ordering_tf_kernels.h5", _KA + "densenet", "md5",
               "9d60b8095a5708f2dcce2bca79d332c7"),
    WeightsPin("efficientnetb0_notop.h5", "keras-applications", "md5", "50bc09e76180e00e4465e1a485ddc09d"),
    WeightsPin("efficientnetb0.h5", "keras-applications", "md5", "902e53a9f72be733fc0bcb005b3ebbac"),
    WeightsPin("efficientnetv2-b0_notop.h5", _KA + "efficientnet_v2", "md5",
               "893217f2bb855e2983157299931e43ff"),
    WeightsPin("efficientnetv2-b0.h5", _KA + "efficientnet_v2", "md5",
               "21ecbf6da12460d5c40bb2f29ceb2188"),
    WeightsPin("efficientnetv2-b1_notop.h5", _KA + "efficientnet_v2", "md5",
               "0e80663031ca32d657f9caa404b6ec37"),
    WeightsPin("efficientnetv2-b1.h5", _KA + "efficientnet_v2", "md5",
               "069f0534ff22adf035c89e2d9547a9dc"),
    WeightsPin("efficientnetv2-b2_notop.h5", _KA + "efficientnet_v2", "md5",
               "1dfe2e7a5d45b6632553a8961ea609eb"),
    WeightsPin("efficientnetv2-b2.h5", _KA + "efficientnet_v2", "md5",
               "424e49f28180edbde1e94797771950a7"),
    WeightsPin("efficientnetv2-b3_notop.h5", _KA + "efficientnet_v2", "md5",
               "f6abf7b5849ac99a89b50dd3fd532856"),
    WeightsPin("efficientnetv2-b3.h5", _KA + "efficientnet_v2", "md5",
               "1f1fc43bd98a6e4fd8fdfd551e02c7a0"),
    WeightsPin("efficientnetv2-s_notop.h5", _KA + "efficientnet_v2", "md5",
               "af0682fb74e8c54910f2d4393339c070"),
    WeightsPin("efficientnetv2-s.h5", _KA + "efficientnet_v2", "md5",
               "e1d88a8495beba45748fedd0cecbe016"),
    WeightsPin("convnext_tiny_notop.h5", _KA + "convnext", "sha256",
               "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
    WeightsPin("convnext_tiny.h5", _KA + "convnext", "sha256",
               "8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff"),
    WeightsPin("convnext_small_notop.h5", _KA + "convnext", "sha256",
               "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab"),
    WeightsPin("convnext_small.h5", _KA + "convnext", "sha256",
               "ce1277d8f1ee5a0ef0e171469089c18f5233860ceaf9b168049cb9263fd7483c"),
    WeightsPin("convnext_base_notop.h5", _KA + "convnext", "sha256",
               "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45"),
    WeightsPin("convnext_base.h5", _KA + "convnext", "sha256",
               "52cbb006d3dadd03f6e095a8ca1aca47aecdd75acb4bc74bce1f5c695d0086e6"),
)}


def pin_for(file_name: str) -> WeightsPin | None:
    """Keras' pin of the weights file called `file_name`, or None where Keras publishes none."""
    return PINS.get(file_name)


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of the file at `path` ("md5" or "sha256"), read in blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def check_pin(path: Path, pin: WeightsPin) -> str | None:
    """None when the file at `path` is the one `pin` names, else why not (expected and found digest)."""
    found = file_digest(path, pin.algorithm)
    if found == pin.digest:
        return None
    return (f"its {pin.algorithm} is {found}, but Keras pins {pin.file_name} at {pin.digest} (a damaged or "
            "different file; delete it and let Keras download it again)")
