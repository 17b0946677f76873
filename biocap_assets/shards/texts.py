"""The text members of TreeOfLife-10M samples, built with the upstream templates.

BioCLIP's ``make_wds`` writes, for every image, the names and six "a photo of"
texts below. Ranks missing from a taxon are left out of the joined names, as
upstream does. webdataset lowercases suffixes when it decodes samples
(``taxonTag.txt`` is read back as ``taxontag.txt``); writers keep upstream's case.
"""

from __future__ import annotations

from dataclasses import dataclass

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")

TEXT_KEYS = (
    "scientific_name.txt",
    "taxonomic_name.txt",
    "common_name.txt",
    "sci.txt",
    "com.txt",
    "taxon.txt",
    "taxonTag.txt",
    "sci_com.txt",
    "taxon_com.txt",
    "taxonTag_com.txt",
)


@dataclass(frozen=True)
class Taxon:
    """A 7-rank taxon; ``species`` is the lowercase epithet, empty when unknown."""

    kingdom: str
    phylum: str
    cls: str
    order: str
    family: str
    genus: str
    species: str
    common: str = ""

    @property
    def ranks(self) -> tuple[str, ...]:
        return (
            self.kingdom,
            self.phylum,
            self.cls,
            self.order,
            self.family,
            self.genus,
            self.species,
        )

    @property
    def binomial(self) -> str:
        return f"{self.genus} {self.species}" if self.genus and self.species else ""


def sample_texts(taxon: Taxon) -> dict[str, str]:
    """The ten text members of one sample, as upstream writes them."""
    scientific = taxon.binomial or next((r for r in reversed(taxon.ranks[:-1]) if r), "")
    taxonomic = " ".join(r for r in taxon.ranks if r)
    tag = " ".join(
        f"{name} {value}" for name, value in zip(RANKS, taxon.ranks, strict=True) if value
    )
    common = taxon.common or scientific
    return {
        "scientific_name.txt": scientific,
        "taxonomic_name.txt": taxonomic,
        "common_name.txt": common,
        "sci.txt": f"a photo of {scientific}.",
        "com.txt": f"a photo of {common}.",
        "taxon.txt": f"a photo of {taxonomic}.",
        "taxonTag.txt": f"a photo of {tag}.",
        "sci_com.txt": f"a photo of {scientific} with common name {common}.",
        "taxon_com.txt": f"a photo of {taxonomic} with common name {common}.",
        "taxonTag_com.txt": f"a photo of {tag} with common name {common}.",
    }
