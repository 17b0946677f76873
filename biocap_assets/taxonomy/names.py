"""How a sample's taxon is named, from its text members (pure functions).

``parse_taxon_tag`` reads the ranks back from ``taxonTag.txt``; :class:`SampleNames` holds
a sample's common, scientific and taxonomic names as ``make_wds.make_txt`` wrote them.
:func:`taxon_label` names the lowest known rank for people ("a member of the family
Cecidomyiidae (order Diptera)"), for the CPU captioner and our compact prompt; the
reference prompt names samples its own way (see ``inference/prompts.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")


def parse_taxon_tag(tag: str) -> dict[str, str]:
    """Ranks from ``a photo of kingdom X phylum Y ... species z[ with common name ...].``"""
    text = tag.strip().removeprefix("a photo of ").rstrip(".")
    text = text.split(" with common name ")[0]
    words = text.split()
    ranks: dict[str, str] = {}
    i = 0
    while i < len(words) - 1:
        if words[i] in RANKS:
            j = i + 1
            while j < len(words) and words[j] not in RANKS:
                j += 1
            ranks[words[i]] = " ".join(words[i + 1 : j])
            i = j
        else:
            i += 1
    return ranks


@dataclass(frozen=True)
class SampleNames:
    """A sample's names as its text members give them."""

    common: str = ""  # common_name.txt: the common name, else scientific, else taxonomic
    scientific: str = ""  # scientific_name.txt
    taxonomic: str = ""  # taxonomic_name.txt
    ranks: tuple[tuple[str, str], ...] = ()  # from taxonTag.txt, in rank order

    @property
    def rank(self) -> dict[str, str]:
        return dict(self.ranks)

    @property
    def real_common(self) -> str:
        """The common name, when the sample has one (not a fallback to another name)."""
        common = self.common.strip()
        return "" if common in ("", self.scientific, self.taxonomic) else common

    @property
    def empty(self) -> bool:
        return not (self.common or self.scientific or self.taxonomic or self.ranks)


def taxon_label(names: SampleNames) -> str:
    """The sample's taxon named for a sentence: "Corvus corax", or for a partial taxon its
    lowest known rank, "a member of the family Cecidomyiidae (order Diptera)". Empty when
    the sample names nothing."""
    rank = names.rank
    if names.scientific and " " in names.scientific:
        return names.scientific
    for level in ("genus", "family", "order", "class", "phylum", "kingdom"):
        value = rank.get(level, "")
        if not value:
            continue
        label = f"a member of the {level} {value}"
        parent = next(
            (
                (p, rank[p])
                for p in RANKS[: RANKS.index(level)][::-1]
                if rank.get(p) and p != "kingdom"
            ),
            None,
        )
        return f"{label} ({parent[0]} {parent[1]})" if parent and level != "genus" else label
    return names.scientific or names.taxonomic


def capitalise_first(text: str) -> str:
    """Upper-case the first letter only: "Van der Decken's sifaka" keeps its case."""
    return text[:1].upper() + text[1:]
