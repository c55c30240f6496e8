"""Reliability, bad inputs: every kind of broken or unusual image file gets a per-file outcome.

One dataset holds every case from issue 6 next to good images. Extraction must record a clear
reason for each file that cannot be used, give every usable file a row (converted the same way
every time), ignore operating-system litter silently, and never stop. `--strict` refuses the
same dataset before any forward pass. The decoder's conversions are checked on pixel values.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASS_COLOURS, REPO_ROOT, TINY_CLI_ARGS, write_image
from PIL import Image
from samples import drop_permission_override

from pipeline.cache.format import read_cache_info
from pipeline.data.hashing import hash_files
from pipeline.data.images import (
    ALPHA_BACKGROUND_RGB,
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    ResizeSpec,
    decode_image,
    open_rgb,
)
from pipeline.errors import DatasetError

#: Side of a header-only PNG whose pixel count is over the default decompression-bomb limit.
BOMB_SIDE = 20_000
#: Non-UTF-8 file names (Latin-1 bytes), legal on Linux and common on old archives.
LATIN1_GOOD = b"caf\xe9.jpg"
LATIN1_BAD = b"d\xe9fectueux.jpg"


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims `width` x `height` pixels: what a decompression bomb looks like to a decoder."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))


def jpeg_bytes(image: Image.Image, **save_options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **save_options)
    return buffer.getvalue()


def noise(mode: str, size=(48, 40), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "CMYK": 4}[mode]
    pixels = rng.integers(0, 255, size[::-1] + ((channels,) if channels > 1 else ()), dtype=np.uint8)
    return Image.fromarray(pixels, mode=mode)


def exif_rotated_jpeg() -> bytes:
    """A 40x20 image (left red, right blue) stored with EXIF orientation 6 (display rotated 90° clockwise)."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg_bytes(Image.fromarray(pixels), exif=exif.tobytes(), quality=95)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (24, 24), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def build_bad_files(folder: Path) -> dict[bytes, str | None]:
    """Write every problem file into `folder`; returns {file name: expected reason fragment, or None for a row}.

    Files that must be ignored silently are written too but are not in the returned map.
    """
    folder.mkdir(parents=True, exist_ok=True)
    good_jpeg = jpeg_bytes(noise("RGB", seed=1))
    png_buffer, gif_buffer = io.BytesIO(), io.BytesIO()
    noise("RGB", seed=2).save(png_buffer, "PNG")
    noise("RGB", seed=3).convert("P").save(gif_buffer, "GIF")
    palette = noise("RGB", seed=4).convert("P")
    palette.info["transparency"] = 0
    files = {
        b"zero_bytes.jpg": (b"", "empty file"),
        b"truncated.jpg": (good_jpeg[: len(good_jpeg) // 2], "truncated"),
        b"random_bytes.jpg": (np.random.default_rng(5).bytes(3000), "not a recognised image format"),
        b"png_named.jpg": (png_buffer.getvalue(), None),
        b"gif_named.jpg": (gif_buffer.getvalue(), None),
        b"cmyk.jpg": (jpeg_bytes(noise("CMYK", seed=6)), None),
        b"grayscale.jpg": (jpeg_bytes(noise("L", seed=7)), None),
        b"exif_rotated.jpg": (exif_rotated_jpeg(), None),
        b"animated.gif": (animated_gif(), None),
        b"huge.png": (png_header_only(BOMB_SIDE, BOMB_SIDE), "decompression bomb"),
        LATIN1_GOOD: (jpeg_bytes(noise("RGB", seed=8)), None),
        LATIN1_BAD: (b"not an image at all", "not a recognised image format"),
    }
    for name, (data, _) in files.items():
        Path(os.fsdecode(folder) + "/" + os.fsdecode(name)).write_bytes(data)
    for name, mode in ((b"deep16.png", "I;16"), (b"rgba.png", "RGBA")):
        noise(mode, seed=len(name)).save(folder / os.fsdecode(name))
        files[name] = (None, None)
    palette.save(folder / "palette_transparent.png")
    files[b"palette_transparent.png"] = (None, None)
    os.symlink(folder / "no_such_target.jpg", folder / "broken_link.jpg")
    files[b"broken_link.jpg"] = (None, "broken symbolic link")
    os.mkfifo(folder / "pipe.jpg")  # reading a named pipe would block the run forever
    files[b"pipe.jpg"] = (None, "not a regular file")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not an image")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return {name: reason for name, (_, reason) in files.items()}


@pytest.fixture
def messy_dataset(tmp_path) -> tuple[Path, dict[str, str | None]]:
    """root/cat: every problem file plus good images; root/dog: good images. {relpath: reason or None}."""
    root = tmp_path / "messy"
    expected = {f"cat/{os.fsdecode(name)}": reason for name, reason in build_bad_files(root / "cat").items()}
    for index in range(4):
        for name in ("cat", "dog"):
            write_image(root / name / f"good_{index}.jpg", CLASS_COLOURS[name], seed=100 + index + 10 * len(name))
            expected[f"{name}/good_{index}.jpg"] = None
    return root, expected


def test_every_bad_file_gets_a_reason_and_every_good_file_a_row(messy_dataset, tmp_path, cli):
    root, expected = messy_dataset
    cache_dir = tmp_path / "cache"
    summary, _ = cli.json(["extract", root, *TINY_CLI_ARGS, "--cache-dir", cache_dir])
    details, _ = cli.json(["cache", "show", "--cache-dir", cache_dir])

    failures = {entry["path"]: entry["reason"] for entry in details["failures"]}
    should_fail = {path: reason for path, reason in expected.items() if reason is not None}
    assert set(failures) == set(should_fail), "failures must be exactly the unusable files"
    for path, fragment in should_fail.items():
        assert fragment in failures[path], (path, failures[path])
    assert {entry["path"] for entry in summary["failures"]} == set(failures), "the run's summary lists them too"

    info = read_cache_info(Path(summary["cache_path"]))
    usable = {path for path, reason in expected.items() if reason is None}
    assert set(info.images.relpath) == usable, "every good file has a row; litter is not listed anywhere"
    assert summary["images"] == len(usable)
    assert not any(name in path for path in failures for name in ("Thumbs.db", ".DS_Store"))
    assert len(set(info.images.sha256)) == info.row_count == len(usable)


def test_non_utf8_file_names_round_trip_through_the_cache(messy_dataset, tmp_path, cli):
    root, _ = messy_dataset
    summary, _ = cli.json(["extract", root, *TINY_CLI_ARGS, "--cache-dir", tmp_path / "cache"])
    info = read_cache_info(Path(summary["cache_path"]))
    good = "cat/" + os.fsdecode(LATIN1_GOOD)
    assert good in info.images.relpath
    assert os.fsencode(good) == b"cat/" + LATIN1_GOOD, "the stored name gives back the exact bytes on disk"
    assert (root / good).is_file(), "and opens the very file"
    assert "cat/" + os.fsdecode(LATIN1_BAD) in {path for path, _ in info.failures}

    text = cli(["cache", "show", "--cache-dir", tmp_path / "cache"])
    assert text.exit_code == 0, text.output
    assert "cat/d\\xe9fectueux.jpg: not a recognised image format" in text.output
    rerun = cli(["extract", root, *TINY_CLI_ARGS, "--cache-dir", tmp_path / "cache"])
    assert rerun.exit_code == 0, rerun.output
    assert "Failures" in rerun.output and "0 extracted" in rerun.output


def test_strict_refuses_before_any_forward_pass_and_lists_the_files(messy_dataset, tmp_path, cli):
    root, expected = messy_dataset
    cache_dir = tmp_path / "cache"
    payload, result = cli.json(["extract", root, *TINY_CLI_ARGS, "--strict", "--cache-dir", cache_dir], expect_ok=False)
    assert result.exit_code == 1
    message = payload["error"]
    bad = [path for path, reason in expected.items() if reason is not None]
    assert f"--strict: {len(bad)} files cannot be used" in message
    for path in bad:
        assert path in message
    assert "run without --strict" in message
    assert not list(cache_dir.glob("*.h5")) and not list(cache_dir.glob("*.partial")), "nothing was extracted"


def test_strict_passes_a_clean_dataset(tiny_dataset, tmp_path, cli):
    payload, _ = cli.json(["extract", tiny_dataset, *TINY_CLI_ARGS, "--strict", "--cache-dir", tmp_path / "cache"])
    assert payload["failures"] == [] and payload["extracted"] == payload["images"] == 24


def test_pixel_limit_is_a_per_run_choice(tmp_path, tiny_options):
    """The bomb limit refuses a file by default and accepts it when the run allows large images."""
    from dataclasses import replace

    from pipeline.extract.run import run_extract

    root = tmp_path / "big"
    for name in ("cat", "dog"):
        for index in range(2):
            write_image(root / name / f"{index}.jpg", CLASS_COLOURS[name], seed=index + len(name), size=(60, 80))
    limited = replace(tiny_options, max_pixels=60 * 80 - 1, strict=False)
    with pytest.raises(DatasetError) as refused:
        run_extract(root, tmp_path / "cache", limited)
    assert "decompression bomb" in str(refused.value) and "none of the 4 image files" in str(refused.value)
    with pytest.raises(DatasetError) as strict:
        run_extract(root, tmp_path / "cache", replace(limited, strict=True))
    assert "--strict: 4 files cannot be used" in str(strict.value)
    allowed = run_extract(root, tmp_path / "cache", replace(tiny_options, max_pixels=None, strict=True))
    assert allowed.failures == [] and allowed.extracted == 4


def test_huge_header_is_refused_without_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(BOMB_SIDE, BOMB_SIDE))
    assert BOMB_SIDE ** 2 > DEFAULT_MAX_PIXELS
    with pytest.raises(ImageDecodeError, match="--allow-large-images"):
        decode_image(path, ResizeSpec(32, 32))


def test_real_problem_files_from_the_public_datasets(shared_data, tmp_path, cli):
    """The PetImages/Oxford files behind `.jpg` names: GIF, PNG (RGBA), PSD, BMP and CMYK data decode; empties fail."""
    corrupt = shared_data / "corrupt"
    root = tmp_path / "real"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    decodable = sorted(p.name for p in corrupt.glob("*.jpg"))
    for name in decodable:
        os.symlink(corrupt / name, root / "cat" / name)
    os.symlink(corrupt / "PetImages_Icon_CR_zero_bytes", root / "cat" / "zero.jpg")
    os.symlink(corrupt / "PetImages_Cat_Thumbs.db", root / "cat" / "Thumbs.db")
    for index in range(3):
        write_image(root / "dog" / f"{index}.jpg", CLASS_COLOURS["dog"], seed=index)
    summary, _ = cli.json(["extract", root, *TINY_CLI_ARGS, "--cache-dir", tmp_path / "cache"])
    assert summary["failures"] == [{"path": "cat/zero.jpg", "reason": "empty file (0 bytes)"}]
    info = read_cache_info(Path(summary["cache_path"]))
    assert sorted(p for p in info.images.relpath if p.startswith("cat/")) == [f"cat/{n}" for n in decodable]


# ----------------------------------------------------------------------------------------------
# Conversions: the same rule for every file, checked on pixel values


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    path.write_bytes(exif_rotated_jpeg())
    image = np.asarray(open_rgb(path)).astype(int)
    assert image.shape == (40, 20, 3), "orientation 6 turns a 40x20 landscape into a 20x40 portrait"
    top, bottom = image[5, 10], image[-5, 10]
    assert top[0] > 200 and top[2] < 60, "the red (left) half is on top after a clockwise turn"
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_gif_uses_the_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    path.write_bytes(animated_gif())
    assert tuple(np.asarray(open_rgb(path))[0, 0]) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white(tmp_path, mode):
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.paste((10, 200, 30, 255), (0, 0, 4, 8))  # left half opaque, right half fully transparent
    image = rgba if mode == "RGBA" else rgba.convert("LA") if mode == "LA" else rgba.convert("P")
    if mode == "P":
        image.info["transparency"] = image.getpixel((7, 7))
    path = tmp_path / f"alpha_{mode}.png"
    image.save(path)
    pixels = np.asarray(open_rgb(path))
    assert tuple(pixels[0, 7]) == ALPHA_BACKGROUND_RGB
    assert tuple(pixels[0, 0]) != ALPHA_BACKGROUND_RGB


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    assert np.asarray(open_rgb(path))[0, :, 0].tolist() == [0, 128, 255]


def test_grayscale_and_cmyk_become_rgb(tmp_path):
    Image.new("L", (6, 6), 90).save(tmp_path / "gray.png")
    gray = np.asarray(open_rgb(tmp_path / "gray.png"))
    assert gray.shape == (6, 6, 3) and (gray == 90).all()
    Image.new("CMYK", (6, 6), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    red = np.asarray(open_rgb(tmp_path / "cmyk.jpg")).astype(int)[3, 3]
    assert red[0] > 230 and red[1] < 30 and red[2] < 30


# ----------------------------------------------------------------------------------------------
# Unreadable files (permissions): root reads chmod-000 files, so the probe runs without that power


_UNREADABLE_PROBE = """
import sys
from pathlib import Path
from pipeline.data.hashing import hash_files
from pipeline.data.images import ImageDecodeError, ResizeSpec, decode_image
path = Path(sys.argv[1])
print(hash_files([path])[0].error)
try:
    decode_image(path, ResizeSpec(8, 8))
    print("decoded")
except ImageDecodeError as error:
    print(error.reason)
"""


def test_unreadable_file_gets_a_permission_reason(tmp_path):
    path = write_image(tmp_path / "locked.jpg", (1, 2, 3), seed=0)
    path.chmod(0)
    if os.geteuid() != 0:
        assert hash_files([path])[0].error == "permission denied while reading the file"
        with pytest.raises(ImageDecodeError, match="permission denied"):
            decode_image(path, ResizeSpec(8, 8))
        return
    try:
        probe = subprocess.run([sys.executable, "-c", _UNREADABLE_PROBE, str(path)], cwd=REPO_ROOT,
                               capture_output=True, text=True, preexec_fn=drop_permission_override, timeout=120)
    except subprocess.SubprocessError as error:
        pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE to make a file unreadable: {error}")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.splitlines() == ["permission denied while reading the file"] * 2
