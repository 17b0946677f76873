"""Procedural specimen images whose visible traits follow the species.

Body plan follows the class, colour, pattern and size follow the species,
while pose, position, background and lighting vary per image: a model must
learn the traits, not memorise pixels. Everything is drawn from the ``rng``
passed in, so a seed fixes every pixel.
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from biocap_assets.demo.species import COLOURS, SIZES, DemoSpecies

BACKGROUNDS = {
    "light": (222, 220, 210),
    "dark": (45, 45, 52),
    "foliage": (95, 140, 75),
    "water": (95, 150, 200),
}
# How a caption says where the specimen was photographed.
BACKGROUND_PHRASES = {
    "light": "Photographed against a pale plain background.",
    "dark": "Photographed against dark surroundings.",
    "foliage": "Photographed among green foliage.",
    "water": "Photographed in open blue water.",
}
_SUPERSAMPLE = 2


def _body(draw: ImageDraw.ImageDraw, shape: str, c: float, r: float, fill: int) -> None:
    """Draw the silhouette of a body plan centred at (c, c) with radius r."""
    e = draw.ellipse
    if shape == "bird":
        e((c - r, c - 0.55 * r, c + 0.8 * r, c + 0.55 * r), fill=fill)
        e((c + 0.45 * r, c - 0.85 * r, c + r, c - 0.2 * r), fill=fill)
        draw.polygon(
            [(c - 0.9 * r, c), (c - 1.3 * r, c - 0.4 * r), (c - 1.3 * r, c + 0.3 * r)], fill=fill
        )
        draw.polygon(
            [(c + 0.95 * r, c - 0.6 * r), (c + 1.25 * r, c - 0.5 * r), (c + 0.95 * r, c - 0.4 * r)],
            fill=fill,
        )
    elif shape == "insect":
        e((c - 0.95 * r, c - 0.9 * r, c - 0.05 * r, c - 0.05 * r), fill=fill)
        e((c + 0.05 * r, c - 0.9 * r, c + 0.95 * r, c - 0.05 * r), fill=fill)
        e((c - 0.25 * r, c - 0.5 * r, c + 0.25 * r, c + r), fill=fill)
        e((c - 0.18 * r, c - 0.75 * r, c + 0.18 * r, c - 0.4 * r), fill=fill)
    elif shape == "flower":
        draw.rectangle((c - 0.05 * r, c, c + 0.05 * r, c + 1.2 * r), fill=fill)
        for k in range(6):
            a = k * math.pi / 3
            px, py = c + 0.55 * r * math.cos(a), c - 0.2 * r + 0.55 * r * math.sin(a)
            e((px - 0.38 * r, py - 0.38 * r, px + 0.38 * r, py + 0.38 * r), fill=fill)
    elif shape == "grass":
        for k in range(5):
            x = c - 0.8 * r + k * 0.4 * r
            draw.polygon(
                [(x - 0.1 * r, c + r), (x + 0.1 * r, c + r), (x + 0.25 * (k - 2) * r, c - r)],
                fill=fill,
            )
    elif shape == "fish":
        e((c - r, c - 0.5 * r, c + 0.6 * r, c + 0.5 * r), fill=fill)
        draw.polygon(
            [(c + 0.45 * r, c), (c + 1.1 * r, c - 0.55 * r), (c + 1.1 * r, c + 0.55 * r)], fill=fill
        )
    elif shape == "mushroom":
        draw.pieslice((c - r, c - 0.9 * r, c + r, c + 0.9 * r), 180, 360, fill=fill)
        draw.rectangle((c - 0.2 * r, c, c + 0.2 * r, c + r), fill=fill)
    elif shape == "shell":
        draw.pieslice((c - r, c - 0.7 * r, c + r, c + 1.3 * r), 200, 340, fill=fill)
        draw.rectangle((c - 0.2 * r, c + 0.2 * r, c + 0.2 * r, c + 0.45 * r), fill=fill)
    elif shape == "foram":
        x, rad = c - 0.8 * r, 0.15 * r
        for _ in range(5):
            e((x - rad, c - rad, x + rad, c + rad), fill=fill)
            x += rad * 1.6
            rad *= 1.3
    else:
        raise ValueError(f"unknown body plan {shape!r}")


def _pattern(
    size: int, pattern: str, rng: random.Random, colour: tuple[int, int, int]
) -> Image.Image | None:
    """A layer with the pattern's marks in a contrasting colour, or None for plain."""
    if pattern == "plain":
        return None
    dark = sum(colour) < 200
    ink = (235, 235, 235) if dark else (25, 25, 25)
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    if pattern == "striped":
        step = size // 10
        offset = rng.randrange(step)
        for x in range(-size, 2 * size, step):
            d.line(
                (x + offset, 0, x + offset + size // 3, size),
                fill=ink + (255,),
                width=max(2, step // 3),
            )
    elif pattern == "spotted":
        for _ in range(40):
            x, y = rng.uniform(0, size), rng.uniform(0, size)
            rad = size * rng.uniform(0.025, 0.04)
            d.ellipse((x - rad, y - rad, x + rad, y + rad), fill=ink + (255,))
    elif pattern == "banded":
        band = size // 7
        for k in (2, 4):
            d.rectangle((k * band, 0, k * band + band * 0.8, size), fill=ink + (255,))
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return layer


def draw_specimen(
    species: DemoSpecies,
    rng: random.Random,
    *,
    size: int = 64,
    background: str = "light",
    count: int = 1,
) -> Image.Image:
    """Draw ``count`` individuals of ``species`` on a ``background``."""
    big = size * _SUPERSAMPLE
    np_rng = np.random.default_rng(rng.getrandbits(32))
    base = np.array(BACKGROUNDS[background], dtype=np.float32)
    noise = np_rng.normal(0, 9, size=(big, big, 3)).astype(np.float32)
    canvas = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")

    colour = COLOURS[species.colour]
    for index in range(count):
        scale = SIZES[species.size] * rng.uniform(0.9, 1.05) / (1.35 if count > 1 else 1)
        radius = big * 0.5 * scale * 0.8
        mask = Image.new("L", (big, big), 0)
        _body(ImageDraw.Draw(mask), species.shape, big / 2, radius, 255)
        mask = mask.rotate(rng.uniform(-25, 25), resample=Image.BILINEAR)
        shade = rng.uniform(0.85, 1.1)
        body = Image.new(
            "RGBA", (big, big), tuple(min(255, int(v * shade)) for v in colour) + (255,)
        )
        marks = _pattern(big, species.pattern, rng, colour)
        if marks is not None:
            body.alpha_composite(marks)
        body.putalpha(mask)
        if count == 1:
            dx, dy = (int(rng.uniform(-0.12, 0.12) * big) for _ in range(2))
        else:
            dx = int((-0.22 if index == 0 else 0.22) * big)
            dy = int(rng.uniform(-0.15, 0.15) * big)
        shifted = ImageChops.offset(body, dx, dy)
        canvas.paste(shifted, (0, 0), shifted)

    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.2, 0.9)))
    return canvas.resize((size, size), Image.LANCZOS)


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    """JPEG-encode deterministically (no EXIF, no timestamps, fixed settings)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buffer.getvalue()
