"""What every explain command writes: uint8 PNGs and one JSON sidecar per result.

A result lives in its own folder, `<output dir>/<command>-<timestamp>[-n]/`, holding its PNGs and
`result.json`: the command line, every setting, the classifier's source (`Classifier.source`),
the measured result, `images` (the PNG file names, in display order), `title` and `summary`
(one line each). `report --html` shows every such folder under a head's `explain/` folder.

Pixels are saved as what a user would share: rounded and clipped to uint8. `save_png` returns
the pixels read back from the written file, so a result is judged on exactly what was saved.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np

from pipeline.atomic import write_bytes_atomically, write_text_atomically
from pipeline.cache.key import now_iso

#: The sidecar's file name inside a result folder.
SIDECAR_NAME = "result.json"
_TIMESTAMP_CHARACTERS = str.maketrans({":": "", "-": ""})


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 255] (any shape ending in 3 channels) rounded and clipped to uint8."""
    return np.clip(np.rint(np.asarray(pixels, dtype=np.float64)), 0, 255).astype(np.uint8)


def save_png(path: Path, pixels: np.ndarray) -> np.ndarray:
    """Write `pixels` (h, w, 3) as an 8-bit RGB PNG atomically; returns the file's pixels read back (uint8)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(to_uint8(pixels), mode="RGB").save(buffer, format="PNG")
    write_bytes_atomically(Path(path), buffer.getvalue())
    with Image.open(path) as saved:
        return np.asarray(saved.convert("RGB"), dtype=np.uint8)


def new_result_dir(output_dir: Path, command: str) -> Path:
    """A fresh `<output_dir>/<command>-<timestamp>[-n]` folder, created."""
    stamp = now_iso().split(".")[0].split("+")[0].translate(_TIMESTAMP_CHARACTERS)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = output_dir / (f"{command}-{stamp}" if n == 1 else f"{command}-{stamp}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free result folder name under {output_dir}")


def write_sidecar(result_dir: Path, command: str, settings: dict, source: dict, result: dict,
                  images: list[str], title: str, summary: str) -> Path:
    """Write `result_dir/result.json` (see the module doc) atomically; returns its path."""
    document = {"command": " ".join(["bottleneck", *sys.argv[1:]]) if sys.argv[1:] else command,
                "kind": command, "created": now_iso(), "title": title, "summary": summary, "images": list(images),
                "settings": settings, "classifier": source, "result": result}
    return write_text_atomically(Path(result_dir) / SIDECAR_NAME, json.dumps(document, indent=2, default=_plain) + "\n")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to a sidecar")
