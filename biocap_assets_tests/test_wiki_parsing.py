"""Pure parts of the wiki stage: sections, taxobox, API answers, retry timing, crawl state."""

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from biocap_assets.scraping import mediawiki as api
from biocap_assets.scraping.middlewares import retry_after_seconds
from biocap_assets.scraping.pipelines import WIKI_SCHEMA
from biocap_assets.scraping.sections import (
    VISUAL_KEYWORDS,
    extract_sections,
    is_disambiguation_html,
    ranks_match,
    taxobox_ranks,
)
from biocap_assets.scraping.state import latest_per_taxon, plan_crawl

EDIT = (
    '<span class="mw-editsection"><span class="mw-editsection-bracket">[</span>'
    '<a href="/w/index.php?title=X&action=edit&section=1">edit</a>'
    '<span class="mw-editsection-bracket">]</span></span>'
)

MODERN = f"""
<div class="mw-content-ltr mw-parser-output" lang="en" dir="ltr">
<div class="shortdescription nomobile noexcerpt noprint searchaux">Species of bird</div>
<table class="infobox biota"><tbody>
<tr><th colspan="2">Northern cardinal</th></tr>
<tr><td>Kingdom:</td><td><a href="/wiki/Animal">Animalia</a></td></tr>
<tr><td>Phylum:</td><td>Chordata</td></tr>
<tr><td>Class:</td><td>Aves</td></tr>
<tr><td>Order:</td><td>Passeriformes</td></tr>
<tr><td>Family:</td><td>Cardinalidae</td></tr>
<tr><td>Genus:</td><td><i>Cardinalis</i></td></tr>
<tr><td>Species:</td><td><i><b>C. cardinalis</b></i></td></tr>
</tbody></table>
<p class="mw-empty-elt"></p>
<p>The <b>northern cardinal</b> is a bird.<sup id="cite_ref-1" class="reference">
<a href="#cite_note-1">[1]</a></sup></p>
<div class="mw-heading mw-heading2"><h2 id="Taxonomy">Taxonomy</h2>{EDIT}</div>
<p>Described by Linnaeus in 1758.</p>
<div class="mw-heading mw-heading2"><h2 id="Description">Description</h2>{EDIT}</div>
<p>The male is bright red with a black mask.<sup class="reference"><a>[2]</a></sup>
It is 21–23 cm long.[3]</p>
<ul><li>Bill: conical, red.</li><li>Crest: prominent<ul><li>raised when alarmed</li></ul></li></ul>
<table class="wikitable"><tr><td>Measurement table text</td></tr></table>
<div class="mw-heading mw-heading3"><h3 id="Song">Song</h3>{EDIT}</div>
<p>The song is a loud whistle.</p>
<div class="mw-heading mw-heading2"><h2 id="Distribution">Distribution and habitat</h2>{EDIT}</div>
<p>Found in woodlands.</p>
<div class="mw-heading mw-heading2"><h2 id="References">References</h2>{EDIT}</div>
<div class="reflist"><ol class="references"><li id="cite_note-1">A ref.</li></ol></div>
</div>
"""

OLDER = f"""
<div class="mw-parser-output">
<p>The <b>blue jay</b> is a passerine bird.[1]</p>
<h2><span class="mw-headline" id="Description">Description</span>{EDIT}</h2>
<p>The blue jay is blue with white underparts.[citation needed]</p>
<h2><span class="mw-headline" id="Behaviour">Behaviour</span>{EDIT}</h2>
<p>It is noisy.</p>
</div>
"""

NESTED = f"""
<div class="mw-parser-output">
<p>Lead.</p>
<div class="mw-heading mw-heading2"><h2 id="Biology">Biology</h2>{EDIT}</div>
<p>Lives long.</p>
<div class="mw-heading mw-heading3"><h3 id="Physical_characteristics">Physical characteristics
</h3>{EDIT}</div>
<p>Scales are green.</p>
<div class="mw-heading mw-heading4"><h4 id="Diet">Diet</h4>{EDIT}</div>
<p>Eats insects.</p>
<div class="mw-heading mw-heading3"><h3 id="Morphology">Morphology</h3>{EDIT}</div>
<p>Tail is long.</p>
</div>
"""


def test_modern_markup_takes_the_visual_section_only():
    page = extract_sections(MODERN)
    assert page.headings == ["Description"]
    assert page.text.splitlines() == [
        "The male is bright red with a black mask. It is 21–23 cm long.",
        "Bill: conical, red.",
        "Crest: prominent raised when alarmed",
    ]
    assert "edit" not in page.text and "[2]" not in page.text
    assert "Measurement table" not in page.text  # tables are not prose
    assert "whistle" not in page.text  # the h3 "Song" ends the Description section
    assert page.lead == "The northern cardinal is a bird."


def test_older_markup_and_citation_markers():
    page = extract_sections(OLDER)
    assert page.headings == ["Description"]
    assert page.text == "The blue jay is blue with white underparts."
    assert page.lead == "The blue jay is a passerine bird."


