"""The pixel cap every image we decode is held to (shards, evaluation).

An image file can declare far more pixels than it holds bytes (a "decompression bomb":
a 30 kB PNG of 10^10 pixels needs 30 GB decoded). We refuse any image above
``MAX_PIXELS`` before decoding it, as a bad image of its own, and do not rely on Pillow's
global limit (a warning up to twice its value, then an error of its own type).
``MAX_PIXELS`` is Pillow's default limit, about 89.5 megapixels (e.g. 10,000 x 8,900), far
above any TreeOfLife-10M or benchmark image; one decoded RGB image that size is 256 MiB.
"""

from __future__ import annotations

import warnings

from PIL import Image

MAX_PIXELS = 89_478_485


class ImageTooLarge(ValueError):
    """An image declares more than ``MAX_PIXELS`` pixels."""


def check_pixels(image: Image.Image, what: str = "image") -> Image.Image:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(
            f"{what} declares {width} x {height} pixels, above the cap of {MAX_PIXELS:,}"
        )
    return image


def open_image(source) -> Image.Image:
    """``Image.open`` (headers only, nothing decoded yet) held to ``MAX_PIXELS``. Pillow's
    own warning for sizes near its limit is silenced here: the cap above is the rule."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(source)
    try:
        return check_pixels(image)
    except ImageTooLarge:
        image.close()
        raise
