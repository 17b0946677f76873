"""Prompts for the two LLM/VLM tasks, and validation of their answers.

The upstream BioCAP filter prompt was never published; ours asks for strict JSON
so every answer is checked. The caption prompt is BioCAP's own by default (see below).
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
#
# Two caption prompts, chosen by name (``CAPTION_PROMPTS``):
#
# - ``biocap-reference`` (the default): the prompt BioCAP's captions were made with,
#   ``caption_gen/caption/prompts.py`` ``build_prompt``: the same sentences, joined as it
#   joins them (without spaces), the class's format examples verbatim (else the Amanita,
#   Athyrium, Papilio fallback), the "Reference excerpt about ..." framing, the 20-word
#   limit, the name rule and the priority order; sent to InternVL as the raw prompt
#   ``caption_gen`` builds by hand (``<image>`` first, no system turn) with its stop
#   strings. Names as ``caption_gen/caption/generator.py`` takes them from the sample:
#   ``species_name`` = common, else scientific, else taxonomic name; the excerpt is
#   framed with the scientific (else taxonomic) name and cut at ``max_wiki_chars``.
# - ``biocap-compact``: our earlier paraphrase, a chat turn (instruction, image, sample)
#   with the lowest known rank named for partial taxa; a named alternative.

REFERENCE_PROMPT = "biocap-reference"
COMPACT_PROMPT = "biocap-compact"
CAPTION_PROMPTS = (REFERENCE_PROMPT, COMPACT_PROMPT)
WORD_LIMIT = 20
REFERENCE_EXCERPT_CHARS = 600  # caption_gen/main.py --max_wiki_chars
REFERENCE_DEFAULT_EXAMPLES = (
    "1. Amanita muscaria displays a vibrant red cap with white warts, striated margins, and "
    "a thick white stalk ending in a bulbous volva. "
    "2. Athyrium filix-femina features arching, finely divided fronds with serrated edges, a "
    "dark midrib, and a slightly hairy surface. "
    "3. Papilio machaon exhibits vivid yellow forewings with black vein patterns, long-tailed "
    "hindwings with blue bands and orange eyespots, and a slim black abdomen. "
)


def reference_caption_text(
    species_name: str, scientific_name: str, examples: str | None, excerpt: str
) -> str:
    """The user text of ``build_prompt``, character for character."""
    parts = [
        "You are a biologist describing organisms based strictly on what is visible in the image.",
        "Your goal is to produce a concise caption that highlights diagnostic, image-based traits.",
        "Focus primarily on anatomical structures (e.g., color, shape, pattern, texture, "
        "position).",
        "If clearly visible, you may mention substrate, scale cues, or explicit interactions.",
        "Use precise biological terminology. Avoid vague or generic words.\n\n",
        f"Examples of good captions:\n{examples or REFERENCE_DEFAULT_EXAMPLES}\n\n",
    ]
    if excerpt:
        parts.append(
            f"Reference excerpt about {scientific_name or species_name} "
            "(use only to standardize correct terms that match visible traits; "
            f"do not copy text; do not add traits not visible in the image):\n{excerpt}\n\n"
        )
    parts += [
        f"The caption must not exceed {WORD_LIMIT} words.",
        f'Include the species name "{species_name}" naturally in the sentence.',
        "Priority order: (1) the most diagnostic visible trait, "
        "(2) a secondary distinctive trait, "
        "(3) a contextual detail only if it strengthens identification.",
        f"For the following image of a {species_name}, write a single, concise sentence "
        "describing its visible traits.",
    ]
    return "".join(parts)


COMPACT_INSTRUCTION = (
    "You are a biologist writing a caption for a photograph of an organism. Describe only "
    "the traits visible in this image that help identify the species: colour, shape, "
    "pattern, texture, body parts. Write one sentence of at most 20 words that names the "
    "species. Do not mention habitat, behaviour or anything not visible. Follow the style "
    "of the examples. A reference description of the species is given to standardise "
    "your terms; do not copy it and do not describe traits that the image does not show."
)
COMPACT_EXAMPLES = (
    "The Northern Cardinal, Cardinalis cardinalis, shows bright red plumage, a pointed crest "
    "and a thick conical orange bill.",
    "The Fly Agaric, Amanita muscaria, has a domed red cap scattered with white warts above a "
    "pale stem.",
    "The Monarch Butterfly, Danaus plexippus, spreads orange wings veined in black with "
    "white-spotted margins.",
)
REFERENCE_CHARS = 600
# How format-example files spell "no examples for this class".
_MISSING = {"", "nan", "n/a", "na", "none", "null"}


@dataclass(frozen=True)
class FormatExamples:
    """Example captions per taxonomic class, keyed by the class name lower-cased (as
    ``caption_gen/data/data_loader.load_class_examples`` keys them). Upstream ships 347
    classes, 3 examples each, as ``format_examples.parquet`` (``class``, ``description``);
    the earlier ``format_examples.csv`` holds the same rows.

    A class whose description is missing (14 upstream) or says "N/A" (one) has no entry:
    it gets the fallback examples. The reference keeps any non-empty ``str(value)``, so its
    prompts for those 15 classes show "None" or "nan" (by pandas version) or "N/A" as the
    examples; we take that for a data gap, not a behaviour to copy.
    """

    by_class: Mapping[str, str]
    source: str = ""

    @classmethod
    def from_file(cls, path: str | Path) -> FormatExamples:
        """A Parquet or CSV file with ``class`` and ``description`` columns."""
        from biocap_assets.common.files import open_read, read_parquet

        name = str(path)
        try:
            if name.endswith(".parquet"):
                table = read_parquet(name)
                rows = table.to_pylist()
                columns = set(table.column_names)
            else:
                with open_read(name, "r") as f:
                    reader = csv.DictReader(f)
                    rows = list(reader)
                    columns = set(reader.fieldnames or [])
        except FileNotFoundError as exc:
            raise ValueError(f"{name}: no such format-examples file") from exc
        except (UnicodeDecodeError, csv.Error, OSError, ValueError) as exc:
            # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"{name}: not a readable Parquet or CSV file ({exc})") from exc
        missing = {"class", "description"} - columns
        if missing:
            raise ValueError(f"{name}: missing column(s) {', '.join(sorted(missing))}")
        by_class: dict[str, str] = {}
        for row in rows:
            key = str(row["class"] or "").strip().lower()
            text = row["description"]
            if key and isinstance(text, str) and text.strip().lower() not in _MISSING:
                by_class[key] = text.strip()
        return cls(by_class, name)

    # the earlier name, kept for callers that read CSV
    from_csv = from_file

    def lookup(self, cls_name: str | None) -> str | None:
        """The class's examples as written in the file, or None (use the fallback)."""
        return self.by_class.get((cls_name or "").strip().lower())

    def for_class(self, cls_name: str | None, limit: int = 3) -> tuple[str, ...]:
        """The class's examples split one per item (the compact prompt's form)."""
        found = split_examples(self.lookup(cls_name) or "")
        return (found or COMPACT_EXAMPLES)[:limit]


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