def test_one_section_by_keyword_priority_not_page_order():
    """wiki_scraper: for each keyword in order, the first heading containing it."""
    page = extract_sections(NESTED)
    assert page.headings == ["Morphology"], "morphology outranks physical, though later"
    assert page.text == "Tail is long."
    # The earlier policy stays as an option: every visual section.
    every = extract_sections(NESTED, policy="all")
    assert every.headings == ["Physical characteristics", "Morphology"]
    assert every.text.splitlines() == ["Scales are green.", "Tail is long."]
    with pytest.raises(ValueError, match="section policy"):
        extract_sections(NESTED, policy="best")


SUBSECTIONS_ONLY = f"""
<div class="mw-parser-output">
<p>The <b>mayfly</b> is an insect.</p><p>It lives one day as an adult.</p>
<div class="mw-heading mw-heading2"><h2 id="Description">Description</h2>{EDIT}</div>
<div class="mw-heading mw-heading3"><h3 id="Larvae">Larvae</h3>{EDIT}</div>
<p>Larvae have gills.</p>
<div class="mw-heading mw-heading2"><h2 id="Identification">Identification</h2>{EDIT}</div>
<p>Two or three long tails.</p>
<div class="mw-heading mw-heading2"><h2 id="Explanation">Explanation of names</h2>{EDIT}</div>
<p>From the Greek.</p>
</div>
"""


def test_a_heading_without_its_own_text_gives_way_and_the_lead_is_whole():
    page = extract_sections(SUBSECTIONS_ONLY)
    assert page.headings == ["Identification"], "Description has no text before its h3"
    assert page.text == "Two or three long tails."
    assert page.lead == "The mayfly is an insect.\nIt lives one day as an adult."
    names_only = SUBSECTIONS_ONLY.replace("Identification", "Habitat")
    assert extract_sections(names_only).headings == ["Explanation of names"]
    assert "characteristics" in VISUAL_KEYWORDS and "characteristic" not in VISUAL_KEYWORDS


def test_no_visual_section_and_custom_keywords():
    page = extract_sections(OLDER.replace("Description", "Overview"))
    assert not page.has_visual_section and page.lead
    assert extract_sections(OLDER, keywords=["behaviour"]).text == "It is noisy."


def test_empty_html_is_an_error():
    with pytest.raises(ValueError, match="empty HTML"):
        extract_sections("  ")


def test_taxobox_and_rank_matching():
    box = taxobox_ranks(MODERN)
    assert box["kingdom"] == "Animalia" and box["species"] == "C. cardinalis"
    ranks = {
        "kingdom": "Animalia",
        "phylum": "Chordata",
        "class": "Aves",
        "order": "Passeriformes",
        "family": "Cardinalidae",
        "genus": "Cardinalis",
        "species": "cardinalis",
    }
    assert ranks_match(ranks, box)[0]
    plant = dict(ranks, kingdom="Plantae")
    ok, why = ranks_match(plant, box)
    assert not ok and "kingdom 'Plantae'" in why
    # Only ranks both sides have are compared; a trailing suffix difference is tolerated.
    assert ranks_match(
        {"kingdom": "Animalia", "family": "Cardinalid", "genus": ""},
        {"kingdom": "Animalia", "family": "Cardinalidae"},
    )[0]
    assert not ranks_match(ranks, {})[0]


def test_disambiguation_markers():
    assert is_disambiguation_html('<table id="disambigbox" class="dmbox dmbox-disambig">')
    assert not is_disambiguation_html(MODERN)


def test_titles_answer_follows_normalisation_and_redirects():
    data = {
        "query": {
            "normalized": [{"from": "cardinalis_cardinalis", "to": "Cardinalis cardinalis"}],
            "redirects": [{"from": "Cardinalis cardinalis", "to": "Northern cardinal"}],
            "pages": [
                {"pageid": 7, "ns": 0, "title": "Northern cardinal"},
                {"ns": 0, "title": "Nothing here", "missing": True},
                {"pageid": 9, "ns": 0, "title": "Mercury", "pageprops": {"disambiguation": ""}},
            ],
        }
    }
    res = api.parse_titles(data, ["cardinalis_cardinalis", "Nothing here", "Mercury"])
    assert res.pages["cardinalis_cardinalis"] == api.PageRef(7, "Northern cardinal")
    assert res.redirected["cardinalis_cardinalis"] == "Northern cardinal"
    assert res.pages["Nothing here"] is None
    assert res.pages["Mercury"].disambiguation


