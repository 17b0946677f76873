"""Extract a page's visual text, its lead and its taxobox from ``action=parse`` HTML.

Pure functions over an HTML string. Two heading shapes occur: current MediaWiki
wraps each heading in ``<div class="mw-heading mw-headingN">``; older output has
``<hN><span class="mw-headline">``. A section runs from its heading to the next
heading of any level, so a visual h3 inside a non-visual h2 is found, and a
non-visual h3 inside a visual h2 ends it.

Which text is kept follows BioCAP's scraper (``wiki_scraper/scraper_*_names.py``) by
default (``policy="reference"``): its keywords in its order of priority; for the first
keyword, the first heading (in page order) whose text contains it and whose section has
text; else the next keyword; one section only; failing all, the whole lead. The other
policy, ``"all"``, keeps every section whose heading has a keyword. Paragraphs and list
items are the text; tables, references and page furniture are not (the reference's
BeautifulSoup walk keeps the text of anything in a ``<p>`` or list, citation markers
included).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import html as lxml_html

# wiki_scraper's KEYWORDS, in its order of priority.
VISUAL_KEYWORDS = (
    "description",
    "morphology",
    "appearance",
    "identification",
    "feature",
    "characteristics",
    "physical",
    "structure",
    "explanation of names",
)
POLICIES = ("reference", "all")
_HEADINGS = {"h2", "h3", "h4", "h5", "h6"}
_BLOCKS = {"p", "li", "ul", "ol", "dl", "dd", "dt", "div", "br"}
# Page furniture whose text is never section content.
_DROP_CLASSES = (
    "mw-editsection",
    "reference",
    "reflist",
    "references",
    "navbox",
    "metadata",
    "mw-references-wrap",
    "noprint",
    "mw-empty-elt",
    "hatnote",
    "thumbcaption",
    "infobox",
    "sistersitebox",
    "side-box",
    "ambox",
)
_CITATION = re.compile(r"\[(?:\d+|[a-z]|note \d+|citation needed|clarification needed)\]")
_SPACES = re.compile(r"\s+")
_RANK_LABELS = {
    "kingdom": "kingdom",
    "regnum": "kingdom",
    "phylum": "phylum",
    "division": "phylum",
    "class": "class",
    "order": "order",
    "family": "family",
    "genus": "genus",
    "species": "species",
}


@dataclass
class PageText:
    """What a page offers: its visual text (with the headings it came from) and its lead."""

    headings: list[str] = field(default_factory=list)
    text: str = ""
    lead: str = ""

    @property
    def has_visual_section(self) -> bool:
        return bool(self.text)


def _classes(element) -> set[str]:
    return set((element.get("class") or "").split())


def _clean_text(text: str) -> str:
    return _SPACES.sub(" ", _CITATION.sub("", text)).strip()


def _parse(html: str):
    if not html or not html.strip():
        raise ValueError("empty HTML")
    root = lxml_html.fromstring(html)
    for element in list(root.iter()):
        if not isinstance(element.tag, str):
            continue
        furniture = element.tag in ("style", "script", "table") or bool(
            _classes(element) & set(_DROP_CLASSES)
        )
        if furniture and element.getparent() is not None:
            element.drop_tree()
        elif element.tag in _BLOCKS:
            # Block boundaries separate words ("prominent<ul><li>raised" is two words).
            element.text = " " + (element.text or "")
            element.tail = " " + (element.tail or "")
    return root


def _heading_of(element) -> tuple[int, str] | None:
    """(level, text) if ``element`` is a heading or a ``div.mw-heading`` wrapper."""
    tag = element.tag
    if tag == "div" and "mw-heading" in _classes(element):
        inner = next((c for c in element if isinstance(c.tag, str) and c.tag in _HEADINGS), None)
        if inner is None:
            return None
        element, tag = inner, inner.tag
    if tag in _HEADINGS:
        return int(tag[1]), _clean_text(element.text_content())
    return None


def _walk(root) -> Iterable[tuple[str, object]]:
    """('heading', (level, text)) and ('block', text) in document order."""
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        heading = _heading_of(element)
        if heading is not None:
            parent = element.getparent()
            wrapped = parent is not None and "mw-heading" in _classes(parent)
            if not wrapped:  # the wrapper div already gave this heading
                yield "heading", heading
            continue
        if element.tag in ("p", "li") and not any(
            a.tag in ("p", "li") for a in element.iterancestors()
        ):
            text = _clean_text(element.text_content())
            if text:
                yield "block", text


def is_visual_heading(heading: str, keywords: Iterable[str] = VISUAL_KEYWORDS) -> bool:
    lowered = heading.lower()
    return any(k in lowered for k in keywords)


def _sections(html: str) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """([(heading, blocks)] in page order, lead blocks)."""
    sections: list[tuple[str, list[str]]] = []
    lead: list[str] = []
    for kind, value in _walk(_parse(html)):
        if kind == "heading":
            sections.append((value[1], []))
        elif sections:
            sections[-1][1].append(value)
        else:
            lead.append(value)
    return sections, lead


def extract_sections(
    html: str, keywords: Iterable[str] = VISUAL_KEYWORDS, policy: str = "reference"
) -> PageText:
    """The visual text and the lead of a parsed page; raises ValueError on empty HTML."""
    if policy not in POLICIES:
        raise ValueError(f"section policy must be one of {POLICIES}, got {policy!r}")
    keywords = tuple(k.lower() for k in keywords)
    sections, lead = _sections(html)
    result = PageText(lead="\n".join(lead))
    if policy == "all":
        chosen = [(h, b) for h, b in sections if b and is_visual_heading(h, keywords)]
    else:
        chosen = next(
            (
                [(heading, blocks)]
                for keyword in keywords
                for heading, blocks in sections
                if blocks and keyword in heading.lower()
            ),
            [],
        )
    result.headings = [h for h, _ in chosen]
    result.text = "\n".join(block for _, blocks in chosen for block in blocks)
    return result


def taxobox_ranks(html: str) -> dict[str, str]:
    """Ranks from the page's taxobox (``table.infobox.biota``), lower-cased rank names."""
    root = lxml_html.fromstring(html)
    ranks: dict[str, str] = {}
    for table in root.xpath("//table[contains(concat(' ', @class, ' '), ' biota ')]"):
        for row in table.xpath(".//tr"):
            cells = row.xpath("./td")
            if len(cells) < 2:
                continue
            label = _clean_text(cells[0].text_content()).rstrip(":").strip().lower()
            rank = _RANK_LABELS.get(label)
            value = _clean_text(cells[1].text_content())
            if rank and value and rank not in ranks:
                ranks[rank] = value
        break
    return ranks