def compact_caption_text(
    name: str,
    common: str | None,
    cls_name: str | None,
    examples: tuple[str, ...],
    reference: str | None,
) -> str:
    """The per-sample part of the compact prompt (after the instruction and the image)."""
    lines = [f"Species: {name}" + (f" ({common})" if common and common != name else "")]
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


def caption_prompt_sha256(name: str) -> str:
    """A fingerprint of a caption prompt: its text around placeholder inputs, its message
    form and stop strings. Any change to the wording changes it (recorded per shard)."""
    import hashlib

    from biocap_assets.inference.base import INTERNVL_RAW, INTERNVL_STOP

    if name == REFERENCE_PROMPT:
        parts = [
            reference_caption_text("{species}", "{scientific}", "{examples}", "{excerpt}"),
            reference_caption_text("{species}", "", None, ""),
            INTERNVL_RAW,
            *INTERNVL_STOP,
        ]
    elif name == COMPACT_PROMPT:
        parts = [
            COMPACT_INSTRUCTION,
            compact_caption_text("{name}", "{common}", "{class}", ("{example}",), "{excerpt}"),
            *COMPACT_EXAMPLES,
        ]
    else:
        raise ValueError(f"no caption prompt named {name!r}; have {CAPTION_PROMPTS}")
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()
