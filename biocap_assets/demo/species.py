"""The species of the demo world, with the visible traits their images are drawn with.

Real names and ranks, so the wiki, prompt and eval code sees realistic input.
Three binomials are hemihomonyms, as in TreeOfLife-10M: the same "Genus species"
under two different 7-rank tuples (a plant and an insect, a grass and a bivalve,
a fungus and a foraminifer).
"""

from __future__ import annotations

from dataclasses import dataclass

from biocap_assets.shards.texts import Taxon

# What the wiki page of a species looks like (see demo/wiki.py):
#   description / appearance / identification: a page with that visual section,
#   no_visual: a page without one, redirect: reached through a redirect title,
#   disambiguation: the title is a disambiguation page, none: no page at all.
WIKI_KINDS = (
    "description",
    "appearance",
    "identification",
    "no_visual",
    "redirect",
    "disambiguation",
    "none",
)

# The body plan drawn for each class, so the class is visible too.
CLASS_SHAPES = {
    "Aves": "bird",
    "Insecta": "insect",
    "Magnoliopsida": "flower",
    "Liliopsida": "grass",
    "Actinopterygii": "fish",
    "Agaricomycetes": "mushroom",
    "Bivalvia": "shell",
    "Globothalamea": "foram",
}

COLOURS = {
    "red": (200, 30, 35),
    "blue": (40, 80, 200),
    "yellow": (235, 205, 40),
    "black": (25, 25, 25),
    "orange": (240, 130, 25),
    "green": (50, 150, 60),
    "purple": (130, 50, 160),
    "pink": (235, 130, 170),
    "brown": (120, 75, 40),
    "white": (240, 240, 235),
}
PATTERNS = ("plain", "striped", "spotted", "banded")
SIZES = {"small": 0.45, "medium": 0.65, "large": 0.85}


@dataclass(frozen=True)
class DemoSpecies:
    taxon: Taxon
    colour: str
    pattern: str
    size: str
    wiki: str
    length: str  # a plausible size phrase for the wiki text

    @property
    def shape(self) -> str:
        return CLASS_SHAPES[self.taxon.cls]


def _sp(
    ranks: str, common: str, colour: str, pattern: str, size: str, wiki: str, length: str
) -> DemoSpecies:
    k, p, c, o, f, g, s = ranks.split()
    return DemoSpecies(Taxon(k, p, c, o, f, g, s, common), colour, pattern, size, wiki, length)


_BIRD = "Animalia Chordata Aves Passeriformes"
_INSECT = "Animalia Arthropoda Insecta"
_DICOT = "Plantae Tracheophyta Magnoliopsida"
_FISH = "Animalia Chordata Actinopterygii"
_FUNGUS = "Fungi Basidiomycota Agaricomycetes"
_BIVALVE = "Animalia Mollusca Bivalvia"