def is_disambiguation_html(html: str) -> bool:
    """MediaWiki marks disambiguation pages with a ``dmbox-disambig`` or ``#disambigbox``."""
    return "dmbox-disambig" in html or 'id="disambigbox"' in html


def _norm_rank(value: str) -> str:
    return _SPACES.sub(" ", value.strip().lower())


def ranks_match(taxon: dict[str, str], box: dict[str, str]) -> tuple[bool, str]:
    """Compare the ranks both sides have.

    A trailing-suffix difference is tolerated (``-idae``/``-ida``, ``-ales``/``-ale``...):
    two names match when one is a prefix of the other and the shorter keeps at least
    four letters. The species on a taxobox is the binomial; it is compared as such.
    """
    compared = 0
    for rank, value in taxon.items():
        if not value or rank not in box or not box[rank]:
            continue
        ours, theirs = _norm_rank(value), _norm_rank(box[rank])
        if rank == "species":
            ours = ours.split()[-1]
            theirs = theirs.split()[-1]
        compared += 1
        if ours == theirs:
            continue
        short, long = sorted((ours, theirs), key=len)
        if len(short) >= 4 and long.startswith(short):
            continue
        return False, f"{rank} {value!r} differs from the taxobox's {box[rank]!r}"
    if compared == 0:
        return False, "the page has no taxobox ranks to compare"
    return True, f"{compared} ranks agree"
