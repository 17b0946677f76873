"""Prompts for the two LLM/VLM tasks, and validation of their answers.

The upstream BioCAP filter prompt was never published; ours asks for strict JSON
so every answer is checked. The caption prompt follows the upstream facts: a
biologist's instruction first (the same for every sample, so the prefix cache
reuses it), then the image, then up to three format examples for the sample's
class and up to ~600 characters of the taxon's visual description as a reference.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# -- visual_descriptions ----------------------------------------------------------------

DESCRIPTION_INSTRUCTION = (
    "You are a biologist preparing training data for an image model. You will get the text "
    "of a Wikipedia section about one species. Keep only what describes its visible "
    "appearance: colour, shape, size, pattern, texture and body parts, in the text's own "
    "words. Drop everything else: habitat, range, distribution, behaviour, diet, "
    "reproduction, etymology, taxonomy and its history, conservation status. If nothing "
    "visual remains, give an empty string. Answer with JSON only, exactly of the form "
    '{"visual_description": "..."}.'
)


def description_text(
    binomial: str, common_name: str | None, text: str, max_chars: int = 6000
) -> str:
    name = f"{binomial} ({common_name})" if common_name else binomial
    return f"Species: {name}\nText:\n{text[:max_chars]}"


def parse_description_answer(answer: str) -> str:
    """The description from a model's JSON answer; ValueError when it is not valid."""
    cleaned = answer.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", cleaned, re.S)
    if fenced:
        cleaned = fenced.group(1)
    try:
        data = json.loads(cleaned)
    except ValueError as exc:
        raise ValueError(f"answer is not JSON: {answer[:120]!r}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("visual_description"), str):
        raise ValueError(f'answer lacks a "visual_description" string: {answer[:120]!r}')
    return " ".join(data["visual_description"].split())


# -- captions ---------------------------------------------------------------------------

CAPTION_INSTRUCTION = (
    "You are a biologist writing a caption for a photograph of an organism. Describe only "
    "the traits visible in this image that help identify the species: colour, shape, "
    "pattern, texture, body parts. Write one sentence of at most 20 words that names the "
    "species. Do not mention habitat, behaviour or anything not visible. Follow the style "
    "of the examples. A reference description of the species is given to standardise "
    "your terms; do not copy it and do not describe traits that the image does not show."
)
DEFAULT_EXAMPLES = (
    "The Northern Cardinal, Cardinalis cardinalis, shows bright red plumage, a pointed crest "
    "and a thick conical orange bill.",
    "The Fly Agaric, Amanita muscaria, has a domed red cap scattered with white warts above a "
    "pale stem.",
    "The Monarch Butterfly, Danaus plexippus, spreads orange wings veined in black with "
    "white-spotted margins.",
)
REFERENCE_CHARS = 600
# How the upstream file (and pandas) spell "no examples for this class".
_MISSING = {"", "nan", "n/a", "na", "none", "null"}


@dataclass(frozen=True)
class FormatExamples:
    """Example captions per taxonomic class (upstream: 347 classes, 3 each)."""

    by_class: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_csv(cls, path: str | Path) -> FormatExamples:
        """Read ``class,description``; the description holds ``1.… 2.… 3.…``."""
        by_class: dict[str, tuple[str, ...]] = {}
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"class", "description"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            for row in reader:
                examples = split_examples(row["description"] or "")
                if examples:
                    by_class[row["class"].strip()] = examples
        return cls(by_class)

    def for_class(self, cls_name: str | None, limit: int = 3) -> tuple[str, ...]:
        found = self.by_class.get((cls_name or "").strip())
        return (found or DEFAULT_EXAMPLES)[:limit]


def split_examples(text: str) -> tuple[str, ...]:
    """``"1.A … 2.B … 3.C …"`` into its examples; blanks and 'N/A', 'nan' give none."""
    text = text.strip()
    if text.lower() in _MISSING:
        return ()
    parts = re.split(r"(?:^|\s)\d+\.\s*(?=\S)", text)
    return tuple(" ".join(p.split()) for p in parts if p.strip())


def cut_reference(description: str | None, limit: int = REFERENCE_CHARS) -> str:
    """At most ``limit`` characters, cut at a word boundary."""
    text = " ".join((description or "").split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " …"


def caption_text(
    scientific: str,
    common: str | None,
    cls_name: str | None,
    examples: tuple[str, ...],
    reference: str | None,
) -> str:
    """The per-sample part of the caption prompt (after the instruction and the image)."""
    lines = [f"Species: {scientific}" + (f" ({common})" if common and common != scientific else "")]
    if cls_name:
        lines.append(f"Class: {cls_name}")
    lines.append("Examples of the expected format:")
    lines += [f"- {e}" for e in examples]
    ref = cut_reference(reference)
    if ref:
        lines.append(f"Reference description (for terms only): {ref}")
    lines.append("Caption:")
    return "\n".join(lines)


def clean_caption(answer: str) -> str:
    """One line, no surrounding quotes or 'Caption:' label."""
    text = " ".join(answer.split())
    text = re.sub(r"^(?:caption\s*:\s*)", "", text, flags=re.I)
    return text.strip().strip('"').strip()
