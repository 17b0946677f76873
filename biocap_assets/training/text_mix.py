"""One text type per step for the whole global batch, drawn from a seed and the step.

Every rank computes the same draw from (seed, step) alone, so all ranks of a step
use the same text type and the same projector without communicating.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

TEXT_TYPES = ("sci", "com", "taxon", "sci_com", "taxon_com", "caption")
TEXT_KEYS = {t: f"{t}.txt" for t in TEXT_TYPES}
UNIFORM = dict.fromkeys(TEXT_TYPES, 1.0)


def text_type_for_step(step: int, seed: int, weights: Mapping[str, float] = UNIFORM) -> str:
    names = [t for t in TEXT_TYPES if weights.get(t, 0) > 0]
    if not names:
        raise ValueError("at least one text type needs a positive weight")
    rng = random.Random(seed * 1_000_003 + step)
    return rng.choices(names, weights=[weights[t] for t in names])[0]


def projector_for(text_type: str) -> str:
    return "caption" if text_type == "caption" else "taxonomic"