def test_formatversion_1_answers_read_alike():
    """The v1 shape: pages keyed by id, flags as empty strings, text under '*'."""
    data = {
        "query": {
            "normalized": [{"from": "cardinalis_cardinalis", "to": "Cardinalis cardinalis"}],
            "redirects": [{"from": "Cardinalis cardinalis", "to": "Northern cardinal"}],
            "pages": {
                "7": {"pageid": 7, "ns": 0, "title": "Northern cardinal"},
                "-1": {"ns": 0, "title": "Nothing here", "missing": ""},
                "9": {
                    "pageid": 9,
                    "ns": 0,
                    "title": "Mercury",
                    "pageprops": {"disambiguation": ""},
                },
            },
        }
    }
    res = api.parse_titles(data, ["cardinalis_cardinalis", "Nothing here", "Mercury"])
    assert res.pages["cardinalis_cardinalis"] == api.PageRef(7, "Northern cardinal")
    assert res.pages["Nothing here"] is None and res.pages["Mercury"].disambiguation
    page = api.parse_parse(
        {"parse": {"title": "Mercury", "pageid": 9, "text": {"*": "<p>x</p>"},
                   "properties": [{"name": "disambiguation", "*": ""}]}}
    )  # fmt: skip
    assert page == api.ParsedPage(9, "Mercury", "<p>x</p>", True)
    assert api.parse_search({"query": {"search": [{"title": "A"}, {"ns": 0}]}}) == ["A"]


def test_a_malformed_entry_costs_only_that_entry():
    data = {
        "query": {
            "redirects": [{"from": "A"}, "junk", {"from": "B b", "to": "B"}],
            "pages": [
                "junk",
                {"pageid": "not a number", "title": "C"},
                {"title": None},
                {"pageid": 2, "title": "B"},
                {"pageid": 1, "title": "A"},
            ],
        }
    }
    res = api.parse_titles(data, ["A", "B b", "C"])
    assert res.pages["A"] == api.PageRef(1, "A") and res.pages["B b"] == api.PageRef(2, "B")
    assert res.pages["C"] is None, "its entry was malformed: the taxon goes on to search"


def test_api_errors_are_named():
    with pytest.raises(api.ApiError, match="malformed JSON from action=parse"):
        api.load_json(b"<html>oops", "action=parse")
    with pytest.raises(api.ApiError, match="error maxlag"):
        api.load_json(b'{"error": {"code": "maxlag", "info": "Waiting"}}', "action=query")
    with pytest.raises(api.ApiError, match="no 'parse.text'"):
        api.parse_parse({"parse": {"title": "X"}})
    with pytest.raises(ValueError, match="1 to 50 titles"):
        api.titles_url("http://x/w/api.php", [f"t{i}" for i in range(51)])


def test_every_api_url_carries_maxlag_and_json_v2():
    for url in (
        api.titles_url("http://x/w/api.php", ["A"]),
        api.search_url("http://x/w/api.php", "A"),
        api.parse_url("http://x/w/api.php", "A b"),
    ):
        assert "maxlag=5" in url and "formatversion=2" in url and "format=json" in url
    assert (
        api.page_url("https://en.wikipedia.org/w/api.php", "Corvus corax")
        == "https://en.wikipedia.org/wiki/Corvus_corax"
    )


def test_retry_after_header_forms():
    assert retry_after_seconds(b"7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("garbage") is None
    now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert retry_after_seconds("Thu, 01 Jan 2026 00:00:30 GMT", now=now) == pytest.approx(30)


def _journal(rows):
    full = [
        {**dict.fromkeys(WIKI_SCHEMA.names), "headings": [], "text_is_lead": False, **r}
        for r in rows
    ]
    return pa.Table.from_pylist(full, schema=WIKI_SCHEMA)


def test_crawl_state_keeps_the_latest_row_and_plans_only_what_is_missing():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    journal = _journal(
        [
            {"taxon_id": "a", "binomial": "A a", "status": "error", "fetched_at": t0},
            {
                "taxon_id": "a",
                "binomial": "A a",
                "status": "found",
                "fetched_at": t0 + timedelta(1),
            },
            {"taxon_id": "b", "binomial": "B b", "status": "error", "fetched_at": t0},
            {"taxon_id": "c", "binomial": "C c", "status": "no_page", "fetched_at": t0},
        ]
    )
    latest = latest_per_taxon(journal)
    assert dict(zip(latest["taxon_id"].to_pylist(), latest["status"].to_pylist(), strict=True)) == {
        "a": "found",
        "b": "error",
        "c": "no_page",
    }
    taxa = pa.table(
        {
            c: [x, x, x, x] if c != "taxon_id" else ["a", "b", "c", "d"]
            for c, x in [
                ("taxon_id", ""),
                ("binomial", "X y"),
                ("kingdom", "K"),
                ("phylum", "P"),
                ("class", "C"),
                ("order", "O"),
                ("family", "F"),
                ("genus", "X"),
                ("species", "y"),
                ("is_ambiguous", False),
            ]
        }
    )
    assert plan_crawl(taxa, latest)["taxon_id"].to_pylist() == ["b", "d"]
    assert plan_crawl(taxa, latest, retry_errors=False)["taxon_id"].to_pylist() == ["d"]
    assert plan_crawl(taxa, latest, refresh=True).num_rows == 4
