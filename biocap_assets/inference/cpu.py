"""CPU fallbacks: keep the graph runnable with no GPU, never passed off as a model.

- ``RuleDescriptionFilter`` keeps the sentences that mention visible traits and
  drop those about habitat, behaviour, names and history.
- ``TemplateCaptioner`` writes "<Common name>, <binomial>: <visual traits from the
  description>." (a partial taxon is named by its lowest known rank; a common name keeps
  its case). Every word comes from the sample's own texts: nothing is invented.
"""

from __future__ import annotations

import re

from biocap_assets.taxonomy.names import capitalise_first

CPU_BACKEND = "cpu"
FILTER_MODEL = "rule-filter-v1"
CAPTION_MODEL = "template-captioner-v2"

_COLOURS = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "violet",
    "pink",
    "brown",
    "black",
    "white",
    "grey",
    "gray",
    "golden",
    "silver",
    "cream",
    "tan",
    "olive",
    "crimson",
    "scarlet",
    "buff",
    "chestnut",
    "rufous",
    "iridescent",
    "colour",
    "color",
    "colored",
    "coloured",
    "dark",
    "pale",
    "bright",
)
_TRAITS = (
    "stripe",
    "striped",
    "spot",
    "spotted",
    "band",
    "banded",
    "barred",
    "mottled",
    "pattern",
    "marking",
    "plain",
    "unmarked",
    "shape",
    "shaped",
    "round",
    "oval",
    "elongated",
    "slender",
    "stout",
    "long",
    "short",
    "tall",
    "wide",
    "broad",
    "narrow",
    "cm",
    "mm",
    " m ",
    "length",
    "wingspan",
    "across",
    "size",
    "large",
    "small",
    "texture",
    "smooth",
    "rough",
    "hairy",
    "glossy",
    "scales",
    "feathers",
    "fur",
    "plumage",
    "bill",
    "beak",
    "wing",
    "wings",
    "tail",
    "fin",
    "fins",
    "cap",
    "stipe",
    "gills",
    "petal",
    "petals",
    "leaf",
    "leaves",
    "stem",
    "shell",
    "body",
    "head",
    "legs",
    "antennae",
    "crest",
    "eyes",
    "spikelets",
    "blades",
    "chambers",
    "hinge",
)
_NON_VISUAL = (
    "habitat",
    "found in",
    "found across",
    "distribution",
    "range",
    "native to",
    "diet",
    "feeds",
    "eats",
    "prey",
    "breeding",
    "breeds",
    "nest",
    "behaviour",
    "behavior",
    "migrat",
    "named",
    "epithet",
    "derived from",
    "described by",
    "etymology",
    "latin",
    "greek",
    "taxonomy",
    "classified",
    "conservation",
    "least concern",
    "endangered",
    "population",
    "listed as",
    "season",
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def _has(sentence: str, words: tuple[str, ...]) -> bool:
    lowered = f" {sentence.lower()} "
    return any(w in lowered for w in words)


def visual_sentences(text: str) -> list[str]:
    sentences = [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]
    return [
        s for s in sentences if (_has(s, _COLOURS) or _has(s, _TRAITS)) and not _has(s, _NON_VISUAL)
    ]


class RuleDescriptionFilter:
    backend = CPU_BACKEND
    model = FILTER_MODEL

    def describe(self, text: str) -> str:
        return " ".join(visual_sentences(text))


_DANGLING = {"and", "or", "with", "a", "an", "the", "of", "to", "in", "on", "by"}


def _trait_clause(description: str, max_words: int, name_words: set[str]) -> str:
    """The first visual sentence with a colour (not one in the species' name), cut short."""
    for sentence in visual_sentences(description):
        words = sentence.rstrip(".").split()
        if not _has(" ".join(w for w in words if w.lower() not in name_words), _COLOURS):
            continue
        # "It is red with ..." -> "red with ..."
        if (
            len(words) > 2
            and words[0].lower() in ("it", "they", "adults")
            and words[1].lower() in ("is", "are", "has", "have")
        ):
            words = words[2:]
        words = words[:max_words]
        while words and words[-1].lower().strip(",;") in _DANGLING:
            words.pop()
        return " ".join(words).rstrip(",;")
    return ""


class TemplateCaptioner:
    backend = CPU_BACKEND
    model = CAPTION_MODEL

    def caption(
        self, label: str, common: str | None, description: str | None, max_words: int = 20
    ) -> str | None:
        """``label``: the taxon as ``shards.texts.taxon_label`` names it ("Corvus corax", or
        "a member of the family Cecidomyiidae (order Diptera)"); None when it is empty."""
        if not label:
            return None
        name = f"{common}, {label}" if common and common != label else label
        budget = max(0, max_words - len(name.split()))
        name_words = {w.lower() for w in f"{label} {common or ''}".split()}
        traits = _trait_clause(description or "", budget, name_words) if budget else ""
        text = f"{name}: {traits}." if traits else f"A photo of {name}."
        return capitalise_first(text)