SPECIES: tuple[DemoSpecies, ...] = (
    _sp(
        f"{_BIRD} Cardinalidae Cardinalis cardinalis",
        "northern cardinal",
        "red",
        "plain",
        "medium",
        "description",
        "21 to 23 cm long",
    ),
    _sp(
        f"{_BIRD} Corvidae Cyanocitta cristata",
        "blue jay",
        "blue",
        "striped",
        "medium",
        "appearance",
        "22 to 30 cm long",
    ),
    _sp(
        f"{_BIRD} Fringillidae Spinus tristis",
        "American goldfinch",
        "yellow",
        "plain",
        "small",
        "description",
        "11 to 14 cm long",
    ),
    _sp(
        f"{_BIRD} Corvidae Corvus corax",
        "common raven",
        "black",
        "plain",
        "large",
        "description",
        "54 to 67 cm long",
    ),
    _sp(
        f"{_BIRD} Turdidae Turdus migratorius",
        "American robin",
        "orange",
        "spotted",
        "medium",
        "no_visual",
        "23 to 28 cm long",
    ),
    _sp(
        f"{_INSECT} Lepidoptera Nymphalidae Danaus plexippus",
        "monarch butterfly",
        "orange",
        "banded",
        "large",
        "appearance",
        "8.9 to 10.2 cm across the wings",
    ),
    _sp(
        f"{_INSECT} Coleoptera Coccinellidae Coccinella septempunctata",
        "seven-spot ladybird",
        "red",
        "spotted",
        "small",
        "description",
        "5 to 8 mm long",
    ),
    _sp(
        f"{_INSECT} Hymenoptera Apidae Apis mellifera",
        "western honey bee",
        "yellow",
        "striped",
        "small",
        "identification",
        "about 12 mm long",
    ),
    _sp(
        f"{_INSECT} Lepidoptera Papilionidae Papilio glaucus",
        "eastern tiger swallowtail",
        "yellow",
        "banded",
        "large",
        "redirect",
        "7.9 to 14 cm across the wings",
    ),
    _sp(
        f"{_INSECT} Diptera Calliphoridae Lucilia sericata",
        "common green bottle fly",
        "green",
        "plain",
        "small",
        "none",
        "10 to 14 mm long",
    ),
    _sp(
        f"{_INSECT} Hemiptera Cicadellidae Digitalis purpurea",
        "purple leafhopper",
        "purple",
        "striped",
        "small",
        "none",
        "about 6 mm long",
    ),
    _sp(
        f"{_DICOT} Lamiales Plantaginaceae Digitalis purpurea",
        "foxglove",
        "purple",
        "spotted",
        "large",
        "description",
        "1 to 2 m tall",
    ),
    _sp(
        f"{_DICOT} Asterales Asteraceae Helianthus annuus",
        "common sunflower",
        "yellow",
        "plain",
        "large",
        "description",
        "up to 3 m tall",
    ),
    _sp(
        f"{_DICOT} Rosales Rosaceae Rosa canina",
        "dog rose",
        "pink",
        "plain",
        "medium",
        "description",
        "1 to 5 m tall",
    ),
    _sp(
        f"{_DICOT} Malpighiales Violaceae Viola tricolor",
        "wild pansy",
        "purple",
        "banded",
        "small",
        "no_visual",
        "15 to 25 cm tall",
    ),
    _sp(
        f"{_DICOT} Asterales Asteraceae Taraxacum officinale",
        "common dandelion",
        "yellow",
        "striped",
        "small",
        "appearance",
        "5 to 40 cm tall",
    ),
    _sp(
        "Plantae Tracheophyta Liliopsida Poales Poaceae Digitaria sanguinalis",
        "hairy crabgrass",
        "green",
        "striped",
        "medium",
        "description",
        "up to 60 cm tall",
    ),
    _sp(
        f"{_FISH} Perciformes Pomacentridae Amphiprion ocellaris",
        "ocellaris clownfish",
        "orange",
        "banded",
        "small",
        "description",
        "about 11 cm long",
    ),
    _sp(
        f"{_FISH} Scorpaeniformes Scorpaenidae Pterois volitans",
        "red lionfish",
        "red",
        "striped",
        "medium",
        "appearance",
        "up to 47 cm long",
    ),
    _sp(
        f"{_FISH} Salmoniformes Salmonidae Salmo trutta",
        "brown trout",
        "brown",
        "spotted",
        "medium",
        "description",
        "up to 100 cm long",
    ),
    _sp(
        f"{_FISH} Acanthuriformes Acanthuridae Paracanthurus hepatus",
        "blue tang",
        "blue",
        "plain",
        "small",
        "identification",
        "up to 31 cm long",
    ),
    _sp(
        f"{_FISH} Esociformes Esocidae Esox lucius",
        "northern pike",
        "green",
        "spotted",
        "large",
        "no_visual",
        "up to 150 cm long",
    ),
    _sp(
        f"{_FUNGUS} Agaricales Amanitaceae Amanita muscaria",
        "fly agaric",
        "red",
        "spotted",
        "medium",
        "description",
        "cap 8 to 20 cm across",
    ),
    _sp(
        f"{_FUNGUS} Cantharellales Cantharellaceae Cantharellus cibarius",
        "golden chanterelle",
        "orange",
        "plain",
        "small",
        "description",
        "cap 3 to 10 cm across",
    ),
    _sp(
        f"{_FUNGUS} Boletales Boletaceae Boletus edulis",
        "penny bun",
        "brown",
        "plain",
        "large",
        "appearance",
        "cap 7 to 30 cm across",
    ),
    _sp(
        f"{_FUNGUS} Cantharellales Clavulinaceae Clavulina coralloides",
        "crested coral fungus",
        "white",
        "plain",
        "small",
        "description",
        "up to 8 cm tall",
    ),
    _sp(
        f"{_FUNGUS} Polyporales Fomitopsidaceae Laetiporus sulphureus",
        "chicken of the woods",
        "yellow",
        "banded",
        "large",
        "no_visual",
        "brackets 5 to 25 cm across",
    ),
    _sp(
        f"{_BIVALVE} Mytilida Mytilidae Mytilus edulis",
        "blue mussel",
        "blue",
        "banded",
        "medium",
        "disambiguation",
        "5 to 10 cm long",
    ),
    _sp(
        f"{_BIVALVE} Pectinida Pectinidae Pecten maximus",
        "great scallop",
        "pink",
        "striped",
        "large",
        "description",
        "up to 15 cm across",
    ),
    _sp(
        f"{_BIVALVE} Cardiida Cardiidae Cerastoderma edule",
        "common cockle",
        "white",
        "striped",
        "small",
        "appearance",
        "about 5 cm across",
    ),
    _sp(
        f"{_BIVALVE} Carditida Astartidae Digitaria sanguinalis",
        "red digitaria",
        "red",
        "striped",
        "small",
        "none",
        "about 1 cm across",
    ),
    _sp(
        "Chromista Foraminifera Globothalamea Textulariida Valvulinidae Clavulina coralloides",
        "coralloid foram",
        "brown",
        "spotted",
        "small",
        "none",
        "about 1 mm long",
    ),
)

# Catalog rows whose taxon lacks a rank, as TreeOfLife-10M has many (about a million
# BIOSCAN insects known only to order or family, without a common name): (species index,
# fields blanked).
INCOMPLETE_ROWS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (7, ("species",)),
    (9, ("species", "genus", "common")),  # a blow fly known to family: Calliphoridae
    (6, ("species", "genus", "family", "common")),  # a beetle known to order: Coleoptera
    (19, ("family",)),
)
