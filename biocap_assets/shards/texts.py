"""The text members of TreeOfLife-10M samples.

BioCLIP's ``make_wds.make_txt`` writes, for every image, three names and seven "a photo
of" texts. Names are built by its ``naming.Taxon``: ``scientific`` is "Genus species"
(or "Genus", or empty without a genus), ``taxonomic`` the known ranks capitalised (the
species epithet lower-cased) and joined, and the common name falls back to the
scientific, then the taxonomic name. Ranks missing from a taxon are left out of the
joined names. webdataset lowercases suffixes when it decodes samples (``taxonTag.txt``
is read back as ``taxontag.txt``); writers keep upstream's case.
"""

from __future__ import annotations

from dataclasses import dataclass

from biocap_assets.taxonomy.names import RANKS

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
        """The seven ranks in ``RANKS`` order (the field ``cls`` holds the class)."""
        return tuple(getattr(self, "cls" if rank == "class" else rank) for rank in RANKS)

    def by_rank(self) -> dict[str, str]:
        """``{"kingdom": ..., "class": ..., "species": ...}``."""
        return dict(zip(RANKS, self.ranks, strict=True))

    @property
    def binomial(self) -> str:
        return f"{self.genus} {self.species}" if self.genus and self.species else ""

    @property
    def scientific(self) -> str:
        """naming.Taxon.scientific: "Genus species", "Genus", or empty."""
        name = " ".join(w for w in (self.genus.capitalize(), self.species.lower()) if w)
        return name.capitalize()

    @property
    def taxonomic(self) -> str:
        words = [r.capitalize() for r in self.ranks[:6]] + [self.species.lower()]
        return " ".join(w for w in words if w)

    @property
    def tagged(self) -> str:
        values = [r.capitalize() for r in self.ranks[:6]] + [self.species.lower()]
        return " ".join(f"{name} {v}" for name, v in zip(RANKS, values, strict=True) if v)


def sample_texts(taxon: Taxon) -> dict[str, str]:
    """The ten text members of one sample, as ``make_wds.make_txt`` writes them."""
    common = taxon.common or taxon.scientific or taxon.taxonomic
    scientific, taxonomic, tag = taxon.scientific, taxon.taxonomic, taxon.tagged
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
