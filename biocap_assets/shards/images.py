"""How a shard's images are checked while it is rewritten: decoded, or checked by structure.

``decode`` opens the image with Pillow and decodes it (JPEGs at 1/8 scale, which still reads
every entropy-coded byte): any damage Pillow finds is caught. ``structure`` reads only what
says an image is whole: for JPEG the markers up to the scan (each segment's length within
the file, a frame header before the scan) and an end-of-image marker after it (the coded
data can hold no ``FF D9``: a cut file has none); for PNG the chunk lengths and CRCs, an
``IHDR`` first and image data, ending at a chunk boundary. It misses damage inside the
coded data that leaves the structure intact (and refuses a PNG cut inside its final, empty
``IEND``, which Pillow would still read), at a fraction of the cost. Other formats are
decoded. Both hold every image to the pixel cap (``common.images.MAX_PIXELS``) before
anything is decoded.

With ``workers`` above 1, decoding is spread over a process pool (spawned, never forked: the
caption worker may hold a GPU context).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from PIL import Image, UnidentifiedImageError

from biocap_assets.common.images import MAX_PIXELS, open_image

MODES = ("decode", "structure", "none")
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_problem(data: bytes | None) -> str | None:
    """None when the image decodes; else ``no_image`` or ``bad_image``."""
    if data is None:
        return "no_image"
    try:
        with open_image(io.BytesIO(data)) as image:
            image.draft("RGB", (1, 1))
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return "bad_image"
    return None


def _jpeg_whole(data: bytes) -> bool:
    pos, size, frame = 2, len(data), False
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return False
        while pos < size and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= size:
            return False
        marker = data[pos]
        if marker in _JPEG_STANDALONE:
            pos += 1
            continue
        if marker == 0xD9:  # end of image before any scan
            return False
        length = int.from_bytes(data[pos + 1 : pos + 3], "big")
        end = pos + 1 + length
        if length < 2 or end > size:
            return False
        if marker in _JPEG_SOF:
            if length < 8:
                return False
            height, width = struct.unpack(">HH", data[pos + 4 : pos + 8])
            if not width or width * height > MAX_PIXELS:
                return False
            frame = True
        if marker == 0xDA:  # start of scan: the coded data follows, then end of image
            return frame and data.rfind(b"\xff\xd9", end) >= end
        pos = end
    return False


def _png_whole(data: bytes) -> bool:
    """Every chunk whole (length within the file, CRC right), IHDR first, image data seen;
    the file may end at IEND or at a chunk boundary (Pillow reads both)."""
    pos, size, first, idat = 8, len(data), True, False
    while pos + 12 <= size:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > size:
            return False
        body = data[pos + 8 : pos + 8 + length]
        if zlib.crc32(kind + body) != int.from_bytes(data[end - 4 : end], "big"):
            return False
        if first:
            if kind != b"IHDR" or length < 8:
                return False
            width, height = struct.unpack(">II", body[:8])
            if not width or width * height > MAX_PIXELS:
                return False
            first = False
        idat = idat or kind == b"IDAT"
        if kind == b"IEND":
            return idat
        pos = end
    return idat and pos == size


def structure_problem(data: bytes | None) -> str | None:
    """``decode_problem``'s answer from the file's structure (JPEG, PNG); others decoded."""
    if data is None:
        return "no_image"
    if data[:3] == b"\xff\xd8\xff":
        return None if _jpeg_whole(data) else "bad_image"
    if data[:8] == _PNG_SIGNATURE:
        return None if _png_whole(data) else "bad_image"
    return decode_problem(data)


def default_workers() -> int:
    """The CPUs this process may use, at most 8."""
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # not on Linux
        return max(1, min(8, os.cpu_count() or 1))


class ImageChecker:
    """Checks a batch's images in ``mode``; a process pool for ``decode`` with workers > 1."""

    def __init__(self, mode: str = "decode", workers: int = 1):
        if mode not in MODES:
            raise ValueError(f"check_images must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self._pool = None
        if mode == "decode" and workers > 1:
            self._pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))

    def problems(self, images: Sequence[bytes | None]) -> list[str | None]:
        if self.mode == "none":
            return ["no_image" if image is None else None for image in images]
        check = decode_problem if self.mode == "decode" else structure_problem
        if self._pool is None or len(images) < 8:
            return [check(image) for image in images]
        return list(self._pool.map(check, images, chunksize=max(1, len(images) // 32)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ImageChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
