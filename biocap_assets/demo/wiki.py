"""Offline Wikipedia-shaped pages for the demo taxa.

Pages are HTML as MediaWiki's ``action=parse`` returns it: current output wraps
headings in ``div.mw-heading``, older output puts ``span.mw-headline`` inside the
``h2``; both occur here. Every page carries a taxobox (``table.infobox.biota``)
so hemihomonyms can be told apart by their ranks. The index lists titles,
redirects and disambiguation flags so a local MediaWiki API can be served from it.
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass, field

from biocap_assets.demo.species import DemoSpecies

_PATTERN_PHRASES = {
    "plain": "an unmarked, uniformly coloured surface",
    "striped": "narrow dark diagonal stripes",
    "spotted": "scattered round spots",
    "banded": "two broad vertical bands",
}
_SHAPE_PHRASES = {
    "bird": "a rounded body, a small head with a short pointed bill and a wedge-shaped tail",
    "insect": "a narrow segmented body and a pair of broad rounded wings",
    "flower": "flowers with six rounded petals on a slender stem",
    "grass": "slender upright blades that taper to a point",
    "fish": "an oval, laterally compressed body and a forked tail fin",
    "mushroom": "a domed cap on a thick, straight stipe",
    "shell": "a fan-shaped shell with a short hinge",
    "foram": "a test of chambers that grow larger along a curved chain",
}
_NON_VISUAL = (
    "It is found across a wide range of habitats, from open woodland to suburban gardens.",
    "The species was first described by Carl Linnaeus in 1758.",
    "Its diet varies with the season and the local availability of food.",
    "The specific epithet is derived from Latin.",
    "Populations are considered stable and the species is listed as least concern.",
)


@dataclass
class WikiPage:
    pageid: int
    title: str
    html: str
    redirects_from: list[str] = field(default_factory=list)
    disambiguation: bool = False


def _taxobox(species: DemoSpecies) -> str:
    rows = []
    for rank, value in species.taxon.by_rank().items():
        label = rank.capitalize()  # the taxobox's row labels: Kingdom, ..., Species
        shown = species.taxon.binomial if rank == "species" else value
        rows.append(
            f'<tr><td>{label}:</td><td><a href="/wiki/{html.escape(shown)}">'
            f"{html.escape(shown)}</a></td></tr>"
        )
    return (
        '<table class="infobox biota"><tbody><tr><th colspan="2">'
        f"{html.escape(species.taxon.common.capitalize())}</th></tr>{''.join(rows)}"
        "</tbody></table>"
    )


def _heading(text: str, level: int, modern: bool) -> str:
    anchor = text.replace(" ", "_")
    edit = (
        '<span class="mw-editsection"><span class="mw-editsection-bracket">[</span>'
        f'<a href="/w/index.php?action=edit&amp;section=1" title="Edit section: {text}">'
        'edit</a><span class="mw-editsection-bracket">]</span></span>'
    )
    if modern:
        return (
            f'<div class="mw-heading mw-heading{level}"><h{level} id="{anchor}">{text}'
            f"</h{level}>{edit}</div>"
        )
    return f'<h{level}><span class="mw-headline" id="{anchor}">{text}</span>{edit}</h{level}>'


def visual_paragraphs(species: DemoSpecies) -> list[str]:
    """The sentences a visual-description filter should keep for this species."""
    t = species.taxon
    return [
        f"The {t.common} has {_SHAPE_PHRASES[species.shape]}.",
        f"It is {species.colour} with {_PATTERN_PHRASES[species.pattern]}, "
        f"and adults are {species.length}.",
    ]


def species_page(species: DemoSpecies, pageid: int, rng: random.Random) -> WikiPage:
    t = species.taxon
    modern = rng.random() < 0.7
    cite = f'<sup id="cite_ref-{pageid}" class="reference"><a href="#cite_note-1">[1]</a></sup>'
    lead = (
        f"<p>The <b>{html.escape(t.common)}</b> (<i>{t.binomial}</i>) is a species of the "
        f"family {t.family}.{cite} {rng.choice(_NON_VISUAL)}</p>"
    )
    parts = [
        '<div class="mw-content-ltr mw-parser-output" lang="en" dir="ltr">',
        _taxobox(species),
        lead,
    ]
    visual = visual_paragraphs(species)
    if species.wiki in (
        "description",
        "appearance",
        "identification",
        "redirect",
        "disambiguation",
    ):
        heading = {"appearance": "Appearance", "identification": "Identification"}.get(
            species.wiki, "Description"
        )
        if species.wiki == "identification":
            # Description nested as an h3 inside a broader h2, as many pages do.
            parts.append(_heading("Taxonomy", 2, modern))
            parts.append(f"<p>{rng.choice(_NON_VISUAL)}</p>")
            parts.append(_heading(heading, 3, modern))
        else:
            parts.append(_heading(heading, 2, modern))
        parts.append(f"<p>{visual[0]}{cite}</p>")
        parts.append(f"<ul><li>{visual[1]}</li><li>Juveniles are duller than adults.</li></ul>")
    parts.append(_heading("Distribution and habitat", 2, modern))
    parts.append(f"<p>{_NON_VISUAL[0]} {rng.choice(_NON_VISUAL[1:])}</p>")
    parts.append(_heading("References", 2, modern))
    parts.append(
        '<div class="reflist"><ol class="references"><li id="cite_note-1">'
        "Demo reference.</li></ol></div>"
    )
    parts.append("</div>")
    return WikiPage(pageid=pageid, title=t.binomial, html="\n".join(parts))


def disambiguation_page(title: str, targets: list[str], pageid: int) -> WikiPage:
    items = "".join(
        f'<li><a href="/wiki/{html.escape(x)}">{html.escape(x)}</a></li>' for x in targets
    )
    body = (
        f'<div class="mw-content-ltr mw-parser-output"><p><b>{html.escape(title)}</b> may '
        f"refer to:</p><ul>{items}</ul>"
        '<table id="disambigbox" class="metadata plainlinks dmbox dmbox-disambig">'
        "<tr><td>This disambiguation page lists articles associated with the title "
        f"{html.escape(title)}.</td></tr></table></div>"
    )
    return WikiPage(pageid=pageid, title=title, html=body, disambiguation=True)


def build_wiki(species: tuple[DemoSpecies, ...], rng: random.Random) -> list[WikiPage]:
    """All pages of the demo wiki, deterministic for a given ``rng`` state."""
    pages: list[WikiPage] = []
    pageid = 1000
    for sp in species:
        if sp.wiki == "none":
            continue
        pageid += 1
        page = species_page(sp, pageid, rng)
        if sp.wiki == "redirect":
            # The binomial redirects to the page titled with the common name.
            page.redirects_from.append(page.title)
            page.title = sp.taxon.common.capitalize()
        elif sp.wiki == "disambiguation":
            pageid += 1
            pages.append(
                disambiguation_page(
                    page.title, [f"{page.title} (sensu stricto)", f"{page.title} complex"], pageid
                )
            )
            page.title = f"{page.title} (sensu stricto)"
        pages.append(page)
    return pages
